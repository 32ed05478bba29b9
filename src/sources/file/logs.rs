//! File logs: JSON lines (`timestamp`, `message`, and `instance_id` or a log stream name), or
//! the JSON printed by `aws logs filter-log-events` or `aws logs get-log-events`.
//!
//! An event that names no instance (no `instance_id`, no log stream: `get-log-events` output,
//! one file per stream, never names its stream) belongs to the instance its file is named
//! after (`i-0123….json`), else the nearest folder below `path` named after one.
//!
//! A file that cannot be used at all (empty, not JSON, no event usable) is an input error
//! naming it, never skipped records; a pagination token left in an export is a warning that
//! it is truncated. Events exported twice (overlapping exports: same instance, time and
//! message in two files) are kept once; repeats within one file are kept.
//!
//! The files are indexed once per source (by instance id, sorted by time) on first use, so
//! fetching many instances' last words costs one pass over the data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;
use serde_json::Value;

use super::{
    find_instance_id, instance_from_path, json_documents, list_files, required_path,
    truncation_warning, SkipLog, EMPTY_FILE,
};
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::model::{LastWords, LogEvent};
use crate::sources::{select_last_words, InputProblems, LastWordsQuery, LogSource, Skipped};
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
    problems: InputProblems,
}

/// What one file gave, kept apart until the file is judged usable.
#[derive(Debug, Default)]
struct Part {
    by_instance: HashMap<String, Vec<LogEvent>>,
    skipped: SkipLog,
    warnings: Vec<String>,
    used: usize,
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

    fn skipped_by_input(&self) -> Vec<crate::sources::SkippedGroup> {
        self.index
            .current()
            .map(|i| i.skipped.groups.rows())
            .unwrap_or_default()
    }

    fn input_problems(&self) -> InputProblems {
        self.index
            .current()
            .map(|i| i.problems.clone())
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
    // Every instance's events with the number of the file they came from.
    let mut gathered: HashMap<String, Vec<(LogEvent, usize)>> = HashMap::new();
    for (file_no, file) in list_files(path)?.into_iter().enumerate() {
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let origin = file.display().to_string();
        if super::is_blank(&bytes) {
            index
                .problems
                .errors
                .push(format!("{origin}: {EMPTY_FILE}"));
            continue;
        }
        let ctx = FileCtx {
            stream,
            default_instance: instance_from_path(path, &file),
        };
        let mut part = Part::default();
        if let Err(e) = ingest_file(&bytes, &origin, format, &ctx, &mut part) {
            index.problems.errors.push(e.to_string());
            continue;
        }
        index.problems.warnings.append(&mut part.warnings);
        if let Some(refused) = super::refused_file(&origin, "event", part.used, &part.skipped) {
            index.problems.errors.push(refused);
            continue;
        }
        index.skipped.merge(part.skipped);
        for (instance, events) in part.by_instance {
            gathered
                .entry(instance)
                .or_default()
                .extend(events.into_iter().map(|e| (e, file_no)));
        }
    }
    for (instance, mut events) in gathered {
        events.sort_by_key(|e| e.0.timestamp);
        index
            .by_instance
            .insert(instance, drop_overlap_copies(events));
    }
    Ok(index)
}

/// Events sorted by time, each with its file's number → the events, with copies of an event
/// that another file also holds dropped: of events with the same time and message, as many are
/// kept as the file holding the most of them has (a line logged twice in the same millisecond
/// stays twice; the same line in two overlapping exports is kept once).
fn drop_overlap_copies(events: Vec<(LogEvent, usize)>) -> Vec<LogEvent> {
    let mut keep = vec![true; events.len()];
    let mut i = 0;
    while i < events.len() {
        let t = events[i].0.timestamp;
        let j = i + events[i..].partition_point(|e| e.0.timestamp == t);
        if j - i > 1 {
            let mut in_file: HashMap<(&str, usize), usize> = HashMap::new();
            let mut kept: HashMap<&str, usize> = HashMap::new();
            for (k, (e, file)) in events[i..j].iter().enumerate() {
                let n = in_file.entry((e.message.as_str(), *file)).or_insert(0);
                *n += 1;
                let most = kept.entry(e.message.as_str()).or_insert(0);
                if *n > *most {
                    *most = *n;
                } else {
                    keep[i + k] = false;
                }
            }
        }
        i = j;
    }
    events
        .into_iter()
        .zip(keep)
        .filter_map(|((e, _), k)| k.then_some(e))
        .collect()
}

/// How events of one file find their instance.
struct FileCtx<'a> {
    stream: &'a Regex,
    /// The instance the file (or its folder) is named after, for events that name none.
    default_instance: Option<String>,
}

