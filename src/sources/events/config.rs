//! `[sources.events]`: where terminations are pushed to epitaph as they happen. Today one
//! kind, `sqs` — an SQS queue fed by an EventBridge rule on Auto Scaling's "EC2 Instance
//! Terminate Successful / Unsuccessful" events (`deploy/aws/event-intake.yaml` creates both).
//! Without this section `serve` only scans on its schedule.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;

/// The config key of this section, for messages.
pub const KEY: &str = "sources.events";
/// SQS's longest long poll (`WaitTimeSeconds`).
pub const MAX_WAIT_TIME_SECS: i64 = 20;
/// SQS's most messages per receive (`MaxNumberOfMessages`).
pub const MAX_MESSAGES: usize = 10;
/// SQS's longest visibility timeout (12 hours).
pub const MAX_VISIBILITY_SECS: i64 = 12 * 3600;

/// Where events come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventsKind {
    /// No event intake (the default): scheduled scans only.
    #[default]
    None,
    /// An SQS queue, long-polled by `serve`.
    Sqs,
}

/// `[sources.events]` as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// none (scheduled scans only) | sqs.
    pub kind: EventsKind,
    /// The queue's URL: `https://sqs.us-east-1.amazonaws.com/123456789012/epitaph-terminations`.
    /// Its region is the one in the URL; credentials come from `[aws]`'s chain.
    pub queue_url: Option<String>,
    /// How long after a termination its instance is analysed: the CloudWatch agent ships
    /// logs and metrics with a delay, and last words that have not arrived cannot be read.
    /// A message that comes earlier is made invisible until then (ChangeMessageVisibility).
    pub settle: HumanDuration,
    /// Long poll of one receive (at most 20 s).
    pub wait_time: HumanDuration,
    /// Messages per receive (at most 10).
    #[schemars(range(min = 1))]
    pub max_messages: usize,
    /// How long a received message stays invisible to other replicas while it is analysed;
    /// a replica that dies mid-analysis lets it reappear after this.
    pub visibility_timeout: HumanDuration,
    /// When an analysis fails (a backend is down), the message comes back after this.
    pub retry_after: HumanDuration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            kind: EventsKind::None,
            queue_url: None,
            settle: HumanDuration::default_of("3m"),
            wait_time: HumanDuration::default_of("20s"),
            max_messages: MAX_MESSAGES,
            visibility_timeout: HumanDuration::default_of("5m"),
            retry_after: HumanDuration::default_of("2m"),
        }
    }
}

fn secs(d: &HumanDuration) -> i64 {
    d.get().num_seconds()
}

impl EventsConfig {
    pub fn settle(&self) -> chrono::Duration {
        chrono::Duration::seconds(secs(&self.settle).max(0))
    }
    pub fn wait_time_secs(&self) -> i64 {
        secs(&self.wait_time).clamp(0, MAX_WAIT_TIME_SECS)
    }
    pub fn visibility_timeout_secs(&self) -> i64 {
        secs(&self.visibility_timeout).clamp(1, MAX_VISIBILITY_SECS)
    }
    pub fn retry_after_secs(&self) -> i64 {
        secs(&self.retry_after).clamp(0, MAX_VISIBILITY_SECS)
    }

    /// What is wrong with the section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.kind == EventsKind::None {
            return p;
        }
        match self.queue_url.as_deref() {
            None => p.push(format!(
                "{KEY}.queue_url: required for kind = \"sqs\" (e.g. https://sqs.us-east-1.amazonaws.com/123456789012/epitaph-terminations)"
            )),
            Some(u) => {
                if let Err(e) = queue_region(u) {
                    p.push(format!("{KEY}.queue_url: {e}"));
                }
            }
        }
        let wait = secs(&self.wait_time);
        if !(0..=MAX_WAIT_TIME_SECS).contains(&wait) {
            p.push(format!(
                "{KEY}.wait_time: `{}` is beyond SQS's 0–{MAX_WAIT_TIME_SECS} s long poll",
                self.wait_time
            ));
        }
        if !(1..=MAX_MESSAGES).contains(&self.max_messages) {
            p.push(format!(
                "{KEY}.max_messages: {} is beyond SQS's 1–{MAX_MESSAGES}",
                self.max_messages
            ));
        }
        let visibility = secs(&self.visibility_timeout);
        if !(1..=MAX_VISIBILITY_SECS).contains(&visibility) {
            p.push(format!(
                "{KEY}.visibility_timeout: `{}` is beyond SQS's 1 s – 12 h",
                self.visibility_timeout
            ));
        }
        if secs(&self.settle) > MAX_VISIBILITY_SECS {
            p.push(format!(
                "{KEY}.settle: `{}` is longer than SQS can hide a message (12 h)",
                self.settle
            ));
        }
        p
    }
}

/// The region of a queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`), or None for
/// an endpoint that does not say (a local emulator: `aws.region` applies); an error for what
/// is not a queue URL at all.
pub fn queue_region(url: &str) -> std::result::Result<Option<String>, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    let segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    if segments.len() != 2 {
        return Err(format!("`{url}` is not a queue URL (…/ACCOUNT/QUEUE_NAME)"));
    }
    let host = parsed.host_str().unwrap_or("");
    let labels: Vec<&str> = host.split('.').collect();
    Ok(match labels.as_slice() {
        ["sqs", region, "amazonaws", ..] => Some(region.to_string()),
        [region, "queue", "amazonaws", ..] => Some(region.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_queue_url() {
        assert_eq!(
            queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/epitaph").unwrap(),
            Some("eu-west-1".into())
        );
        // The legacy form.
        assert_eq!(
            queue_region("https://us-east-2.queue.amazonaws.com/123456789012/epitaph").unwrap(),
            Some("us-east-2".into())
        );
        assert_eq!(
            queue_region("http://127.0.0.1:5000/123456789012/epitaph").unwrap(),
            None
        );
        assert!(queue_region("epitaph-terminations").is_err());
        assert!(queue_region("https://sqs.eu-west-1.amazonaws.com/epitaph").is_err());
    }

    #[test]
    fn problems_name_their_keys() {
        let c = EventsConfig {
            kind: EventsKind::Sqs,
            wait_time: HumanDuration::parse("30s").unwrap(),
            max_messages: 11,
            visibility_timeout: HumanDuration::parse("13h").unwrap(),
            ..Default::default()
        };
        let p = c.problems().join("\n");
        for needle in [
            "sources.events.queue_url: required",
            "sources.events.wait_time: `30s`",
            "sources.events.max_messages: 11",
            "sources.events.visibility_timeout: `13h`",
        ] {
            assert!(p.contains(needle), "missing {needle} in {p}");
        }
        assert!(EventsConfig::default().problems().is_empty());
    }
}
