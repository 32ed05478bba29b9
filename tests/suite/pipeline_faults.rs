//! Nothing is lost when a source fails: an instance whose fetch fails (an error, or a timeout)
//! stays pending in the store, the scan still finishes and reports it, and the next run
//! retries and resolves it. The real file backends are wrapped by test doubles that fail for
//! chosen instances; the slow one never answers, so the fetch timeout (generous, so that every
//! healthy fetch fits in it however slow the machine) is what ends it, not a race with it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use epitaph::config::Config;
use epitaph::error::{Error, Result};
use epitaph::model::InstanceInfo;
use epitaph::model::{LastWords, MemorySeries};
use epitaph::pipeline::{load_signatures, Pipeline, ScanOptions, BATCH_SIZE};
use epitaph::simulate::{simulate, SimOptions};
use epitaph::sources::{LastWordsQuery, LogSource, MetricSource, SeriesQuery, Sources};
use epitaph::store::{SqliteStore, Store};

use crate::store_double::{HookedStore, StoreHooks};

/// Fails the series of chosen instances while `broken` is set.
struct FlakyMetrics {
    inner: Arc<dyn MetricSource>,
    fail: HashSet<String>,
    broken: AtomicBool,
    /// Batched calls so far, reported like a remote backend's call counts.
    calls: AtomicU64,
}

#[async_trait]
impl MetricSource for FlakyMetrics {
    fn name(&self) -> String {
        "flaky".into()
    }
    async fn memory_series(
        &self,
        queries: &[SeriesQuery],
    ) -> Result<Vec<Result<Option<MemorySeries>>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut out = self.inner.memory_series(queries).await?;
        if self.broken.load(Ordering::SeqCst) {
            for (q, r) in queries.iter().zip(out.iter_mut()) {
                if self.fail.contains(&q.instance_id) {
                    *r = Err(Error::source("flaky", "HTTP 503 Service Unavailable"));
                }
            }
        }
        Ok(out)
    }
    fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        [("GetSeries".to_string(), self.calls.load(Ordering::SeqCst))].into()
    }
}

/// The fetch timeout the test configures: far longer than any healthy fetch (the file
/// backends build their indexes inside the first ones), since every fetch runs under it.
const FETCH_TIMEOUT_SECS: u64 = 10;
/// How many fetch timeouts a scan may take before the test calls it hung.
const SCAN_BOUND_TIMEOUTS: u32 = 12;

/// Never answers for chosen instances while `broken` is set.
struct SlowLogs {
    inner: Arc<dyn LogSource>,
    slow: HashSet<String>,
    broken: AtomicBool,
}

#[async_trait]
impl LogSource for SlowLogs {
    fn name(&self) -> String {
        "slow".into()
    }
    async fn last_words(&self, q: &LastWordsQuery) -> Result<LastWords> {
        if self.broken.load(Ordering::SeqCst) && self.slow.contains(&q.instance_id) {
            std::future::pending::<()>().await;
        }
        self.inner.last_words(q).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fetches_stay_pending_and_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let truth = simulate(
        dir.path(),
        &SimOptions {
            seed: 11,
            ..Default::default()
        },
    )
    .unwrap();
    let env = vec![(
        "EPITAPH_SCAN__FETCH_TIMEOUT".to_string(),
        format!("{FETCH_TIMEOUT_SECS}s"),
    )];
    let text = std::fs::read_to_string(dir.path().join("epitaph.toml")).unwrap();
    let cfg = Config::parse(&text, "epitaph.toml", dir.path(), &env).unwrap();

    let ids: Vec<String> = truth.instances.keys().cloned().collect();
    let (bad_metrics, slow_logs) = (ids[3].clone(), ids[40].clone());
    let real = Sources::from_config(&cfg).await.unwrap();
    let metrics = Arc::new(FlakyMetrics {
        inner: real.metrics.clone(),
        fail: [bad_metrics.clone()].into(),
        broken: AtomicBool::new(true),
        calls: AtomicU64::new(0),
    });
    let logs = Arc::new(SlowLogs {
        inner: real.logs.clone(),
        slow: [slow_logs.clone()].into(),
        broken: AtomicBool::new(true),
    });
    let sources = Sources {
        activities: real.activities.clone(),
        logs: logs.clone(),
        metrics: metrics.clone(),
    };
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    let pipeline = Pipeline::new(
        cfg.clone(),
        sources,
        store.clone(),
        Arc::new(load_signatures(&cfg).unwrap()),
    );

    let bound = std::time::Duration::from_secs(FETCH_TIMEOUT_SECS) * SCAN_BOUND_TIMEOUTS;
    let first = tokio::time::timeout(bound, pipeline.scan(&ScanOptions::default()))
        .await
        .expect("the hung fetch timed out and the scan finished")
        .unwrap();
    let pending: HashSet<String> = first
        .summary
        .pending
        .iter()
        .map(|p| p.instance_id.clone())
        .collect();
    assert_eq!(pending, [bad_metrics.clone(), slow_logs.clone()].into());
    let errors: Vec<&str> = first
        .summary
        .pending
        .iter()
        .map(|p| p.error.as_str())
        .collect();
    assert!(errors.iter().any(|e| e.contains("503")), "{errors:?}");
    let timed_out = format!("logs: timed out after {FETCH_TIMEOUT_SECS}s");
    assert!(errors.iter().any(|e| e.contains(&timed_out)), "{errors:?}");
    assert!(!first.summary.complete);
    assert_eq!(first.summary.analysed, 58);
    assert_eq!(
        first.instances.len(),
        58,
        "pending instances are not reported as analysed"
    );
    let stored: HashSet<String> = store
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.termination.instance_id)
        .collect();
    assert_eq!(stored, pending);

