//! CloudWatch over its Query API, spoken by hand instead of through the SDK crate (whose
//! later versions speak only CBOR, which moto lacks; AWS still serves the Query protocol), as
//! `ec2.rs` and `autoscaling.rs` speak theirs: a form-encoded `POST` (`Action=…&
//! Version=2010-08-01`), an XML answer, `NextToken` pagination, errors as
//! `<ErrorResponse><Error><Code>…`. Signing, retries and timeouts are the shared transport's
//! (`signed.rs`).
//!
//! Only the two calls epitaph makes — `GetMetricData` (memory series) and `ListMetrics` (the
//! `doctor`'s listings) — with only the fields it sets or reads; pagination is the caller's
//! (`metrics.rs`).

use chrono::{DateTime, SecondsFormat, Utc};

use super::query::{self, Element};
use super::signed::Endpoint;
use crate::config::AwsConfig;
use crate::error::Result;
use crate::sources::probe::CallError;

/// The CloudWatch API version the Query API is spoken in.
pub const API_VERSION: &str = "2010-08-01";
/// The SigV4 signing name (and the endpoint's first label).
pub const SERVICE: &str = "monitoring";
/// The SDK's name of the service (`AWS_ENDPOINT_URL_CLOUDWATCH`).
pub const SERVICE_ID: &str = "CloudWatch";
/// The operations, as IAM actions (also what calls are counted as).
pub const GET_METRIC_DATA: &str = "cloudwatch:GetMetricData";
pub const LIST_METRICS: &str = "cloudwatch:ListMetrics";

/// One target's CloudWatch endpoint.
pub struct CloudWatch {
    endpoint: Endpoint,
}

/// One `GetMetricData` query: a metric's statistic over a period.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetricQuery {
    pub id: String,
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<(String, String)>,
    pub period_secs: i32,
    pub stat: String,
}

/// One query's answer on one page.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetricDataResult {
    pub id: Option<String>,
    /// `Complete`, `InternalError`, `PartialData` or `Forbidden`.
    pub status_code: Option<String>,
    /// The messages' values.
    pub messages: Vec<String>,
    /// (time, value) pairs, as the answer pairs `Timestamps` and `Values`.
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// A metric as `ListMetrics` lists it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Metric {
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    /// (name, value); a missing part is empty.
    pub dimensions: Vec<(String, String)>,
}

/// One page of an answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

impl CloudWatch {
    pub fn new(conf: &aws_config::SdkConfig, aws: &AwsConfig) -> Result<CloudWatch> {
        Ok(CloudWatch {
            endpoint: Endpoint::new(SERVICE, SERVICE_ID, conf, aws)?,
        })
    }

    /// Attempts refused as throttled so far, by operation.
    pub fn throttled(&self) -> std::collections::BTreeMap<String, u64> {
        self.endpoint.throttled()
    }

    /// One page of `GetMetricData` for `queries` between `start` and `end` (exclusive).
    pub async fn get_metric_data(
        &self,
        queries: &[MetricQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        token: Option<&str>,
    ) -> std::result::Result<Page<MetricDataResult>, CallError> {
        let body = metric_data_request(queries, start, end, token);
        let root = self.post(GET_METRIC_DATA, body).await?;
        query::read_answer(GET_METRIC_DATA, parse_metric_data(&root))
    }

    /// One page of `ListMetrics` with the filters given.
    pub async fn list_metrics(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dimensions: &[(String, String)],
        token: Option<&str>,
    ) -> std::result::Result<Page<Metric>, CallError> {
        let body = list_metrics_request(namespace, metric_name, dimensions, token);
        let root = self.post(LIST_METRICS, body).await?;
        query::read_answer(LIST_METRICS, parse_list_metrics(&root))
    }

    async fn post(&self, action: &str, body: String) -> std::result::Result<Element, CallError> {
        query::call(&self.endpoint, action, body).await
    }
}

/// A time as the Query protocol sends it (ISO 8601 in UTC, fractions only when there are).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The form body of one `GetMetricData` page.
pub fn metric_data_request(
    queries: &[MetricQuery],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    token: Option<&str>,
) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "GetMetricData")
        .append_pair("Version", API_VERSION);
    for (i, q) in queries.iter().enumerate() {
        let p = format!("MetricDataQueries.member.{}", i + 1);
        form.append_pair(&format!("{p}.Id"), &q.id)
            .append_pair(&format!("{p}.MetricStat.Metric.Namespace"), &q.namespace)
            .append_pair(&format!("{p}.MetricStat.Metric.MetricName"), &q.metric_name);
        for (j, (name, value)) in q.dimensions.iter().enumerate() {
            let d = format!("{p}.MetricStat.Metric.Dimensions.member.{}", j + 1);
            form.append_pair(&format!("{d}.Name"), name)
                .append_pair(&format!("{d}.Value"), value);
        }
        form.append_pair(
            &format!("{p}.MetricStat.Period"),
            &q.period_secs.to_string(),
        )
        .append_pair(&format!("{p}.MetricStat.Stat"), &q.stat)
        .append_pair(&format!("{p}.ReturnData"), "true");
    }
    form.append_pair("StartTime", &format_time(start))
        .append_pair("EndTime", &format_time(end));
    if let Some(t) = token {
        form.append_pair("NextToken", t);
    }
    form.finish()
}

