//! The CloudWatch Logs probe of `epitaph doctor`: for each configured log group
//! (`sources.logs.log_group`, then `sources.logs.log_groups`), whether it exists (and the names
//! of other groups when it does not), and each sampled instance's last-words lookup done the
//! way `stream_lookup` makes a scan do it — `name`: `GetLogEvents` on the stream
//! `stream_pattern` names; `search`: `DescribeLogStreams` by the pattern's prefix, then
//! `FilterLogEvents` on those streams; `text`: `FilterLogEvents` for the instance id. Every call
//! asks for one small page; what it saw is returned as data (`sources::probe`), never judged.
//!
//! Kept beside `logs.rs` rather than in it, and built from the configuration, so the probe
//! does not depend on the reader's internals.

use chrono::{Duration, Utc};

use super::logs_api::{
    DescribeLogGroups, DescribeLogStreams, FilterLogEvents, GetLogEvents, ORDER_BY_LAST_EVENT_TIME,
};
use super::Target;
use crate::config::{LogsConfig, StreamLookup};
use crate::sources::probe::{
    Call, CallRecord, Listing, LogGroupProbe, LogsProbe, Lookup, LookupResult, Sample,
    PLACEHOLDER_INSTANCE,
};

/// Log group names read without a prefix, at most this many pages (50 a page).
const PROBE_GROUP_PAGES: usize = 2;
/// Events asked for per lookup.
const PROBE_EVENTS: i32 = 10;
/// Streams listed, newest first, when a lookup found no stream.
const PROBE_STREAMS: i32 = 10;
/// How far before the end a search looks (as the scan does).
const FILTER_LOOKBACK_MINUTES: i64 = 60;
/// `FilterLogEvents` accepts at most this many stream names.
const MAX_STREAMS_PER_FILTER: usize = 100;

const DESCRIBE_GROUPS: &str = "logs:DescribeLogGroups";
const DESCRIBE_STREAMS: &str = "logs:DescribeLogStreams";
const GET_EVENTS: &str = "logs:GetLogEvents";
const FILTER_EVENTS: &str = "logs:FilterLogEvents";

/// Probes every configured log group of `cfg` in `t` for `samples` (a placeholder instance
/// when there is none: the lookups then only show whether the actions are allowed).
pub async fn probe_logs(t: &Target, cfg: &LogsConfig, samples: &[Sample]) -> LogsProbe {
    let mut calls = Vec::new();
    let groups: Vec<(String, String)> = cfg
        .log_group
        .iter()
        .map(|g| ("sources.logs.log_group".to_string(), g.clone()))
        .chain(
            cfg.log_groups
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("sources.logs.log_groups[{i}]"), g.clone())),
        )
        .collect();
    let placeholder = [Sample {
        instance_id: PLACEHOLDER_INSTANCE.into(),
        asg: None,
        origin: None,
        terminated_at: None,
        until: Utc::now(),
    }];
    let (to_look_up, is_placeholder) = if samples.is_empty() {
        (&placeholder[..], true)
    } else {
        (samples, false)
    };
    let mut probes = Vec::new();
    for (key, name) in groups {
        let by_prefix: Call<Vec<String>> = t
            .logs
            .call(&DescribeLogGroups {
                log_group_name_prefix: Some(name.clone()),
                next_token: None,
            })
            .await
            .map(|r| {
                r.log_groups
                    .into_iter()
                    .filter_map(|g| g.log_group_name)
                    .collect()
            });
        calls.push(CallRecord::of(DESCRIBE_GROUPS, &by_prefix));
        let exists = matches!(&by_prefix, Ok(names) if names.contains(&name));
        let others = match &by_prefix {
            Ok(_) if !exists => Some(list_groups(t, &mut calls).await),
            _ => None,
        };
        let mut lookups = Vec::new();
        if exists || is_placeholder {
            for s in to_look_up {
                let (looked_for, result) = lookup(t, cfg, &name, s, &mut calls).await;
                lookups.push(Lookup {
                    instance_id: s.instance_id.clone(),
                    placeholder: is_placeholder,
                    looked_for,
                    result,
                });
            }
        }
        let stream_missing = lookups
            .iter()
            .any(|l| !l.placeholder && l.result == Ok(LookupResult::NoStream));
        let recent_streams = if exists && stream_missing {
            let r = t
                .logs
                .call(&DescribeLogStreams {
                    log_group_name: name.clone(),
                    order_by: Some(ORDER_BY_LAST_EVENT_TIME.into()),
                    descending: Some(true),
                    limit: Some(PROBE_STREAMS),
                    ..Default::default()
                })
                .await
                .map(|r| {
                    r.log_streams
                        .into_iter()
                        .filter_map(|s| s.log_stream_name)
                        .collect()
                });
            calls.push(CallRecord::of(DESCRIBE_STREAMS, &r));
            Some(r)
        } else {
            None
        };
        probes.push(LogGroupProbe {
            key,
            log_group: name,
            by_prefix,
            others,
            lookups,
            recent_streams,
        });
    }
    LogsProbe {
        stream_lookup: cfg.stream_lookup,
        stream_pattern: cfg.stream_pattern.clone(),
        groups: probes,
        calls,
    }
}

