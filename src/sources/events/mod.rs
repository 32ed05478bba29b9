//! Event intake: terminations pushed to epitaph as they happen, instead of found by the next
//! scheduled scan. A message is read into a [`Termination`] here (the same judgement as a
//! scaling activity read from the API or an export: `sources::termination_from_activity`);
//! `serve` waits for it to settle, has the pipeline analyse it, and acknowledges it only once
//! the result is stored.
//!
//! Accepted message bodies, each as AWS documents it:
//! - an EventBridge event from `aws.autoscaling`, detail-type "EC2 Instance Terminate
//!   Successful" or "EC2 Instance Terminate Unsuccessful" (the rule in
//!   `deploy/aws/event-intake.yaml` sends exactly these);
//! - an Auto Scaling notification (`autoscaling:EC2_INSTANCE_TERMINATE`, the group's SNS
//!   notification configuration), and `autoscaling:TEST_NOTIFICATION` (ignored);
//! - either of them inside an SNS envelope (`"Type": "Notification"`, the event as its
//!   `Message` string), as an SNS topic subscribed by the queue delivers it.

pub mod config;
#[cfg(feature = "aws")]
pub mod sqs;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::model::Termination;
use crate::sources::{termination_from_activity, RawActivity};

/// EventBridge's `detail-type`s this intake reads.
pub const TERMINATE_SUCCESSFUL: &str = "EC2 Instance Terminate Successful";
pub const TERMINATE_UNSUCCESSFUL: &str = "EC2 Instance Terminate Unsuccessful";
/// The Auto Scaling notification types.
pub const NOTIFICATION_TERMINATE: &str = "autoscaling:EC2_INSTANCE_TERMINATE";
pub const NOTIFICATION_TERMINATE_ERROR: &str = "autoscaling:EC2_INSTANCE_TERMINATE_ERROR";

/// What a message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// An instance was terminated: analyse it.
    Termination(Box<Termination>),
    /// Nothing to analyse (a launch, a failed termination, a test notification): acknowledge
    /// it. The reason is for the log.
    Ignore(String),
}

fn time(v: &Value, key: &str) -> Option<std::result::Result<DateTime<Utc>, String>> {
    let s = v.get(key)?.as_str()?;
    Some(
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{key} `{s}`: {e}")),
    )
}

/// The activity fields (`Description`, `Cause`, `StartTime`, …), as both the EventBridge
/// `detail` and the Auto Scaling notification carry them, as a termination.
fn activity(fields: &Value) -> std::result::Result<Intake, String> {
    let s = |k: &str| fields.get(k).and_then(Value::as_str);
    let raw = RawActivity {
        activity_id: s("ActivityId"),
        asg: s("AutoScalingGroupName"),
        description: s("Description"),
        cause: s("Cause"),
        start_time: time(fields, "StartTime"),
        end_time: time(fields, "EndTime"),
        status: s("StatusCode"),
    };
    match termination_from_activity(&raw)? {
        Some(mut t) => {
            // The event names the instance; the description only repeats it.
            if let Some(id) = s("EC2InstanceId").filter(|id| id.starts_with("i-")) {
                t.instance_id = id.to_string();
            }
            Ok(Intake::Termination(Box::new(t)))
        }
        None => Ok(Intake::Ignore(format!(
            "not a completed termination (status {})",
            raw.status.unwrap_or("unknown")
        ))),
    }
}

