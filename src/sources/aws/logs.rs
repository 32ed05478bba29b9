//! CloudWatch Logs last words, with the cheapest call that answers, in every configured log
//! group (`log_group` then `log_groups`; an instance's events from all of them are merged):
//! - `stream_lookup = "name"` (default; the CloudWatch agent names one stream per instance id):
//!   `GetLogEvents` read backwards from the termination time — one call per instance unless
//!   the final minute holds more than a page; a missing stream means no logs (no evidence);
//! - `stream_lookup = "search"`: the streams whose *name* starts with `stream_pattern`'s text
//!   up to and including the instance id (`{instance_id}/app.log`, `{instance_id}/syslog`, …:
//!   `DescribeLogStreams` by prefix), then `FilterLogEvents` on those streams for the hour
//!   before termination;
//! - `stream_lookup = "text"`: `FilterLogEvents` for events that *mention* the instance id, in
//!   every stream of the group (shared streams whose lines carry the id).
//!
//! All paginate and keep the newest events under the byte cap. A missing log group is an
//! error naming its key (`sources.logs.log_group`, `sources.logs.log_groups[N]`), told apart
//! from a missing stream with one `DescribeLogGroups` call per target and group.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::logs_api::{DescribeLogGroups, DescribeLogStreams, FilterLogEvents, GetLogEvents};
use super::{AwsContext, CallCounter, Target};
use crate::config::{LogsConfig, StreamLookup};
use crate::error::{Error, Result};
use crate::model::{LastWords, LogEvent};
use crate::sources::probe::CallError;
use crate::sources::{select_last_words, LastWordsQuery, LogSource};

/// How far before termination `FilterLogEvents` searches when the stream is unknown.
const FILTER_LOOKBACK_MINUTES: i64 = 60;
/// At most this many pages per instance and group, whatever the byte cap says.
const MAX_PAGES: usize = 20;
/// GetLogEvents may answer an empty page while older events remain (AWS documents it; the
/// token then moves on). Reading goes on past empty pages until the token repeats — the
/// start of the stream — but at most this many empty pages in a row.
const MAX_EMPTY_PAGES_IN_A_ROW: usize = 3;
/// `FilterLogEvents` accepts at most this many stream names per call.
const MAX_STREAMS_PER_FILTER: usize = 100;
/// `DescribeLogStreams` pages read per instance when searching stream names.
const MAX_STREAM_PAGES: usize = 5;

/// How streams are found for an instance (`sources.logs.stream_lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookupMode {
    Name,
    StreamSearch,
    Text,
}

/// One log group to read, with the configuration key that named it (for error messages).
struct Group {
    key: String,
    name: String,
}

pub struct AwsLogs {
    ctx: AwsContext,
    groups: Vec<Group>,
    stream_pattern: String,
    lookup: LookupMode,
    calls: Arc<CallCounter>,
    /// (target, group) pairs where the log group was seen to exist: a missing stream there is
    /// an instance without logs; elsewhere it is checked once with DescribeLogGroups.
    group_seen: Mutex<BTreeSet<(String, String)>>,
}

impl AwsLogs {
    pub fn new(ctx: AwsContext, cfg: &LogsConfig) -> Result<Self> {
        let mut groups: Vec<Group> = cfg
            .log_group
            .iter()
            .map(|g| Group {
                key: "sources.logs.log_group".into(),
                name: g.clone(),
            })
            .collect();
        groups.extend(cfg.log_groups.iter().enumerate().map(|(i, g)| Group {
            key: format!("sources.logs.log_groups[{i}]"),
            name: g.clone(),
        }));
        if groups.is_empty() {
            return Err(Error::Config(vec![
                "sources.logs.log_group: required for kind = \"aws\" (or sources.logs.log_groups)"
                    .into(),
            ]));
        }
        let lookup = match cfg.stream_lookup {
            StreamLookup::Name => LookupMode::Name,
            StreamLookup::Search => LookupMode::StreamSearch,
            StreamLookup::Text => LookupMode::Text,
        };
        Ok(AwsLogs {
            ctx,
            groups,
            stream_pattern: cfg.stream_pattern.clone(),
            lookup,
            calls: Arc::new(CallCounter::default()),
            group_seen: Default::default(),
        })
    }