    // The sources recover; a plain rerun (watermark-based window) retries the pending ones.
    metrics.broken.store(false, Ordering::SeqCst);
    logs.broken.store(false, Ordering::SeqCst);
    let second = pipeline.scan(&ScanOptions::default()).await.unwrap();
    assert!(
        second.summary.pending.is_empty(),
        "{:?}",
        second.summary.pending
    );
    assert_eq!(second.summary.retried, 2);
    assert_eq!(second.summary.analysed, 2);
    // Call counts are per scan, though the sources (as in a long-running service) live on:
    // one batch for the dead instances, one for early warning's running ones.
    assert_eq!(first.summary.api_calls["GetSeries"], 2);
    assert_eq!(second.summary.api_calls["GetSeries"], 2);
    assert_eq!(metrics.calls.load(Ordering::SeqCst), 4);
    assert!(store.pending().await.unwrap().is_empty());
    for id in [&bad_metrics, &slow_logs] {
        let r = store
            .instance(id)
            .await
            .unwrap()
            .expect("stored after retry");
        assert_eq!(r.verdict, truth.instances[id], "{id}");
    }
}

#[tokio::test]
async fn a_failing_metrics_backend_fails_no_scan() {
    struct Down;
    #[async_trait]
    impl MetricSource for Down {
        fn name(&self) -> String {
            "down".into()
        }
        async fn memory_series(
            &self,
            _: &[SeriesQuery],
        ) -> Result<Vec<Result<Option<MemorySeries>>>> {
            Err(Error::source("down", "connection refused"))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    simulate(
        dir.path(),
        &SimOptions {
            seed: 12,
            ..Default::default()
        },
    )
    .unwrap();
    let cfg = Config::load(Some(&dir.path().join("epitaph.toml"))).unwrap();
    let real = Sources::from_config(&cfg).await.unwrap();
    let sources = Sources {
        metrics: Arc::new(Down),
        ..real
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let pipeline = Pipeline::new(
        cfg.clone(),
        sources,
        store.clone(),
        Arc::new(load_signatures(&cfg).unwrap()),
    );
    let report = pipeline.scan(&ScanOptions::default()).await.unwrap();
    assert_eq!(report.summary.pending.len(), 60);
    assert!(report.summary.pending[0]
        .error
        .contains("connection refused"));
    assert_eq!(store.pending().await.unwrap().len(), 60);
}

/// Fails the store's inventory read on its `fail_on`-th call while `armed`: a scan reads the
/// inventory once per batch of [`BATCH_SIZE`] instances, just before fetching their evidence,
/// so the failure ends the scan with earlier batches analysed and not yet stored.
struct InventoryFails {
    calls: AtomicU64,
    fail_on: u64,
    armed: AtomicBool,
}

#[async_trait]
impl StoreHooks for InventoryFails {
    async fn inventory(
        &self,
        inner: &SqliteStore,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, InstanceInfo>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.armed.load(Ordering::SeqCst) && call == self.fail_on {
            return Err(Error::Store("database is locked".into()));
        }
        inner.inventory(ids).await
    }
}

/// A scan whose fetch fails part-way (here the store, between two batches) ends with the error,
/// but keeps the reports it analysed before: the next scan finds them stored and analyses only
/// the rest, and every stored report is the one a scan that never failed stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_that_fails_mid_fetch_keeps_what_it_analysed() {
    const EXTRA: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let truth = simulate(
        dir.path(),
        &SimOptions {
            seed: 13,
            instances: BATCH_SIZE + EXTRA,
            ..Default::default()
        },
    )
    .unwrap();
    let dead = truth.instances.len();
    assert!(dead > BATCH_SIZE, "two batches at least: {dead}");
    let cfg = Config::load(Some(&dir.path().join("epitaph.toml"))).unwrap();
    let store = Arc::new(HookedStore {
        inner: SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
        hooks: InventoryFails {
            calls: AtomicU64::new(0),
            fail_on: 2,
            armed: AtomicBool::new(true),
        },
    });
    let pipeline = Pipeline::new(
        cfg.clone(),
        Sources::from_config(&cfg).await.unwrap(),
        store.clone(),
        Arc::new(load_signatures(&cfg).unwrap()),
    );

    let err = pipeline
        .scan(&ScanOptions::default())
        .await
        .expect_err("the second batch's inventory read failed");
    assert!(err.to_string().contains("database is locked"), "{err}");
    let ids: Vec<String> = truth.instances.keys().cloned().collect();
    let kept = store.analysed_ids(&ids).await.unwrap();
    assert_eq!(kept.len(), BATCH_SIZE, "the first batch was stored");

    store.hooks.armed.store(false, Ordering::SeqCst);
    let second = pipeline.scan(&ScanOptions::default()).await.unwrap();
    assert!(second.summary.complete, "{:?}", second.summary.pending);
    assert_eq!(second.summary.cached, BATCH_SIZE);
    assert_eq!(second.summary.analysed, dead - BATCH_SIZE);

    // The same verdicts as a scan that never failed.
    let reference_store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let reference = Pipeline::new(
        cfg.clone(),
        Sources::from_config(&cfg).await.unwrap(),
        reference_store.clone(),
        Arc::new(load_signatures(&cfg).unwrap()),
    );
    assert!(
        reference
            .scan(&ScanOptions::default())
            .await
            .unwrap()
            .summary
            .complete
    );
    for id in &ids {
        let got = store.instance(id).await.unwrap().expect("stored");
        let want = reference_store.instance(id).await.unwrap().expect("stored");
        assert_eq!(got, want, "{id}");
    }
}
