//! What the backends' probes saw, for `epitaph doctor`: the raw answers of a few cheap calls
//! against the configured account, as data. Backends fill these in and never judge them;
//! `analysis::doctor` turns them into a checklist with fixes.
//!
//! These types are built without the `aws` feature too, so the judgement compiles (and is
//! tested) in every build.

use chrono::{DateTime, Utc};

use crate::model::Termination;

/// A call that failed, as the service (or the SDK, when the service never answered) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The IAM action: "autoscaling:DescribeAutoScalingGroups".
    pub action: String,
    /// The service's error code ("AccessDenied", "AccessDeniedException", …) when it answered
    /// with one.
    pub code: Option<String>,
    /// Whether the service answered at all (false: no credentials, no connection, timeout).
    pub answered: bool,
    /// One line, never credentials.
    pub message: String,
}

/// The answer of one probed call.
pub type Call<T> = std::result::Result<T, CallError>;

/// One call a probe made (by IAM action), and how it failed if it did. A "not found" answer
/// the probe expects (a placeholder's stream) is a success: the action was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub action: String,
    pub error: Option<CallError>,
}

impl CallRecord {
    pub fn of<T>(action: &str, r: &Call<T>) -> Self {
        CallRecord {
            action: action.to_string(),
            error: r.as_ref().err().cloned(),
        }
    }
}

/// A bounded listing: what the first pages held, and whether more remained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub truncated: bool,
}

/// Where one AWS target's calls went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetInfo {
    /// As in `aws.targets` ("us-east-1", "ROLE_ARN@eu-west-1").
    pub name: String,
    pub region: String,
    /// The endpoint override in effect (`aws.endpoint_url` or `AWS_ENDPOINT_URL`), if any.
    pub endpoint: Option<String>,
}

/// An Auto Scaling group as `DescribeAutoScalingGroups` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSeen {
    pub name: String,
    pub tags: Vec<(String, String)>,
    /// Instance ids in service now.
    pub instances: Vec<String>,
}

/// The Auto Scaling probe of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivitiesProbe {
    /// `DescribeAutoScalingGroups` naming the configured `groups` (None when none are
    /// configured): the groups that exist among them.
    pub named: Option<Call<Vec<GroupSeen>>>,
    /// `DescribeAutoScalingGroups` without names: every group (first pages).
    pub listing: Call<Listing<GroupSeen>>,
    /// The groups a scan would read (named ones that exist, else all, filtered by
    /// `group_tag`).
    pub selected: Vec<String>,
    /// `DescribeScalingActivities`, one page per selected group (up to a few), or one call
    /// without a group when none is selected: the terminations found, newest first.
    pub activities: Call<Vec<Termination>>,
    /// Every call made, in order.
    pub calls: Vec<CallRecord>,
}

/// An instance whose evidence a probe looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub instance_id: String,
    pub asg: Option<String>,
    /// The AWS target it lived in, when known.
    pub origin: Option<String>,
    /// When its termination began; None for an instance still running.
    pub terminated_at: Option<DateTime<Utc>>,
    /// Its evidence counts up to here (termination + drain + grace, or now).
    pub until: DateTime<Utc>,
}

/// What a last-words lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    /// This many events (at most the probe's page).
    Events(usize),
    /// `stream_lookup = "name"`: the stream does not exist.
    NoStream,
    /// The stream exists (or, searching, the group does) but holds no event before the end.
    NoEvents,
}

/// One last-words lookup, done the way a scan does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub instance_id: String,
    /// A made-up instance, looked up only to see whether the action is allowed.
    pub placeholder: bool,
    /// What was looked for: the stream name, or the filter pattern.
    pub looked_for: String,
    pub result: Call<LookupResult>,
}

/// The CloudWatch Logs probe of one configured log group in one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupProbe {
    /// The key that names it: `sources.logs.log_group`, `sources.logs.log_groups[1]`.
    pub key: String,
    pub log_group: String,
    /// `DescribeLogGroups` with the configured name as prefix: the names returned.
    pub by_prefix: Call<Vec<String>>,
    /// `DescribeLogGroups` without a prefix (first pages), when the configured group is not
    /// among `by_prefix`: for similar names.
    pub others: Option<Call<Listing<String>>>,
    /// The lookups of the sampled instances' last words (or of a placeholder).
    pub lookups: Vec<Lookup>,
    /// `DescribeLogStreams`, newest first, when a lookup found no stream.
    pub recent_streams: Option<Call<Vec<String>>>,
}

/// The CloudWatch Logs probe of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsProbe {
    /// `sources.logs.stream_lookup`.
    pub stream_lookup: crate::config::StreamLookup,
    /// `sources.logs.stream_pattern`.
    pub stream_pattern: String,
    pub groups: Vec<LogGroupProbe>,
    /// Every call made, in order.
    pub calls: Vec<CallRecord>,
}

/// A metric's dimensions: (name, value) pairs.
pub type DimensionSet = Vec<(String, String)>;