    /// Whether a log group exists in the target (one DescribeLogGroups call, then
    /// remembered). A ResourceNotFoundException does not say which of group and stream is
    /// missing in every implementation.
    async fn group_exists(&self, t: &Target, group: &Group) -> Result<bool> {
        let key = (t.name.clone(), group.name.clone());
        if self.group_seen.lock().is_ok_and(|g| g.contains(&key)) {
            return Ok(true);
        }
        self.calls.count("logs:DescribeLogGroups");
        let resp = t
            .logs
            .call(&DescribeLogGroups {
                log_group_name_prefix: Some(group.name.clone()),
                next_token: None,
            })
            .await
            .map_err(|e| Error::source(&t.name, e.message))?;
        let exists = resp
            .log_groups
            .iter()
            .any(|g| g.log_group_name.as_deref() == Some(group.name.as_str()));
        if exists {
            if let Ok(mut g) = self.group_seen.lock() {
                g.insert(key);
            }
        }
        Ok(exists)
    }

    /// The error for a log group that does not exist in the target.
    fn missing_group(t: &Target, group: &Group) -> Error {
        Error::source(
            &t.name,
            format!(
                "{} `{}` does not exist here (ResourceNotFoundException)",
                group.key, group.name
            ),
        )
    }

    /// A not-found answer: no logs for this instance when the group exists, else an error
    /// naming the group's key (a configuration that reads nothing, for every instance — the
    /// instance stays pending until it is fixed).
    async fn not_found(&self, t: &Target, group: &Group) -> Result<Vec<LogEvent>> {
        if self.group_exists(t, group).await? {
            Ok(Vec::new())
        } else {
            Err(Self::missing_group(t, group))
        }
    }

    /// `name`: the instance's one stream, read backwards with GetLogEvents.
    async fn read_named_stream(
        &self,
        t: &Target,
        group: &Group,
        q: &LastWordsQuery,
        end: DateTime<Utc>,
    ) -> Result<Vec<LogEvent>> {
        let stream = self.stream_pattern.replace("{instance_id}", &q.instance_id);
        let end_ms = end.timestamp_millis() + 1;
        let mut events: Vec<LogEvent> = Vec::new();
        let mut bytes = 0usize;
        let mut token: Option<String> = None;
        let mut empty_in_a_row = 0usize;
        for _ in 0..MAX_PAGES {
            self.calls.count("logs:GetLogEvents");
            let resp = t
                .logs
                .call(&GetLogEvents {
                    log_group_name: group.name.clone(),
                    log_stream_name: stream.clone(),
                    end_time: Some(end_ms),
                    start_from_head: Some(false),
                    next_token: token.clone(),
                    limit: None,
                })
                .await;
            let Some(resp) = unless_not_found(resp, t)? else {
                return self.not_found(t, group).await;
            };
            let page: Vec<LogEvent> = resp
                .events
                .iter()
                .filter_map(|e| event(e.timestamp, e.message.as_deref()))
                .collect();
            bytes += page.iter().map(|e| e.message.len()).sum::<usize>();
            empty_in_a_row = if page.is_empty() {
                empty_in_a_row + 1
            } else {
                0
            };
            events.splice(0..0, page);
            // Enough once the oldest event read is before the window that ends at the last one.
            let covered = match (events.first(), events.last()) {
                (Some(first), Some(last)) => first.timestamp <= last.timestamp - q.window,
                _ => false,
            };
            let next = resp.next_backward_token;
            if covered
                || bytes > q.max_bytes
                || empty_in_a_row >= MAX_EMPTY_PAGES_IN_A_ROW
                || next.is_none()
                || next == token
            {
                break;
            }
            token = next;
        }
        Ok(events)
    }

    /// `search`: the names of the instance's streams (prefix search, then the character after
    /// the id must not continue an id: `i-1234abcd` is not a prefix of `i-1234abcdef…`).
    async fn find_streams(
        &self,
        t: &Target,
        group: &Group,
        q: &LastWordsQuery,
    ) -> Result<Option<Vec<String>>> {
        let (prefix, _) = self
            .stream_pattern
            .split_once("{instance_id}")
            .unwrap_or(("", ""));
        let prefix = format!("{prefix}{}", q.instance_id);
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_STREAM_PAGES {
            self.calls.count("logs:DescribeLogStreams");
            let resp = t
                .logs
                .call(&DescribeLogStreams {
                    log_group_name: group.name.clone(),
                    log_stream_name_prefix: Some(prefix.clone()),
                    next_token: token.take(),
                    ..Default::default()
                })
                .await;
            let Some(resp) = unless_not_found(resp, t)? else {
                return Err(Self::missing_group(t, group));
            };
            names.extend(
                resp.log_streams
                    .into_iter()
                    .filter_map(|s| s.log_stream_name)
                    .filter(|n| stream_belongs(n, &prefix)),
            );
            token = resp.next_token;
            if token.is_none() {
                break;
            }
        }
        if names.is_empty() {
            return Ok(None);
        }
        names.sort();
        names.dedup();
        Ok(Some(names))
    }