/// Reads one message body.
pub fn parse_message(body: &str) -> std::result::Result<Intake, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    // An SNS envelope: the event is its Message, a JSON string.
    if v.get("Type").and_then(Value::as_str) == Some("Notification") {
        let inner = v
            .get("Message")
            .and_then(Value::as_str)
            .ok_or("an SNS notification without a Message")?;
        return parse_message(inner);
    }
    if let Some(detail_type) = v.get("detail-type").and_then(Value::as_str) {
        let source = v.get("source").and_then(Value::as_str).unwrap_or("");
        if source != "aws.autoscaling" {
            return Ok(Intake::Ignore(format!("an event from `{source}`")));
        }
        return match detail_type {
            TERMINATE_SUCCESSFUL => activity(v.get("detail").ok_or("an event without detail")?),
            TERMINATE_UNSUCCESSFUL => Ok(Intake::Ignore(
                "a termination that did not happen (Terminate Unsuccessful)".into(),
            )),
            other => Ok(Intake::Ignore(format!("a `{other}` event"))),
        };
    }
    if let Some(event) = v.get("Event").and_then(Value::as_str) {
        return match event {
            NOTIFICATION_TERMINATE => activity(&v),
            NOTIFICATION_TERMINATE_ERROR => Ok(Intake::Ignore(
                "a termination that did not happen (EC2_INSTANCE_TERMINATE_ERROR)".into(),
            )),
            other => Ok(Intake::Ignore(format!("an `{other}` notification"))),
        };
    }
    Err("neither an EventBridge event, an Auto Scaling notification nor an SNS envelope".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CauseCategory;

    /// AWS's example of the event (Amazon EC2 Auto Scaling event reference, "EC2 Instance
    /// Terminate Successful"), with a real health-check cause.
    const EVENT: &str = r#"{
      "version": "0",
      "id": "12345678-1234-1234-1234-123456789012",
      "detail-type": "EC2 Instance Terminate Successful",
      "source": "aws.autoscaling",
      "account": "123456789012",
      "time": "2026-03-01T10:15:42Z",
      "region": "us-west-2",
      "resources": ["auto-scaling-group-arn", "instance-arn"],
      "detail": {
        "StatusCode": "InProgress",
        "Description": "Terminating EC2 instance: i-1234567890abcdef0",
        "AutoScalingGroupName": "my-auto-scaling-group",
        "ActivityId": "87654321-4321-4321-4321-210987654321",
        "Details": {"Availability Zone": "us-west-2b", "Subnet ID": "subnet-12345678"},
        "RequestId": "12345678-1234-1234-1234-123456789012",
        "StatusMessage": "",
        "EndTime": "2026-03-01T10:15:42.498Z",
        "EC2InstanceId": "i-1234567890abcdef0",
        "StartTime": "2026-03-01T10:14:58.649Z",
        "Cause": "At 2026-03-01T10:14:50Z an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped."
      }
    }"#;

    fn termination(i: Intake) -> Termination {
        match i {
            Intake::Termination(t) => *t,
            other => panic!("not a termination: {other:?}"),
        }
    }

    #[test]
    fn an_eventbridge_termination_is_read_like_its_activity() {
        let t = termination(parse_message(EVENT).unwrap());
        assert_eq!(t.instance_id, "i-1234567890abcdef0");
        assert_eq!(t.asg, "my-auto-scaling-group");
        assert_eq!(t.cause, CauseCategory::HealthCheck);
        assert_eq!(t.time.to_rfc3339(), "2026-03-01T10:14:58.649+00:00");
        assert_eq!(
            t.end_time.map(|e| e.to_rfc3339()),
            Some("2026-03-01T10:15:42.498+00:00".into())
        );
        assert_eq!(
            t.activity_id.as_deref(),
            Some("87654321-4321-4321-4321-210987654321")
        );
    }

    #[test]
    fn an_sns_envelope_is_opened() {
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:epitaph",
            "Message": EVENT,
            "Timestamp": "2026-03-01T10:15:43.000Z",
        })
        .to_string();
        assert_eq!(
            termination(parse_message(&envelope).unwrap()).instance_id,
            "i-1234567890abcdef0"
        );
    }

    #[test]
    fn an_auto_scaling_notification_is_read() {
        // The notification an Auto Scaling group sends to SNS (notification configuration).
        let n = r#"{"Origin":"AutoScalingGroup","Destination":"EC2","Progress":50,
          "AccountId":"123456789012","Description":"Terminating EC2 instance: i-0598c7d356eba48d7",
          "RequestId":"b1a5e3b2-0d1f-4d6a-9b5f-1c2f0a6c6f0e","EndTime":"2026-03-01T10:15:42.498Z",
          "AutoScalingGroupARN":"arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:…",
          "ActivityId":"b1a5e3b2-0d1f-4d6a-9b5f-1c2f0a6c6f0e","StartTime":"2026-03-01T10:14:58.649Z",
          "Service":"AWS Auto Scaling","Time":"2026-03-01T10:15:42.498Z","EC2InstanceId":"i-0598c7d356eba48d7",
          "StatusCode":"InProgress","StatusMessage":"","Details":{"Subnet ID":"subnet-1","Availability Zone":"us-west-2b"},
          "AutoScalingGroupName":"web","Cause":"At 2026-03-01T10:14:30Z a user request update of AutoScalingGroup constraints to min: 0, max: 2, desired: 1 changing the desired capacity from 2 to 1.  At 2026-03-01T10:14:58Z an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from 2 to 1.",
          "Event":"autoscaling:EC2_INSTANCE_TERMINATE"}"#;
        let t = termination(parse_message(n).unwrap());
        assert_eq!(
            (t.instance_id.as_str(), t.asg.as_str()),
            ("i-0598c7d356eba48d7", "web")
        );
        assert_eq!(t.cause, CauseCategory::ScaleIn);
        let test = r#"{"AccountId":"123456789012","RequestId":"x","AutoScalingGroupARN":"arn","AutoScalingGroupName":"web","Service":"AWS Auto Scaling","Event":"autoscaling:TEST_NOTIFICATION","Time":"2026-03-01T10:00:00.000Z"}"#;
        assert!(matches!(parse_message(test).unwrap(), Intake::Ignore(_)));
    }

    #[test]
    fn what_is_not_a_death_is_acknowledged_and_what_is_unreadable_is_an_error() {
        let failed = EVENT
            .replace(TERMINATE_SUCCESSFUL, TERMINATE_UNSUCCESSFUL)
            .replace("InProgress", "Failed");
        assert!(matches!(parse_message(&failed).unwrap(), Intake::Ignore(_)));
        let launch = EVENT.replace(TERMINATE_SUCCESSFUL, "EC2 Instance Launch Successful");
        assert!(matches!(parse_message(&launch).unwrap(), Intake::Ignore(_)));
        let ec2 = EVENT.replace("aws.autoscaling", "aws.ec2");
        assert!(matches!(parse_message(&ec2).unwrap(), Intake::Ignore(_)));
        for bad in ["not json", "{}", r#"{"Type":"Notification"}"#] {
            assert!(parse_message(bad).is_err(), "{bad}");
        }
        let no_time = EVENT.replace("\"StartTime\"", "\"Started\"");
        assert!(parse_message(&no_time).unwrap_err().contains("StartTime"));
    }
}
