//! File logs: JSON lines (`timestamp`, `message`, and `instance_id` or a log stream name), or
//! the JSON printed by `aws logs filter-log-events`.
//!
//! The files are indexed once per source (by instance id, sorted by time) on first use, so
//! fetching many instances' last words costs one pass over the data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;
use serde_json::Value;

use super::{find_instance_id, list_files, required_path, SkipLog};
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::model::{LastWords, LogEvent};
use crate::sources::{select_last_words, LastWordsQuery, LogSource, Skipped};
use crate::timefmt::{parse_instant, unix_to_instant};

/// JSON fields holding the event time, tried in order.
const TIME_FIELDS: [&str; 4] = ["timestamp", "@timestamp", "time", "ts"];
/// JSON fields holding the message, tried in order.
const MESSAGE_FIELDS: [&str; 4] = ["message", "msg", "log", "MESSAGE"];
/// JSON fields holding the instance id directly.
const INSTANCE_FIELDS: [&str; 3] = ["instance_id", "instanceId", "InstanceId"];
/// JSON fields holding a log stream name (mapped to an instance id by `stream_pattern`).
const STREAM_FIELDS: [&str; 3] = ["log_stream", "logStreamName", "logStream"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Auto,
    JsonLines,
    FilterLogEvents,
}

pub struct FileLogs {
    path: PathBuf,
    format: Format,
    stream: Arc<Regex>,
    index: super::FileIndex<LogIndex>,
}

#[derive(Debug, Default)]
struct LogIndex {
    by_instance: HashMap<String, Vec<LogEvent>>,
    skipped: SkipLog,
}

impl FileLogs {
    pub fn new(cfg: &SourceConfig) -> Result<Self> {
        let format = match cfg.format.as_str() {
            "jsonl" => Format::JsonLines,
            "filter_log_events" => Format::FilterLogEvents,
            _ => Format::Auto,
        };
        Ok(FileLogs {
            path: required_path("sources.logs", &cfg.path)?,
            format,
            stream: Arc::new(stream_regex(&cfg.stream_pattern)?),
            index: super::FileIndex::new(),
        })
    }

    async fn index(&self) -> Result<Arc<LogIndex>> {
        let (path, format, stream) = (self.path.clone(), self.format, self.stream.clone());
        self.index
            .get(&self.path, move || build_index(&path, format, &stream))
            .await
    }
}

#[async_trait]
impl LogSource for FileLogs {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    async fn last_words(&self, query: &LastWordsQuery) -> Result<LastWords> {
        let index = self.index().await?;
        Ok(index
            .by_instance
            .get(&query.instance_id)
            .map(|events| select_last_words(events, query))
            .unwrap_or_default())
    }

    fn begin_scan(&self) {
        self.index.mark_stale();
    }

    fn skipped(&self) -> (usize, Vec<Skipped>) {
        self.index
            .current()
            .map(|i| (i.skipped.count, i.skipped.report()))
            .unwrap_or_default()
    }
}

/// `{instance_id}` in the pattern becomes a capture; everything else is literal.
fn stream_regex(pattern: &str) -> Result<Regex> {
    let escaped = regex::escape(pattern).replace(r"\{instance_id\}", r"(?P<id>i-[0-9a-f]{8,17})");
    Regex::new(&format!("^{escaped}$"))
        .map_err(|e| Error::Config(vec![format!("sources.logs.stream_pattern: {e}")]))
}

fn instance_from_stream(stream: &Regex, name: &str) -> Option<String> {
    stream
        .captures(name)
        .and_then(|c| c.name("id"))
        .map(|m| m.as_str().to_string())
        .or_else(|| find_instance_id(name).map(str::to_string))
}

fn build_index(path: &Path, format: Format, stream: &Regex) -> Result<LogIndex> {
    let mut index = LogIndex::default();
    for file in list_files(path)? {
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let origin = file.display().to_string();
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let whole = match (format, first) {
            (Format::JsonLines, _) | (_, None) => None,
            (_, Some(b'{')) | (_, Some(b'[')) => serde_json::from_slice::<Value>(&bytes).ok(),
            _ => None,
        };
        match whole {
            Some(Value::Object(doc)) if doc.contains_key("events") => {
                ingest_filter_log_events(&doc, &origin, stream, &mut index)
            }
            Some(Value::Array(events)) => {
                for (i, ev) in events.iter().enumerate() {
                    ingest_event(ev, &format!("{origin}: [{i}]"), None, stream, &mut index);
                }
            }
            _ if format == Format::FilterLogEvents => {
                index
                    .skipped
                    .push(origin, "not filter-log-events output (no \"events\" array)");
            }
            _ => ingest_json_lines(&bytes, &origin, stream, &mut index),
        }
    }
    for events in index.by_instance.values_mut() {
        events.sort_by_key(|e| e.timestamp);
    }
    Ok(index)
}

