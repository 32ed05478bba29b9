//! The service's own metrics in the Prometheus text exposition format (`GET /metrics`):
//! scans, their duration, AWS API calls, errors, findings, alert deliveries, the outbox and the
//! process's memory. Counters live here; gauges that the store knows are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::pipeline::ScanReport;
use crate::sinks::deliver::DeliveryStats;

/// What became of an event-intake message: its instance analysed and stored, already
/// analysed (by a scan or an earlier delivery), not a death (acknowledged), early (hidden until
/// its settle time), unreadable (left for the queue's dead-letter redrive), or its analysis
/// failed (back after `retry_after`).
pub const EVENT_OUTCOMES: [&str; 6] = [
    "analysed",
    "already_analysed",
    "ignored",
    "deferred",
    "unreadable",
    "failed",
];

#[derive(Debug, Default)]
struct Inner {
    scans: BTreeMap<&'static str, u64>,
    scan_seconds_sum: f64,
    scan_seconds_count: u64,
    last_scan_seconds: f64,
    last_success_unix: f64,
    api_calls: BTreeMap<String, u64>,
    instances_analysed: u64,
    instances_pending: u64,
    /// Instances of the last scan without a deployment identity (`<group> (unattributed)`).
    instances_unattributed: u64,
    /// Early warning in the last scan: running instances by outcome.
    early_warning: BTreeMap<&'static str, u64>,
    /// Sources ("logs", "metrics") whose evidence collapsed in the last scan: 1, else 0.
    evidence_collapsed: BTreeMap<&'static str, u64>,
    errors: BTreeMap<&'static str, u64>,
    /// Targets of the last scan: 1 read, 0 could not be read.
    targets: BTreeMap<String, u64>,
    deployments: BTreeMap<String, u64>,
    alerts_enqueued: u64,
    deliveries: BTreeMap<&'static str, u64>,
    /// Event-intake messages by outcome.
    events: BTreeMap<&'static str, u64>,
    http: BTreeMap<(String, u16), u64>,
}

