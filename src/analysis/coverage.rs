//! Evidence coverage: how many of the instances a scan analysed got last words and a memory
//! series, and whether a source has collapsed — no evidence at all for a fleet large enough
//! that this cannot be chance (a misspelt log group, a metric name or dimension set that
//! matches nothing). A collapsed source is a finding, never a quiet "healthy".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{InstanceFacts, InstanceReport};

/// A source that gave no evidence for any of at least this many analysed instances has
/// collapsed: one or two instances without logs happen (an instance that died at boot); five
/// in a row with none is a configuration that reads nothing.
pub const MIN_INSTANCES_FOR_COLLAPSE: usize = 5;

/// What one source gave for the instances analysed in a scan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceCoverage {
    /// Instances for which the source returned evidence.
    pub with_evidence: usize,
    /// Instances for which it returned nothing, by reason.
    pub without: BTreeMap<String, usize>,
}

impl SourceCoverage {
    pub fn total(&self) -> usize {
        self.with_evidence + self.without.values().sum::<usize>()
    }

    /// No evidence for any of at least [`MIN_INSTANCES_FOR_COLLAPSE`] instances.
    pub fn collapsed(&self) -> bool {
        self.with_evidence == 0 && self.total() >= MIN_INSTANCES_FOR_COLLAPSE
    }
}

/// Coverage of the two evidence sources over the instances a scan analysed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    pub last_words: SourceCoverage,
    pub memory: SourceCoverage,
    /// Instances whose deployment identity (launch template, tag, log field, metric label)
    /// was not found, grouped under `<group> (unattributed)`. With `launch_template` or `tag`
    /// this is every instance that died before epitaph first recorded the inventory: AWS
    /// forgets terminated instances (see README, "Deployments on a first run").
    #[serde(default)]
    pub unattributed: usize,
    /// One sentence per collapsed source, naming the configuration to check (`[]` when none:
    /// always present, as documented).
    #[serde(default)]
    pub collapsed: Vec<String>,
}

/// Reason recorded when the log backend returned no event for an instance (no stream, or an
/// empty one: the backends answer both as "no last words").
pub const NO_LOG_EVENTS: &str = "no log events";
/// Reasons for a missing memory series.
pub const NO_SERIES: &str = "no series";
pub const EMPTY_SERIES: &str = "series without points";

impl Coverage {
    /// Counts one analysed instance.
    pub fn add(&mut self, r: &InstanceReport) {
        self.count(
            &r.deployment,
            !r.last_words.events.is_empty(),
            !r.memory.points.is_empty(),
            r.leak.is_none() && r.memory.limit.is_none(),
        );
    }

    /// Counts one instance from its compact row, as [`Coverage::add`] its report.
    pub fn add_facts(&mut self, f: &InstanceFacts) {
        self.count(
            &f.deployment,
            f.last_words_lines > 0,
            f.memory_points > 0,
            f.leak.is_none() && f.memory_limit.is_none(),
        );
    }

    /// `no_series`: the source answered nothing at all (no assessment, no limit).
    fn count(&mut self, deployment: &str, words: bool, points: bool, no_series: bool) {
        if crate::analysis::correlate::is_unattributed(deployment) {
            self.unattributed += 1;
        }
        if !words {
            *self
                .last_words
                .without
                .entry(NO_LOG_EVENTS.to_string())
                .or_insert(0) += 1;
        } else {
            self.last_words.with_evidence += 1;
        }
        if points {
            self.memory.with_evidence += 1;
        } else {
            let reason = if no_series { NO_SERIES } else { EMPTY_SERIES };
            *self.memory.without.entry(reason.to_string()).or_insert(0) += 1;
        }
    }

    /// Names the collapsed sources, once every instance is counted.
    pub fn finish(mut self) -> Self {
        self.collapsed.clear();
        if self.last_words.collapsed() {
            self.collapsed.push(format!(
                "no last words for any of {} instances: check sources.logs (log group, stream naming, path)",
                self.last_words.total()
            ));
        }
        if self.memory.collapsed() {
            self.collapsed.push(format!(
                "no memory series for any of {} instances: check sources.metrics (metric name, namespace, dimensions such as the CloudWatch agent's append_dimensions)",
                self.memory.total()
            ));
        }
        self
    }
}

impl Coverage {
    /// A sentence about instances without a deployment identity, when there are any: how many,
    /// why, and what to change.
    pub fn attribution_note(&self) -> Option<String> {
        (self.unattributed > 0).then(|| {
            format!(
                "{} of {} instance(s) have no deployment identity and are grouped as `<group> (unattributed)`:                  a launch template or tag comes from the inventory epitaph records on every run, and AWS forgets                  terminated instances, so instances that died before epitaph first ran cannot be attributed.                  Keep epitaph running on a schedule, or use deployment.identity = \"log_field\" or \"metric_label\"",
                self.unattributed,
                self.last_words.total()
            )
        })
    }
}

/// Coverage of `reports` (the instances analysed in one scan).
pub fn assess(reports: &[&InstanceReport]) -> Coverage {
    let mut c = Coverage::default();
    for r in reports {
        c.add(r);
    }
    c.finish()
}

/// Coverage of instances from their compact rows.
pub fn assess_facts(facts: &[InstanceFacts]) -> Coverage {
    let mut c = Coverage::default();
    for f in facts {
        c.add_facts(f);
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CauseCategory, InstanceVerdict, LastWords, LogEvent, MemorySeries};
    use chrono::{TimeZone, Utc};

    fn report(words: bool, series: bool) -> InstanceReport {
        let t = Utc.with_ymd_and_hms(2026, 1, 5, 10, 0, 0).unwrap();
        InstanceReport {
            instance_id: "i-1".into(),
            deployment: "web".into(),
            asg: "web".into(),
            terminated_at: t,
            cause: CauseCategory::HealthCheck,
            cause_text: String::new(),
            launch_time: None,
            verdict: InstanceVerdict::Unknown,
            explanation: String::new(),
            signatures: vec![],
            leak: None,
            last_words: LastWords {
                last_event_at: words.then_some(t),
                events: if words {
                    vec![LogEvent {
                        timestamp: t,
                        message: "GET / 200".into(),
                    }]
                } else {
                    vec![]
                },
                truncated: false,
            },
            memory: MemorySeries {
                points: if series { vec![(t, 50.0)] } else { vec![] },
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_source_collapses_only_for_a_fleet_without_any_evidence() {
        let none: Vec<InstanceReport> = (0..5).map(|_| report(false, true)).collect();
        let refs: Vec<&InstanceReport> = none.iter().collect();
        let c = assess(&refs);
        assert!(c.last_words.collapsed());
        assert!(!c.memory.collapsed());
        assert_eq!(c.collapsed.len(), 1);
        assert!(c.collapsed[0].contains("sources.logs"), "{:?}", c.collapsed);
        // Four instances are not enough to call it.
        let c = assess(&refs[..4]);
        assert!(c.collapsed.is_empty());
        // One instance with last words among many is coverage, not collapse.
        let mut some = none.clone();
        some.push(report(true, false));
        let refs: Vec<&InstanceReport> = some.iter().collect();
        let c = assess(&refs);
        assert!(!c.last_words.collapsed());
        assert_eq!(c.last_words.with_evidence, 1);
        assert_eq!(c.last_words.without[NO_LOG_EVENTS], 5);
        assert_eq!(c.memory.without[NO_SERIES], 1);
    }
}
