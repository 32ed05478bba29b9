//! Re-scans of unchanged file exports (issue 15): what a scan proved from its inputs is kept
//! in the state store with the inputs' stamps, and an input unchanged since is not read again —
//! early warning's projections are kept, not recomputed, while the metric files (and every
//! other input of theirs) are unchanged, and recomputed once a metric file changes; the
//! inventory is not stored again while the files it is read from are unchanged; the
//! deployments' judgement is kept while the lookback's compact rows are the same, and judged
//! again when an instance is added, ages out of the lookback, or the finding policy changes.
//! What a scan kept is what its summary's `reused` names (no timing is asserted anywhere).

use std::path::Path;

use epitaph::config::Config;
use epitaph::model::TimeWindow;
use epitaph::pipeline::{Pipeline, ScanOptions, ScanReport};
use epitaph::store::{SqliteStore, Store};

use crate::common::Fleet;

/// Sets every file's modification time under `dir` an hour back, out of the window in which a
/// stamp does not vouch for a file that was just written (`sources::file::RACY_WINDOW`).
fn settle(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            settle(&p);
        } else {
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
                .unwrap();
        }
    }
}

/// Whether the stored inventory record of `id` holds the planted tag.
async fn planted_tag(store: &SqliteStore, id: &str) -> bool {
    let got = store.inventory(&[id.to_string()]).await.unwrap();
    got[id].tags.contains_key("planted")
}

async fn scan(config: &Path) -> ScanReport {
    scan_with(config, &ScanOptions::default()).await
}

async fn scan_with(config: &Path, opts: &ScanOptions) -> ScanReport {
    let pipeline = Pipeline::open(Config::load(Some(config)).unwrap())
        .await
        .unwrap();
    pipeline.scan(opts).await.unwrap()
}

fn reused(report: &ScanReport, part: &str) -> bool {
    report.summary.reused.iter().any(|r| r == part)
}

/// Writes `text` as the first finding's summary in the kept judgement: a scan that keeps the
/// judgement shows it, one that judges again does not.
async fn plant_in_judgement(store: &SqliteStore, text: &str) {
    let mut proof = store.input_stamps("judgement").await.unwrap();
    assert_eq!(proof.len(), 1, "{proof:?}");
    let mut proved: serde_json::Value = serde_json::from_str(
        proof[0]
            .proved
            .as_str()
            .expect("the judgement as JSON text"),
    )
    .unwrap();
    proved["findings"][0]["summary"] = serde_json::json!(text);
    proof[0].proved = serde_json::Value::String(proved.to_string());
    store
        .replace_input_stamps("judgement", &proof)
        .await
        .unwrap();
}

