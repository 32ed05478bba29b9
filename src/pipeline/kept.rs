//! What a scan keeps from the previous one while its inputs are unchanged (issue 15: a
//! scheduled scan that finds nothing new must cost almost nothing).
//!
//! - **The inventory's live instances.** Every consumer of a scan's inventory (early warning's
//!   candidates, the alert stage's replaced deployments) looks only at the instances the
//!   inventory calls live; the stored inventory (`Store::inventory`, what the fetch reads) is
//!   kept as before by `Pipeline::save_inventory`. After a clean read of stampable inventory
//!   files, the live instances are kept with the files' stamps (reader [`INVENTORY_LIVE_READER`]);
//!   the next scan whose inventory files (and the activity files that give launch times) have
//!   the same stamps, every one trusted, takes them from there without parsing an export.
//! - **The deployments' judgement.** `analysis::correlate::judge_deployments` is pure: the
//!   same compact rows and policy give the same findings. After judging, the scan keeps the
//!   findings, early warning's death levels and the alert stage's last bad deaths with what
//!   they were judged from (reader [`JUDGEMENT_READER`]): the lookback's facts as the store
//!   fingerprints them (`Store::facts_fingerprint`: count, oldest and newest termination,
//!   the store's facts revision, which every write of a compact row raises), the finding
//!   policy and epitaph's version. A scan whose lookback has the same fingerprint takes them
//!   from there without reading a row; a new instance analysed, one aged out of the
//!   lookback, one re-analysed or a policy change computes them again.
//!
//! What was kept is named in the scan summary's `reused`.

use super::*;

/// The state store's reader name for the inventory's live instances.
pub const INVENTORY_LIVE_READER: &str = "inventory_live";

/// The state store's reader name for the deployments' judgement.
pub const JUDGEMENT_READER: &str = "judgement";

/// The names `summary.reused` lists.
pub const REUSED_INVENTORY: &str = "inventory";
pub const REUSED_DEPLOYMENTS: &str = "deployments";
pub const REUSED_EARLY_WARNING: &str = "early_warning";

/// The inventory a scan works with, and where it came from.
pub(super) struct ScanInventory {
    /// The instances (only the live ones when kept: nothing else is looked at).
    pub instances: Vec<InstanceInfo>,
    pub problems: crate::sources::InputProblems,
    /// Taken from the kept proof, not read.
    pub kept: bool,
}

/// The deployments' judgement and what the later stages need of the lookback's rows.
pub(super) struct Judgement {
    pub findings: Vec<DeploymentFinding>,
    /// Early warning's death levels (`early_warning::death_levels`).
    pub levels: BTreeMap<String, early_warning::DeathLevel>,
    /// The alert stage's last bad death of each deployment (`alerting::last_bad_deaths`).
    pub last_bad: BTreeMap<String, DateTime<Utc>>,
    /// Taken from the kept proof, not computed.
    pub kept: bool,
}

/// What the judgement's proof holds. The death levels' floats as bits (a kept level must be
/// the computed one exactly); the findings' floats read back exactly (serde_json's
/// `float_roundtrip`).
#[derive(serde::Serialize, serde::Deserialize)]
struct ProvedJudgement {
    findings: Vec<DeploymentFinding>,
    /// Deployment → (level's bits, deaths).
    levels: BTreeMap<String, (u64, usize)>,
    last_bad: BTreeMap<String, DateTime<Utc>>,
}

/// The finding lookback's compact rows: read when the judgement was computed, else read only
/// if a later stage needs them (an alert transition quotes its deployment's instances).
pub(super) struct Lookback {
    pub window: TimeWindow,
    rows: tokio::sync::OnceCell<Vec<InstanceFacts>>,
}

impl Lookback {
    fn read(window: TimeWindow, rows: Vec<InstanceFacts>) -> Self {
        Lookback {
            window,
            rows: tokio::sync::OnceCell::new_with(Some(rows)),
        }
    }

    fn unread(window: TimeWindow) -> Self {
        Lookback {
            window,
            rows: tokio::sync::OnceCell::new(),
        }
    }

