//! Slack incoming-webhook messages in Block Kit (Mattermost and Discord's `/slack` endpoint
//! take the same body). Everything is cut to Slack's documented limits so a message is never
//! rejected for size, however long the last words are.

use serde_json::{json, Value};

use crate::analysis::alerting::ResolveReason;
use crate::model::DeploymentVerdict;
use crate::sinks::alert::{fmt_growth, fmt_hours, Alert};

/// Blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Characters of a header block's plain text.
pub const MAX_HEADER_CHARS: usize = 150;
/// Characters of a section block's text.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Fields per section.
pub const MAX_FIELDS: usize = 10;
/// Characters per field.
pub const MAX_FIELD_CHARS: usize = 2000;
/// Elements per context block.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// The notification fallback text; Slack truncates at 40,000, we stay far below.
pub const MAX_FALLBACK_CHARS: usize = 3000;

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `s` cut to at most `max` characters, ending in "…" when cut.
pub fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    // Never leave half an escape entity behind.
    if let Some(amp) = out.rfind('&') {
        if !out[amp..].contains(';') {
            out.truncate(amp);
        }
    }
    out.push('…');
    out
}

fn emoji(a: &Alert) -> &'static str {
    if a.kind == "resolved" {
        return ":white_check_mark:";
    }
    match a.verdict {
        DeploymentVerdict::Leaking => ":red_circle:",
        DeploymentVerdict::OomWithoutLeak => ":large_orange_circle:",
        DeploymentVerdict::Crashing => ":large_yellow_circle:",
        _ => ":white_circle:",
    }
}

fn title(a: &Alert) -> String {
    let what = match a.verdict {
        DeploymentVerdict::Leaking => "memory leak",
        DeploymentVerdict::OomWithoutLeak => "out-of-memory deaths",
        DeploymentVerdict::Crashing => "crashes",
        DeploymentVerdict::InsufficientEvidence => "unexplained deaths",
        DeploymentVerdict::Healthy => "healthy",
    };
    match (a.kind.as_str(), a.previous_verdict) {
        ("resolved", _) => format!("Resolved: {what} in {}", a.deployment),
        ("changed", Some(p)) => format!("{} now {} (was {p}): {what}", a.deployment, a.verdict),
        _ => format!("{}: {what}", a.deployment),
    }
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(text, MAX_SECTION_CHARS)}})
}