    /// FilterLogEvents in the hour before `end`: on the given streams, or (`text`) on every
    /// stream for events mentioning the instance id. Keeps the newest events under the cap.
    async fn filter_events(
        &self,
        t: &Target,
        group: &Group,
        q: &LastWordsQuery,
        end: DateTime<Utc>,
        streams: Option<&[String]>,
    ) -> Result<Vec<LogEvent>> {
        let start = end - Duration::minutes(FILTER_LOOKBACK_MINUTES);
        let mut events: std::collections::VecDeque<LogEvent> = Default::default();
        let mut bytes = 0usize;
        let mut token = None;
        for _ in 0..MAX_PAGES {
            self.calls.count("logs:FilterLogEvents");
            let mut req = FilterLogEvents {
                log_group_name: group.name.clone(),
                start_time: Some(start.timestamp_millis()),
                end_time: Some(end.timestamp_millis() + 1),
                next_token: token.take(),
                ..Default::default()
            };
            match streams {
                Some(s) => req.log_stream_names = Some(s.to_vec()),
                None => req.filter_pattern = Some(format!("\"{}\"", q.instance_id)),
            };
            let Some(resp) = unless_not_found(t.logs.call(&req).await, t)? else {
                return self.not_found(t, group).await;
            };
            for e in &resp.events {
                if let Some(ev) = event(e.timestamp, e.message.as_deref()) {
                    bytes += ev.message.len();
                    events.push_back(ev);
                }
            }
            // Oldest first: past the cap, the oldest events give way to newer ones.
            while bytes > q.max_bytes {
                match events.pop_front() {
                    Some(old) => bytes -= old.message.len(),
                    None => break,
                }
            }
            token = resp.next_token;
            if token.is_none() {
                break;
            }
        }
        Ok(events.into())
    }

    /// One group's events for the instance, by the configured lookup.
    async fn group_events(
        &self,
        t: &Target,
        group: &Group,
        q: &LastWordsQuery,
        end: DateTime<Utc>,
    ) -> Result<Vec<LogEvent>> {
        match self.lookup {
            LookupMode::Name => self.read_named_stream(t, group, q, end).await,
            LookupMode::Text => self.filter_events(t, group, q, end, None).await,
            LookupMode::StreamSearch => {
                let Some(streams) = self.find_streams(t, group, q).await? else {
                    return Ok(Vec::new());
                };
                let mut all = Vec::new();
                for chunk in streams.chunks(MAX_STREAMS_PER_FILTER) {
                    all.extend(self.filter_events(t, group, q, end, Some(chunk)).await?);
                }
                Ok(all)
            }
        }
    }
}

/// A call's answer, `None` when the service said ResourceNotFoundException (a missing group
/// or stream: the caller knows which it can be), or the error described.
fn unless_not_found<T>(r: std::result::Result<T, CallError>, t: &Target) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code.as_deref() == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(Error::source(&t.name, e.message)),
    }
}

/// Whether a stream name found by prefix belongs to the instance: the id is not followed by
/// more id characters.
fn stream_belongs(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric()))
}

fn event(ts: Option<i64>, msg: Option<&str>) -> Option<LogEvent> {
    Some(LogEvent {
        timestamp: DateTime::from_timestamp_millis(ts?)?,
        message: msg?.trim_end_matches(['\n', '\r']).to_string(),
    })
}

#[async_trait]
impl LogSource for AwsLogs {
    fn name(&self) -> String {
        let names: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        format!("aws:logs:{}", names.join(","))
    }

    async fn last_words(&self, q: &LastWordsQuery) -> Result<LastWords> {
        let t = self
            .ctx
            .target(q.origin.as_deref())
            .ok_or_else(|| Error::source("aws", "no AWS target configured"))?;
        let end: DateTime<Utc> = q.terminated_at + q.grace;
        let mut events = Vec::new();
        for group in &self.groups {
            events.extend(self.group_events(t, group, q, end).await?);
        }
        events.sort_by_key(|e| e.timestamp);
        Ok(select_last_words(&events, q))
    }

    fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        let mut calls = self.calls.snapshot();
        for t in self.ctx.targets.iter() {
            for (op, n) in t.logs.throttled() {
                *calls.entry(op).or_insert(0) += n;
            }
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::stream_belongs;

    #[test]
    fn a_stream_belongs_only_when_the_id_ends_there() {
        assert!(stream_belongs("i-1234abcd", "i-1234abcd"));
        assert!(stream_belongs("i-1234abcd/app.log", "i-1234abcd"));
        assert!(stream_belongs("app/i-1234abcd-stdout", "app/i-1234abcd"));
        assert!(!stream_belongs("i-1234abcdef0123456", "i-1234abcd"));
        assert!(!stream_belongs("other", "i-1234abcd"));
    }
}