    /// Every row of the lookback, oldest first (read from the store on first call when the
    /// judgement was kept).
    pub async fn rows(&self, store: &dyn Store) -> Result<&[InstanceFacts]> {
        let rows = self
            .rows
            .get_or_try_init(|| store.facts_in(self.window))
            .await?;
        Ok(rows)
    }

    /// Which of `ids` have a row in the lookback.
    pub async fn holding(&self, store: &dyn Store, ids: &[String]) -> Result<BTreeSet<String>> {
        let rows = match self.rows.get() {
            Some(rows) => {
                let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
                rows.iter()
                    .filter(|r| ids.contains(r.instance_id.as_str()))
                    .map(|r| r.instance_id.clone())
                    .collect()
            }
            None => store
                .facts_of(ids)
                .await?
                .into_iter()
                .filter(|r| self.window.contains(r.terminated_at))
                .map(|r| r.instance_id)
                .collect(),
        };
        Ok(rows)
    }

    /// The instances a scan report lists: the lookback's rows terminated in `window`, or
    /// among `terminated` (targets read from further back), oldest first. `read` is the span
    /// the scan read terminations from (the window, reaching back for such targets), inside
    /// the lookback: only its rows are read when the lookback's are not.
    pub async fn listed(
        &self,
        store: &dyn Store,
        window: TimeWindow,
        read: TimeWindow,
        terminated: &BTreeSet<String>,
    ) -> Result<Vec<String>> {
        let listed = |r: &&InstanceFacts| {
            window.contains(r.terminated_at) || terminated.contains(&r.instance_id)
        };
        if let Some(rows) = self.rows.get() {
            return Ok(rows
                .iter()
                .filter(listed)
                .map(|r| r.instance_id.clone())
                .collect());
        }
        let near = store.facts_in(read).await?;
        let seen: BTreeSet<&str> = near.iter().map(|r| r.instance_id.as_str()).collect();
        let missing: Vec<String> = terminated
            .iter()
            .filter(|id| !seen.contains(id.as_str()))
            .cloned()
            .collect();
        // A terminated instance whose row lies in the lookback before `read`: listed first,
        // as the lookback's order would have it.
        let mut rows: Vec<InstanceFacts> = if missing.is_empty() {
            Vec::new()
        } else {
            store
                .facts_of(&missing)
                .await?
                .into_iter()
                .filter(|r| {
                    self.window.contains(r.terminated_at) && !read.contains(r.terminated_at)
                })
                .collect()
        };
        rows.extend(near);
        Ok(rows
            .iter()
            .filter(listed)
            .map(|r| r.instance_id.clone())
            .collect())
    }
}

impl Pipeline {
    /// The inventory for a scan: kept live instances when the files behind the kept proof
    /// are unchanged (by their stamps), else read, stored (`save_inventory`) and, when read
    /// cleanly from files that can be stamped, its live instances kept for the next scan.
    pub(super) async fn scan_inventory(&self) -> Result<ScanInventory> {
        let activities = &self.sources.activities;
        // Stamped before they are read: a file written meanwhile is read again next run.
        let inputs = activities.inventory_stamps().await?.filter(|now| {
            now.iter()
                .all(|s| crate::sources::file::stamp_trusted(&s.stamp))
        });
        let stamp = inputs.as_ref().map(|files| inventory_stamp(files));
        if let Some(stamp) = &stamp {
            let kept = self.store.input_stamps(INVENTORY_LIVE_READER).await?;
            if let [proof] = kept.as_slice() {
                if &proof.stamp == stamp {
                    if let Ok(instances) =
                        serde_json::from_value::<Vec<InstanceInfo>>(proof.proved.clone())
                    {
                        tracing::debug!(
                            live = instances.len(),
                            "inventory files unchanged since the kept live instances; not read"
                        );
                        return Ok(ScanInventory {
                            instances,
                            problems: Default::default(),
                            kept: true,
                        });
                    }
                }
            }
        }
        self.store
            .replace_input_stamps(INVENTORY_LIVE_READER, &[])
            .await?;
        let instances = activities.inventory().await?;
        let problems = activities.inventory_problems();
        self.save_inventory(&instances, inputs).await?;
        if let Some(stamp) = stamp.filter(|_| problems.is_empty()) {
            let live: Vec<&InstanceInfo> = instances.iter().filter(|i| i.is_live()).collect();
            let proof = crate::model::InputStamp {
                path: "live".into(),
                stamp,
                proved: serde_json::to_value(&live)
                    .map_err(|e| Error::Store(format!("cannot encode the live inventory: {e}")))?,
            };
            self.store
                .replace_input_stamps(INVENTORY_LIVE_READER, std::slice::from_ref(&proof))
                .await?;
        }
        Ok(ScanInventory {
            instances,
            problems,
            kept: false,
        })
    }
}