/// Counters and gauges of one service process.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A panic while holding the lock cannot leave the counters inconsistent enough to
        // matter; keep counting.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn scan_finished(&self, report: &ScanReport, seconds: f64, unix_now: f64) {
        self.with(|m| {
            *m.scans.entry("ok").or_insert(0) += 1;
            m.scan_seconds_sum += seconds;
            m.scan_seconds_count += 1;
            m.last_scan_seconds = seconds;
            m.last_success_unix = unix_now;
            for (op, n) in &report.summary.api_calls {
                *m.api_calls.entry(op.clone()).or_insert(0) += n;
            }
            m.instances_analysed += report.summary.analysed as u64;
            m.instances_pending = report.summary.pending.len() as u64;
            let cov = &report.summary.coverage;
            m.instances_unattributed = cov.unattributed as u64;
            m.evidence_collapsed = [
                ("logs", u64::from(cov.last_words.collapsed())),
                ("metrics", u64::from(cov.memory.collapsed())),
            ]
            .into();
            let ew = &report.summary.early_warning;
            m.early_warning = [
                ("projected", ew.projected as u64),
                ("not_leaking", ew.not_leaking as u64),
                ("no_series", ew.no_series as u64),
                ("error", ew.errors as u64),
                ("over_cap", ew.over_cap as u64),
            ]
            .into();
            m.targets = report
                .summary
                .targets
                .iter()
                .map(|t| {
                    let up = t.status == crate::pipeline::TargetState::Ok;
                    (t.target.clone(), u64::from(up))
                })
                .collect();
            m.deployments.clear();
            for (v, n) in &report.summary.deployment_verdicts {
                m.deployments.insert(v.clone(), *n as u64);
            }
            m.alerts_enqueued += report.summary.alerts_enqueued as u64;
        })
    }

    pub fn scan_failed(&self, seconds: f64) {
        self.with(|m| {
            *m.scans.entry("error").or_insert(0) += 1;
            *m.errors.entry("scan").or_insert(0) += 1;
            m.scan_seconds_sum += seconds;
            m.scan_seconds_count += 1;
            m.last_scan_seconds = seconds;
        })
    }

    pub fn scan_skipped(&self) {
        self.with(|m| *m.scans.entry("skipped_busy").or_insert(0) += 1)
    }

    /// A scheduled scan another replica (sharing the state) took.
    pub fn scan_taken_elsewhere(&self) {
        self.with(|m| *m.scans.entry("skipped_other_replica").or_insert(0) += 1)
    }

    pub fn deliveries(&self, s: &DeliveryStats) {
        self.with(|m| {
            *m.deliveries.entry("delivered").or_insert(0) += s.delivered;
            *m.deliveries.entry("retried").or_insert(0) += s.retried;
            *m.deliveries.entry("failed").or_insert(0) += s.failed;
        })
    }

    /// One event-intake message's outcome (one of [`EVENT_OUTCOMES`]).
    pub fn event(&self, outcome: &'static str) {
        self.with(|m| *m.events.entry(outcome).or_insert(0) += 1)
    }

    pub fn error(&self, kind: &'static str) {
        self.with(|m| *m.errors.entry(kind).or_insert(0) += 1)
    }

    pub fn http(&self, route: &str, code: u16) {
        self.with(|m| *m.http.entry((route.to_string(), code)).or_insert(0) += 1)
    }

    /// The exposition text; `outbox` is the message count per status and `next_deaths` the
    /// early-warning projections, both from the store.
    pub fn render(
        &self,
        outbox: &BTreeMap<String, u64>,
        next_deaths: &[crate::model::ProjectedDeath],
    ) -> String {
        let mut o = String::with_capacity(4096);
        let count = |map: &BTreeMap<&'static str, u64>, k: &str| map.get(k).copied().unwrap_or(0);
        self.with(|m| {
            family(
                &mut o,
                "epitaph_scans_total",
                "counter",
                "Scans by result.",
                "result",
                ["ok", "error", "skipped_busy", "skipped_other_replica"].map(|r| (r.to_string(), count(&m.scans, r))),
            );
            help(
                &mut o,
                "epitaph_scan_duration_seconds",
                "summary",
                "Scan wall time.",
            );
            let _ = writeln!(
                o,
                "epitaph_scan_duration_seconds_sum {}",
                m.scan_seconds_sum
            );
            let _ = writeln!(
                o,
                "epitaph_scan_duration_seconds_count {}",
                m.scan_seconds_count
            );
            scalar(
                &mut o,
                "epitaph_last_scan_duration_seconds",
                "gauge",
                "Wall time of the last scan.",
                m.last_scan_seconds,
            );
            scalar(
                &mut o,
                "epitaph_last_successful_scan_timestamp_seconds",
                "gauge",
                "Unix time the last scan succeeded (0: never).",
                m.last_success_unix,
            );
            family(
                &mut o,
                "epitaph_api_calls_total",
                "counter",
                "Remote API calls made by the sources, by operation.",
                "operation",
                m.api_calls.iter().map(|(op, n)| (op.clone(), *n)),
            );
            scalar(
                &mut o,
                "epitaph_instances_analysed_total",
                "counter",
                "Instances fetched and analysed.",
                m.instances_analysed,
            );
            scalar(
                &mut o,
                "epitaph_instances_pending",
                "gauge",
                "Instances whose fetch failed in the last scan (retried next scan).",
                m.instances_pending,
            );
            scalar(
                &mut o,
                "epitaph_instances_unattributed",
                "gauge",
                "Instances of the last scan with no deployment identity (grouped as `<group> (unattributed)`).",
                m.instances_unattributed,
            );
            family(
                &mut o,
                "epitaph_scan_evidence_collapsed",
                "gauge",
                "1 when a source gave no evidence (no last words, no memory series) for any of the last scan's analysed instances (at least 5).",
                "source",
                ["logs", "metrics"].map(|k| (k.to_string(), count(&m.evidence_collapsed, k))),
            );
            family(
                &mut o,
                "epitaph_early_warning_instances",
                "gauge",
                "Running instances in early warning's scope in the last scan, by outcome.",
                "outcome",
                ["projected", "not_leaking", "no_series", "error", "over_cap"]
                    .map(|k| (k.to_string(), count(&m.early_warning, k))),
            );
            family(
                &mut o,
                "epitaph_errors_total",
                "counter",
                "Errors by kind.",
                "kind",
                ["scan", "delivery", "store", "events"]
                    .map(|k| (k.to_string(), count(&m.errors, k))),
            );
            family(
                &mut o,
                "epitaph_target_up",
                "gauge",
                "Targets (account/role × region) of the last scan: 1 read, 0 could not be read (its window is read again next scan).",
                "target",
                m.targets.iter().map(|(t, up)| (t.clone(), *up)),
            );
            family(
                &mut o,
                "epitaph_deployments",
                "gauge",
                "Deployments by verdict after the last scan.",
                "verdict",
                crate::model::DeploymentVerdict::ALL.map(|v| {
                    (
                        v.to_string(),
                        m.deployments.get(v.as_str()).copied().unwrap_or(0),
                    )
                }),
            );
            scalar(
                &mut o,
                "epitaph_alerts_enqueued_total",
                "counter",
                "Alert messages put in the outbox.",
                m.alerts_enqueued,
            );
            family(
                &mut o,
                "epitaph_events_total",
                "counter",
                "Event-intake messages by outcome.",
                "outcome",
                EVENT_OUTCOMES.map(|r| (r.to_string(), count(&m.events, r))),
            );
            family(
                &mut o,
                "epitaph_alert_deliveries_total",
                "counter",
                "Delivery attempts by result.",
                "result",
                ["delivered", "retried", "failed"]
                    .map(|r| (r.to_string(), count(&m.deliveries, r))),
            );
            help(
                &mut o,
                "epitaph_http_requests_total",
                "counter",
                "API requests by route and status.",
            );
            for ((route, code), n) in &m.http {
                let _ = writeln!(
                    o,
                    "epitaph_http_requests_total{{route=\"{}\",code=\"{code}\"}} {n}",
                    label(route)
                );
            }
        });
        family(
            &mut o,
            "epitaph_outbox_messages",
            "gauge",
            "Outbox messages by status.",
            "status",
            ["pending", "delivered", "failed"]
                .map(|st| (st.to_string(), outbox.get(st).copied().unwrap_or(0))),
        );
        help(
            &mut o,
            "epitaph_projected_memory_limit_timestamp_seconds",
            "gauge",
            "Early warning: Unix time a running instance's memory is projected to reach its limit (bound: expected, earliest, latest of the interval).",
        );
        for p in next_deaths {
            let bounds = [
                ("expected", Some(p.expected)),
                ("earliest", Some(p.earliest)),
                ("latest", p.latest),
            ];
            for (bound, t) in bounds {
                if let Some(t) = t {
                    let _ = writeln!(
                        o,
                        "epitaph_projected_memory_limit_timestamp_seconds{{instance_id=\"{}\",deployment=\"{}\",asg=\"{}\",bound=\"{bound}\"}} {}",
                        label(&p.instance_id),
                        label(&p.deployment),
                        label(&p.asg),
                        t.timestamp()
                    );
                }
            }
        }
        if let Some(rss) = resident_memory_bytes() {
            scalar(
                &mut o,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                rss,
            );
        }
        o
    }
}

