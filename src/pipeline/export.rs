//! `epitaph export`: the window's evidence, fetched with the scan's own queries, written as a
//! bundle in the layout the `file` backends read (`sinks::bundle` writes it).

use super::*;

impl Pipeline {
    /// Writes an evidence bundle (`epitaph export`): the window's terminations, the inventory
    /// (as listed now, completed by what the store recorded for instances gone since), and for
    /// every terminated instance the last words and memory series a scan would analyse — the
    /// same queries as [`Pipeline::scan`] — in the folder layout the `file` backends read
    /// (`sinks::bundle`). Last words are masked like a scan's. Nothing is analysed or stored.
    /// Every part that could not be read or fetched is named in the manifest
    /// (`complete: false`); the caller makes that a non-zero exit.
    pub async fn export(&self, opts: &ExportOptions) -> Result<bundle::Manifest> {
        let now = Utc::now();
        let until = self.window_end(opts.until, now)?;
        // An export's window never comes from the store's watermark: --since, else scan.since.
        let since = match opts.since {
            Some(s) => s,
            None => self.cfg.scan.since.resolve(until),
        };
        let window = self
            .window(
                &ScanOptions {
                    since: Some(since),
                    until: Some(until),
                    ..Default::default()
                },
                now,
            )
            .await?;
        tracing::info!(start = %window.start, end = %window.end, out = %opts.out.display(), "export started");
        self.sources.begin_scan();
        let mut incomplete = Vec::new();
        let mut note = |source: &str, problems: crate::sources::InputProblems| {
            let targets = problems
                .failed_targets
                .into_iter()
                .map(|f| format!("{}: {}", f.target, f.error))
                .collect();
            for (kind, list) in [
                ("input_error", problems.errors),
                ("truncated", problems.warnings),
                ("target_failed", targets),
            ] {
                for detail in list {
                    incomplete.push(bundle::IncompletePart {
                        source: source.to_string(),
                        kind: kind.to_string(),
                        detail,
                    });
                }
            }
        };

        let listed = self.sources.activities.inventory().await?;
        note("inventory", self.sources.activities.inventory_problems());
        let batch = self.sources.activities.terminations(window).await?;
        note(
            "activities",
            crate::sources::InputProblems {
                errors: batch.errors.clone(),
                warnings: batch.warnings.clone(),
                failed_targets: batch.failed_targets.clone(),
            },
        );
        let ids: Vec<String> = batch
            .terminations
            .iter()
            .map(|t| t.instance_id.clone())
            .collect();
        // What the store recorded (instances EC2 has forgotten since), overridden by what is
        // listed now: the inventory a scan would use.
        let mut inventory = self.store.inventory(&ids).await?;
        for info in listed {
            inventory.insert(info.instance_id.clone(), info);
        }

        let mut last_words = BTreeMap::new();
        let mut series = BTreeMap::new();
        let (mut no_words, mut no_series) = (Vec::new(), Vec::new());
        let mut failed = Vec::new();
        for chunk in batch.terminations.chunks(BATCH_SIZE) {
            for (t, (s, w)) in chunk
                .iter()
                .zip(self.fetch_evidence(chunk, &inventory).await)
            {
                let id = t.instance_id.clone();
                match s {
                    Ok(Some(s)) if !s.points.is_empty() => {
                        series.insert(id.clone(), s);
                    }
                    Ok(_) => no_series.push(id.clone()),
                    Err(e) => failed.push(("metrics", format!("{id}: {e}"))),
                }
                match w {
                    Ok(w) if !w.events.is_empty() => {
                        last_words.insert(id, self.masked(w));
                    }
                    Ok(_) => no_words.push(id),
                    Err(e) => failed.push(("logs", format!("{id}: {e}"))),
                }
            }
        }
        note("logs", self.sources.logs.input_problems());
        note("metrics", self.sources.metrics.input_problems());
        for (source, detail) in failed {
            incomplete.push(bundle::IncompletePart {
                source: source.to_string(),
                kind: "fetch_failed".to_string(),
                detail,
            });
        }

        let extra = match &self.cfg.signatures.extra {
            Some(p) => {
                let p = self.cfg.resolve(p);
                Some(std::fs::read(&p).map_err(|e| Error::io(&p, e))?)
            }
            None => None,
        };
        let config_toml = bundle::config_toml(
            &self.cfg,
            window,
            extra.as_ref().map(|_| bundle::SIGNATURES_FILE),
        )?;
        let mut inventory: Vec<InstanceInfo> = inventory.into_values().collect();
        inventory.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let coverage = crate::analysis::coverage::Coverage {
            last_words: crate::analysis::coverage::SourceCoverage {
                with_evidence: last_words.len(),
                without: [(
                    crate::analysis::coverage::NO_LOG_EVENTS.to_string(),
                    no_words.len(),
                )]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            },
            memory: crate::analysis::coverage::SourceCoverage {
                with_evidence: series.len(),
                without: [(
                    crate::analysis::coverage::NO_SERIES.to_string(),
                    no_series.len(),
                )]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            },
            ..Default::default()
        }
        .finish();
        let manifest = bundle::Manifest {
            schema: bundle::BUNDLE_SCHEMA.to_string(),
            created_at: now,
            window,
            sources: bundle::BundleSources {
                activities: self.sources.activities.name(),
                logs: self.sources.logs.name(),
                metrics: self.sources.metrics.name(),
            },
            terminations: batch.terminations.len(),
            inventory_instances: inventory.len(),
            last_words: last_words.len(),
            memory_series: series.len(),
            no_last_words: no_words,
            no_memory_series: no_series,
            collapsed: coverage.collapsed,
            redacted: true,
            complete: incomplete.is_empty(),
            incomplete,
            files: Vec::new(),
        };
        for part in &manifest.incomplete {
            tracing::warn!(source = %part.source, kind = %part.kind, "export incomplete: {}", part.detail);
        }
        bundle::write(
            &opts.out,
            &bundle::BundleContents {
                terminations: &batch.terminations,
                inventory: &inventory,
                last_words: &last_words,
                series: &series,
                config_toml: &config_toml,
                signatures_extra: extra.as_deref(),
            },
            manifest,
        )
    }
}
