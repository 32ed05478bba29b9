//! EC2 `DescribeInstances` for the inventory: what DescribeAutoScalingGroups does not say about
//! an instance — its private DNS name and IP (what Splunk's `host` or a Loki label knows it
//! by), launch time (where its memory series starts), EC2 state and tags. Recorded in the
//! store each scan, so an instance that dies later can still be mapped to its host (EC2
//! forgets terminated instances within about an hour).
//!
//! Spoken over EC2's Query API (form-encoded POST, XML answer, SigV4 with the target's own
//! credentials) rather than through the EC2 SDK crate: one call, a few fields, and the EC2
//! crate is the largest of the SDK (minutes of every cold build). Instances are selected with
//! an `instance-id` filter, not `InstanceId.N`: an id that vanished between the two calls is
//! then simply absent instead of failing the whole call (`InvalidInstanceID.NotFound`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::query::unescape;
use crate::error::{Error, Result};
use crate::sources::http::HttpClient;
use crate::sources::probe::CallError;
use crate::sources::prometheus::Sigv4;

/// The EC2 API version the Query API is spoken in.
pub const API_VERSION: &str = "2016-11-15";
/// Instance ids per call (EC2 allows up to 200 values per filter).
pub const IDS_PER_CALL: usize = 200;
/// Results per page (the API's maximum with filters).
pub const PAGE_SIZE: usize = 1000;
/// Pages read for one batch of ids at most (a batch fits one page; this only stops a server
/// that keeps answering with a token).
pub const MAX_PAGES: usize = 10;
/// What errors name: the IAM action, and the key that turns the lookup off.
pub const ACTION: &str = "ec2:DescribeInstances";
pub const KEY: &str = "sources.activities.describe_instances";

/// What EC2 says about one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ec2Instance {
    pub instance_id: String,
    pub state: Option<String>,
    pub private_dns: Option<String>,
    pub private_ip: Option<String>,
    pub launch_time: Option<DateTime<Utc>>,
    pub tags: BTreeMap<String, String>,
}

/// Largest answer read (a page of 1,000 instances is a few MB of XML).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// The operation as counted in the scan summary.
pub const OP: &str = "ec2:DescribeInstances";

/// One target's EC2 endpoint.
pub struct Ec2 {
    endpoint: String,
    signer: Sigv4,
    http: HttpClient,
}

impl Ec2 {
    /// `endpoint` is the override in effect (`aws.endpoint_url`), else EC2's regional one.
    pub fn new(signer: Sigv4, region: &str, endpoint: Option<&str>, http: HttpClient) -> Ec2 {
        let endpoint = match endpoint {
            Some(e) => format!("{}/", e.trim_end_matches('/')),
            None => format!("https://ec2.{region}.amazonaws.com/"),
        };
        Ec2 {
            endpoint,
            signer,
            http,
        }
    }

    /// Requests sent, by operation.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.http.calls()
    }

    /// The instances among `ids` that EC2 knows, in batches of [`IDS_PER_CALL`].
    pub async fn describe(&self, ids: &[String]) -> Result<Vec<Ec2Instance>> {
        self.describe_calls(ids).await.map_err(|e| {
            let hint = if crate::analysis::doctor::is_access_denied(e.code.as_deref()) {
                format!(" — grant {ACTION}, or set {KEY} = false (private DNS names, IPs and launch times are then unknown)")
            } else {
                String::new()
            };
            Error::source(ACTION, format!("{}{hint}", e.message))
        })
    }

    /// `describe`, failing with what `epitaph doctor` reads (the service's error code, and
    /// whether it answered at all).
    pub async fn describe_calls(
        &self,
        ids: &[String],
    ) -> std::result::Result<Vec<Ec2Instance>, CallError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            let mut token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let body = request_body(chunk, token.as_deref());
                let text = self.post(body).await?;
                let page = parse_response(&text).map_err(|e| CallError {
                    action: ACTION.to_string(),
                    code: None,
                    answered: true,
                    message: format!("unreadable answer: {e}"),
                })?;
                out.extend(page.instances);
                token = page.next_token;
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn post(&self, body: String) -> std::result::Result<String, CallError> {
        let fail = |code: Option<String>, answered: bool, message: String| CallError {
            action: ACTION.to_string(),
            code,
            answered,
            message,
        };
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let signed = self
            .signer
            .headers(
                "POST",
                &self.endpoint,
                &[("content-type", content_type)],
                body.as_bytes(),
            )
            .await
            .map_err(|e| fail(None, false, e.to_string()))?;
        let sent = self
            .http
            .send(OP, |c| {
                let mut req = c
                    .post(&self.endpoint)
                    .header("content-type", content_type)
                    .body(body.clone());
                for (k, v) in &signed {
                    req = req.header(k.as_str(), v.as_str());
                }
                req
            })
            .await;
        match sent {
            Ok(reply) => {
                let bytes = reply
                    .bytes(MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| fail(None, true, format!("reading the answer: {e}")))?;
                String::from_utf8(bytes)
                    .map_err(|e| fail(None, true, format!("the answer is not UTF-8: {e}")))
            }
            Err(failure) => {
                let parsed = parse_error(&failure.detail);
                let said = parsed
                    .as_ref()
                    .map(|(code, message)| format!("{code}: {message}"))
                    .unwrap_or_else(|| failure.detail.clone());
                Err(fail(
                    parsed.map(|(code, _)| code),
                    failure.status.is_some(),
                    failure.describe(&said),
                ))
            }
        }
    }
}