/// The Block Kit body for one alert.
pub fn render(a: &Alert) -> Value {
    let mut blocks: Vec<Value> = Vec::new();
    blocks.push(json!({
        "type": "header",
        "text": {"type": "plain_text", "text": fit(&format!("{} {}", emoji(a), title(a)), MAX_HEADER_CHARS), "emoji": true}
    }));

    let mut fields: Vec<String> = Vec::new();
    if !a.asgs.is_empty() {
        fields.push(format!("*Groups*\n{}", escape(&a.asgs.join(", "))));
    }
    fields.push(format!(
        "*Deaths*\n{} of {} instances by memory",
        a.memory_deaths, a.instances
    ));
    if let (Some(first), Some(last)) = (a.first_death, a.last_death) {
        fields.push(format!(
            "*When*\n{} → {}",
            first.format("%Y-%m-%d %H:%M"),
            last.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if let Some(g) = a.growth_per_hour {
        fields.push(format!("*Floor growth*\n{}", fmt_growth(g, &a.unit)));
    }
    if let Some(h) = a.projected_hours_to_oom {
        fields.push(format!("*Time to OOM*\n~{} after launch", fmt_hours(h)));
    }
    if let Some(h) = a.median_lifetime_hours {
        fields.push(format!("*Median lifetime*\n{}", fmt_hours(h)));
    }
    let summary = if a.kind == "resolved" {
        match a.resolved_reason {
            Some(ResolveReason::Replaced) => format!(
                "{} ({})",
                escape(&a.summary),
                "no action needed unless the new deployment starts dying"
            ),
            _ => escape(&a.summary),
        }
    } else {
        match &a.origin {
            Some(o) => format!(
                "*{}* — {}\n*Origin:* {}",
                a.verdict,
                escape(&a.summary),
                escape(&o.summary)
            ),
            None => format!("*{}* — {}", a.verdict, escape(&a.summary)),
        }
    };
    let mut s = json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(&summary, MAX_SECTION_CHARS)}});
    s["fields"] = Value::Array(
        fields
            .iter()
            .take(MAX_FIELDS)
            .map(|f| json!({"type": "mrkdwn", "text": fit(f, MAX_FIELD_CHARS)}))
            .collect(),
    );
    blocks.push(s);

    if a.kind != "resolved" {
        if let Some(e) = &a.evidence {
            let head = format!(
                "*Last words* of `{}` at {} — `{}` ({})\n",
                escape(&e.instance_id),
                e.terminated_at.format("%Y-%m-%d %H:%M:%S UTC"),
                escape(&e.signature),
                escape(&e.runtime)
            );
            // The code fence must survive the cut: fit the inside, then wrap it.
            let body: String = e
                .context
                .iter()
                .map(|l| escape(&l.replace("```", "'''")))
                .collect::<Vec<_>>()
                .join("\n");
            let room = MAX_SECTION_CHARS.saturating_sub(head.chars().count() + 8);
            blocks.push(section(&format!("{head}```{}```", fit(&body, room))));
        }
        if !a.next_expected_deaths.is_empty() {
            let lines: Vec<String> = a
                .next_expected_deaths
                .iter()
                .map(|p| {
                    let until = |t: chrono::DateTime<chrono::Utc>| {
                        fmt_hours(((t - a.as_of).num_seconds().max(0)) as f64 / 3600.0)
                    };
                    let latest = p.latest.map_or("open".to_string(), until);
                    format!(
                        "• `{}` in ~{} ({} to {}), {} UTC",
                        escape(&p.instance_id),
                        until(p.expected),
                        until(p.earliest),
                        latest,
                        p.expected.format("%Y-%m-%d %H:%M")
                    )
                })
                .collect();
            blocks.push(section(&fit(
                &format!(
                    "*Next expected deaths* (memory projected to reach the limit)\n{}",
                    lines.join("\n")
                ),
                MAX_SECTION_CHARS,
            )));
        }
        if !a.next_steps.is_empty() {
            let steps: Vec<String> = a
                .next_steps
                .iter()
                .map(|s| format!("• {}", escape(s)))
                .collect();
            blocks.push(section(&format!("*Next steps*\n{}", steps.join("\n"))));
        }
    }

    let mut context: Vec<Value> = a
        .links
        .iter()
        .map(|l| {
            // A link's URL is not cut (a cut URL is a broken link): only its label is.
            let label = fit(&escape(&l.label).replace('|', "/"), 200);
            json!({"type": "mrkdwn", "text": format!("<{}|{}>", l.url.replace('|', "%7C").replace('>', "%3E"), label)})
        })
        .filter(|v| v["text"].as_str().is_some_and(|t| t.chars().count() <= MAX_SECTION_CHARS))
        .collect();
    context.push(json!({"type": "mrkdwn", "text": fit(&format!("epitaph · alert `{}`", escape(&a.id)), MAX_SECTION_CHARS)}));
    context.truncate(MAX_CONTEXT_ELEMENTS);
    blocks.push(json!({"type": "context", "elements": context}));
    blocks.truncate(MAX_BLOCKS);

    json!({
        "text": fit(&format!("{} {}", emoji(a), title(a)), MAX_FALLBACK_CHARS),
        "blocks": blocks,
    })
}

