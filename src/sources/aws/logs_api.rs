//! CloudWatch Logs over its JSON API, spoken by hand instead of through the SDK crate (the
//! largest crate of a cold build): the AWS JSON 1.1 protocol — `POST /` with
//! `X-Amz-Target: Logs_20140328.<Operation>` and a JSON body, the answer JSON too; an error is
//! an HTTP 4xx/5xx whose code is in the `x-amzn-ErrorType` header or the body's `__type`
//! (`{"__type": "…#ResourceNotFoundException", "message": "…"}`).
//!
//! Only the four read calls epitaph makes (`GetLogEvents`, `FilterLogEvents`,
//! `DescribeLogStreams`, `DescribeLogGroups`), with only the fields it sets or reads. Signing,
//! retries and timeouts are the shared transport's (`signed.rs`); pagination is the callers'
//! (`logs.rs`, `logs_probe.rs`).
//!
//! Length: about 290 lines of code; the rest are its unit tests.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::signed::{Endpoint, Request};
use crate::config::AwsConfig;
use crate::error::Result;
use crate::sources::http::HttpFailure;
use crate::sources::probe::CallError;

/// The SigV4 signing name (and the endpoint's first label).
pub const SERVICE: &str = "logs";
/// The SDK's name of the service (`AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`).
pub const SERVICE_ID: &str = "CloudWatch Logs";
/// `X-Amz-Target` is this, a dot, and the operation.
pub const TARGET_PREFIX: &str = "Logs_20140328";
/// The protocol's content type, for requests.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// One CloudWatch Logs operation: its name, request (this type) and answer.
pub trait Operation: Serialize {
    /// "GetLogEvents"; the IAM action is `logs:` and this.
    const NAME: &'static str;
    type Output: DeserializeOwned;
}

/// One target's CloudWatch Logs endpoint.
pub struct Logs {
    endpoint: Endpoint,
}

impl Logs {
    pub fn new(conf: &aws_config::SdkConfig, aws: &AwsConfig) -> Result<Logs> {
        Ok(Logs {
            endpoint: Endpoint::new(SERVICE, SERVICE_ID, conf, aws)?,
        })
    }

    /// Attempts refused as throttled so far, by operation.
    pub fn throttled(&self) -> std::collections::BTreeMap<String, u64> {
        self.endpoint.throttled()
    }

    /// Sends one call; a failure names the operation, the service's code and message.
    pub async fn call<O: Operation>(&self, input: &O) -> std::result::Result<O::Output, CallError> {
        let action = format!("{SERVICE}:{}", O::NAME);
        let target = format!("{TARGET_PREFIX}.{}", O::NAME);
        let body = serde_json::to_vec(input).map_err(|e| CallError {
            action: action.clone(),
            code: None,
            answered: false,
            message: format!("{}: cannot encode the request: {e}", O::NAME),
        })?;
        let answer = self
            .endpoint
            .post(Request {
                action: &action,
                headers: &[("content-type", CONTENT_TYPE), ("x-amz-target", &target)],
                body,
                read_error: parse_error,
            })
            .await?;
        parse_answer::<O::Output>(&answer).map_err(|e| CallError {
            action,
            code: None,
            answered: true,
            message: format!("{}: unreadable answer: {e}", O::NAME),
        })
    }
}

/// An answer's JSON (an empty body is an empty object).
pub fn parse_answer<T: DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// `(code, message)` of an error answer: the code from the `x-amzn-ErrorType` header, else
/// the body's `code` or `__type`, without a namespace (`…#`) or a suffix (`:…`); the message
/// from `message`, `Message` or `errorMessage`.
pub fn parse_error(f: &HttpFailure) -> Option<(String, String)> {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(rename = "__type")]
        type_: Option<String>,
        code: Option<String>,
        message: Option<String>,
        #[serde(rename = "Message")]
        message_capitalised: Option<String>,
        #[serde(rename = "errorMessage")]
        error_message: Option<String>,
    }
    let body: Body = serde_json::from_str(&f.detail).unwrap_or_default();
    let code = f
        .error_type
        .clone()
        .or(body.code)
        .or(body.type_)
        .map(|c| sanitize_code(&c).to_string())
        .filter(|c| !c.is_empty())?;
    let message = body
        .message
        .or(body.message_capitalised)
        .or(body.error_message)
        .unwrap_or_default();
    Some((code, message))
}

/// `aws.protocoltests#ResourceNotFoundException:http://…` → `ResourceNotFoundException`.
pub fn sanitize_code(code: &str) -> &str {
    let code = code.split_once(':').map_or(code, |(c, _)| c);
    code.rsplit_once('#').map_or(code, |(_, c)| c).trim()
}

