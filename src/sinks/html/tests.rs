//! Tests of the HTML report: what it shows, what it leaves out, and that every text from
//! data comes out escaped (the template's values and the chart's SVG alike).

use super::*;
use crate::model::SegmentEnd;

#[test]
fn escapes_everything_user_controlled() {
    let f = DeploymentFinding {
        deployment: "<img src=x onerror=alert(1)>".into(),
        asgs: vec!["<b>".into()],
        verdict: DeploymentVerdict::Crashing,
        summary: "<script>\"'&".into(),
        evidence: Default::default(),
        origin: None,
    };
    let r = Redactor::default();
    let html = render(
        &[f],
        &[],
        &[],
        &HtmlContext {
            generated_at: Utc::now(),
            window: None,
            unit: "percent",
            redactor: &r,
            next_deaths: &[],
            signatures: None,
            heap_diffs: &[],
            unread_targets: &[(
                "us-west-2".to_string(),
                crate::store::UnreadTarget {
                    since: Utc::now(),
                    error: "AccessDenied: <script>alert(1)</script>".into(),
                },
            )]
            .into(),
        },
    );
    assert!(!html.contains("<script>") && !html.contains("<img"));
    assert!(html.contains("&#60;b&#62;") && html.contains("&#60;img src=x"));
    // askama's escaper: every one of `<>"'&`, as numeric references.
    assert!(html.contains("&#60;script&#62;&#34;&#39;&#38;"), "{html}");
    // A target the latest scan could not read is named in a banner, escaped like the rest.
    let banner = html.find("id=\"unread-targets\"").expect("banner");
    assert!(banner < html.find("id=\"summary\"").unwrap());
    assert!(html.contains("<code>us-west-2</code>: AccessDenied: &#60;script&#62;"));
}

#[test]
fn the_chart_marks_where_the_detector_saw_restarts() {
    use crate::model::{CauseCategory, InstanceVerdict, LastWords, MemorySeries};
    use chrono::TimeZone;
    let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
    // Two lives of a leak: climb, restart, climb again until death.
    let points: Vec<(chrono::DateTime<Utc>, f64)> = (0..240)
        .map(|i| {
            (
                t0 + chrono::Duration::minutes(5 * i),
                20.0 + (i % 120) as f64 * 0.6,
            )
        })
        .collect();
    let leak = crate::analysis::leak::assess(&points, Some(100.0));
    assert_eq!(
        leak.segments
            .iter()
            .filter(|s| s.ended_by == SegmentEnd::Restart)
            .count(),
        1,
        "{leak:?}"
    );
    let report = InstanceReport {
        instance_id: "i-0abc".into(),
        deployment: "web:1".into(),
        asg: "web".into(),
        terminated_at: points[points.len() - 1].0,
        cause: CauseCategory::HealthCheck,
        cause_text: String::new(),
        launch_time: None,
        verdict: InstanceVerdict::MemoryExhaustionSuspected,
        explanation: String::new(),
        signatures: vec![],
        leak: Some(leak),
        last_words: LastWords::default(),
        memory: MemorySeries {
            points,
            limit: Some(100.0),
            ..Default::default()
        },
    };
    let f = DeploymentFinding {
        deployment: "web:1".into(),
        asgs: vec!["web".into()],
        verdict: DeploymentVerdict::Leaking,
        summary: String::new(),
        evidence: Default::default(),
        origin: None,
    };
    let r = Redactor::default();
    let facts = [crate::model::InstanceFacts::of(&report)];
    assert_eq!(
        cited(std::slice::from_ref(&f), &facts),
        vec![report.instance_id.clone()]
    );
    let html = render(
        &[f],
        &facts,
        &[report],
        &HtmlContext {
            generated_at: Utc::now(),
            window: None,
            unit: "percent",
            redactor: &r,
            next_deaths: &[],
            signatures: None,
            heap_diffs: &[],
            unread_targets: &Default::default(),
        },
    );
    assert_eq!(html.matches("<path class=\"restart\"").count(), 1, "{html}");
    // Two lives, two floor lines.
    assert_eq!(html.matches("<line class=\"floor\"").count(), 2, "{html}");
    assert!(
        html.contains("i-0abc: restart at 2026-01-05 09:55 UTC"),
        "{html}"
    );
}