/// Every way `body` breaks Slack's documented limits (empty when it is within them).
pub fn limit_problems(body: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
    if blocks.len() > MAX_BLOCKS {
        p.push(format!("{} blocks > {MAX_BLOCKS}", blocks.len()));
    }
    if len(&body["text"]) > 40_000 {
        p.push("fallback text > 40000".into());
    }
    for (i, b) in blocks.iter().enumerate() {
        match b["type"].as_str() {
            Some("header") if len(&b["text"]["text"]) > MAX_HEADER_CHARS => {
                p.push(format!("block {i}: header > {MAX_HEADER_CHARS}"))
            }
            Some("section") => {
                if len(&b["text"]["text"]) > MAX_SECTION_CHARS {
                    p.push(format!("block {i}: section text > {MAX_SECTION_CHARS}"));
                }
                let fields = b["fields"].as_array().cloned().unwrap_or_default();
                if fields.len() > MAX_FIELDS {
                    p.push(format!("block {i}: {} fields > {MAX_FIELDS}", fields.len()));
                }
                for f in &fields {
                    if len(&f["text"]) > MAX_FIELD_CHARS {
                        p.push(format!("block {i}: field > {MAX_FIELD_CHARS}"));
                    }
                }
            }
            Some("context") => {
                let n = b["elements"].as_array().map_or(0, Vec::len);
                if n > MAX_CONTEXT_ELEMENTS || n == 0 {
                    p.push(format!("block {i}: {n} context elements"));
                }
            }
            _ => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::alert::{Evidence, Link, ALERT_SCHEMA};

    fn alert(line: &str, n_steps: usize) -> Alert {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Alert {
            schema: ALERT_SCHEMA.into(),
            id: "api:7#1#firing#leaking".into(),
            kind: "firing".into(),
            deployment: "x".repeat(400),
            asgs: vec!["g".repeat(3000)],
            verdict: DeploymentVerdict::Leaking,
            previous_verdict: None,
            resolved_reason: None,
            summary: "<&>".repeat(2000),
            instances: 5,
            memory_deaths: 5,
            first_death: Some(t),
            last_death: Some(t),
            growth_per_hour: Some(1.25),
            unit: "percent".into(),
            projected_hours_to_oom: Some(40.0),
            median_lifetime_hours: Some(38.0),
            evidence: Some(Evidence {
                instance_id: "i-0abc".into(),
                terminated_at: t,
                signature: "node-heap-oom".into(),
                runtime: "node".into(),
                matched_line: line.into(),
                context: vec![line.to_string(); 6],
            }),
            next_steps: vec!["take a heap snapshot ```".repeat(50); n_steps],
            links: vec![
                Link {
                    label: "L".into(),
                    url: "https://example.com/a?b=c".into()
                };
                20
            ],
            origin: None,
            next_expected_deaths: Vec::new(),
            instance_ids: vec![],
            created_at: t,
            as_of: t,
        }
    }

    #[test]
    fn huge_alerts_stay_within_limits() {
        for line in ["&".repeat(10_000), "x".repeat(100_000), "```".repeat(3000)] {
            let body = render(&alert(&line, 100));
            assert!(
                limit_problems(&body).is_empty(),
                "{:?}",
                limit_problems(&body)
            );
            let code = body["blocks"][2]["text"]["text"].as_str().unwrap();
            assert!(code.ends_with("```"), "code fence closed");
            assert_eq!(code.matches("```").count(), 2);
        }
    }

    #[test]
    fn checker_catches_violations() {
        let body = json!({"text": "", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "s".repeat(3001)},
             "fields": (0..11).map(|_| json!({"type": "mrkdwn", "text": "f"})).collect::<Vec<_>>()}
        ]});
        assert_eq!(limit_problems(&body).len(), 3);
    }

    #[test]
    fn escapes_control_characters_and_never_splits_entities() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        let cut = fit(&escape(&"&".repeat(100)), 12);
        assert!(cut.ends_with("&amp;…") || cut.ends_with(";…"), "{cut}");
    }
}
