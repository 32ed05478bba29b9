//! Early warning: running instances of leaking deployments (or all), their memory series
//! fetched and projected to their limit (`analysis::early_warning`).

use super::*;

impl Pipeline {
    /// Early warning (see `analysis::early_warning`): the running instances in scope get their
    /// memory series up to `at`, in batches, and a projected time to their limit when the leak
    /// detector calls the series a leak. A failed fetch is counted, not fatal.
    pub(super) async fn early_warning(
        &self,
        findings: &[DeploymentFinding],
        history: &[InstanceFacts],
        inventory: &[InstanceInfo],
        terminated: &BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> Result<(Vec<ProjectedDeath>, EarlyWarningSummary)> {
        let scope = self.cfg.analysis.early_warning;
        let mut summary = EarlyWarningSummary {
            scope: scope.as_str().to_string(),
            ..Default::default()
        };
        if scope == EarlyWarningScope::Off {
            return Ok((Vec::new(), summary));
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
        let levels = early_warning::death_levels(history);
        let mut out = Vec::new();
        for chunk in candidates.chunks(BATCH_SIZE) {
            let queries: Vec<SeriesQuery> = chunk
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
            for (c, r) in chunk.iter().zip(self.fetch_series(&queries).await) {
                match r {
                    Ok(Some(s)) if !s.points.is_empty() => {
                        match early_warning::project(
                            c,
                            &s,
                            label,
                            &self.cfg.sources.metrics.unit,
                            &levels,
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
        Ok((out, summary))
    }
}