/// The page drawn from the cited reports alone is the page drawn from every report: the
/// charts, excerpts and tables pick the same instances (times tie on purpose, and the
/// newest instances, which fill the table, have neither series nor last words), and the
/// counts of what is left out come from the compact rows.
#[test]
fn the_cited_reports_draw_the_same_page_as_all_of_them() {
    use crate::model::{
        CauseCategory, InstanceFacts, InstanceVerdict, LastWords, LogEvent, MemorySeries,
        SignatureKind, SignatureMatch,
    };
    use chrono::TimeZone;
    let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
    let old = 90;
    let mut reports: Vec<InstanceReport> = (0..(MAX_TABLE_ROWS + old))
        .map(|i| {
            // Three instances per termination time: ties at every cut.
            let at = t0 + chrono::Duration::minutes((i / 3) as i64);
            let evidence = i < old;
            let verdict = match (evidence, i % 2) {
                (true, 0) => InstanceVerdict::OomLeak,
                (true, _) => InstanceVerdict::OomSpike,
                (false, 0) => InstanceVerdict::NotACrash,
                (false, _) => InstanceVerdict::CrashOther,
            };
            // The newest fill web:1's table exactly; web:2 has a few old ones.
            let deployment = if evidence && i % 7 == 0 {
                "web:2"
            } else {
                "web:1"
            };
            InstanceReport {
                instance_id: format!("i-{:03}", (i * 37) % 1000),
                deployment: deployment.into(),
                asg: "web".into(),
                terminated_at: at,
                cause: CauseCategory::HealthCheck,
                cause_text: format!("cause {i}"),
                launch_time: None,
                verdict,
                explanation: String::new(),
                signatures: if verdict.is_memory_death() {
                    vec![SignatureMatch {
                        signature: format!("sig.{}", i % 3),
                        runtime: "node".into(),
                        kind: SignatureKind::Oom,
                        line: 0,
                        text: "heap out of memory".into(),
                        details: Default::default(),
                    }]
                } else {
                    vec![]
                },
                leak: None,
                last_words: LastWords {
                    // Words and series on different instances: each section cites its own.
                    events: (0..if evidence && i % 4 < 2 { i % 4 + 1 } else { 0 })
                        .map(|k| LogEvent {
                            timestamp: at,
                            message: format!("line {k} of {i}"),
                        })
                        .collect(),
                    ..Default::default()
                },
                memory: MemorySeries {
                    points: (0..if evidence && i % 4 >= 2 { i % 4 } else { 0 })
                        .map(|k| (at - chrono::Duration::minutes(k as i64), k as f64))
                        .collect(),
                    limit: Some(100.0),
                    ..Default::default()
                },
            }
        })
        .collect();
    reports
        .sort_by(|a, b| (a.terminated_at, &a.instance_id).cmp(&(b.terminated_at, &b.instance_id)));
    let facts: Vec<InstanceFacts> = reports.iter().map(InstanceFacts::of).collect();
    let findings: Vec<DeploymentFinding> = ["web:1", "web:2"]
        .iter()
        .map(|d| DeploymentFinding {
            deployment: d.to_string(),
            asgs: vec!["web".into()],
            verdict: DeploymentVerdict::Leaking,
            summary: String::new(),
            evidence: Default::default(),
            origin: None,
        })
        .collect();
    let ids = cited(&findings, &facts);
    assert!(
        ids.len() < reports.len(),
        "{} of {}",
        ids.len(),
        reports.len()
    );
    let shown: Vec<InstanceReport> = reports
        .iter()
        .filter(|r| ids.contains(&r.instance_id))
        .cloned()
        .collect();
    let r = Redactor::default();
    let lib = crate::analysis::signatures::SignatureLibrary::default_library().unwrap();
    let ctx = HtmlContext {
        generated_at: t0,
        window: None,
        unit: "percent",
        redactor: &r,
        next_deaths: &[],
        signatures: Some(&lib),
        heap_diffs: &[],
        unread_targets: &Default::default(),
    };
    let all = render(&findings, &facts, &reports, &ctx);
    assert!(
        all.contains("more instances not listed"),
        "the table is cut"
    );
    assert!(
        all.contains("older instances not drawn"),
        "the chart is cut"
    );
    assert!(all.contains("Last words of"), "excerpts are shown");
    assert_eq!(render(&findings, &facts, &shown, &ctx), all);
}