/// One log file: a whole JSON export (one document, or pages one after the other), or JSON
/// lines. An error is the whole file's.
fn ingest_file(
    bytes: &[u8],
    origin: &str,
    format: Format,
    ctx: &FileCtx<'_>,
    part: &mut Part,
) -> Result<()> {
    if format == Format::JsonLines {
        ingest_json_lines(bytes, origin, ctx, part);
        return Ok(());
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if !matches!(first, Some(b'{' | b'[')) {
        if format == Format::FilterLogEvents {
            return Err(Error::input(
                origin,
                "not filter-log-events output (expected a JSON object with an \"events\" array)",
            ));
        }
        ingest_json_lines(bytes, origin, ctx, part);
        return Ok(());
    }
    let docs = match json_documents(bytes, origin) {
        Ok(docs) => docs,
        // JSON lines with a bad line: its first line stands alone as an event.
        Err(_) if format == Format::Auto && first_line_is_an_object(bytes) => {
            ingest_json_lines(bytes, origin, ctx, part);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let exports = docs
        .iter()
        .all(|d| d.get("events").is_some() || (d.is_array() && docs.len() == 1));
    if !exports {
        if format == Format::FilterLogEvents {
            return Err(Error::input(
                origin,
                "not filter-log-events output (no \"events\" array)",
            ));
        }
        ingest_json_lines(bytes, origin, ctx, part);
        return Ok(());
    }
    for (n, doc) in docs.iter().enumerate() {
        let origin = if docs.len() > 1 {
            format!("{origin} (document {})", n + 1)
        } else {
            origin.to_string()
        };
        if let Some(events) = doc.as_array() {
            for (i, ev) in events.iter().enumerate() {
                ingest_event(ev, &format!("{origin}: [{i}]"), ctx, part);
            }
            continue;
        }
        if let Some(w) = truncation_warning(doc, &origin) {
            part.warnings.push(w);
        }
        let Some(events) = doc.get("events").and_then(Value::as_array) else {
            return Err(Error::input(origin, "\"events\" is not an array"));
        };
        for (i, ev) in events.iter().enumerate() {
            ingest_event(ev, &format!("{origin}: events[{i}]"), ctx, part);
        }
    }
    Ok(())
}

fn first_line_is_an_object(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .find(|l| !super::is_blank(l))
        .and_then(|l| serde_json::from_slice::<Value>(l).ok())
        .is_some_and(|v| v.is_object())
}

fn ingest_json_lines(bytes: &[u8], origin: &str, ctx: &FileCtx<'_>, part: &mut Part) {
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{origin}:{}", n + 1);
        match serde_json::from_str::<Value>(line) {
            Ok(v) => ingest_event(&v, &at, ctx, part),
            Err(e) => part.skipped.push(at, format!("invalid JSON: {e}")),
        }
    }
}

fn ingest_event(ev: &Value, at: &str, ctx: &FileCtx<'_>, part: &mut Part) {
    let Some(obj) = ev.as_object() else {
        part.skipped.push(at.to_string(), "not a JSON object");
        return;
    };
    let time = TIME_FIELDS.iter().find_map(|f| obj.get(*f));
    let timestamp = match time {
        Some(Value::Number(n)) => n.as_f64().and_then(unix_to_instant),
        Some(Value::String(s)) => parse_instant(s).ok(),
        _ => None,
    };
    let Some(timestamp) = timestamp else {
        part.skipped.push(
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
        part.skipped.push(
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
                .and_then(|s| instance_from_stream(ctx.stream, s))
        })
        .or_else(|| ctx.default_instance.clone());
    let Some(instance) = instance else {
        part.skipped.push(
            at.to_string(),
            "no instance id: no instance_id field, no log stream naming one, and the file is not named after one (get-log-events output: name the file i-0123456789abcdef0.json after its stream)",
        );
        return;
    };
    part.used += 1;
    part.by_instance
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

    /// Indexes a folder holding `files` (name, content).
    fn folder(files: &[(&str, &str)]) -> LogIndex {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        build_index(
            dir.path(),
            Format::Auto,
            &stream_regex("{instance_id}").unwrap(),
        )
        .unwrap()
    }

    const A: &str = "i-0123456789abcdef0";

    fn messages(i: &LogIndex, id: &str) -> Vec<String> {
        i.by_instance[id]
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }

    #[test]
    fn get_log_events_takes_the_instance_from_the_file_name() {
        let doc = r#"{"events": [
          {"timestamp": 1767607200000, "message": "starting", "ingestionTime": 1767607201000},
          {"timestamp": 1767607260000, "message": "FATAL ERROR: heap out of memory", "ingestionTime": 1767607261000}],
          "nextForwardToken": "f/1", "nextBackwardToken": "b/1"}"#;
        let i = folder(&[
            (&format!("web/{A}.json"), doc),
            (&format!("{A}/syslog.json"), doc),
        ]);
        assert_eq!(
            messages(&i, A),
            ["starting", "FATAL ERROR: heap out of memory"],
            "the same events in two files are kept once"
        );
        assert!(
            i.problems.is_empty(),
            "forward/backward tokens are not truncation: {:?}",
            i.problems
        );
        // Named after nothing: the whole file is one input error, not two skipped events.
        let i = folder(&[("web/app.json", doc)]);
        assert!(i.by_instance.is_empty());
        assert_eq!(i.skipped.count, 0);
        assert_eq!(i.problems.errors.len(), 1);
        assert!(
            i.problems.errors[0].contains("app.json: no usable event"),
            "{:?}",
            i.problems
        );
        assert!(
            i.problems.errors[0].contains("get-log-events"),
            "{:?}",
            i.problems
        );
    }

    #[test]
    fn overlapping_exports_are_deduplicated_but_repeats_in_one_file_kept() {
        let ev = |ts: u64, msg: &str| {
            format!(r#"{{"logStreamName": "{A}", "timestamp": {ts}, "message": "{msg}"}}"#)
        };
        let first = format!(
            r#"{{"events": [{}, {}, {}]}}"#,
            ev(1000, "a"),
            ev(2000, "tick"),
            ev(2000, "tick")
        );
        let second = format!(
            r#"{{"events": [{}, {}, {}, {}]}}"#,
            ev(2000, "tick"),
            ev(2000, "tick"),
            ev(2000, "b"),
            ev(3000, "c")
        );
        let i = folder(&[("1.json", &first), ("2.json", &second)]);
        assert_eq!(messages(&i, A), ["a", "tick", "tick", "b", "c"]);
    }

    #[test]
    fn truncated_empty_and_unparsable_log_files() {
        let page = format!(
            r#"{{"events": [{{"logStreamName": "{A}", "timestamp": 1000, "message": "x"}}], "searchedLogStreams": [], "nextToken": "Bxkq"}}"#
        );
        let i = folder(&[
            ("page.json", &page),
            ("empty.json", ""),
            ("cut.json", "{\n    \"events\": [\n        {\n"),
            ("junk.log", "not json\nnor this\n"),
        ]);
        assert_eq!(
            messages(&i, A),
            ["x"],
            "what a truncated export holds is used"
        );
        let w = &i.problems.warnings;
        assert!(
            w.len() == 1 && w[0].contains("page.json") && w[0].contains("`nextToken`"),
            "{w:?}"
        );
        let e = i.problems.errors.join("\n");
        assert_eq!(i.problems.errors.len(), 3, "{e}");
        for part in [
            "cut.json:4:",
            "empty.json: empty file",
            "junk.log: no usable event: all 2",
        ] {
            assert!(e.contains(part), "{part} in {e}");
        }
        assert_eq!(i.skipped.count, 0);
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