/// Log group names without a prefix, first pages.
async fn list_groups(t: &Target, calls: &mut Vec<CallRecord>) -> Call<Listing<String>> {
    let mut listing = Listing::default();
    let mut token = None;
    for _ in 0..PROBE_GROUP_PAGES {
        let r = t
            .logs
            .call(&DescribeLogGroups {
                log_group_name_prefix: None,
                next_token: token.take(),
            })
            .await;
        calls.push(CallRecord::of(DESCRIBE_GROUPS, &r));
        let r = r?;
        listing
            .items
            .extend(r.log_groups.into_iter().filter_map(|g| g.log_group_name));
        token = r.next_token;
        if token.is_none() {
            break;
        }
    }
    listing.truncated = token.is_some();
    Ok(listing)
}

/// A "not found" answer: for a lookup, the stream (or group) is not there.
fn not_found(r: Call<LookupResult>) -> Call<LookupResult> {
    match r {
        Err(e) if e.code.as_deref() == Some("ResourceNotFoundException") => {
            Ok(LookupResult::NoStream)
        }
        other => other,
    }
}

/// One sample's lookup in one group; returns what was looked for and what was found.
async fn lookup(
    t: &Target,
    cfg: &LogsConfig,
    group: &str,
    s: &Sample,
    calls: &mut Vec<CallRecord>,
) -> (String, Call<LookupResult>) {
    let end_ms = s.until.timestamp_millis() + 1;
    let start_ms = end_ms - Duration::minutes(FILTER_LOOKBACK_MINUTES).num_milliseconds();
    let count = |n: usize| {
        if n == 0 {
            LookupResult::NoEvents
        } else {
            LookupResult::Events(n)
        }
    };
    match cfg.stream_lookup {
        StreamLookup::Search => {
            let (head, _) = cfg
                .stream_pattern
                .split_once("{instance_id}")
                .unwrap_or(("", ""));
            let prefix = format!("{head}{}", s.instance_id);
            let streams = t
                .logs
                .call(&DescribeLogStreams {
                    log_group_name: group.to_string(),
                    log_stream_name_prefix: Some(prefix.clone()),
                    ..Default::default()
                })
                .await
                .map(|r| {
                    r.log_streams
                        .into_iter()
                        .filter_map(|s| s.log_stream_name)
                        .filter(|n| {
                            n.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                                !rest.starts_with(|c: char| c.is_ascii_alphanumeric())
                            })
                        })
                        .take(MAX_STREAMS_PER_FILTER)
                        .collect::<Vec<_>>()
                });
            let looked_for = format!("streams named `{prefix}…`");
            let streams = match streams {
                Err(e) if e.code.as_deref() == Some("ResourceNotFoundException") => Ok(Vec::new()),
                other => other,
            };
            calls.push(CallRecord::of(DESCRIBE_STREAMS, &streams));
            let names = match streams {
                Ok(n) if n.is_empty() => return (looked_for, Ok(LookupResult::NoStream)),
                Ok(n) => n,
                Err(e) => return (looked_for, Err(e)),
            };
            let r = t
                .logs
                .call(&FilterLogEvents {
                    log_group_name: group.to_string(),
                    log_stream_names: Some(names),
                    start_time: Some(start_ms),
                    end_time: Some(end_ms),
                    limit: Some(PROBE_EVENTS),
                    ..Default::default()
                })
                .await
                .map(|r| count(r.events.len()));
            let r = not_found(r);
            calls.push(CallRecord::of(FILTER_EVENTS, &r));
            (looked_for, r)
        }
        StreamLookup::Text => {
            let pattern = format!("\"{}\"", s.instance_id);
            let r = t
                .logs
                .call(&FilterLogEvents {
                    log_group_name: group.to_string(),
                    filter_pattern: Some(pattern.clone()),
                    start_time: Some(start_ms),
                    end_time: Some(end_ms),
                    limit: Some(PROBE_EVENTS),
                    ..Default::default()
                })
                .await
                .map(|r| count(r.events.len()));
            let r = not_found(r);
            calls.push(CallRecord::of(FILTER_EVENTS, &r));
            (format!("events mentioning {pattern} in any stream"), r)
        }
        StreamLookup::Name => {
            let stream = cfg.stream_pattern.replace("{instance_id}", &s.instance_id);
            let r = t
                .logs
                .call(&GetLogEvents {
                    log_group_name: group.to_string(),
                    log_stream_name: stream.clone(),
                    end_time: Some(end_ms),
                    start_from_head: Some(false),
                    next_token: None,
                    limit: Some(PROBE_EVENTS),
                })
                .await
                .map(|r| count(r.events.len()));
            let r = not_found(r);
            calls.push(CallRecord::of(GET_EVENTS, &r));
            (format!("stream `{stream}`"), r)
        }
    }
}