/// The CloudWatch probe of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsProbe {
    /// The instance probed (None: no instance to probe; only permissions were checked).
    pub sample: Option<Sample>,
    /// The dimensions a scan asks for, for the sample (instance dimension first).
    pub queried: DimensionSet,
    /// `GetMetricData` for the sample with `queried`, over the last hour of its life: points.
    pub data: Call<usize>,
    /// `ListMetrics` namespace + metric name + the sample's instance dimension: the dimension
    /// sets that exist for it.
    pub for_instance: Option<Call<Vec<DimensionSet>>>,
    /// `ListMetrics` namespace + metric name (when nothing answered for the instance).
    pub for_metric: Option<Call<Listing<DimensionSet>>>,
    /// `ListMetrics` namespace (when the metric name has no series): metric names.
    pub names_in_namespace: Option<Call<Listing<String>>>,
    /// `ListMetrics` without filters (when the namespace has no metric): namespaces.
    pub namespaces: Option<Call<Listing<String>>>,
    /// Every call made, in order.
    pub calls: Vec<CallRecord>,
}

/// Everything probed in one AWS target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetProbe {
    pub target: TargetInfo,
    pub activities: Option<ActivitiesProbe>,
    pub logs: Option<LogsProbe>,
    pub metrics: Option<MetricsProbe>,
}

/// The made-up instance looked up when no real one is at hand, only to see whether an action
/// is allowed (IAM is evaluated before the resource is looked for).
pub const PLACEHOLDER_INSTANCE: &str = "i-00000000000000000";

/// What the Prometheus probe found for one sampled instance, over the last part of its life.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSeen {
    pub instance_id: String,
    /// Series the memory query gave for it (a scan needs exactly one).
    pub series: usize,
    /// Usable points (all series together).
    pub points: usize,
    /// Values that cannot be memory in the configured unit (NaN, negative, above 101 % or
    /// above a petabyte).
    pub impossible: usize,
    /// The largest finite value seen, impossible ones included (for the unit check).
    pub max: Option<f64>,
    /// Labels of the first few series (to say what tells several apart).
    pub label_sets: Vec<std::collections::BTreeMap<String, String>>,
    /// `limit_query`'s last value for it (bytes; None: no limit series, or no limit query).
    pub limit: Option<f64>,
}

/// The Prometheus probe: the scan's queries for the sampled instances, then, when none of
/// them has a series, the memory query widened to see what exists.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusProbe {
    /// The API's base URL, without credentials.
    pub url: String,
    /// The sampled instances (None: nothing to look up; only the server was asked).
    pub samples: Vec<Sample>,
    /// The memory query (and limit query) for the samples: what each one has.
    pub series: Call<Vec<SeriesSeen>>,
    /// Series in the memory query's answer without `instance_label` (a batched query that
    /// aggregated it away cannot be told apart by instance).
    pub unlabelled: usize,
    /// Whether a `limit_query` is configured (its answer is in `SeriesSeen::limit`).
    pub limit_query: bool,
    /// With the instance matcher widened to any value of `instance_label`: values of that
    /// label which have the series (the first few), when no sample has one. None for a
    /// per-instance template (it cannot be widened) or when a sample had a series.
    pub other_instances: Option<Call<Listing<String>>>,
    /// With the matcher widened to every series of the query: their label names, when
    /// `other_instances` found none (is `instance_label` on the series at all?).
    pub label_names: Option<Call<Listing<String>>>,
    /// Every call made, in order.
    pub calls: Vec<CallRecord>,
}

/// What a log API's (Splunk's, Loki's) last-words lookup for one sampled instance found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiLookupResult {
    /// This many events in the instance's final window.
    Events(usize),
    /// The query ran, and matched no event.
    NoEvents,
    /// The instance could not be mapped to its logs (the template needs a private DNS name or
    /// IP the inventory does not have): why.
    Unmapped(String),
}

/// One last-words lookup of a log API, done the way a scan does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLookup {
    pub instance_id: String,
    /// The query sent (SPL, LogQL), or the template when the instance could not be mapped.
    pub looked_for: String,
    pub result: Call<ApiLookupResult>,
}

/// Something the configuration names in a log API (an index, a label, a label's value), and
/// whether it exists there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSeen {
    /// The key that names it: `sources.logs.splunk.index`, `sources.logs.loki.selector`.
    pub key: String,
    /// What it is, for messages: "index `app`", "label `instance_id`", "`job=\"app\"`".
    pub what: String,
    /// The name looked for (for the nearest existing one).
    pub name: String,
    /// Whether it exists; else (or when it could not be listed) the call's error.
    pub exists: Call<bool>,
    /// The names that exist instead (first ones), when it does not.
    pub others: Listing<String>,
}

/// The probe of a log API (`splunk`, `loki`) for `epitaph doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogApiProbe {
    /// "splunk" or "loki": the checks' id prefix.
    pub backend: String,
    /// The config table: `sources.logs.splunk`.
    pub key: String,
    /// The API's base URL, without credentials.
    pub url: String,
    /// The first call (Splunk: server/info; Loki: labels): the API answers and takes the
    /// credentials; what it said about itself.
    pub connection: Call<String>,
    /// What the configuration names, checked when the API answered.
    pub scopes: Vec<ScopeSeen>,
    /// The sampled instances' last words, looked up as a scan does.
    pub lookups: Vec<ApiLookup>,
    /// Values the instance label holds (Loki; first ones), to compare with what was looked
    /// for when nothing was found.
    pub instance_values: Option<Listing<String>>,
    /// Every call made, in order.
    pub calls: Vec<CallRecord>,
}
