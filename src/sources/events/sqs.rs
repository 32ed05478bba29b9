//! The SQS queue of the event intake, spoken over SQS's JSON protocol (AWS JSON 1.0:
//! `POST /`, `X-Amz-Target: AmazonSQS.<Operation>`) through the AWS backends' own transport
//! (`sources::aws::signed`: SigV4 with the `[aws]` chain's credentials, retries of throttling
//! and transient errors, call counting, rate limits) rather than an SDK crate.
//!
//! Operations: `ReceiveMessage` (long poll), `DeleteMessage` (after the result is stored),
//! `ChangeMessageVisibility` (a message that came before its settle time, or whose analysis
//! failed, comes back later), `GetQueueAttributes` (`epitaph doctor`, and the queue's depth).

use std::collections::BTreeMap;

use aws_config::Region;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{queue_region, EventsConfig, KEY};
use crate::config::{AwsConfig, HumanDuration};
use crate::error::{Error, Result};
use crate::sources::aws::logs_api::{parse_answer, parse_error};
use crate::sources::aws::signed::{Endpoint, Request};
use crate::sources::probe::CallError;

/// The protocol's content type.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// The target prefix of every operation.
pub const TARGET_PREFIX: &str = "AmazonSQS";
/// SQS's signing name, and its service id (`AWS_ENDPOINT_URL_SQS`).
pub const SERVICE: &str = "sqs";
pub const SERVICE_ID: &str = "SQS";
/// A request may take this much longer than its long poll before it counts as hung.
pub const POLL_MARGIN_SECS: i64 = 15;

/// One received message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    #[serde(rename = "MessageId")]
    pub id: String,
    #[serde(rename = "ReceiptHandle")]
    pub receipt_handle: String,
    #[serde(rename = "Body", default)]
    pub body: String,
    /// System attributes asked for: `ApproximateReceiveCount`, `SentTimestamp`.
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