fn planted(report: &ScanReport, text: &str) -> bool {
    report.deployments.iter().any(|d| d.summary == text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployments_judgement_is_kept_while_the_lookback_is_unchanged() {
    let fleet = Fleet::new(5, 4, 80);
    for input in ["activities", "inventory", "logs", "metrics"] {
        settle(&fleet.dir.path().join(input));
    }
    let config = fleet.config_path();
    let first = scan(&config).await;
    assert!(!first.deployments.is_empty());
    assert!(!reused(&first, "deployments"), "{:?}", first.summary.reused);

    // Nothing new: every part kept, the answer the same.
    let second = scan(&config).await;
    assert_eq!(second.summary.analysed, 0);
    for part in ["inventory", "deployments", "early_warning"] {
        assert!(reused(&second, part), "{part}: {:?}", second.summary.reused);
    }
    assert_eq!(second.deployments, first.deployments);
    assert_eq!(second.next_deaths, first.next_deaths);

    let store = SqliteStore::open(&fleet.dir.path().join("epitaph.db"))
        .await
        .unwrap();
    plant_in_judgement(&store, "planted 1").await;
    let third = scan(&config).await;
    assert!(reused(&third, "deployments"));
    assert!(planted(&third, "planted 1"), "the kept judgement is taken");

    // One new instance in the lookback (a copy of the newest, under a new id): judged again.
    let all = TimeWindow {
        start: "2000-01-01T00:00:00Z".parse().unwrap(),
        end: "2100-01-01T00:00:00Z".parse().unwrap(),
    };
    let rows = store.facts_in(all).await.unwrap();
    let newest = rows.last().unwrap();
    let mut copy = store.instance(&newest.instance_id).await.unwrap().unwrap();
    copy.instance_id = "i-0feedfacefeedface".into();
    store
        .save_instances(std::slice::from_ref(&copy))
        .await
        .unwrap();
    let fourth = scan(&config).await;
    assert!(
        !reused(&fourth, "deployments"),
        "{:?}",
        fourth.summary.reused
    );
    assert!(!planted(&fourth, "planted 1"));
    let judged = fourth
        .deployments
        .iter()
        .find(|d| d.deployment == copy.deployment)
        .unwrap();
    assert!(judged
        .evidence
        .instances
        .contains(&"i-0feedfacefeedface".to_string()));

    // The finding policy changes: judged again.
    plant_in_judgement(&store, "planted 2").await;
    assert!(
        planted(&scan(&config).await, "planted 2"),
        "kept while unchanged"
    );
    plant_in_judgement(&store, "planted 3").await;
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[analysis]\nmin_instances = 7\n");
    let changed = fleet.dir.path().join("changed.toml");
    std::fs::write(&changed, text).unwrap();
    let fifth = scan(&changed).await;
    assert!(!reused(&fifth, "deployments"), "{:?}", fifth.summary.reused);
    assert!(!planted(&fifth, "planted 3"));

    // The oldest instance ages out of the lookback (a window a lookback later): judged again.
    plant_in_judgement(&store, "planted 4").await;
    let lookback = chrono::Duration::days(7);
    let until = rows[0].terminated_at + lookback + chrono::Duration::seconds(1);
    let opts = ScanOptions {
        since: Some(until - chrono::Duration::hours(1)),
        until: Some(until),
        ..Default::default()
    };
    let sixth = scan_with(&changed, &opts).await;
    assert!(!reused(&sixth, "deployments"), "{:?}", sixth.summary.reused);
    assert!(!planted(&sixth, "planted 4"));
    let counted: usize = sixth
        .deployments
        .iter()
        .map(|d| d.evidence.instances.len())
        .sum();
    assert!(counted < rows.len() + 1, "{counted} of {}", rows.len() + 1);
    // And the same window again: kept.
    plant_in_judgement(&store, "planted 5").await;
    let seventh = scan_with(&changed, &opts).await;
    assert!(
        reused(&seventh, "deployments"),
        "{:?}",
        seventh.summary.reused
    );
    assert!(planted(&seventh, "planted 5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_warning_and_inventory_are_kept_while_their_inputs_are_unchanged() {
    let fleet = Fleet::new(3, 6, 120);
    for input in ["activities", "inventory", "logs", "metrics"] {
        settle(&fleet.dir.path().join(input));
    }
    let config = fleet.config_path();
    let first = scan(&config).await;
    assert!(
        !first.next_deaths.is_empty(),
        "the fleet has leaking running instances"
    );

    let store = SqliteStore::open(&fleet.dir.path().join("epitaph.db"))
        .await
        .unwrap();
    let activities = store.input_stamps("activities").await.unwrap();
    assert!(!activities.is_empty());
    assert!(
        activities.iter().all(|s| !s.proved.is_null()),
        "clean, settled files prove their latest termination and launches: {activities:?}"
    );

    let second = scan(&config).await;
    assert_eq!(second.next_deaths, first.next_deaths);
    assert_eq!(second.summary.early_warning, first.summary.early_warning);

    // A marker in the projections early warning kept with its proof: a scan that keeps them
    // shows it, one that recomputes them does not.
    let marker = chrono::DateTime::parse_from_rfc3339("2099-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut proof = store.input_stamps("early_warning").await.unwrap();
    assert_eq!(proof.len(), 1, "{proof:?}");
    proof[0].proved["projections"][0]["expected"] = serde_json::json!(marker);
    store
        .replace_input_stamps("early_warning", &proof)
        .await
        .unwrap();
    let planted = store.projections().await.unwrap();
    // The same with an instance of the stored inventory.
    let id = planted[0].instance_id.clone();
    let mut info = store.inventory(std::slice::from_ref(&id)).await.unwrap()[&id].clone();
    info.tags.insert("planted".into(), "yes".into());
    store.save_inventory(&[info]).await.unwrap();
    let third = scan(&config).await;
    assert!(
        third.next_deaths.iter().any(|p| p.expected == marker),
        "inputs unchanged: the kept projections are taken"
    );
    assert!(
        store
            .projections()
            .await
            .unwrap()
            .iter()
            .any(|p| p.expected == marker),
        "and stored as this scan's"
    );
    assert_eq!(third.summary.early_warning, first.summary.early_warning);
    assert!(
        planted_tag(&store, &id).await,
        "inventory files unchanged: not stored again"
    );

    // One metric file changes (a comment line appended): recomputed from the files.
    let csv = std::fs::read_dir(fleet.dir.path().join("metrics"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .expect("a CSV metrics export");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("# appended\n");
    std::fs::write(&csv, text).unwrap();
    settle(&fleet.dir.path().join("metrics"));
    // And an inventory file (a blank line appended): the inventory is stored again.
    let groups = fleet
        .dir
        .path()
        .join("inventory/describe-auto-scaling-groups.json");
    let mut text = std::fs::read_to_string(&groups).unwrap();
    text.push('\n');
    std::fs::write(&groups, text).unwrap();
    settle(&fleet.dir.path().join("inventory"));
    let fourth = scan(&config).await;
    assert!(
        !planted_tag(&store, &id).await,
        "an inventory file changed: stored again"
    );
    assert!(fourth.next_deaths.iter().all(|p| p.expected != marker));
    assert_eq!(fourth.next_deaths, first.next_deaths);
    assert_eq!(fourth.summary.early_warning, first.summary.early_warning);
}
