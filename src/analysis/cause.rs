//! Classifies the `Cause` text of an Auto Scaling activity into a [`CauseCategory`].
//!
//! AWS writes causes as one or more sentences, e.g. "At 2026-01-05T10:00:00Z a user request
//! update of AutoScalingGroup constraints … changing the desired capacity from 3 to 2. At … an
//! instance was taken out of service in response to a difference between desired and actual
//! capacity, shrinking the capacity from 3 to 2. At … instance i-0abc was selected for
//! termination." The sentence that removes the instance ("taken out of service in response to",
//! "terminated in response to") decides; earlier sentences only say why capacity changed.

use crate::model::CauseCategory;

/// Phrases that introduce the clause naming why the instance itself was removed.
const REMOVAL_MARKERS: [&str; 4] = [
    "taken out of service in response to",
    "terminated in response to",
    "was terminated by",
    "in response to",
];

/// Ordered rules: the first whose every needle occurs in the removal clause wins. Needles are
/// lower case; the clause is lower-cased before matching.
const RULES: &[(&[&str], CauseCategory)] = &[
    (&["instance refresh"], CauseCategory::InstanceRefresh),
    (&["maximum instance lifetime"], CauseCategory::MaxLifetime),
    (&["max instance lifetime"], CauseCategory::MaxLifetime),
    (&["maximum lifetime"], CauseCategory::MaxLifetime),
    (&["spot", "interrupt"], CauseCategory::SpotInterruption),
    (&["rebalance recommendation"], CauseCategory::Rebalance),
    (&["capacity rebalanc"], CauseCategory::Rebalance),
    (&["availability zone", "rebalanc"], CauseCategory::Rebalance),
    (&["az rebalanc"], CauseCategory::Rebalance),
    (&["rebalancing"], CauseCategory::Rebalance),
    (&["health check"], CauseCategory::HealthCheck),
    // "an EC2 instance status check failure", "an EC2 instance status checks failure".
    (&["status check"], CauseCategory::HealthCheck),
    (&["impaired"], CauseCategory::HealthCheck),
    (&["health-check"], CauseCategory::HealthCheck),
    (&["healthcheck"], CauseCategory::HealthCheck),
    (&["unhealthy"], CauseCategory::HealthCheck),
    (
        &["difference between desired and actual capacity"],
        CauseCategory::ScaleIn,
    ),
    (&["user request"], CauseCategory::UserRequest),
    (&["detach"], CauseCategory::UserRequest),
    (
        &["terminateinstanceinautoscalinggroup"],
        CauseCategory::UserRequest,
    ),
    (&["shrinking the capacity"], CauseCategory::ScaleIn),
    (&["scale in"], CauseCategory::ScaleIn),
    (&["scale-in"], CauseCategory::ScaleIn),
];

/// Classifies a cause text. Unrecognised texts are [`CauseCategory::Unknown`], never an error.
pub fn classify_cause(cause: &str) -> CauseCategory {
    let lower = cause.to_ascii_lowercase();
    // The clause after the first removal marker decides; if there is none, the whole text.
    let clause = REMOVAL_MARKERS
        .iter()
        .find_map(|m| lower.find(m).map(|i| &lower[i + m.len()..]))
        .map(|rest| rest.split(". at ").next().unwrap_or(rest))
        .unwrap_or(&lower);
    classify_clause(clause)
        .or_else(|| classify_clause(&lower))
        .unwrap_or(CauseCategory::Unknown)
}

/// A cause text with its variable parts (timestamps, instance ids, numbers) replaced, so that
/// unrecognised causes can be counted by wording in the scan summary.
pub fn cause_template(cause: &str) -> String {
    static VARIABLE: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(concat!(
            r"\d{4}-\d{2}-\d{2}T[\d:.]+Z?",
            r"|\bi-[0-9a-f]{8,17}\b",
            r"|\d+(?:\.\d+)?",
        ))
        .ok()
    });
    let text = cause.split_whitespace().collect::<Vec<_>>().join(" ");
    match VARIABLE.as_ref() {
        Some(re) => re
            .replace_all(&text, |c: &regex::Captures<'_>| {
                let m = &c[0];
                if m.starts_with("i-") {
                    "<instance>"
                } else if m.len() >= 10 && m.as_bytes()[4] == b'-' {
                    "<time>"
                } else {
                    "<n>"
                }
            })
            .into_owned(),
        None => text,
    }
}

