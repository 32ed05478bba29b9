//! The service's own metrics (`GET /metrics`): scans, their duration, AWS API calls, errors,
//! findings, alert deliveries, the outbox and the process's memory. Kept in `prometheus-client`
//! families and written by its encoders: OpenMetrics 1.0 when the scraper asks for it
//! (Prometheus does), else the Prometheus text format 0.0.4. Counters and the scan's gauges are
//! updated as things happen; the gauges the store knows (outbox, projections) and the resident
//! memory are set at scrape time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::sinks::deliver::DeliveryStats;
use crate::sinks::scan_report::{ScanReport, TargetState};

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

/// Scan results counted by `epitaph_scans_total`.
const SCAN_RESULTS: [&str; 4] = ["ok", "error", "skipped_busy", "skipped_other_replica"];
/// Early warning's outcomes for running instances (`epitaph_early_warning_instances`).
const EARLY_WARNING_OUTCOMES: [&str; 5] =
    ["projected", "not_leaking", "no_series", "error", "over_cap"];
/// Error kinds counted by `epitaph_errors_total`.
const ERROR_KINDS: [&str; 4] = ["scan", "delivery", "store", "events"];
/// Delivery results counted by `epitaph_alert_deliveries_total`.
const DELIVERY_RESULTS: [&str; 3] = ["delivered", "retried", "failed"];
/// Outbox statuses (`epitaph_outbox_messages`).
const OUTBOX_STATUSES: [&str; 3] = ["pending", "delivered", "failed"];
/// Sources whose evidence can collapse (`epitaph_scan_evidence_collapsed`).
const EVIDENCE_SOURCES: [&str; 2] = ["logs", "metrics"];
/// Upper bounds of `epitaph_scan_duration_seconds`'s buckets: a scan of a quiet window takes
/// well under a second, a first scan of a large fleet minutes.
const SCAN_SECONDS_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set of one label.
type One = [(&'static str, String); 1];
/// A label set of two labels.
type Two = [(&'static str, String); 2];
/// A projection's labels: instance, deployment, group, bound.
type Four = [(&'static str, String); 4];

fn one(key: &'static str, value: &str) -> One {
    [(key, value.to_string())]
}

/// Counters and gauges of one service process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    scans: Family<One, Counter>,
    scan_seconds: Histogram,
    last_scan_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_success_unix: Gauge<f64, std::sync::atomic::AtomicU64>,
    api_calls: Family<One, Counter>,
    instances_analysed: Counter,
    instances_pending: Gauge,
    /// Instances of the last scan without a deployment identity (`<group> (unattributed)`).
    instances_unattributed: Gauge,
    /// Sources ("logs", "metrics") whose evidence collapsed in the last scan: 1, else 0.
    evidence_collapsed: Family<One, Gauge>,
    /// Early warning in the last scan: running instances by outcome.
    early_warning: Family<One, Gauge>,
    errors: Family<One, Counter>,
    /// Targets of the last scan: 1 read, 0 could not be read.
    targets: Family<One, Gauge>,
    deployments: Family<One, Gauge>,
    alerts_enqueued: Counter,
    deliveries: Family<One, Counter>,
    /// Event-intake messages by outcome.
    events: Family<One, Counter>,
    http: Family<Two, Counter>,
    /// Set at scrape time from the store.
    outbox: Family<One, Gauge>,
    /// Set at scrape time from the store.
    projected: Family<Four, Gauge>,
    /// Set at scrape time from /proc.
    resident_memory: Gauge,
    /// One scrape at a time sets the scrape-time gauges and encodes them.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            scans: Family::default(),
            scan_seconds: Histogram::new(SCAN_SECONDS_BUCKETS),
            last_scan_seconds: Gauge::default(),
            last_success_unix: Gauge::default(),
            api_calls: Family::default(),
            instances_analysed: Counter::default(),
            instances_pending: Gauge::default(),
            instances_unattributed: Gauge::default(),
            evidence_collapsed: Family::default(),
            early_warning: Family::default(),
            errors: Family::default(),
            targets: Family::default(),
            deployments: Family::default(),
            alerts_enqueued: Counter::default(),
            deliveries: Family::default(),
            events: Family::default(),
            http: Family::default(),
            outbox: Family::default(),
            projected: Family::default(),
            resident_memory: Gauge::default(),
            scrape: Mutex::new(()),
        };
        // Every known label value is exposed from the start (at 0), so a rate or an absent()
        // alert never depends on whether the event happened yet.
        for (family, key, values) in [
            (&m.scans, "result", &SCAN_RESULTS[..]),
            (&m.errors, "kind", &ERROR_KINDS[..]),
            (&m.events, "outcome", &EVENT_OUTCOMES[..]),
            (&m.deliveries, "result", &DELIVERY_RESULTS[..]),
        ] {
            for v in values {
                drop(family.get_or_create(&one(key, v)));
            }
        }
        for (family, key, values) in [
            (&m.evidence_collapsed, "source", &EVIDENCE_SOURCES[..]),
            (&m.early_warning, "outcome", &EARLY_WARNING_OUTCOMES[..]),
            (&m.outbox, "status", &OUTBOX_STATUSES[..]),
        ] {
            for v in values {
                drop(family.get_or_create(&one(key, v)));
            }
        }
        for v in crate::model::DeploymentVerdict::ALL {
            drop(m.deployments.get_or_create(&one("verdict", v.as_str())));
        }
        m.register()
    }
}

impl Metrics {
    /// Registers every family under its exposed name (counters without `_total`: the encoders
    /// add it).
    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register("epitaph_scans", "Scans by result", self.scans.clone());
        r.register(
            "epitaph_scan_duration_seconds",
            "Scan wall time",
            self.scan_seconds.clone(),
        );
        r.register(
            "epitaph_last_scan_duration_seconds",
            "Wall time of the last scan",
            self.last_scan_seconds.clone(),
        );
        r.register(
            "epitaph_last_successful_scan_timestamp_seconds",
            "Unix time the last scan succeeded (0: never)",
            self.last_success_unix.clone(),
        );
        r.register(
            "epitaph_api_calls",
            "Remote API calls made by the sources, by operation",
            self.api_calls.clone(),
        );
        r.register(
            "epitaph_instances_analysed",
            "Instances fetched and analysed",
            self.instances_analysed.clone(),
        );
        r.register(
            "epitaph_instances_pending",
            "Instances whose fetch failed in the last scan (retried next scan)",
            self.instances_pending.clone(),
        );
        r.register(
            "epitaph_instances_unattributed",
            "Instances of the last scan with no deployment identity (grouped as `<group> (unattributed)`)",
            self.instances_unattributed.clone(),
        );
        r.register(
            "epitaph_scan_evidence_collapsed",
            "1 when a source gave no evidence (no last words, no memory series) for any of the last scan's analysed instances (at least 5)",
            self.evidence_collapsed.clone(),
        );
        r.register(
            "epitaph_early_warning_instances",
            "Running instances in early warning's scope in the last scan, by outcome",
            self.early_warning.clone(),
        );
        r.register("epitaph_errors", "Errors by kind", self.errors.clone());
        r.register(
            "epitaph_target_up",
            "Targets (account/role × region) of the last scan: 1 read, 0 could not be read (its window is read again next scan)",
            self.targets.clone(),
        );
        r.register(
            "epitaph_deployments",
            "Deployments by verdict after the last scan",
            self.deployments.clone(),
        );
        r.register(
            "epitaph_alerts_enqueued",
            "Alert messages put in the outbox",
            self.alerts_enqueued.clone(),
        );
        r.register(
            "epitaph_events",
            "Event-intake messages by outcome",
            self.events.clone(),
        );
        r.register(
            "epitaph_alert_deliveries",
            "Delivery attempts by result",
            self.deliveries.clone(),
        );
        r.register(
            "epitaph_http_requests",
            "API requests by route and status",
            self.http.clone(),
        );
        r.register(
            "epitaph_outbox_messages",
            "Outbox messages by status",
            self.outbox.clone(),
        );
        r.register(
            "epitaph_projected_memory_limit_timestamp_seconds",
            "Early warning: Unix time a running instance's memory is projected to reach its limit (bound: expected, earliest, latest of the interval)",
            self.projected.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            self.resident_memory.clone(),
        );
        self
    }

    pub fn scan_finished(&self, report: &ScanReport, seconds: f64, unix_now: f64) {
        self.scans.get_or_create(&one("result", "ok")).inc();
        self.scan_seconds.observe(seconds);
        self.last_scan_seconds.set(seconds);
        self.last_success_unix.set(unix_now);
        let s = &report.summary;
        for (op, n) in &s.api_calls {
            self.api_calls
                .get_or_create(&one("operation", op))
                .inc_by(*n);
        }
        self.instances_analysed.inc_by(s.analysed as u64);
        self.instances_pending.set(s.pending.len() as i64);
        let cov = &s.coverage;
        self.instances_unattributed.set(cov.unattributed as i64);
        for (source, collapsed) in [
            ("logs", cov.last_words.collapsed()),
            ("metrics", cov.memory.collapsed()),
        ] {
            self.evidence_collapsed
                .get_or_create(&one("source", source))
                .set(i64::from(collapsed));
        }
        let ew = &s.early_warning;
        for (outcome, n) in [
            ("projected", ew.projected),
            ("not_leaking", ew.not_leaking),
            ("no_series", ew.no_series),
            ("error", ew.errors),
            ("over_cap", ew.over_cap),
        ] {
            self.early_warning
                .get_or_create(&one("outcome", outcome))
                .set(n as i64);
        }
        // The last scan's targets only: one removed from the config disappears.
        self.targets.clear();
        for t in &s.targets {
            let up = t.status == TargetState::Ok;
            self.targets
                .get_or_create(&one("target", &t.target))
                .set(i64::from(up));
        }
        for v in crate::model::DeploymentVerdict::ALL {
            let n = s.deployment_verdicts.get(v.as_str()).copied().unwrap_or(0);
            self.deployments
                .get_or_create(&one("verdict", v.as_str()))
                .set(n as i64);
        }
        self.alerts_enqueued.inc_by(s.alerts_enqueued as u64);
    }

    pub fn scan_failed(&self, seconds: f64) {
        self.scans.get_or_create(&one("result", "error")).inc();
        self.error("scan");
        self.scan_seconds.observe(seconds);
        self.last_scan_seconds.set(seconds);
    }

    pub fn scan_skipped(&self) {
        self.scans
            .get_or_create(&one("result", "skipped_busy"))
            .inc();
    }

    /// A scheduled scan another replica (sharing the state) took.
    pub fn scan_taken_elsewhere(&self) {
        self.scans
            .get_or_create(&one("result", "skipped_other_replica"))
            .inc();
    }

    pub fn deliveries(&self, s: &DeliveryStats) {
        for (result, n) in [
            ("delivered", s.delivered),
            ("retried", s.retried),
            ("failed", s.failed),
        ] {
            self.deliveries
                .get_or_create(&one("result", result))
                .inc_by(n);
        }
    }

    /// One event-intake message's outcome (one of [`EVENT_OUTCOMES`]).
    pub fn event(&self, outcome: &'static str) {
        self.events.get_or_create(&one("outcome", outcome)).inc();
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&one("kind", kind)).inc();
    }

    pub fn http(&self, route: &str, code: u16) {
        self.http
            .get_or_create(&[("route", route.to_string()), ("code", code.to_string())])
            .inc();
    }

    /// The exposition and its content type: OpenMetrics when `accept` (the request's `Accept`
    /// header) asks for it, else the Prometheus text format. `outbox` is the message count per
    /// status and `next_deaths` the early-warning projections, both from the store.
    pub fn render(
        &self,
        accept: Option<&str>,
        outbox: &BTreeMap<String, u64>,
        next_deaths: &[crate::model::ProjectedDeath],
    ) -> (&'static str, String) {
        let _one_scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        for st in OUTBOX_STATUSES {
            let n = outbox.get(st).copied().unwrap_or(0);
            self.outbox.get_or_create(&one("status", st)).set(n as i64);
        }
        self.projected.clear();
        for p in next_deaths {
            let bounds = [
                ("expected", Some(p.expected)),
                ("earliest", Some(p.earliest)),
                ("latest", p.latest),
            ];
            for (bound, t) in bounds {
                if let Some(t) = t {
                    let labels = [
                        ("instance_id", p.instance_id.clone()),
                        ("deployment", p.deployment.clone()),
                        ("asg", p.asg.clone()),
                        ("bound", bound.to_string()),
                    ];
                    self.projected.get_or_create(&labels).set(t.timestamp());
                }
            }
        }
        self.resident_memory
            .set(resident_memory_bytes().map_or(0, |b| b as i64));
        let mut o = String::with_capacity(8192);
        // Writing into a String cannot fail.
        if wants_openmetrics(accept) {
            let _ = text::encode(&mut o, &self.registry);
            (OPENMETRICS_CONTENT_TYPE, o)
        } else {
            let _ = prometheus_text::encode(&mut o, &self.registry);
            (prometheus_text::CONTENT_TYPE, o)
        }
    }
}

/// The scraper accepts OpenMetrics (Prometheus asks for it first; curl and browsers do not).
fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut fields = part.split(';').map(str::trim);
            let is_om = fields.next() == Some("application/openmetrics-text");
            let refused = fields.any(|f| f.replace(' ', "") == "q=0");
            is_om && !refused
        })
    })
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
        let outbox = BTreeMap::from([("pending".to_string(), 2)]);
        let (content_type, text) = m.render(None, &outbox, std::slice::from_ref(&p));
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
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
        // Counters carry `_total` in their family name in this format; the summary of scan
        // time is a histogram (its `_sum` and `_count` as before, plus buckets).
        assert!(
            text.contains("# TYPE epitaph_scans_total counter"),
            "{text}"
        );
        assert!(text.contains("# TYPE epitaph_scan_duration_seconds histogram"));
        assert!(
            text.contains("epitaph_scan_duration_seconds_bucket{le=\"5\"} 1"),
            "{text}"
        );
        assert!(text.contains("epitaph_scan_duration_seconds_count 1"));
        assert!(text.contains("epitaph_deployments{verdict=\"leaking\"} 0"));
        assert!(!text.contains("# EOF"));

        // Prometheus asks for OpenMetrics first, and gets it.
        let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (content_type, om) = m.render(Some(prometheus_accept), &outbox, &[p]);
        assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE epitaph_scans counter"), "{om}");
        assert!(om.contains("epitaph_scans_total{result=\"error\"} 1"));
    }

    #[test]
    fn openmetrics_only_when_asked() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0"
        )));
        assert!(wants_openmetrics(Some(
            "text/plain;q=0.5, application/openmetrics-text; version=1.0.0"
        )));
    }

    #[test]
    fn scan_gauges_follow_the_last_scan() {
        let m = Metrics::default();
        let t = chrono::DateTime::from_timestamp(1_767_600_000, 0).unwrap();
        let mut report = ScanReport {
            schema_version: 1,
            window: crate::model::TimeWindow { start: t, end: t },
            instances: vec![],
            deployments: vec![],
            next_deaths: vec![],
            summary: Default::default(),
        };
        report.summary.api_calls.insert("GetLogEvents".into(), 7);
        report
            .summary
            .deployment_verdicts
            .insert("leaking".into(), 2);
        m.scan_finished(&report, 0.7, 1_767_600_000.0);
        report.summary.deployment_verdicts.clear();
        m.scan_finished(&report, 0.2, 1_767_600_900.0);
        let (_, text) = m.render(None, &BTreeMap::new(), &[]);
        assert!(
            text.contains("epitaph_api_calls_total{operation=\"GetLogEvents\"} 14"),
            "{text}"
        );
        assert!(
            text.contains("epitaph_deployments{verdict=\"leaking\"} 0"),
            "{text}"
        );
        assert!(text.contains("epitaph_scans_total{result=\"ok\"} 2"));
        assert!(
            text.contains("epitaph_last_successful_scan_timestamp_seconds 1767600900"),
            "{text}"
        );
        assert!(
            text.contains("epitaph_scan_duration_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
    }
}