/// The form body of one `ListMetrics` page.
pub fn list_metrics_request(
    namespace: Option<&str>,
    metric_name: Option<&str>,
    dimensions: &[(String, String)],
    token: Option<&str>,
) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "ListMetrics")
        .append_pair("Version", API_VERSION);
    if let Some(n) = namespace {
        form.append_pair("Namespace", n);
    }
    if let Some(m) = metric_name {
        form.append_pair("MetricName", m);
    }
    for (j, (name, value)) in dimensions.iter().enumerate() {
        form.append_pair(&format!("Dimensions.member.{}.Name", j + 1), name)
            .append_pair(&format!("Dimensions.member.{}.Value", j + 1), value);
    }
    if let Some(t) = token {
        form.append_pair("NextToken", t);
    }
    form.finish()
}

/// Reads a `GetMetricDataResponse`. A time or value that cannot be read makes the answer
/// unreadable (as it did for the SDK).
pub fn parse_metric_data(root: &Element) -> std::result::Result<Page<MetricDataResult>, String> {
    let r = query::result(root, "GetMetricData")?;
    let mut items = Vec::new();
    for m in r.members("MetricDataResults") {
        let times = m
            .members("Timestamps")
            .map(|t| {
                DateTime::parse_from_rfc3339(&t.text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| format!("timestamp `{}`: {e}", t.text))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let values = m
            .members("Values")
            .map(|v| {
                v.text
                    .parse::<f64>()
                    .map_err(|e| format!("value `{}`: {e}", v.text))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        items.push(MetricDataResult {
            id: m.text_of("Id"),
            status_code: m.text_of("StatusCode"),
            messages: m
                .members("Messages")
                .filter_map(|msg| msg.text_of("Value"))
                .collect(),
            points: times.into_iter().zip(values).collect(),
        });
    }
    Ok(Page {
        items,
        next_token: r.text_of("NextToken"),
    })
}

/// Reads a `ListMetricsResponse`.
pub fn parse_list_metrics(root: &Element) -> std::result::Result<Page<Metric>, String> {
    let r = query::result(root, "ListMetrics")?;
    let items = r
        .members("Metrics")
        .map(|m| Metric {
            namespace: m.text_of("Namespace"),
            metric_name: m.text_of("MetricName"),
            dimensions: m
                .members("Dimensions")
                .map(|d| {
                    (
                        d.text_of("Name").unwrap_or_default(),
                        d.text_of("Value").unwrap_or_default(),
                    )
                })
                .collect(),
        })
        .collect();
    Ok(Page {
        items,
        next_token: r.text_of("NextToken"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `GetMetricData` answer in the documented shape (`MetricDataResults` members with
    /// `Id`, `Label`, `StatusCode`, `Timestamps`, `Values`, `Messages`), newest first as the
    /// API returns by default, with a token.
    const METRIC_DATA: &str = r#"<GetMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
  <GetMetricDataResult>
    <MetricDataResults>
      <member>
        <Id>q0</Id>
        <Label>mem_used_percent</Label>
        <StatusCode>Complete</StatusCode>
        <Timestamps>
          <member>2023-04-20T12:05:00Z</member>
          <member>2023-04-20T12:00:00Z</member>
        </Timestamps>
        <Values>
          <member>41.5</member>
          <member>40.0</member>
        </Values>
      </member>
      <member>
        <Id>q1</Id>
        <Label>mem_used_percent</Label>
        <StatusCode>InternalError</StatusCode>
        <Timestamps/>
        <Values/>
        <Messages>
          <member>
            <Code>InternalError</Code>
            <Value>An internal error occurred.</Value>
          </member>
        </Messages>
      </member>
    </MetricDataResults>
    <NextToken>eyJwYWdlIjoyfQ==</NextToken>
    <Messages/>
  </GetMetricDataResult>
  <ResponseMetadata>
    <RequestId>a9a0f1f0-0000-4000-8000-000000000000</RequestId>
  </ResponseMetadata>
</GetMetricDataResponse>"#;

    /// A `ListMetrics` answer in the documented shape.
    const LIST: &str = r#"<ListMetricsResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
  <ListMetricsResult>
    <Metrics>
      <member>
        <Dimensions>
          <member>
            <Name>InstanceId</Name>
            <Value>i-1234567890abcdef0</Value>
          </member>
          <member>
            <Name>AutoScalingGroupName</Name>
            <Value>web</Value>
          </member>
        </Dimensions>
        <MetricName>mem_used_percent</MetricName>
        <Namespace>CWAgent</Namespace>
      </member>
      <member>
        <MetricName>CPUUtilization</MetricName>
        <Namespace>AWS/EC2</Namespace>
      </member>
    </Metrics>
    <NextToken>next-page</NextToken>
  </ListMetricsResult>
  <ResponseMetadata>
    <RequestId>d681665f-0000-4000-8000-000000000000</RequestId>
  </ResponseMetadata>
</ListMetricsResponse>"#;

    #[test]
    fn metric_data_pairs_times_and_values_and_keeps_statuses() {
        let page = parse_metric_data(&query::parse(METRIC_DATA).unwrap()).unwrap();
        assert_eq!(page.items.len(), 2);
        let q0 = &page.items[0];
        assert_eq!(q0.id.as_deref(), Some("q0"));
        assert_eq!(q0.status_code.as_deref(), Some("Complete"));
        assert_eq!(
            q0.points,
            vec![
                ("2023-04-20T12:05:00Z".parse().unwrap(), 41.5),
                ("2023-04-20T12:00:00Z".parse().unwrap(), 40.0)
            ]
        );
        let q1 = &page.items[1];
        assert_eq!(q1.status_code.as_deref(), Some("InternalError"));
        assert_eq!(q1.messages, ["An internal error occurred."]);
        assert!(q1.points.is_empty());
        assert_eq!(page.next_token.as_deref(), Some("eyJwYWdlIjoyfQ=="));
        let broken = METRIC_DATA.replace("<member>41.5</member>", "<member>lots</member>");
        assert!(parse_metric_data(&query::parse(&broken).unwrap()).is_err());
    }

    #[test]
    fn listed_metrics_keep_their_dimensions() {
        let page = parse_list_metrics(&query::parse(LIST).unwrap()).unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.items[0].namespace.as_deref(), Some("CWAgent"));
        assert_eq!(
            page.items[0].dimensions,
            vec![
                ("InstanceId".to_string(), "i-1234567890abcdef0".to_string()),
                ("AutoScalingGroupName".to_string(), "web".to_string())
            ]
        );
        assert!(page.items[1].dimensions.is_empty());
        assert_eq!(page.next_token.as_deref(), Some("next-page"));
        let other = query::parse("<ListMetricsResponse/>").unwrap();
        assert!(parse_list_metrics(&other).is_err());
    }

    /// The documented parameter names: members numbered from 1, nested as
    /// `MetricDataQueries.member.N.MetricStat.Metric.Dimensions.member.M.Name`, times in
    /// ISO 8601.
    #[test]
    fn requests_use_the_documented_parameters() {
        let q = MetricQuery {
            id: "q0".into(),
            namespace: "CWAgent".into(),
            metric_name: "mem_used_percent".into(),
            dimensions: vec![
                ("InstanceId".into(), "i-0abc".into()),
                ("AutoScalingGroupName".into(), "web app".into()),
            ],
            period_secs: 300,
            stat: "Maximum".into(),
        };
        let start: DateTime<Utc> = "2023-04-20T12:00:00Z".parse().unwrap();
        let end: DateTime<Utc> = "2023-04-20T13:00:01.500Z".parse().unwrap();
        assert_eq!(
            metric_data_request(&[q], start, end, Some("t/+=")),
            "Action=GetMetricData&Version=2010-08-01\
             &MetricDataQueries.member.1.Id=q0\
             &MetricDataQueries.member.1.MetricStat.Metric.Namespace=CWAgent\
             &MetricDataQueries.member.1.MetricStat.Metric.MetricName=mem_used_percent\
             &MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name=InstanceId\
             &MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Value=i-0abc\
             &MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.2.Name=AutoScalingGroupName\
             &MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.2.Value=web+app\
             &MetricDataQueries.member.1.MetricStat.Period=300\
             &MetricDataQueries.member.1.MetricStat.Stat=Maximum\
             &MetricDataQueries.member.1.ReturnData=true\
             &StartTime=2023-04-20T12%3A00%3A00Z&EndTime=2023-04-20T13%3A00%3A01.500Z\
             &NextToken=t%2F%2B%3D"
        );
        assert_eq!(
            list_metrics_request(
                Some("CWAgent"),
                None,
                &[("InstanceId".into(), "i-0abc".into())],
                None
            ),
            "Action=ListMetrics&Version=2010-08-01&Namespace=CWAgent&Dimensions.member.1.Name=InstanceId&Dimensions.member.1.Value=i-0abc"
        );
        assert_eq!(
            list_metrics_request(None, None, &[], None),
            "Action=ListMetrics&Version=2010-08-01"
        );
    }
}