fn classify_clause(text: &str) -> Option<CauseCategory> {
    RULES
        .iter()
        .find(|(needles, _)| needles.iter().all(|n| text.contains(n)))
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CauseCategory {
        classify_cause(s)
    }

    #[test]
    fn health_checks() {
        assert_eq!(c("At 2015-06-16T14:59:01Z an instance was taken out of service in response to a EC2 health check indicating it has been terminated or stopped."), CauseCategory::HealthCheck);
        assert_eq!(c("At 2019-03-01T10:00:00Z an instance was taken out of service in response to an ELB system health check failure."), CauseCategory::HealthCheck);
        assert_eq!(c("At 2022-05-14T20:11:53Z an instance was taken out of service in response to a user health-check."), CauseCategory::HealthCheck);
        // The wordings of AWS's troubleshooting guide for status checks.
        assert_eq!(c("At 2024-03-01T10:00:00Z an instance was taken out of service in response to an EC2 instance status checks failure."), CauseCategory::HealthCheck);
        assert_eq!(c("At 2024-03-01T10:00:00Z an instance was taken out of service in response to an EC2 instance status check failure."), CauseCategory::HealthCheck);
        assert_eq!(c("At 2024-03-01T10:00:00Z an instance was taken out of service in response to an EBS volume health check failure."), CauseCategory::HealthCheck);
    }

    #[test]
    fn scale_in_is_not_user_request_even_when_a_user_changed_capacity() {
        let text = "At 2026-01-05T10:00:00Z a user request update of AutoScalingGroup constraints to min: 1, max: 5, desired: 2 changing the desired capacity from 3 to 2.  At 2026-01-05T10:00:12Z an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from 3 to 2.  At 2026-01-05T10:00:12Z instance i-0abc was selected for termination.";
        assert_eq!(c(text), CauseCategory::ScaleIn);
        let policy = "At 2026-01-05T10:00:00Z a monitor alarm TargetTracking-web-AlarmLow-1 in state ALARM triggered policy cpu40 changing the desired capacity from 6 to 5.  At 2026-01-05T10:00:20Z an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from 6 to 5.";
        assert_eq!(c(policy), CauseCategory::ScaleIn);
    }

    #[test]
    fn templates_group_causes_by_wording() {
        assert_eq!(
            cause_template("At 2026-01-05T10:00:00Z instance i-0abc12345678 was  lost, 3 to 2."),
            "At <time> instance <instance> was lost, <n> to <n>."
        );
        assert_eq!(
            cause_template("At 2026-01-05T10:00:00Z something new"),
            cause_template("At 2026-02-07T11:22:33Z something new")
        );
    }

    #[test]
    fn other_categories() {
        assert_eq!(c("At 2026-01-05T10:00:00Z an instance was taken out of service in response to an instance refresh.  At 2026-01-05T10:00:00Z instance i-1 was selected for termination."), CauseCategory::InstanceRefresh);
        assert_eq!(c("At 2026-01-05T10:00:00Z an instance was taken out of service in response to an EC2 Spot Instance interruption notice."), CauseCategory::SpotInterruption);
        assert_eq!(c("At 2026-01-05T10:00:00Z an instance was taken out of service in response to an EC2 instance rebalance recommendation."), CauseCategory::Rebalance);
        assert_eq!(c("At 2026-01-05T10:00:00Z instance i-0abc was taken out of service in response to a user request, shrinking the capacity from 2 to 1."), CauseCategory::UserRequest);
        assert_eq!(c("At 2026-01-05T10:00:00Z an instance was taken out of service in response to the instance reaching its maximum instance lifetime."), CauseCategory::MaxLifetime);
        assert_eq!(c("At 2026-01-05T10:00:00Z an instance was taken out of service in response to Availability Zone rebalancing."), CauseCategory::Rebalance);
        assert_eq!(c("something new AWS invented"), CauseCategory::Unknown);
        assert_eq!(c(""), CauseCategory::Unknown);
    }
}
