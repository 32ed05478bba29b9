//! The alert stage of a scan: each deployment's transition decided (`analysis::alerting`) and
//! committed with its outbox messages atomically, once per transition across replicas. Planned
//! from the lookback's compact rows; the one report an alert quotes is read in full.

use super::*;

impl Pipeline {
    /// Decides each deployment's alert transition and commits new states with their outbox
    /// messages atomically. A commit that loses a race with another writer (a replica doing
    /// the same) re-reads the states and decides again, so a transition is enqueued once.
    /// `at` is the window's end: alerting judges the fleet as of the data, not the wall clock.
    pub(super) async fn enqueue_alerts(
        &self,
        findings: &[DeploymentFinding],
        history: &kept::Lookback,
        last_bad: &BTreeMap<String, DateTime<Utc>>,
        inventory: &[InstanceInfo],
        next_deaths: &[ProjectedDeath],
        at: DateTime<Utc>,
    ) -> Result<usize> {
        let sinks: Vec<&'static str> = self
            .cfg
            .alerts
            .sinks()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if sinks.is_empty() {
            return Ok(0);
        }
        let policy = AlertPolicy {
            verdicts: self.cfg.alerts.verdicts.iter().copied().collect(),
            cooldown: self.cfg.alerts.cooldown(),
            resolve_after: self.cfg.alerts.resolve_after(),
        };
        // Instances the inventory calls live that died in the lookback are not live.
        let listed_live: Vec<String> = inventory
            .iter()
            .filter(|i| i.is_live())
            .map(|i| i.instance_id.clone())
            .collect();
        let dead = history.holding(self.store.as_ref(), &listed_live).await?;
        let identity = self.cfg.deployment_identity();
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for info in inventory
            .iter()
            .filter(|i| i.is_live() && !dead.contains(&i.instance_id))
        {
            if let (Some(asg), Some(dep)) = (&info.asg, live_deployment(&identity, info)) {
                live.entry(asg.clone()).or_default().insert(dep);
            }
        }
        let by_name: BTreeMap<&str, &DeploymentFinding> = findings
            .iter()
            .map(|f| (f.deployment.as_str(), f))
            .collect();
        let links = self.link_config();

        for _ in 0..MAX_ALERT_COMMIT_ATTEMPTS {
            let states: BTreeMap<String, AlertState> = self
                .store
                .alert_states()
                .await?
                .into_iter()
                .map(|s| (s.deployment.clone(), s))
                .collect();
            let names: BTreeSet<&str> = by_name
                .keys()
                .copied()
                .chain(states.keys().map(String::as_str))
                .collect();
            let mut changes = Vec::new();
            let mut messages = Vec::new();
            for name in names {
                let finding = by_name.get(name).copied();
                let prev = states.get(name);
                let standing = Standing {
                    finding,
                    last_bad_death: last_bad.get(name).copied(),
                    replaced: finding.is_some_and(|f| alerting::is_replaced(f, &live)),
                };
                let Some(t) = alerting::decide(prev, &standing, &policy, at) else {
                    continue;
                };
                let next = alerting::apply(prev, name, &t, at);
                let key = alerting::dedup_key(name, next.episode, &t);
                let reports: Vec<&InstanceFacts> = history
                    .rows(self.store.as_ref())
                    .await?
                    .iter()
                    .filter(|r| r.deployment == name)
                    .collect();
                // The one full report the alert quotes.
                let evidence = match alert_msg::evidence_instance(&reports) {
                    Some(r) => self.store.instance(&r.instance_id).await?,
                    None => None,
                };
                let expected_deaths: Vec<&ProjectedDeath> = next_deaths
                    .iter()
                    .filter(|p| p.deployment == name)
                    .collect();
                let alert = alert_msg::build(&AlertInput {
                    id: key.clone(),
                    transition: &t,
                    deployment: name,
                    finding,
                    reports: &reports,
                    evidence: evidence.as_ref(),
                    next_deaths: &expected_deaths,
                    unit: self.cfg.sources.metrics.unit.as_str(),
                    links: &links,
                    signatures: &self.signatures,
                    redactor: &self.redactor,
                    now: Utc::now(),
                    as_of: at,
                });
                let alert_json = serde_json::to_string(&alert)
                    .map_err(|e| Error::Store(format!("cannot encode alert: {e}")))?;
                for sink in &sinks {
                    messages.push(OutboxMessage {
                        dedup_key: key.clone(),
                        sink: sink.to_string(),
                        deployment: name.to_string(),
                        kind: t.name().to_string(),
                        alert_json: alert_json.clone(),
                    });
                }
                changes.push(AlertChange {
                    expected_version: prev.map(|p| p.version),
                    state: next,
                });
            }
            if changes.is_empty() {
                return Ok(0);
            }
            if self
                .store
                .commit_alerts(&changes, &messages, Utc::now())
                .await?
            {
                for c in &changes {
                    tracing::info!(deployment = %c.state.deployment, firing = ?c.state.firing, "alert state changed");
                }
                return Ok(messages.len());
            }
            tracing::debug!("alert commit lost a race with another writer; deciding again");
        }
        Err(Error::Store(format!(
            "alert state kept changing under this scan ({MAX_ALERT_COMMIT_ATTEMPTS} attempts); alerts are decided again next scan"
        )))
    }

    pub(super) fn link_config(&self) -> LinkConfig {
        let logs = &self.cfg.sources.logs;
        let region = self.cfg.aws.region.clone().or_else(|| {
            self.cfg
                .aws
                .targets
                .first()
                .and_then(|t| crate::config::parse_target(t).ok())
                .map(|t| t.region)
        });
        LinkConfig {
            cloudwatch: match (
                logs.kind.as_str(),
                region,
                logs.log_group.as_ref().or(logs.log_groups.first()),
            ) {
                ("aws", Some(r), Some(g)) => Some((r, g.clone(), logs.stream_pattern.clone())),
                _ => None,
            },
            dashboard_template: self.cfg.alerts.dashboard_url_template.clone(),
        }
    }
}