/// The form body of one `DescribeInstances` page.
pub fn request_body(ids: &[String], token: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "DescribeInstances")
        .append_pair("Version", API_VERSION)
        .append_pair("MaxResults", &PAGE_SIZE.to_string())
        .append_pair("Filter.1.Name", "instance-id");
    for (i, id) in ids.iter().enumerate() {
        form.append_pair(&format!("Filter.1.Value.{}", i + 1), id);
    }
    if let Some(t) = token {
        form.append_pair("NextToken", t);
    }
    form.finish()
}

/// One page of the answer.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub instances: Vec<Ec2Instance>,
    pub next_token: Option<String>,
}

/// Reads a `DescribeInstancesResponse`. Only an instance's own fields count: the same names
/// inside its network interfaces (`privateDnsName`, `privateIpAddress`) are not its own.
pub fn parse_response(xml: &str) -> std::result::Result<Page, String> {
    let mut page = Page::default();
    // The element path from the root; an instance is an `item` directly in `instancesSet`.
    let mut path: Vec<String> = Vec::new();
    let mut instance_depth: Option<usize> = None;
    let mut current = Ec2Instance::default();
    let mut tag: (Option<String>, Option<String>) = (None, None);
    let mut text = String::new();
    for token in xmlparser::Tokenizer::from(xml) {
        let token = token.map_err(|e| e.to_string())?;
        match token {
            xmlparser::Token::ElementStart { local, .. } => {
                let name = local.as_str().to_string();
                if name == "item"
                    && path.last().map(String::as_str) == Some("instancesSet")
                    && instance_depth.is_none()
                {
                    instance_depth = Some(path.len() + 1);
                    current = Ec2Instance::default();
                }
                path.push(name);
                text.clear();
            }
            xmlparser::Token::Text { text: t } => text.push_str(t.as_str()),
            xmlparser::Token::Cdata { text: t, .. } => text.push_str(t.as_str()),
            xmlparser::Token::ElementEnd { end, .. } => {
                let closing = match end {
                    xmlparser::ElementEnd::Open => continue,
                    xmlparser::ElementEnd::Close(_, local) => local.as_str().to_string(),
                    xmlparser::ElementEnd::Empty => path.last().cloned().unwrap_or_default(),
                };
                let value = unescape(text.trim());
                text.clear();
                let depth = path.len();
                match instance_depth {
                    Some(d) if depth == d => {
                        page.instances.push(std::mem::take(&mut current));
                        instance_depth = None;
                    }
                    Some(d) if depth == d + 1 => {
                        let v = (!value.is_empty()).then(|| value.clone());
                        match closing.as_str() {
                            "instanceId" => current.instance_id = value,
                            "privateDnsName" => current.private_dns = v,
                            "privateIpAddress" => current.private_ip = v,
                            "launchTime" => {
                                current.launch_time = DateTime::parse_from_rfc3339(&value)
                                    .ok()
                                    .map(|t| t.with_timezone(&Utc));
                            }
                            _ => {}
                        }
                    }
                    Some(d)
                        if depth == d + 2 && path[d] == "instanceState" && closing == "name" =>
                    {
                        current.state = Some(value);
                    }
                    Some(d) if depth == d + 3 && path[d] == "tagSet" => match closing.as_str() {
                        "key" => tag.0 = Some(value),
                        "value" => tag.1 = Some(value),
                        _ => {}
                    },
                    Some(d) if depth == d + 2 && path[d] == "tagSet" => {
                        if let (Some(k), v) = std::mem::take(&mut tag) {
                            current.tags.insert(k, v.unwrap_or_default());
                        }
                    }
                    None if depth == 2 && closing == "nextToken" && !value.is_empty() => {
                        page.next_token = Some(value);
                    }
                    _ => {}
                }
                path.pop();
            }
            _ => {}
        }
    }
    if path.is_empty() {
        Ok(page)
    } else {
        Err(format!("truncated XML (open elements: {})", path.join("/")))
    }
}

