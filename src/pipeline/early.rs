//! Early warning: running instances of leaking deployments (or all), their memory series
//! fetched and projected to their limit (`analysis::early_warning`).
//!
//! Kept, not recomputed, when nothing it rests on changed: a scan that projects from clean
//! metric files keeps a proof (reader [`EARLY_WARNING_READER`] in the state store) naming its
//! inputs — the candidates (their inventory record and deployment, hence the findings of
//! leaking deployments), each candidate's series window, the deployments' death levels, the
//! metrics source's config, epitaph's version and every metric file's stamp
//! (`sources::file::file_stamp`). The next scan whose inputs are the same in every respect,
//! metric files unchanged by their stamps, takes the projections and summary from the proof
//! without reading a series. Backends that cannot stamp their data (Prometheus, CloudWatch) are always
//! read.

use super::*;

/// The state store's reader name for early warning's proof.
pub const EARLY_WARNING_READER: &str = "early_warning";

/// What [`Pipeline::early_warning`] gives the judge stage.
pub(super) struct EarlyWarning {
    pub projections: Vec<ProjectedDeath>,
    pub summary: EarlyWarningSummary,
    /// The proof to keep once the projections are stored.
    pub proof: Option<crate::model::InputStamp>,
    /// Taken from the kept proof, not computed.
    pub kept: bool,
}