/// A list the service may send as `null` or leave out: empty then.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> std::result::Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GetLogEvents`: one page of a stream's events up to `end_time` (exclusive), read backwards
/// unless `start_from_head`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLogEvents {
    pub log_group_name: String,
    pub log_stream_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_from_head: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i32>,
}

/// An event as `GetLogEvents` returns it.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutputLogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GetLogEventsOutput {
    #[serde(default, deserialize_with = "nullable")]
    pub events: Vec<OutputLogEvent>,
    pub next_forward_token: Option<String>,
    pub next_backward_token: Option<String>,
}

impl Operation for GetLogEvents {
    const NAME: &'static str = "GetLogEvents";
    type Output = GetLogEventsOutput;
}

/// `FilterLogEvents`: events of a group (of some streams, or matching a pattern) in a time
/// range, oldest first.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterLogEvents {
    pub log_group_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_stream_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i32>,
}

/// An event as `FilterLogEvents` returns it.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FilteredLogEvent {
    pub log_stream_name: Option<String>,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FilterLogEventsOutput {
    #[serde(default, deserialize_with = "nullable")]
    pub events: Vec<FilteredLogEvent>,
    pub next_token: Option<String>,
}

impl Operation for FilterLogEvents {
    const NAME: &'static str = "FilterLogEvents";
    type Output = FilterLogEventsOutput;
}

/// `DescribeLogStreams`: a group's streams, by name prefix or by last event time.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogStreams {
    pub log_group_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_stream_name_prefix: Option<String>,
    /// `LogStreamName` (the default) or `LastEventTime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descending: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i32>,
}

