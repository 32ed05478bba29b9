//! Every parser of outside input returns a value or an error — never a panic — on arbitrary
//! bytes, invalid UTF-8, truncated JSON, 10 MB lines and empty files.

use std::path::Path;

use chrono::{DateTime, Utc};
use epitaph::analysis::{leak, signatures::unwrap_message, signatures::SignatureLibrary};
use epitaph::config::{Config, SourcesConfig};
use epitaph::model::TimeWindow;
use epitaph::sources::file::{parse_series_csv, FileActivities, FileLogs, FileMetrics};
use epitaph::sources::{ActivitySource, LastWordsQuery, LogSource, MetricSource, SeriesQuery};
use epitaph::timefmt;
use proptest::prelude::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The three file sources reading `path` (the activities' inventory too).
fn src(path: &Path) -> SourcesConfig {
    let mut s = SourcesConfig::default();
    s.activities.path = Some(path.to_path_buf());
    s.activities.inventory = Some(path.to_path_buf());
    s.logs.path = Some(path.to_path_buf());
    s.metrics.path = Some(path.to_path_buf());
    s
}

fn window() -> TimeWindow {
    TimeWindow {
        start: DateTime::<Utc>::MIN_UTC,
        end: DateTime::<Utc>::MAX_UTC,
    }
}

/// Feeds one file's bytes to every file backend; each must answer without panicking.
fn feed_all(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("input");
    std::fs::write(&p, bytes).unwrap();
    let cfg = src(&p);
    rt().block_on(async {
        let acts = FileActivities::new(&cfg.activities).unwrap();
        let _ = acts.terminations(window()).await.unwrap();
        let _ = acts.inventory().await;
        let _ = acts.find_termination("i-0123456789abcdef0").await.unwrap();
        let logs = FileLogs::new(&cfg.logs).unwrap();
        let q = LastWordsQuery {
            instance_id: "i-0123456789abcdef0".into(),
            origin: None,
            asg: "x".into(),
            terminated_at: Utc::now(),
            window: chrono::Duration::seconds(60),
            grace: chrono::Duration::seconds(60),
            max_bytes: 1 << 20,
            ..Default::default()
        };
        let _ = logs.last_words(&q).await.unwrap();
        let metrics = FileMetrics::new(&cfg.metrics).unwrap();
        let sq = SeriesQuery {
            instance_id: "i-0123456789abcdef0".into(),
            origin: None,
            asg: None,
            start: DateTime::<Utc>::MIN_UTC,
            end: DateTime::<Utc>::MAX_UTC,
        };
        let _ = metrics.memory_series(&[sq]).await.unwrap();
    });
    let _ = parse_series_csv(bytes, "input");
}

/// The default library, compiled once for all cases (compiling it is the costly part, and is
/// not what these cases fuzz).
fn default_library() -> &'static SignatureLibrary {
    static LIB: std::sync::OnceLock<SignatureLibrary> = std::sync::OnceLock::new();
    LIB.get_or_init(|| SignatureLibrary::default_library().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn file_backends_survive_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        feed_all(&bytes);
    }

    #[test]
    fn file_backends_survive_json_shaped_noise(s in r#"[\[\]{}",:0-9a-zA-Z_ .\-\n\\]{0,400}"#) {
        feed_all(s.as_bytes());
        feed_all(format!("{{\"events\":[{s}]}}").as_bytes());
        feed_all(format!("{{\"Activities\":[{s}]}}").as_bytes());
        feed_all(format!("{{\"data\":{{\"resultType\":\"matrix\",\"result\":[{s}]}}}}").as_bytes());
    }

    #[test]
    fn signature_matching_and_unwrapping_never_panic(s in any::<String>()) {
        let lib = default_library();
        let _ = lib.match_line(&s);
        let _ = unwrap_message(&s);
        let _ = lib.match_line(&format!("{{\"msg\":{}}}", serde_json::to_string(&s).unwrap()));
    }

    #[test]
    fn config_and_time_parsers_never_panic(s in any::<String>()) {
        let _ = Config::parse(&s, "fuzz.toml", Path::new("/"), &[]);
        let _ = SignatureLibrary::with_overrides(&s, "fuzz.toml");
        let _ = timefmt::parse_duration(&s);
        let _ = timefmt::parse_instant(&s);
        let _ = timefmt::parse_since(&s, Utc::now());
    }

    #[test]
    fn leak_detector_never_panics(points in proptest::collection::vec((0i64..4_000_000_000_000, any::<f64>()), 0..300), limit in proptest::option::of(any::<f64>())) {
        let pts: Vec<(DateTime<Utc>, f64)> = points.iter().filter_map(|(ms, v)| Some((DateTime::from_timestamp_millis(*ms)?, *v))).collect();
        let a = leak::assess(&pts, limit);
        prop_assert!((0.0..=1.0).contains(&a.confidence), "confidence {}", a.confidence);
        prop_assert!(a.growth_per_hour.is_none_or(|g| !g.is_nan()), "growth {:?}", a.growth_per_hour);
    }
}

/// Truncating real exports at every kind of position gives errors or skips, never panics.
#[test]
fn truncated_simulator_exports() {
    let fleet = tempfile::tempdir().unwrap();
    epitaph::simulate::simulate(fleet.path(), &epitaph::simulate::SimOptions::default()).unwrap();
    for f in [
        "activities/checkout-api.json",
        "logs/checkout-api.jsonl",
        "logs/catalog-web.filter-log-events.json",
        "metrics/checkout-api.csv",
        "metrics/report-renderer.prometheus.json",
        "inventory/describe-auto-scaling-groups.json",
    ] {
        let bytes = std::fs::read(fleet.path().join(f)).unwrap();
        for cut in [
            0,
            1,
            2,
            17,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            feed_all(&bytes[..cut.min(bytes.len())]);
        }
    }
}

#[test]
fn ten_megabyte_lines() {
    let mut line = b"{\"timestamp\":\"2026-01-01T00:00:00Z\",\"instance_id\":\"i-0123456789abcdef0\",\"message\":\"".to_vec();
    line.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
    line.extend_from_slice(b"\"}\n");
    feed_all(&line);
    let raw: Vec<u8> = std::iter::repeat_n(b'{', 10 * 1024 * 1024).collect();
    feed_all(&raw);
    let lib = SignatureLibrary::default_library().unwrap();
    let big = "Out of memory: ".repeat(700_000);
    let _ = lib.match_line(&big);
}

#[test]
fn empty_files_and_directories() {
    feed_all(b"");
    feed_all(b"\n\n\n");
    let dir = tempfile::tempdir().unwrap();
    let cfg = src(dir.path());
    rt().block_on(async {
        let acts = FileActivities::new(&cfg.activities).unwrap();
        let b = acts.terminations(window()).await.unwrap();
        assert!(b.terminations.is_empty() && b.errors.is_empty());
        assert!(acts.inventory().await.unwrap().is_empty());
    });
}