fn ingest_filter_log_events(
    doc: &serde_json::Map<String, Value>,
    origin: &str,
    stream: &Regex,
    index: &mut LogIndex,
) {
    let Some(events) = doc.get("events").and_then(Value::as_array) else {
        index
            .skipped
            .push(origin.to_string(), "\"events\" is not an array");
        return;
    };
    for (i, ev) in events.iter().enumerate() {
        ingest_event(ev, &format!("{origin}: events[{i}]"), None, stream, index);
    }
}

fn ingest_json_lines(bytes: &[u8], origin: &str, stream: &Regex, index: &mut LogIndex) {
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{origin}:{}", n + 1);
        match serde_json::from_str::<Value>(line) {
            Ok(v) => ingest_event(&v, &at, None, stream, index),
            Err(e) => index.skipped.push(at, format!("invalid JSON: {e}")),
        }
    }
}

fn ingest_event(
    ev: &Value,
    at: &str,
    default_instance: Option<&str>,
    stream: &Regex,
    index: &mut LogIndex,
) {
    let Some(obj) = ev.as_object() else {
        index.skipped.push(at.to_string(), "not a JSON object");
        return;
    };
    let time = TIME_FIELDS.iter().find_map(|f| obj.get(*f));
    let timestamp = match time {
        Some(Value::Number(n)) => n.as_f64().and_then(unix_to_instant),
        Some(Value::String(s)) => parse_instant(s).ok(),
        _ => None,
    };
    let Some(timestamp) = timestamp else {
        index.skipped.push(
            at.to_string(),
            format!(
                "missing or invalid timestamp (one of {})",
                TIME_FIELDS.join(", ")
            ),
        );
        return;
    };
    let Some(message) = MESSAGE_FIELDS
        .iter()
        .find_map(|f| obj.get(*f).and_then(Value::as_str))
    else {
        index.skipped.push(
            at.to_string(),
            format!("missing message (one of {})", MESSAGE_FIELDS.join(", ")),
        );
        return;
    };
    let instance = INSTANCE_FIELDS
        .iter()
        .find_map(|f| obj.get(*f).and_then(Value::as_str).map(str::to_string))
        .or_else(|| {
            STREAM_FIELDS
                .iter()
                .find_map(|f| obj.get(*f).and_then(Value::as_str))
                .and_then(|s| instance_from_stream(stream, s))
        })
        .or_else(|| default_instance.map(str::to_string));
    let Some(instance) = instance else {
        index.skipped.push(
            at.to_string(),
            "no instance id (instance_id field or a log stream naming one)",
        );
        return;
    };
    index
        .by_instance
        .entry(instance)
        .or_default()
        .push(LogEvent {
            timestamp,
            message: message.trim_end_matches(['\n', '\r']).to_string(),
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(content: &[u8], format: Format) -> LogIndex {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, content).unwrap();
        build_index(&p, format, &stream_regex("{instance_id}").unwrap()).unwrap()
    }

    #[test]
    fn json_lines_with_bad_lines_counted() {
        let text = b"{\"timestamp\":\"2026-01-05T10:00:00Z\",\"message\":\"hi\",\"instance_id\":\"i-0123abcd\"}\nnot json\n{\"ts\":1767607201000,\"msg\":\"two\",\"log_stream\":\"i-0123abcd\"}\n\xff\xfe\n";
        let i = idx(text, Format::Auto);
        assert_eq!(i.by_instance["i-0123abcd"].len(), 2);
        assert_eq!(i.skipped.count, 2);
        assert!(i.skipped.kept[0].location.ends_with("x.log:2"));
    }

    #[test]
    fn filter_log_events_output() {
        let text = br#"{"events":[{"logStreamName":"web/i-0123456789abcdef0","timestamp":1767607200000,"message":"FATAL ERROR: x\n","ingestionTime":1767607201000,"eventId":"1"}],"searchedLogStreams":[]}"#;
        let i = idx(text, Format::Auto);
        assert_eq!(
            i.by_instance["i-0123456789abcdef0"][0].message,
            "FATAL ERROR: x"
        );
    }

    #[test]
    fn stream_pattern_maps_names() {
        let re = stream_regex("app/{instance_id}/stdout").unwrap();
        assert_eq!(
            instance_from_stream(&re, "app/i-0123abcd/stdout").as_deref(),
            Some("i-0123abcd")
        );
    }
}