impl Pipeline {
    /// Early warning (see `analysis::early_warning`): the running instances in scope get their
    /// memory series up to `at`, in batches, and a projected time to their limit when the leak
    /// detector calls the series a leak. A failed fetch is counted, not fatal.
    pub(super) async fn early_warning(
        &self,
        findings: &[DeploymentFinding],
        levels: &BTreeMap<String, early_warning::DeathLevel>,
        inventory: &[InstanceInfo],
        terminated: &BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> Result<EarlyWarning> {
        let scope = self.cfg.analysis.early_warning;
        let mut summary = EarlyWarningSummary {
            scope: scope.as_str().to_string(),
            ..Default::default()
        };
        let computed = |projections, summary, proof| EarlyWarning {
            projections,
            summary,
            proof,
            kept: false,
        };
        if scope == EarlyWarningScope::Off {
            return Ok(computed(Vec::new(), summary, None));
        }
        let live: Vec<String> = inventory
            .iter()
            .filter(|i| i.is_live() && !terminated.contains(&i.instance_id))
            .map(|i| i.instance_id.clone())
            .collect();
        let mut dead: BTreeSet<String> =
            self.store.analysed_ids(&live).await?.into_iter().collect();
        dead.extend(terminated.iter().cloned());
        let identity = self.cfg.deployment_identity();
        let (candidates, over) = early_warning::candidates(
            scope,
            findings,
            inventory,
            &dead,
            &identity,
            self.cfg.analysis.early_warning_max_instances,
        );
        summary.candidates = candidates.len() + over;
        summary.over_cap = over;
        let label = match &identity {
            crate::analysis::correlate::DeploymentIdentity::MetricLabel { label } => {
                Some(label.as_str())
            }
            _ => None,
        };
        let queries: Vec<SeriesQuery> = candidates
            .iter()
            .map(|c| {
                let (start, end) =
                    early_warning::series_window(&c.info, at, self.cfg.series_lookback());
                SeriesQuery {
                    instance_id: c.info.instance_id.clone(),
                    origin: c.info.origin.clone(),
                    asg: c.info.asg.clone(),
                    start,
                    end,
                }
            })
            .collect();
        // Everything the projections rest on but the metric files (Debug text is exact:
        // floats print their shortest round-trip form, maps in key order).
        let inputs = format!(
            "epitaph {}\nmetrics {:?}\nscope {} over {over} label {label:?}\ncandidates {candidates:?}\nwindows {:?}\nlevels {levels:?}",
            env!("CARGO_PKG_VERSION"),
            self.cfg.sources.metrics,
            scope.as_str(),
            queries.iter().map(|q| (q.start, q.end)).collect::<Vec<_>>(),
        );
        if let Some(kept) = self.kept_projections(&inputs).await? {
            return Ok(kept);
        }
        // The old proof is for other inputs: forgotten (this scan's is kept once it stands).
        self.store
            .replace_input_stamps(EARLY_WARNING_READER, &[])
            .await?;
        let mut out = Vec::new();
        for (chunk, queries) in candidates
            .chunks(BATCH_SIZE)
            .zip(queries.chunks(BATCH_SIZE))
        {
            for (c, r) in chunk.iter().zip(self.fetch_series(queries).await) {
                match r {
                    Ok(Some(s)) if !s.points.is_empty() => {
                        match early_warning::project(
                            c,
                            &s,
                            label,
                            self.cfg.sources.metrics.unit.as_str(),
                            levels,
                        ) {
                            Ok(p) => out.push(p),
                            Err(NoProjection::NotLeaking) => summary.not_leaking += 1,
                            Err(NoProjection::OutOfScope) => summary.candidates -= 1,
                        }
                    }
                    Ok(_) => summary.no_series += 1,
                    Err(e) => {
                        summary.errors += 1;
                        if summary.error_samples.len() < early_warning::MAX_ERROR_SAMPLES {
                            summary
                                .error_samples
                                .push(format!("{}: {e}", c.info.instance_id));
                        }
                    }
                }
            }
        }
        summary.projected = out.len();
        early_warning::sort(&mut out);
        let proof = self.proof(&inputs, &summary, &out);
        Ok(computed(out, summary, proof))
    }

    /// The stamp text of a proof: the inputs, then each metric file and its stamp.
    fn proof_stamp(inputs: &str, files: &[crate::model::InputStamp]) -> String {
        let mut text = inputs.to_string();
        for f in files {
            text.push_str(&format!("\nfile {} {}", f.path, f.stamp));
        }
        text
    }

    /// The proof to keep after computing: only when every series came from metric files read
    /// cleanly (no file refused or truncated, no record skipped: those are reported each
    /// scan, which a kept result would not) and no fetch failed (the next scan retries it).
    fn proof(
        &self,
        inputs: &str,
        summary: &EarlyWarningSummary,
        projections: &[ProjectedDeath],
    ) -> Option<crate::model::InputStamp> {
        let metrics = &self.sources.metrics;
        let clean =
            summary.errors == 0 && metrics.input_problems().is_empty() && metrics.skipped().0 == 0;
        let files = metrics.read_stamps().filter(|_| clean)?;
        Some(crate::model::InputStamp {
            path: "projections".into(),
            stamp: Self::proof_stamp(inputs, &files),
            proved: serde_json::to_value(Proved {
                summary: summary.clone(),
                projections: projections.to_vec(),
                exact: projections.iter().map(exact_floats).collect(),
            })
            .ok()?,
        })
    }

    /// The projections and summary the kept proof holds, when it names these inputs and the
    /// metric files are unchanged since (by their stamps).
    async fn kept_projections(&self, inputs: &str) -> Result<Option<EarlyWarning>> {
        let kept = self.store.input_stamps(EARLY_WARNING_READER).await?;
        let [proof] = kept.as_slice() else {
            return Ok(None);
        };
        let Some(files) = self.sources.metrics.input_stamps().await? else {
            return Ok(None);
        };
        let trusted = files
            .iter()
            .all(|f| crate::sources::file::stamp_trusted(&f.stamp));
        if !trusted || proof.stamp != Self::proof_stamp(inputs, &files) {
            return Ok(None);
        }
        let Ok(proved) = serde_json::from_value::<Proved>(proof.proved.clone()) else {
            return Ok(None);
        };
        let Proved {
            summary,
            mut projections,
            exact,
        } = proved;
        if projections.len() != summary.projected || exact.len() != projections.len() {
            return Ok(None);
        }
        for (p, bits) in projections.iter_mut().zip(&exact) {
            restore_floats(p, bits);
        }
        tracing::debug!(
            projected = projections.len(),
            "early warning: inputs unchanged since the kept projections; not recomputed"
        );
        Ok(Some(EarlyWarning {
            projections,
            summary,
            proof: None,
            kept: true,
        }))
    }
}

/// What early warning's proof holds: the summary and the projections, with each projection's
/// numbers bit for bit (JSON text in the store reads floats back to the nearest few ulps
/// only, and a kept projection must be the computed one exactly). The proof holds its own
/// projections rather than vouching for the projections table, which another scan may have
/// replaced meanwhile.
#[derive(serde::Serialize, serde::Deserialize)]
struct Proved {
    summary: EarlyWarningSummary,
    projections: Vec<ProjectedDeath>,
    exact: Vec<[u64; 6]>,
}

/// A projection's floats as bits: floor, swing, limit, threshold, growth, confidence.
fn exact_floats(p: &ProjectedDeath) -> [u64; 6] {
    [
        p.floor,
        p.swing,
        p.limit,
        p.threshold,
        p.growth_per_hour,
        p.confidence,
    ]
    .map(f64::to_bits)
}

fn restore_floats(p: &mut ProjectedDeath, bits: &[u64; 6]) {
    let [floor, swing, limit, threshold, growth, confidence] = bits.map(f64::from_bits);
    p.floor = floor;
    p.swing = swing;
    p.limit = limit;
    p.threshold = threshold;
    p.growth_per_hour = growth;
    p.confidence = confidence;
}