/// A hostile instance id, deployment (a tag value), group, cause, signature, log line and
/// unread target, each with `<script>`, quotes and `&`: every one comes out escaped wherever
/// the page shows it — table cells, attributes, the excerpt, the early-warning table and the
/// SVG's `aria-label` and `<title>`s — and no markup of theirs survives.
#[test]
fn hostile_text_is_escaped_everywhere_it_appears_including_the_chart() {
    use crate::model::{
        CauseCategory, InstanceVerdict, LastWords, LogEvent, MemorySeries, SignatureKind,
        SignatureMatch,
    };
    use chrono::TimeZone;
    const EVIL: &str = r#"<script>alert("x")</script>&'"#;
    const ESCAPED: &str = "&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;&#38;&#39;";
    let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
    // A leak with a restart: floors, a restart tick and the OOM cross, each with a title.
    let points: Vec<(DateTime<Utc>, f64)> = (0..240)
        .map(|i| {
            (
                t0 + chrono::Duration::minutes(5 * i),
                20.0 + (i % 120) as f64 * 0.6,
            )
        })
        .collect();
    let leak = crate::analysis::leak::assess(&points, Some(100.0));
    let id = format!("i-{EVIL}");
    let deployment = format!("web:{EVIL}");
    let report = InstanceReport {
        instance_id: id.clone(),
        deployment: deployment.clone(),
        asg: format!("asg-{EVIL}"),
        terminated_at: points[points.len() - 1].0,
        cause: CauseCategory::HealthCheck,
        cause_text: format!("At 2026-01-05T19:55:00Z cause {EVIL}. Second sentence."),
        launch_time: None,
        verdict: InstanceVerdict::OomLeak,
        explanation: String::new(),
        signatures: vec![SignatureMatch {
            signature: format!("sig.{EVIL}"),
            runtime: "node".into(),
            kind: SignatureKind::Oom,
            line: 1,
            text: EVIL.into(),
            details: Default::default(),
        }],
        leak: Some(leak),
        last_words: LastWords {
            events: [format!("before {EVIL}"), format!("FATAL {EVIL}")]
                .into_iter()
                .map(|message| LogEvent {
                    timestamp: t0,
                    message,
                })
                .collect(),
            ..Default::default()
        },
        memory: MemorySeries {
            points,
            limit: Some(100.0),
            ..Default::default()
        },
    };
    let mut evidence = crate::model::DeploymentEvidence::default();
    evidence.counts.insert(format!("count {EVIL}"), 1);
    evidence.signatures.insert(format!("sig.{EVIL}"), 1);
    let f = DeploymentFinding {
        deployment: deployment.clone(),
        asgs: vec![format!("asg-{EVIL}")],
        verdict: DeploymentVerdict::Leaking,
        summary: format!("summary {EVIL}"),
        evidence,
        origin: None,
    };
    let next = ProjectedDeath {
        instance_id: format!("i-next-{EVIL}"),
        deployment: deployment.clone(),
        asg: "web".into(),
        launch_time: None,
        as_of: t0,
        floor: 50.0,
        swing: 5.0,
        limit: 100.0,
        threshold: 95.0,
        threshold_basis: "limit".into(),
        threshold_deaths: 0,
        unit: "percent".into(),
        growth_per_hour: 1.0,
        expected: t0 + chrono::Duration::hours(10),
        earliest: t0 + chrono::Duration::hours(8),
        latest: None,
        confidence: 0.9,
    };
    let facts = [InstanceFacts::of(&report)];
    let r = Redactor::default();
    let html = render(
        std::slice::from_ref(&f),
        &facts,
        std::slice::from_ref(&report),
        &HtmlContext {
            generated_at: t0,
            window: None,
            unit: "percent",
            redactor: &r,
            next_deaths: std::slice::from_ref(&next),
            signatures: None,
            heap_diffs: &[],
            unread_targets: &[(
                format!("target-{EVIL}"),
                crate::store::UnreadTarget {
                    since: t0,
                    error: format!("AccessDenied {EVIL}"),
                },
            )]
            .into(),
        },
    );
    // Nothing of the hostile markup survives, nor an attribute it could have closed.
    assert!(
        !html.contains("<script") && !html.contains("</script"),
        "{html}"
    );
    assert!(!html.contains("\"x\""), "{html}");
    // Each text is there, escaped, wherever it is shown.
    let svg = &html[html.find("<svg").expect("a chart")..html.find("</svg>").unwrap()];
    for (what, text, min) in [
        (
            "instance id (table, excerpt, chart titles)",
            format!("i-{ESCAPED}"),
            5,
        ),
        (
            "deployment (summary, section, link, aria-label)",
            format!("web:{ESCAPED}"),
            4,
        ),
        ("group", format!("asg-{ESCAPED}"), 1),
        ("summary", format!("summary {ESCAPED}"), 2),
        ("verdict count", format!("count {ESCAPED}"), 1),
        ("signature (facts, table)", format!("sig.{ESCAPED}"), 2),
        ("log lines", format!("FATAL {ESCAPED}"), 1),
        (
            "cause (cell and title attribute)",
            format!("cause {ESCAPED}"),
            2,
        ),
        ("next death", format!("i-next-{ESCAPED}"), 1),
        ("unread target", format!("target-{ESCAPED}"), 1),
        ("unread error", format!("AccessDenied {ESCAPED}"), 1),
    ] {
        assert!(
            html.matches(&text).count() >= min,
            "{what}: {text} in {html}"
        );
    }
    // The chart: the deployment in its label, the instance in every title.
    assert!(
        svg.contains(&format!(
            "aria-label=\"memory of 1 instances of web:{ESCAPED}\""
        )),
        "{svg}"
    );
    let titles: Vec<&str> = svg
        .split("<title>")
        .skip(1)
        .map(|t| t.split_once("</title>").expect("closed title").0)
        .collect();
    // The series, two floors, a restart and the OOM death.
    assert_eq!(titles.len(), 5, "{svg}");
    for t in &titles {
        assert!(t.starts_with(&format!("i-{ESCAPED}")), "{t}");
    }
    // The matched line is highlighted, the other is not.
    assert!(html.contains(&format!("<span class=\"hit\">FATAL {ESCAPED}</span>")));
    assert!(html.contains(&format!("\nbefore {ESCAPED}\n")));
    assert!(html.contains(&format!(
        "title=\"At 2026-01-05T19:55:00Z cause {ESCAPED}. Second sentence.\""
    )));
}

