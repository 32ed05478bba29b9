//! Soak: `epitaph serve` runs its schedule every second on a simulated fleet while a client
//! hammers every heavy route (HTML report, on-demand refresh queries, scans, findings,
//! metrics) and the exports change underneath it (forcing re-indexing). The process's RSS,
//! sampled once per cycle, is then judged by epitaph's own leak detector: it must not find a
//! rising floor. Cycles: EPITAPH_SOAK_CYCLES (default 150).

use crate::common;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::Fleet;
use epitaph::analysis::leak;
use epitaph::model::LeakVerdict;

const TOKEN: &str = "soak-token";
/// Samples dropped at the start: allocator arenas and caches grow to their working size.
const WARM_UP_CYCLES: usize = 30;
/// Even without a detected trend, the end must not sit this far above the start.
const MAX_END_TO_START_RATIO: f64 = 1.25;
/// Longest any one request of the soak may take (a scan with `wait=true` included) — far
/// above what a busy machine needs; a hung route fails instead of hanging the suite.
const REQUEST_BOUND: Duration = Duration::from_secs(300);

fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_memory_does_not_trend_upwards() {
    let cycles: usize = std::env::var("EPITAPH_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
        .max(WARM_UP_CYCLES + 30);
    let fleet = Fleet::new(4, 7, 150);
    let mut serve = common::spawn_serve(&fleet, TOKEN, "* * * * * *", &[]);
    let base = serve.base.clone();
    let pid = serve.process.id();
    // Every request is bounded: a hung route fails the soak instead of hanging it.
    let client = reqwest::Client::builder()
        .timeout(REQUEST_BOUND)
        .build()
        .unwrap();
    let get = |path: String| {
        let c = client.clone();
        let url = format!("{base}{path}");
        async move {
            c.get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while get("/healthz".into()).await != 200 {
        assert!(Instant::now() < deadline, "service did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<String> = fleet.truth.instances.keys().take(20).cloned().collect();
    let logs = fleet.dir.path().join("logs");
    let started = Instant::now();
    let mut samples = Vec::with_capacity(cycles);
    for cycle in 0..cycles {
        let scan = client
            .post(format!("{base}/v1/scans?wait=true"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(scan == 200 || scan == 409, "scan answered {scan}");
        assert_eq!(get("/".into()).await, 200);
        assert_eq!(get("/v1/findings".into()).await, 200);
        assert_eq!(get("/metrics".into()).await, 200);
        for id in ids.iter().skip(cycle % 5).step_by(5) {
            assert_eq!(get(format!("/v1/instances/{id}?refresh=true")).await, 200);
        }
        if cycle % 10 == 0 {
            // A new export: same content, new files; the next scan re-indexes.
            for e in std::fs::read_dir(&logs).unwrap() {
                let p = e.unwrap().path();
                let text = std::fs::read(&p).unwrap();
                std::fs::write(&p, text).unwrap();
            }
        }
        samples.push(rss_kib(pid).expect("child RSS") * 1024.0);
    }
    let elapsed = started.elapsed();
    serve.process.terminate();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let r = serve.wait_or_panic(common::CHILD_EXIT_BOUND);
        drop(serve);
        r
    })
    .await
    .unwrap();
    assert!(status.success(), "serve exited with {status}: {stderr}");

    // One cycle = one minute on the detector's clock: it judges the shape per cycle.
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let judged = &samples[WARM_UP_CYCLES..];
    let points: Vec<_> = judged
        .iter()
        .enumerate()
        .map(|(i, v)| (t0 + chrono::Duration::minutes(i as i64), *v))
        .collect();
    let a = leak::assess(&points, None);
    let k = judged.len() / 5;
    let start = median(judged[..k].to_vec());
    let end = median(judged[judged.len() - k..].to_vec());
    eprintln!(
        "soak: {cycles} cycles in {:.0?}; RSS after warm-up {:.1} MiB -> {:.1} MiB (max {:.1}); detector: {:?} ({})",
        elapsed,
        start / 1048576.0,
        end / 1048576.0,
        judged.iter().cloned().fold(0.0, f64::max) / 1048576.0,
        a.verdict,
        a.reason
    );
    assert_ne!(
        a.verdict,
        LeakVerdict::Leak,
        "RSS floor rises: {}",
        a.reason
    );
    assert!(
        end <= start * MAX_END_TO_START_RATIO,
        "RSS grew from {start} to {end} bytes"
    );
}