impl Message {
    /// How many times the queue handed this message out (1 the first time).
    pub fn receive_count(&self) -> u32 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveRequest<'a> {
    queue_url: &'a str,
    max_number_of_messages: usize,
    wait_time_seconds: i64,
    visibility_timeout: i64,
    message_system_attribute_names: [&'a str; 2],
}

#[derive(Debug, Deserialize)]
struct ReceiveResponse {
    #[serde(rename = "Messages", default)]
    messages: Vec<Message>,
}

/// One queue.
pub struct SqsQueue {
    queue_url: String,
    endpoint: Endpoint,
    cfg: EventsConfig,
}

impl SqsQueue {
    /// The queue of `[sources.events]`, with the `[aws]` chain's credentials; the region is
    /// the queue URL's (else `aws.region`, else the chain's), the endpoint the AWS backends'
    /// (`aws.endpoint_url`, `AWS_ENDPOINT_URL_SQS`, …). An attempt may last the long poll and
    /// a margin, whatever `aws.attempt_timeout` says.
    pub async fn from_config(events: &EventsConfig, aws: &AwsConfig) -> Result<SqsQueue> {
        let queue_url = events
            .queue_url
            .clone()
            .ok_or_else(|| Error::Config(vec![format!("{KEY}.queue_url: required")]))?;
        let from_url = queue_region(&queue_url)
            .map_err(|e| Error::Config(vec![format!("{KEY}.queue_url: {e}")]))?;
        let sdk = crate::sources::aws::load_sdk_config(aws).await;
        let region = from_url
            .or_else(|| sdk.region().map(|r| r.to_string()))
            .ok_or_else(|| {
                Error::Config(vec![format!(
                    "{KEY}.queue_url: the URL names no region; set aws.region or AWS_REGION"
                )])
            })?;
        let conf = sdk.to_builder().region(Region::new(region)).build();
        let poll = events.wait_time_secs() + POLL_MARGIN_SECS;
        let attempt = aws.attempt_timeout().num_seconds().max(poll);
        let mut polling = aws.clone();
        polling.attempt_timeout = HumanDuration::seconds(attempt);
        polling.call_timeout = HumanDuration::seconds(
            aws.call_timeout()
                .num_seconds()
                .max(attempt * i64::from(aws.max_attempts.max(1))),
        );
        Ok(SqsQueue {
            queue_url,
            endpoint: Endpoint::new(SERVICE, SERVICE_ID, &conf, &polling)?,
            cfg: events.clone(),
        })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Waits up to the long poll for messages; hides those it returns for the visibility
    /// timeout.
    pub async fn receive(&self) -> std::result::Result<Vec<Message>, CallError> {
        let req = ReceiveRequest {
            queue_url: &self.queue_url,
            max_number_of_messages: self.cfg.max_messages,
            wait_time_seconds: self.cfg.wait_time_secs(),
            visibility_timeout: self.cfg.visibility_timeout_secs(),
            message_system_attribute_names: ["ApproximateReceiveCount", "SentTimestamp"],
        };
        let answer = self.call("ReceiveMessage", &req).await?;
        let parsed: ReceiveResponse = serde_json::from_value(answer).map_err(|e| CallError {
            action: "sqs:ReceiveMessage".into(),
            code: None,
            answered: true,
            message: format!("ReceiveMessage: unreadable answer: {e}"),
        })?;
        Ok(parsed.messages)
    }

    /// Acknowledges a message: it is gone from the queue.
    pub async fn delete(&self, m: &Message) -> std::result::Result<(), CallError> {
        let body =
            serde_json::json!({ "QueueUrl": self.queue_url, "ReceiptHandle": m.receipt_handle });
        self.call("DeleteMessage", &body).await.map(drop)
    }

    /// Hides a message for `secs` more seconds from now (0: visible again at once).
    pub async fn hide_for(&self, m: &Message, secs: i64) -> std::result::Result<(), CallError> {
        let body = serde_json::json!({
            "QueueUrl": self.queue_url,
            "ReceiptHandle": m.receipt_handle,
            "VisibilityTimeout": secs.clamp(0, super::config::MAX_VISIBILITY_SECS),
        });
        self.call("ChangeMessageVisibility", &body).await.map(drop)
    }

    /// The queue's attributes (`ApproximateNumberOfMessages`, `…NotVisible`, `RedrivePolicy`…).
    pub async fn attributes(&self) -> std::result::Result<BTreeMap<String, String>, CallError> {
        let body = serde_json::json!({ "QueueUrl": self.queue_url, "AttributeNames": ["All"] });
        let answer = self.call("GetQueueAttributes", &body).await?;
        Ok(answer
            .get("Attributes")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// One operation: the answer's JSON (`{}` when the body is empty).
    async fn call<B: Serialize>(
        &self,
        operation: &str,
        body: &B,
    ) -> std::result::Result<Value, CallError> {
        let action = format!("{SERVICE}:{operation}");
        let target = format!("{TARGET_PREFIX}.{operation}");
        let fail = |answered: bool, message: String| CallError {
            action: action.clone(),
            code: None,
            answered,
            message: format!("{operation}: {message}"),
        };
        let body = serde_json::to_vec(body)
            .map_err(|e| fail(false, format!("cannot encode the request: {e}")))?;
        let answer = self
            .endpoint
            .post(Request {
                action: &action,
                headers: &[("content-type", CONTENT_TYPE), ("x-amz-target", &target)],
                body,
                read_error: parse_error,
            })
            .await?;
        parse_answer::<Value>(&answer).map_err(|e| fail(true, format!("unreadable answer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_answer_is_read() {
        // The shape of AWS's ReceiveMessage example (JSON protocol).
        let answer = r#"{"Messages":[{"Attributes":{"ApproximateReceiveCount":"3","SentTimestamp":"1700000000000"},
          "Body":"{\"detail-type\":\"EC2 Instance Terminate Successful\"}","MD5OfBody":"x",
          "MessageId":"d6790f8d-d575-4f01-bc51-40122EXAMPLE","ReceiptHandle":"AQEBzbVv…EXAMPLE"}]}"#;
        let r: ReceiveResponse = serde_json::from_str(answer).unwrap();
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.messages[0].receive_count(), 3);
        assert_eq!(r.messages[0].receipt_handle, "AQEBzbVv…EXAMPLE");
        let empty: ReceiveResponse = serde_json::from_str("{}").unwrap();
        assert!(empty.messages.is_empty());
    }

    #[test]
    fn the_receive_request_is_what_sqs_documents() {
        let req = ReceiveRequest {
            queue_url: "https://sqs.us-east-1.amazonaws.com/1/q",
            max_number_of_messages: 10,
            wait_time_seconds: 20,
            visibility_timeout: 300,
            message_system_attribute_names: ["ApproximateReceiveCount", "SentTimestamp"],
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["QueueUrl"], "https://sqs.us-east-1.amazonaws.com/1/q");
        assert_eq!(v["MaxNumberOfMessages"], 10);
        assert_eq!(v["WaitTimeSeconds"], 20);
        assert_eq!(v["VisibilityTimeout"], 300);
        assert_eq!(
            v["MessageSystemAttributeNames"][0],
            "ApproximateReceiveCount"
        );
    }
}