/// A signature library's next step and documentation links are escaped too, and a link that
/// is not http(s) — `javascript:` — is shown as text, never as a link.
#[test]
fn next_steps_escape_the_library_and_link_only_web_addresses() {
    let lib = crate::analysis::signatures::SignatureLibrary::from_toml(
        r#"
[[signature]]
id = "app.oom"
runtime = "<rt>"
kind = "oom"
keywords = ["app oom"]
patterns = ['app oom']
explanation = "x"
next_step = "Run <script>x</script> & see"
docs = [
  { label = "<b>evil</b>", url = "javascript:alert(1)" },
  { label = "docs & more", url = "https://example.com/a?b=1&c=\"2\"" },
]
"#,
        "test",
    )
    .unwrap();
    let spec = &lib.get("app.oom").unwrap().spec;
    let facts = InstanceFacts {
        death_signatures: vec!["app.oom".into()],
        ..InstanceFacts::of(&crate::model::InstanceReport {
            instance_id: "i-1".into(),
            deployment: "web:1".into(),
            asg: "web".into(),
            terminated_at: Utc::now(),
            cause: crate::model::CauseCategory::HealthCheck,
            cause_text: String::new(),
            launch_time: None,
            verdict: crate::model::InstanceVerdict::Oom,
            explanation: String::new(),
            signatures: vec![],
            leak: None,
            last_words: Default::default(),
            memory: Default::default(),
        })
    };
    assert_eq!(spec.docs.len(), 2);
    let f = DeploymentFinding {
        deployment: "web:1".into(),
        asgs: vec!["web".into()],
        verdict: DeploymentVerdict::OomWithoutLeak,
        summary: String::new(),
        evidence: Default::default(),
        origin: None,
    };
    let r = Redactor::default();
    let html = render(
        &[f],
        &[facts],
        &[],
        &HtmlContext {
            generated_at: Utc::now(),
            window: None,
            unit: "percent",
            redactor: &r,
            next_deaths: &[],
            signatures: Some(&lib),
            heap_diffs: &[],
            unread_targets: &Default::default(),
        },
    );
    let steps = &html[html.find("<div class=\"next-steps\">").expect("next steps")..];
    let steps = &steps[..steps.find("</div>").unwrap()];
    assert_eq!(
        steps,
        "<div class=\"next-steps\"><b>Next steps</b><ul><li><b>app.oom</b> (&#60;rt&#62;): Run &#60;script&#62;x&#60;/script&#62; &#38; see <span class=\"legend\">· &#60;b&#62;evil&#60;/b&#62; (javascript:alert(1)) · <a href=\"https://example.com/a?b=1&#38;c=&#34;2&#34;\">docs &#38; more</a></span></li></ul>"
    );
}

/// The chart is the one place markup enters the page unescaped: the templates mark nothing
/// safe and switch no escaping off.
#[test]
fn the_templates_insert_no_unescaped_markup() {
    for (name, text) in [
        (
            "report.html",
            include_str!("../../../templates/report.html"),
        ),
        (
            "investigation.html",
            include_str!("../../../templates/investigation.html"),
        ),
    ] {
        for needle in ["|safe", "| safe", "escape(", "|e(", "autoescape", "{% raw"] {
            assert!(!text.contains(needle), "{name} contains {needle}");
        }
    }
    let page = investigation_page("<script>&\"'");
    assert_eq!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>epitaph instance</title></head><body><pre>&#60;script&#62;&#38;&#34;&#39;</pre></body></html>"
    );
}