impl Pipeline {
    /// The deployments' judgement over the lookback's compact rows: kept from the previous
    /// scan when the rows' fingerprint, the finding policy and epitaph's version are the same,
    /// else computed from the rows (read). [`Pipeline::keep_judgement`] keeps a computed one
    /// once its findings are stored.
    pub(super) async fn judgement(
        &self,
        window: TimeWindow,
    ) -> Result<(Judgement, Lookback, String)> {
        let fingerprint = self.store.facts_fingerprint(window).await?;
        let policy = self.cfg.finding_policy();
        let stamp = format!(
            "epitaph {}\npolicy {policy:?}\nfacts {} {:?} {:?} revision {}",
            env!("CARGO_PKG_VERSION"),
            fingerprint.count,
            fingerprint.oldest,
            fingerprint.newest,
            fingerprint.revision,
        );
        let kept = self.store.input_stamps(JUDGEMENT_READER).await?;
        if let [proof] = kept.as_slice() {
            if proof.stamp == stamp {
                let proved = proof
                    .proved
                    .as_str()
                    .map(serde_json::from_str::<ProvedJudgement>);
                if let Some(Ok(p)) = proved {
                    tracing::debug!(
                        rows = fingerprint.count,
                        "deployments: the lookback's rows are those of the kept judgement; not judged again"
                    );
                    let levels = p
                        .levels
                        .into_iter()
                        .map(|(d, (bits, deaths))| {
                            let level = f64::from_bits(bits);
                            (d, early_warning::DeathLevel { level, deaths })
                        })
                        .collect();
                    let judgement = Judgement {
                        findings: p.findings,
                        levels,
                        last_bad: p.last_bad,
                        kept: true,
                    };
                    return Ok((judgement, Lookback::unread(window), stamp));
                }
            }
        }
        // The old proof is for other rows: forgotten (this one is kept once it stands).
        self.store
            .replace_input_stamps(JUDGEMENT_READER, &[])
            .await?;
        let rows = self.store.facts_in(window).await?;
        let judgement = Judgement {
            findings: judge_deployments(&rows, policy),
            levels: early_warning::death_levels(&rows),
            last_bad: alerting::last_bad_deaths(&rows),
            kept: false,
        };
        Ok((judgement, Lookback::read(window, rows), stamp))
    }

    /// Keeps a computed judgement for the next scan, under its stamp.
    pub(super) async fn keep_judgement(&self, judgement: &Judgement, stamp: String) -> Result<()> {
        let proved = ProvedJudgement {
            findings: judgement.findings.clone(),
            levels: judgement
                .levels
                .iter()
                .map(|(d, l)| (d.clone(), (l.level.to_bits(), l.deaths)))
                .collect(),
            last_bad: judgement.last_bad.clone(),
        };
        let proof = crate::model::InputStamp {
            path: "deployments".into(),
            stamp,
            // As one JSON text: read back straight into its types, never as a JSON tree
            // (the findings list every instance of the lookback).
            proved: serde_json::Value::String(
                serde_json::to_string(&proved)
                    .map_err(|e| Error::Store(format!("cannot encode the judgement: {e}")))?,
            ),
        };
        self.store
            .replace_input_stamps(JUDGEMENT_READER, std::slice::from_ref(&proof))
            .await
    }
}

/// The stamp text of the inventory's proof: epitaph's version, then each input file and its
/// stamp (by path).
fn inventory_stamp(files: &[crate::model::InputStamp]) -> String {
    let mut text = format!("epitaph {}", env!("CARGO_PKG_VERSION"));
    for f in files {
        text.push_str(&format!("\nfile {} {}", f.path, f.stamp));
    }
    text
}