/// `DescribeLogStreams` ordered by the time of each stream's last event.
pub const ORDER_BY_LAST_EVENT_TIME: &str = "LastEventTime";

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogStream {
    pub log_stream_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogStreamsOutput {
    #[serde(default, deserialize_with = "nullable")]
    pub log_streams: Vec<LogStream>,
    pub next_token: Option<String>,
}

impl Operation for DescribeLogStreams {
    const NAME: &'static str = "DescribeLogStreams";
    type Output = DescribeLogStreamsOutput;
}

/// `DescribeLogGroups`: the account's groups, optionally by name prefix.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogGroups {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_group_name_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogGroup {
    pub log_group_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogGroupsOutput {
    #[serde(default, deserialize_with = "nullable")]
    pub log_groups: Vec<LogGroup>,
    pub next_token: Option<String>,
}

impl Operation for DescribeLogGroups {
    const NAME: &'static str = "DescribeLogGroups";
    type Output = DescribeLogGroupsOutput;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn failure(status: u16, error_type: Option<&str>, body: &str) -> HttpFailure {
        HttpFailure {
            status: Some(status),
            detail: body.into(),
            attempts: 1,
            retry_after_too_long: None,
            error_type: error_type.map(str::to_string),
        }
    }

    /// The request body of the API reference's GetLogEvents example (group and stream), and
    /// epitaph's backwards read with a token: unset fields are left out.
    #[test]
    fn requests_carry_only_what_is_set() {
        let plain = GetLogEvents {
            log_group_name: "my-log-group".into(),
            log_stream_name: "my-log-stream".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"logGroupName": "my-log-group", "logStreamName": "my-log-stream"})
        );
        let backwards = GetLogEvents {
            log_group_name: "g".into(),
            log_stream_name: "i-0abc".into(),
            end_time: Some(1396035378988),
            start_from_head: Some(false),
            next_token: Some("b/3113262927".into()),
            limit: Some(10),
        };
        assert_eq!(
            serde_json::to_value(&backwards).unwrap(),
            json!({"logGroupName": "g", "logStreamName": "i-0abc", "endTime": 1396035378988i64,
                   "startFromHead": false, "nextToken": "b/3113262927", "limit": 10})
        );
        // The reference's FilterLogEvents example request.
        let filter = FilterLogEvents {
            log_group_name: "my-log-group".into(),
            log_stream_names: Some(vec!["my-log-stream-1".into(), "my-log-stream-2".into()]),
            next_token: Some("CMSpzqCZlbS".into()),
            start_time: Some(1396035378988),
            end_time: Some(1396035378988),
            filter_pattern: Some("ERROR".into()),
            limit: None,
        };
        assert_eq!(
            serde_json::to_value(&filter).unwrap(),
            json!({"logGroupName": "my-log-group",
                   "logStreamNames": ["my-log-stream-1", "my-log-stream-2"],
                   "nextToken": "CMSpzqCZlbS", "startTime": 1396035378988i64,
                   "endTime": 1396035378988i64, "filterPattern": "ERROR"})
        );
        let streams = DescribeLogStreams {
            log_group_name: "my-log-group".into(),
            order_by: Some(ORDER_BY_LAST_EVENT_TIME.into()),
            descending: Some(true),
            limit: Some(10),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&streams).unwrap(),
            json!({"logGroupName": "my-log-group", "orderBy": "LastEventTime",
                   "descending": true, "limit": 10})
        );
        let groups = DescribeLogGroups {
            log_group_name_prefix: Some("/epitaph".into()),
            next_token: None,
        };
        let v: Value = serde_json::to_value(&groups).unwrap();
        assert_eq!(v, json!({"logGroupNamePrefix": "/epitaph"}));
    }

    /// The API reference's example answers (GetLogEvents, FilterLogEvents,
    /// DescribeLogStreams, DescribeLogGroups), with fields epitaph does not read left in.
    #[test]
    fn documented_answers_are_read() {
        let get: GetLogEventsOutput = parse_answer(
            br#"{
  "events": [
    {"ingestionTime": 1396035394997, "timestamp": 1396035378988, "message": "Example Event 1"},
    {"ingestionTime": 1396035394997, "timestamp": 1396035378988, "message": "Example Event 2"},
    {"ingestionTime": 1396035394997, "timestamp": 1396035378989, "message": "Example Event 3"}
  ],
  "nextBackwardToken": "b/31132629274945519779805322857203735586714454643391594505",
  "nextForwardToken": "f/31132629323784151764587387538205132201699397759403884544"
}"#,
        )
        .unwrap();
        assert_eq!(get.events.len(), 3);
        assert_eq!(get.events[2].timestamp, Some(1396035378989));
        assert_eq!(get.events[0].message.as_deref(), Some("Example Event 1"));
        assert_eq!(
            get.next_backward_token.as_deref(),
            Some("b/31132629274945519779805322857203735586714454643391594505")
        );
        assert!(get.next_forward_token.unwrap().starts_with("f/"));

        let filter: FilterLogEventsOutput = parse_answer(
            br#"{
  "events": [
    {"ingestionTime": 1396035394997, "timestamp": 1396035378988, "message": "ERROR Event 1",
     "logStreamName": "my-log-stream-1", "eventId": "31132629274945519779805322857203735586714454643391594505"},
    {"ingestionTime": 1396035394997, "timestamp": 1396035378988, "message": "ERROR Event 2",
     "logStreamName": "my-log-stream-2", "eventId": "31132629274945519779805322857203735586814454643391594505"}
  ],
  "searchedLogStreams": [
    {"searchedCompletely": false, "logStreamName": "my-log-stream-1"},
    {"searchedCompletely": true, "logStreamName": "my-log-stream-2"}
  ],
  "nextToken": "ZNUEPl7FcQuXbIH4Swk9D9eFu2XBg-ijZIZlvzz4ea9zZRjw-MMtQtvcoMdmq4T29K7Q6Y1e_KvyfpcT_f_tUw"
}"#,
        )
        .unwrap();
        assert_eq!(filter.events.len(), 2);
        assert_eq!(
            filter.events[1].log_stream_name.as_deref(),
            Some("my-log-stream-2")
        );
        assert!(filter.next_token.unwrap().starts_with("ZNUEPl7F"));

        let streams: DescribeLogStreamsOutput = parse_answer(
            br#"{
  "logStreams": [
    {"storageBytes": 1048576,
     "arn": "arn:aws:logs:us-east-1:123456789012:log-group:my-log-group-1:log-stream:my-log-stream-1",
     "creationTime": 1393545600000, "firstEventTimestamp": 1393545600000,
     "lastEventTimestamp": 1393567800000, "lastIngestionTime": 1393589200000,
     "logStreamName": "my-log-stream-1",
     "uploadSequenceToken": "88602967394531410094953670125156212707622379445839968487"},
    {"storageBytes": 5242880,
     "arn": "arn:aws:logs:us-east-1:123456789012:log-group:my-log-group-2:log-stream:my-log-stream-2",
     "creationTime": 1396224000000, "logStreamName": "my-log-stream-2"}
  ]
}"#,
        )
        .unwrap();
        let names: Vec<_> = streams
            .log_streams
            .iter()
            .filter_map(|s| s.log_stream_name.as_deref())
            .collect();
        assert_eq!(names, ["my-log-stream-1", "my-log-stream-2"]);
        assert_eq!(streams.next_token, None);

        let groups: DescribeLogGroupsOutput = parse_answer(
            br#"{
  "logGroups": [
    {"storageBytes": 1048576, "arn": "arn:aws:logs:us-east-1:123456789012:log-group:my-log-group-1:*",
     "creationTime": 1393545600000, "logGroupName": "my-log-group-1", "metricFilterCount": 0,
     "retentionInDays": 14}
  ],
  "nextToken": "eyJ2IjoyfQ"
}"#,
        )
        .unwrap();
        assert_eq!(
            groups.log_groups[0].log_group_name.as_deref(),
            Some("my-log-group-1")
        );
        assert_eq!(groups.next_token.as_deref(), Some("eyJ2IjoyfQ"));
        // No events at all (left out, or null) is an empty page, not an unreadable one.
        let empty: GetLogEventsOutput = parse_answer(br#"{"events": null}"#).unwrap();
        assert!(empty.events.is_empty());
        assert!(parse_answer::<GetLogEventsOutput>(b"<html>").is_err());
    }

    /// A local server answering `answers` in turn (one per connection), recording each
    /// request's head and body.
    async fn server(
        answers: Vec<String>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for answer in answers {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_string());
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen)
    }

    /// An HTTP answer with its length.
    fn answer(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn logs_on(url: &str) -> Logs {
        let creds =
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let conf = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(creds),
            )
            .endpoint_url(url)
            .build();
        Logs::new(&conf, &AwsConfig::default()).unwrap()
    }

    /// `ThrottlingException` comes as HTTP 400 and is retried (as the SDK did); every attempt
    /// is a signed JSON 1.1 POST naming its operation in `X-Amz-Target`.
    #[tokio::test]
    async fn throttling_answered_400_is_retried_and_requests_are_signed() {
        let (url, seen) = server(vec![
            answer(
                "400 Bad Request",
                "x-amzn-ErrorType: ThrottlingException:http://internal.amazon.com/\r\n",
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            ),
            answer("200 OK", "", r#"{"logGroups":[{"logGroupName":"g"}]}"#),
        ])
        .await;
        let logs = logs_on(&url);
        let out = logs
            .call(&DescribeLogGroups {
                log_group_name_prefix: Some("g".into()),
                next_token: None,
            })
            .await
            .unwrap();
        assert_eq!(out.log_groups[0].log_group_name.as_deref(), Some("g"));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for req in &seen {
            let lower = req.to_ascii_lowercase();
            assert!(lower.starts_with("post / http/1.1"), "{req}");
            assert!(
                lower.contains("x-amz-target: logs_20140328.describeloggroups"),
                "{req}"
            );
            assert!(
                lower.contains("content-type: application/x-amz-json-1.1"),
                "{req}"
            );
            assert!(
                lower.contains("authorization: aws4-hmac-sha256 credential=akidexample/"),
                "{req}"
            );
            assert!(lower.contains("/us-east-1/logs/aws4_request"), "{req}");
            assert!(req.ends_with(r#"{"logGroupNamePrefix":"g"}"#), "{req}");
        }
    }

    /// A not-found answer is not retried, and fails with its code and message, named by
    /// operation.
    #[tokio::test]
    async fn errors_name_operation_code_and_message() {
        let (url, seen) = server(vec![
            answer(
                "400 Bad Request",
                "",
                r#"{"__type":"ResourceNotFoundException","message":"The specified log group does not exist."}"#,
            ),
        ])
        .await;
        let err = logs_on(&url)
            .call(&GetLogEvents {
                log_group_name: "g".into(),
                log_stream_name: "s".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.action, "logs:GetLogEvents");
        assert_eq!(err.code.as_deref(), Some("ResourceNotFoundException"));
        assert!(err.answered);
        assert_eq!(
            err.message,
            "GetLogEvents: HTTP 400: ResourceNotFoundException: The specified log group does not exist."
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    /// Error answers as the AWS JSON protocol documents them: the code in `__type` (bare, or
    /// with a namespace) or in the `x-amzn-ErrorType` header (with a suffix), which wins.
    #[test]
    fn error_codes_are_read_from_body_or_header() {
        let plain = failure(
            400,
            None,
            r#"{"__type":"ResourceNotFoundException","message":"The specified log group does not exist."}"#,
        );
        assert_eq!(
            parse_error(&plain),
            Some((
                "ResourceNotFoundException".into(),
                "The specified log group does not exist.".into()
            ))
        );
        let namespaced = failure(
            400,
            None,
            r#"{"__type":"com.amazonaws.logs#ThrottlingException","Message":"Rate exceeded"}"#,
        );
        assert_eq!(
            parse_error(&namespaced),
            Some(("ThrottlingException".into(), "Rate exceeded".into()))
        );
        let header = failure(
            400,
            Some(
                "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/",
            ),
            r#"{"Message":"User: arn:aws:iam::123456789012:user/x is not authorized to perform: logs:GetLogEvents"}"#,
        );
        let (code, message) = parse_error(&header).unwrap();
        assert_eq!(code, "AccessDeniedException");
        assert!(message.contains("logs:GetLogEvents"));
        assert_eq!(
            parse_error(&failure(502, None, "<html>Bad Gateway</html>")),
            None
        );
        assert_eq!(
            sanitize_code("aws.protocoltests.restjson#FooError:http://x/"),
            "FooError"
        );
    }
}