/// `(Code, Message)` of an EC2 error answer (`<Response><Errors><Error>…`).
pub fn parse_error(xml: &str) -> Option<(String, String)> {
    let between = |open: &str, close: &str| -> Option<String> {
        let start = xml.find(open)? + open.len();
        let end = start + xml[start..].find(close)?;
        Some(unescape(xml[start..end].trim()))
    };
    Some((
        between("<Code>", "</Code>")?,
        between("<Message>", "</Message>").unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of EC2's documented `DescribeInstances` example response, cut to what matters:
    /// an instance whose network interface repeats `privateDnsName` and `privateIpAddress`
    /// (with other values here, to catch reading the wrong ones), a tag with an entity, and a
    /// second, terminated instance without an address.
    const RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
    <reservationSet>
        <item>
            <reservationId>r-1234567890abcdef0</reservationId>
            <ownerId>123456789012</ownerId>
            <groupSet/>
            <instancesSet>
                <item>
                    <instanceId>i-1234567890abcdef0</instanceId>
                    <imageId>ami-bff32ccc</imageId>
                    <instanceState>
                        <code>16</code>
                        <name>running</name>
                    </instanceState>
                    <privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName>
                    <dnsName>ec2-54-194-252-215.eu-west-1.compute.amazonaws.com</dnsName>
                    <launchTime>2018-05-08T16:46:19.000Z</launchTime>
                    <privateIpAddress>192.168.1.88</privateIpAddress>
                    <tagSet>
                        <item>
                            <key>aws:autoscaling:groupName</key>
                            <value>checkout-api</value>
                        </item>
                        <item>
                            <key>Team</key>
                            <value>payments &amp; checkout</value>
                        </item>
                    </tagSet>
                    <networkInterfaceSet>
                        <item>
                            <networkInterfaceId>eni-0598c7d356eba48d7</networkInterfaceId>
                            <privateDnsName>ip-10-9-9-9.eu-west-1.compute.internal</privateDnsName>
                            <privateIpAddress>10.9.9.9</privateIpAddress>
                        </item>
                    </networkInterfaceSet>
                </item>
            </instancesSet>
        </item>
        <item>
            <reservationId>r-0abc</reservationId>
            <instancesSet>
                <item>
                    <instanceId>i-0fedcba9876543210</instanceId>
                    <instanceState><code>48</code><name>terminated</name></instanceState>
                    <privateDnsName/>
                    <launchTime>2018-05-08T10:00:00.000Z</launchTime>
                </item>
            </instancesSet>
        </item>
    </reservationSet>
    <nextToken>eyJ2IjoiMiJ9</nextToken>
</DescribeInstancesResponse>"#;

    #[test]
    fn an_instance_is_read_from_its_own_fields_only() {
        let page = parse_response(RESPONSE).unwrap();
        assert_eq!(page.instances.len(), 2, "{page:?}");
        let a = &page.instances[0];
        assert_eq!(a.instance_id, "i-1234567890abcdef0");
        assert_eq!(a.state.as_deref(), Some("running"));
        assert_eq!(
            a.private_dns.as_deref(),
            Some("ip-192-168-1-88.eu-west-1.compute.internal")
        );
        assert_eq!(a.private_ip.as_deref(), Some("192.168.1.88"));
        assert_eq!(
            a.launch_time.unwrap().to_rfc3339(),
            "2018-05-08T16:46:19+00:00"
        );
        assert_eq!(a.tags["aws:autoscaling:groupName"], "checkout-api");
        assert_eq!(a.tags["Team"], "payments & checkout");
        let b = &page.instances[1];
        assert_eq!(b.state.as_deref(), Some("terminated"));
        assert_eq!(b.private_dns, None);
        assert!(b.tags.is_empty());
        assert_eq!(page.next_token.as_deref(), Some("eyJ2IjoiMiJ9"));
    }

    #[test]
    fn errors_and_broken_answers_are_named() {
        let denied = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>ab12</RequestID></Response>"#;
        assert_eq!(
            parse_error(denied),
            Some((
                "UnauthorizedOperation".to_string(),
                "You are not authorized to perform this operation.".to_string()
            ))
        );
        assert!(parse_response("<DescribeInstancesResponse><reservationSet>").is_err());
        assert!(parse_response("not xml <<<").is_err());
    }

    #[test]
    fn the_request_filters_by_id_and_pages() {
        let body = request_body(&["i-0a".into(), "i-0b".into()], Some("t/+="));
        assert_eq!(
            body,
            "Action=DescribeInstances&Version=2016-11-15&MaxResults=1000&Filter.1.Name=instance-id&Filter.1.Value.1=i-0a&Filter.1.Value.2=i-0b&NextToken=t%2F%2B%3D"
        );
    }
}
