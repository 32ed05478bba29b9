//! CloudWatch Logs last words, with the cheapest call that answers:
//! - `stream_lookup = "name"` (default; the CloudWatch agent names one stream per instance id):
//!   `GetLogEvents` read backwards from the termination time — one call per instance unless
//!   the final minute holds more than a page; a missing stream means no logs (no evidence);
//! - `stream_lookup = "search"`: `FilterLogEvents` for the instance id in every stream of the
//!   group, in the hour before termination.
//!
//! Both paginate and stop at the byte cap.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::{describe, AwsContext, CallCounter};
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::model::{LastWords, LogEvent};
use crate::sources::{select_last_words, LastWordsQuery, LogSource};

/// How far before termination `FilterLogEvents` searches when the stream is unknown.
const FILTER_LOOKBACK_MINUTES: i64 = 60;
/// At most this many pages per instance, whatever the byte cap says.
const MAX_PAGES: usize = 20;
/// GetLogEvents may answer an empty page while older events remain (AWS documents it; the
/// token then moves on). Reading goes on past empty pages until the token repeats — the
/// start of the stream — but at most this many empty pages in a row.
const MAX_EMPTY_PAGES_IN_A_ROW: usize = 3;

pub struct AwsLogs {
    ctx: AwsContext,
    log_group: String,
    stream_pattern: String,
    search: bool,
    calls: Arc<CallCounter>,
    /// Targets (by name) where the log group was seen to exist: a missing stream there is an
    /// instance without logs; elsewhere it is checked once with DescribeLogGroups.
    group_seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl AwsLogs {
    pub fn new(ctx: AwsContext, cfg: &SourceConfig) -> Result<Self> {
        let log_group = cfg.log_group.clone().ok_or_else(|| {
            Error::Config(vec![
                "sources.logs.log_group: required for kind = \"aws\"".into()
            ])
        })?;
        Ok(AwsLogs {
            ctx,
            log_group,
            stream_pattern: cfg.stream_pattern.clone(),
            search: cfg.stream_lookup == "search",
            calls: Arc::new(CallCounter::default()),
            group_seen: Default::default(),
        })
    }

    /// Whether the configured log group exists in the target (one DescribeLogGroups call, then
    /// remembered). A ResourceNotFoundException does not say which of group and stream is
    /// missing in every implementation.
    async fn group_exists(&self, t: &super::Target) -> Result<bool> {
        let seen = |s: &Self| {
            s.group_seen
                .lock()
                .map(|g| g.contains(&t.name))
                .unwrap_or(false)
        };
        if seen(self) {
            return Ok(true);
        }
        self.calls.count("logs:DescribeLogGroups");
        let resp = t
            .logs
            .describe_log_groups()
            .log_group_name_prefix(&self.log_group)
            .send()
            .await
            .map_err(|e| Error::source(&t.name, describe("DescribeLogGroups", &e)))?;
        let exists = resp
            .log_groups()
            .iter()
            .any(|g| g.log_group_name() == Some(self.log_group.as_str()));
        if exists {
            if let Ok(mut g) = self.group_seen.lock() {
                g.insert(t.name.clone());
            }
        }
        Ok(exists)
    }
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
        format!("aws:logs:{}", self.log_group)
    }

    async fn last_words(&self, q: &LastWordsQuery) -> Result<LastWords> {
        let t = self
            .ctx
            .target(q.origin.as_deref())
            .ok_or_else(|| Error::source("aws", "no AWS target configured"))?;
        let stream = self.stream_pattern.replace("{instance_id}", &q.instance_id);
        let end: DateTime<Utc> = q.terminated_at + q.grace;
        let end_ms = end.timestamp_millis() + 1;
        if self.search {
            let mut events = self.filter_events(t, q, end).await?;
            events.sort_by_key(|e| e.timestamp);
            return Ok(select_last_words(&events, q));
        }
        let mut events: Vec<LogEvent> = Vec::new();
        let mut bytes = 0usize;
        let mut token: Option<String> = None;
        let mut empty_in_a_row = 0usize;
        for _ in 0..MAX_PAGES {
            self.calls.count("logs:GetLogEvents");
            let resp = t
                .logs
                .get_log_events()
                .log_group_name(&self.log_group)
                .log_stream_name(&stream)
                .end_time(end_ms)
                .start_from_head(false)
                .set_next_token(token.clone())
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                // Not found: a missing stream is an instance that never shipped logs (no
                // evidence, not an error); a missing log group is a configuration that reads
                // nothing, for every instance — an error naming the key, and the instance
                // stays pending until it is fixed.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    if self.group_exists(t).await? {
                        break;
                    }
                    return Err(Error::source(
                        &t.name,
                        format!(
                            "sources.logs.log_group `{}` does not exist here (ResourceNotFoundException)",
                            self.log_group
                        ),
                    ));
                }
                Err(e) => return Err(Error::source(&t.name, describe("GetLogEvents", &e))),
            };
            let page: Vec<LogEvent> = resp
                .events()
                .iter()
                .filter_map(|e| event(e.timestamp(), e.message()))
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
            let next = resp.next_backward_token().map(str::to_string);
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
        events.sort_by_key(|e| e.timestamp);
        Ok(select_last_words(&events, q))
    }

    fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.calls.snapshot()
    }
}

impl AwsLogs {
    /// Events mentioning the instance id in the hour before termination, in any stream.
    async fn filter_events(
        &self,
        t: &super::Target,
        q: &LastWordsQuery,
        end: DateTime<Utc>,
    ) -> Result<Vec<LogEvent>> {
        let start = end - Duration::minutes(FILTER_LOOKBACK_MINUTES);
        let mut events = Vec::new();
        let mut bytes = 0usize;
        let mut token = None;
        for _ in 0..MAX_PAGES {
            self.calls.count("logs:FilterLogEvents");
            let resp = t
                .logs
                .filter_log_events()
                .log_group_name(&self.log_group)
                .filter_pattern(format!("\"{}\"", q.instance_id))
                .start_time(start.timestamp_millis())
                .end_time(end.timestamp_millis() + 1)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| Error::source(&t.name, describe("FilterLogEvents", &e)))?;
            for e in resp.events() {
                if let Some(ev) = event(e.timestamp(), e.message()) {
                    bytes += ev.message.len();
                    events.push(ev);
                }
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() || bytes > q.max_bytes {
                break;
            }
        }
        Ok(events)
    }
}