fn help(o: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(o, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// A metric without labels.
fn scalar(o: &mut String, name: &str, kind: &str, text: &str, value: impl std::fmt::Display) {
    help(o, name, kind, text);
    let _ = writeln!(o, "{name} {value}");
}

/// A metric with one label, a sample per (label value, value).
fn family(
    o: &mut String,
    name: &str,
    kind: &str,
    text: &str,
    key: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    help(o, name, kind, text);
    for (v, n) in samples {
        let _ = writeln!(o, "{name}{{{key}=\"{}\"}} {n}", label(&v));
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// This process's resident set size, from /proc (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_is_well_formed() {
        let m = Metrics::default();
        m.scan_failed(1.5);
        m.http("/v1/x\"", 200);
        let t = chrono::DateTime::from_timestamp(1_767_600_000, 0).unwrap();
        let p = crate::model::ProjectedDeath {
            instance_id: "i-0abc".into(),
            deployment: "web:\"10\"".into(),
            asg: "web".into(),
            launch_time: None,
            as_of: t,
            floor: 80.0,
            swing: 5.0,
            limit: 100.0,
            threshold: 100.0,
            threshold_basis: "limit".into(),
            threshold_deaths: 0,
            unit: "percent".into(),
            growth_per_hour: 1.0,
            expected: t + chrono::Duration::hours(15),
            earliest: t + chrono::Duration::hours(12),
            latest: None,
            confidence: 0.99,
        };
        let text = m.render(&BTreeMap::from([("pending".to_string(), 2)]), &[p]);
        assert!(text.contains("epitaph_projected_memory_limit_timestamp_seconds{instance_id=\"i-0abc\",deployment=\"web:\\\"10\\\"\",asg=\"web\",bound=\"expected\"} 1767654000"), "{text}");
        assert!(
            !text.contains("bound=\"latest\""),
            "an open interval has no latest bound"
        );
        assert!(text.contains("epitaph_scans_total{result=\"error\"} 1"));
        assert!(text.contains("epitaph_outbox_messages{status=\"pending\"} 2"));
        assert!(text.contains("route=\"/v1/x\\\"\""));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(
                name.starts_with("epitaph_") || name.starts_with("process_"),
                "{line}"
            );
        }
    }
}
