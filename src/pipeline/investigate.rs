//! `epitaph instance` and `GET /v1/instances/{id}`: one instance, from the store or fetched
//! from the sources and analysed on demand.

use super::*;

impl Pipeline {
    /// Everything known about one instance: from the store, or fetched from the sources (and
    /// then stored) when unknown or when `refresh` is set.
    pub async fn investigate(&self, instance_id: &str, refresh: bool) -> Result<Investigation> {
        if refresh {
            self.sources.begin_scan();
        }
        if !refresh {
            if let Some(report) = self.store.instance(instance_id).await? {
                return Ok(self.terminated("store", report));
            }
        }
        let inventory = self.inventory_logged().await?;
        self.save_inventory(&inventory, None).await?;
        match self
            .sources
            .activities
            .find_termination(instance_id)
            .await?
        {
            Some(t) => {
                let fetched = self.fetch_chunk(std::slice::from_ref(&t)).await?;
                match fetched.into_iter().next() {
                    Some(Fetched::Done(report)) => {
                        self.store
                            .save_instances(std::slice::from_ref(&report))
                            .await?;
                        Ok(self.terminated("sources", *report))
                    }
                    Some(Fetched::Failed(t, error)) => {
                        self.store.save_pending(&t, &error).await?;
                        Err(Error::source(
                            instance_id,
                            format!("fetch failed (kept pending for the next scan): {error}"),
                        ))
                    }
                    None => Err(Error::source(instance_id, "no result from the sources")),
                }
            }
            None => {
                let now = Utc::now();
                let end = match &self.cfg.scan.until {
                    Some(s) => s.resolve(now),
                    None => now,
                };
                let q = SeriesQuery {
                    instance_id: instance_id.to_string(),
                    origin: None,
                    asg: None,
                    start: end - self.cfg.series_lookback(),
                    end,
                };
                let memory = self
                    .sources
                    .metrics
                    .memory_series(std::slice::from_ref(&q))
                    .await?
                    .into_iter()
                    .next()
                    .transpose()?
                    .flatten();
                let listed = inventory.iter().find(|i| i.instance_id == instance_id);
                if listed.is_none() && memory.is_none() {
                    return Err(Error::UnknownInstance(instance_id.to_string()));
                }
                let leak = memory
                    .as_ref()
                    .map(|s| Box::new(leak::assess(&s.points, s.limit)));
                Ok(Investigation::NoTermination {
                    instance_id: instance_id.to_string(),
                    in_service: listed.is_some(),
                    asg: listed.and_then(|i| i.asg.clone()),
                    memory: memory.map(|mut m| {
                        m.points = downsample(&m.points, MAX_STORED_POINTS);
                        m
                    }),
                    leak,
                })
            }
        }
    }

    pub(super) fn terminated(&self, from: &str, report: InstanceReport) -> Investigation {
        let next_steps = report
            .signatures
            .iter()
            .filter(|m| m.kind.is_death())
            .filter_map(|m| self.signatures.get(&m.signature))
            .map(|s| format!("{}: {}", s.spec.id, s.spec.next_step))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Investigation::Terminated {
            from: from.to_string(),
            report: Box::new(report),
            next_steps,
        }
    }
}
