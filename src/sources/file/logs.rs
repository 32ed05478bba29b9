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
//! The files are indexed once per source on first use, so fetching many instances' last words
//! costs one pass over the data. The index holds no log line: per instance, its **runs** — a
//! byte span of a file holding consecutive events of that instance (no other instance's event
//! between them), with their first and last time and their number, 48 bytes a run; an event
//! that is a run of its own (exports interleaving instances) is kept as its time and place
//! (file, byte offset, length), 32 bytes. When an instance's last words are fetched, the runs
//! that can hold its last-words window are read back and their events found again as the index
//! found them, then only the events of the window are read. A file that no longer holds what
//! the index found there (its size or modification time changed, or a run's events differ:
//! changed under a running scan) is an error for that instance (kept pending and retried by the
//! next scan, which indexes the files again).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use regex::Regex;
use serde_json::Value;

use super::json::{spans, Tokens};
use super::{find_instance_id, instance_from_path, list_files, required_path, SkipLog, EMPTY_FILE};
use crate::config::{LogFormat, LogsConfig};
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
    /// The files indexed, by number.
    files: Vec<LogFile>,
    /// Each instance's events: runs and single events, in file order.
    by_instance: HashMap<String, LogSeries>,
    skipped: SkipLog,
    problems: InputProblems,
}

/// A file of the index, as it was when indexed, and how its events were read.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
    /// Read as JSON lines (else as an export's `events` elements).
    lines: bool,
    /// The instance the file (or its folder) is named after.
    default_instance: Option<String>,
}

/// One instance's events in the files: runs to read back, and single events.
#[derive(Debug, Default)]
struct LogSeries {
    runs: Vec<LogRun>,
    single: Vec<EventRef>,
}

/// Consecutive events of one instance in a file: the bytes from the first's start to the
/// last's end, their time range and number when indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogRun {
    offset: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    file: u32,
    len: u32,
    events: u32,
}

/// A run of at most this many events is kept as its events (32 bytes each) rather than as a
/// run to read back (48 bytes).
pub const SINGLE_MAX_EVENTS: usize = 1;

/// Where one event is: its time, and the bytes of its JSON object (a JSON line, or an element
/// of an export's `events`) in a file of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventRef {
    timestamp: DateTime<Utc>,
    file: u32,
    offset: u64,
    len: u32,
}

/// What one file gave, kept apart until the file is judged usable.
#[derive(Debug, Default)]
struct Part {
    by_instance: HashMap<String, LogSeries>,
    /// The run being read: its instance and events.
    run: Option<(String, Vec<EventRef>)>,
    /// The file was read as JSON lines.
    lines: bool,
    skipped: SkipLog,
    warnings: Vec<String>,
    used: usize,
}

impl Part {
    /// Adds a usable event, in file order.
    fn add(&mut self, instance: String, event: EventRef) {
        self.used += 1;
        match &mut self.run {
            Some((id, events)) if *id == instance => events.push(event),
            _ => {
                self.end_run();
                self.run = Some((instance, vec![event]));
            }
        }
    }

    /// Files the run being read.
    fn end_run(&mut self) {
        let Some((instance, events)) = self.run.take() else {
            return;
        };
        let series = self.by_instance.entry(instance).or_default();
        let (head, tail) = (events[0], events[events.len() - 1]);
        let len = u32::try_from(tail.offset + u64::from(tail.len) - head.offset);
        match (len, u32::try_from(events.len())) {
            (Ok(len), Ok(count)) if events.len() > SINGLE_MAX_EVENTS => series.runs.push(LogRun {
                offset: head.offset,
                first: events.iter().map(|e| e.timestamp).min().expect("not empty"),
                last: events.iter().map(|e| e.timestamp).max().expect("not empty"),
                file: head.file,
                len,
                events: count,
            }),
            _ => series.single.extend(events),
        }
    }
}

impl FileLogs {
    pub fn new(cfg: &LogsConfig) -> Result<Self> {
        let format = match cfg.format {
            LogFormat::Jsonl => Format::JsonLines,
            LogFormat::FilterLogEvents => Format::FilterLogEvents,
            LogFormat::Auto => Format::Auto,
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
        if !index.by_instance.contains_key(&query.instance_id) {
            return Ok(LastWords::default());
        }
        let (stream, q) = (self.stream.clone(), query.clone());
        let events = tokio::task::spawn_blocking(move || {
            let series = &index.by_instance[&q.instance_id];
            // The events `select_last_words` can pick: from the window before the final event
            // at or before the cutoff, to that event (copies of an event in overlapping
            // exports share its time, so dropping them inside this range is dropping them
            // everywhere).
            let cutoff = q.terminated_at + q.grace;
            let refs = refs_before(&index, &stream, &q.instance_id, series, cutoff, q.window)?;
            let Some(last) = refs.last() else {
                return Ok(Vec::new());
            };
            let from = last.timestamp - q.window;
            let begin = refs.partition_point(|e| e.timestamp < from);
            read_events(&index, &refs[begin..])
        })
        .await
        .map_err(|e| Error::source(self.name(), e.to_string()))??;
        if events.is_empty() {
            return Ok(LastWords::default());
        }
        Ok(select_last_words(&drop_overlap_copies(events), query))
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
    for file in list_files(path)? {
        use std::io::Read;
        let file_no = u32::try_from(index.files.len())
            .map_err(|_| Error::input(path.display().to_string(), "more than 2^32 log files"))?;
        let mut handle = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
        let meta = handle.metadata().map_err(|e| Error::io(&file, e))?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        handle
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&file, e))?;
        let origin = file.display().to_string();
        index.files.push(LogFile {
            path: file.clone(),
            len: meta.len(),
            modified: meta.modified().ok(),
            lines: false,
            default_instance: instance_from_path(path, &file),
        });
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
            file: file_no,
        };
        let mut part = Part::default();
        let read = ingest_file(&bytes, &origin, format, &ctx, &mut part);
        drop(bytes);
        part.end_run();
        index.files[file_no as usize].lines = part.lines;
        if let Err(e) = read {
            index.problems.errors.push(e.to_string());
            continue;
        }
        index.problems.warnings.append(&mut part.warnings);
        if let Some(refused) = super::refused_file(&origin, "event", part.used, &part.skipped) {
            index.problems.errors.push(refused);
            continue;
        }
        index.skipped.merge(part.skipped);
        for (instance, s) in part.by_instance {
            let series = index.by_instance.entry(instance).or_default();
            series.runs.extend(s.runs);
            series.single.extend(s.single);
        }
    }
    for s in index.by_instance.values_mut() {
        s.runs.shrink_to_fit();
        s.single.shrink_to_fit();
    }
    Ok(index)
}

/// An instance's events at or before `cutoff` that its last-words window can hold — every
/// event from the window before the latest such event the index can vouch for without reading
/// — sorted by time (of one time: file order, then order in the file). The runs holding them
/// are read back and their events found again; a run that no longer holds what the index
/// found is an error naming its file.
fn refs_before(
    index: &LogIndex,
    stream: &Regex,
    instance: &str,
    series: &LogSeries,
    cutoff: DateTime<Utc>,
    window: chrono::Duration,
) -> Result<Vec<EventRef>> {
    // The latest event at or before the cutoff is no earlier than this.
    let known = series
        .single
        .iter()
        .map(|e| e.timestamp)
        .chain(series.runs.iter().map(|r| r.last))
        .filter(|t| *t <= cutoff)
        .max();
    let lower = known.map(|t| t - window);
    let wanted = |t: DateTime<Utc>| t <= cutoff && lower.is_none_or(|lo| t >= lo);
    let mut refs: Vec<EventRef> = series
        .single
        .iter()
        .filter(|e| wanted(e.timestamp))
        .copied()
        .collect();
    let mut opened: HashMap<u32, std::fs::File> = HashMap::new();
    for run in &series.runs {
        if run.first > cutoff || lower.is_some_and(|lo| run.last < lo) {
            continue;
        }
        let events = run_events(index, stream, instance, run, &mut opened)?;
        refs.extend(events.into_iter().filter(|e| wanted(e.timestamp)));
    }
    refs.sort_by_key(|e| (e.timestamp, e.file, e.offset));
    Ok(refs)
}

/// The events of a run, found again in its bytes as the index found them.
fn run_events(
    index: &LogIndex,
    stream: &Regex,
    instance: &str,
    run: &LogRun,
    opened: &mut HashMap<u32, std::fs::File>,
) -> Result<Vec<EventRef>> {
    use std::collections::hash_map::Entry;
    use std::os::unix::fs::FileExt;
    let f = &index.files[run.file as usize];
    let changed = |what: String| {
        Error::input(
            f.path.display().to_string(),
            format!("changed since it was indexed ({what}): scan again"),
        )
    };
    let handle = match opened.entry(run.file) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            let handle = std::fs::File::open(&f.path).map_err(|e| Error::io(&f.path, e))?;
            let meta = handle.metadata().map_err(|e| Error::io(&f.path, e))?;
            if meta.len() != f.len || meta.modified().ok() != f.modified {
                return Err(changed("its size or modification time differs".into()));
            }
            e.insert(handle)
        }
    };
    let mut buf = vec![0u8; run.len as usize];
    handle
        .read_exact_at(&mut buf, run.offset)
        .map_err(|e| Error::io(&f.path, e))?;
    let ctx = FileCtx {
        stream,
        default_instance: f.default_instance.clone(),
        file: run.file,
    };
    // Each event's span in the run: lines, or the elements of an `events` array.
    let mut spans = Vec::new();
    if f.lines {
        let mut start = 0usize;
        for raw in buf.split(|&b| b == b'\n') {
            spans.push((start, start + raw.len()));
            start += raw.len() + 1;
        }
    } else {
        let mut i = spans::skip_ws(&buf, 0);
        while i < buf.len() {
            let end = spans::skip_value(&buf, i);
            if end <= i {
                break; // not an element: the run's check below tells
            }
            spans.push((i, end));
            i = spans::skip_ws(&buf, end);
            if buf.get(i) == Some(&b',') {
                i = spans::skip_ws(&buf, i + 1);
            }
        }
    }
    let mut out = Vec::new();
    for (from, to) in spans {
        let text = String::from_utf8_lossy(&buf[from..to]);
        let Ok(v) = serde_json::from_str::<Value>(text.trim()) else {
            continue;
        };
        let Ok((id, timestamp)) = classify(&v, &ctx) else {
            continue;
        };
        if id != instance {
            return Err(changed(format!(
                "another instance's event at byte {}",
                run.offset + from as u64
            )));
        }
        out.push(EventRef {
            timestamp,
            file: run.file,
            offset: run.offset + from as u64,
            len: (to - from) as u32,
        });
    }
    let first = out.iter().map(|e| e.timestamp).min();
    let last = out.iter().map(|e| e.timestamp).max();
    if out.len() != run.events as usize || first != Some(run.first) || last != Some(run.last) {
        return Err(changed(format!(
            "the events at byte {} are not the ones indexed",
            run.offset
        )));
    }
    Ok(out)
}

/// Reads events back from the files of the index (grouped into few reads per file): each with
/// its file's number, in the order given. An event that is no longer where the index found it
/// (the file changed since) is an error naming the file.
fn read_events(index: &LogIndex, refs: &[EventRef]) -> Result<Vec<(LogEvent, usize)>> {
    use std::io::{Read, Seek, SeekFrom};
    /// Neighbouring events closer than this are read in one go.
    const MERGE_GAP: u64 = 16 * 1024;
    let mut order: Vec<usize> = (0..refs.len()).collect();
    order.sort_by_key(|&i| (refs[i].file, refs[i].offset));
    let mut out: Vec<Option<(LogEvent, usize)>> = vec![None; refs.len()];
    let mut k = 0;
    while k < order.len() {
        let first = refs[order[k]];
        let path = &index.files[first.file as usize].path;
        // One run of events of this file close to each other: read together.
        let mut j = k + 1;
        let mut end = first.offset + u64::from(first.len);
        while j < order.len() {
            let r = refs[order[j]];
            if r.file != first.file || r.offset > end + MERGE_GAP {
                break;
            }
            end = end.max(r.offset + u64::from(r.len));
            j += 1;
        }
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut buf = vec![0u8; (end - first.offset) as usize];
        file.seek(SeekFrom::Start(first.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| Error::io(path, e))?;
        for &i in &order[k..j] {
            let r = refs[i];
            let at = (r.offset - first.offset) as usize;
            let raw = &buf[at..at + r.len as usize];
            let event = event_at(raw)
                .filter(|e| e.timestamp == r.timestamp)
                .ok_or_else(|| {
                    Error::input(
                        path.display().to_string(),
                        format!(
                            "changed since it was indexed (no event at byte {} any more): scan again",
                            r.offset
                        ),
                    )
                })?;
            out[i] = Some((event, r.file as usize));
        }
        k = j;
    }
    Ok(out.into_iter().flatten().collect())
}

/// The event in the bytes an [`EventRef`] points at, read as the index read it.
fn event_at(raw: &[u8]) -> Option<LogEvent> {
    let text = String::from_utf8_lossy(raw);
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    let obj = v.as_object()?;
    Some(LogEvent {
        timestamp: event_time(obj)?,
        message: event_message(obj)?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
    })
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
    /// The file's number in the index.
    file: u32,
}

/// One JSON document of a log export, as far as telling its kind goes (its events are read
/// from their byte spans afterwards).
enum LogDoc<'a> {
    Object {
        /// The last `events` key's value was an array (None: no `events` key).
        events_array: Option<bool>,
        tokens: Tokens<'a>,
    },
    Array,
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for LogDoc<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        /// Whether a value is an array (its content skipped).
        struct IsArray(bool);
        impl<'de> serde::Deserialize<'de> for IsArray {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = IsArray;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("any JSON value")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> std::result::Result<IsArray, A::Error> {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(IsArray(true))
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> std::result::Result<IsArray, A::Error> {
                        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        Ok(IsArray(false))
                    }
                    fn visit_str<E>(self, _: &str) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_bool<E>(self, _: bool) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_i64<E>(self, _: i64) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_u64<E>(self, _: u64) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_f64<E>(self, _: f64) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_unit<E>(self) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                }
                d.deserialize_any(V)
            }
        }
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LogDoc<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON document")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut events_array = None;
                let mut tokens = Tokens::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "events" => events_array = Some(map.next_value::<IsArray>()?.0),
                        "NextToken" => tokens.next_token = map.next_value()?,
                        "nextToken" => tokens.next_token_logs = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(LogDoc::Object {
                    events_array,
                    tokens,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LogDoc::Array)
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The documents of a JSON export with where each starts (one, or pages one after the
/// other); errors as [`super::json_documents`].
fn log_documents<'a>(bytes: &'a [u8], origin: &str) -> Result<Vec<(LogDoc<'a>, usize)>> {
    if super::is_blank(bytes) {
        return Err(Error::input(origin, EMPTY_FILE));
    }
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<LogDoc>();
    let mut start = 0;
    while let Some(doc) = stream.next() {
        let doc = doc.map_err(|e| {
            Error::input(
                format!("{origin}:{}:{}", e.line(), e.column()),
                format!("invalid JSON: {e}"),
            )
        })?;
        out.push((doc, spans::skip_ws(bytes, start)));
        start = stream.byte_offset();
    }
    Ok(out)
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
    let docs = match log_documents(bytes, origin) {
        Ok(docs) => docs,
        // JSON lines with a bad line: its first line stands alone as an event.
        Err(_) if format == Format::Auto && first_line_is_an_object(bytes) => {
            ingest_json_lines(bytes, origin, ctx, part);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let exports = docs.iter().all(|(d, _)| match d {
        LogDoc::Object { events_array, .. } => events_array.is_some(),
        LogDoc::Array => docs.len() == 1,
        LogDoc::Other => false,
    });
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
    for (n, (doc, start)) in docs.iter().enumerate() {
        let origin = if docs.len() > 1 {
            format!("{origin} (document {})", n + 1)
        } else {
            origin.to_string()
        };
        let (events, label) = match doc {
            LogDoc::Array => (*start, ""),
            LogDoc::Object {
                events_array,
                tokens,
            } => {
                if let Some(w) = tokens.warning(&origin) {
                    part.warnings.push(w);
                }
                if *events_array != Some(true) {
                    return Err(Error::input(origin, "\"events\" is not an array"));
                }
                let Some(at) = spans::last_member(bytes, *start, b"events") else {
                    return Err(Error::input(origin, "\"events\" is not an array"));
                };
                (at, "events")
            }
            LogDoc::Other => continue,
        };
        for (i, (from, to)) in spans::elements(bytes, events).into_iter().enumerate() {
            let Ok(v) = serde_json::from_slice::<Value>(&bytes[from..to]) else {
                return Err(Error::input(origin, "unreadable event (internal)"));
            };
            ingest_event(
                &v,
                &format!("{origin}: {label}[{i}]"),
                ctx,
                part,
                (from, to),
            );
        }
        // A run never spans two documents.
        part.end_run();
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
    part.lines = true;
    let mut start = 0usize;
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let span = (start, start + raw.len());
        start += raw.len() + 1;
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{origin}:{}", n + 1);
        match serde_json::from_str::<Value>(line) {
            Ok(v) => ingest_event(&v, &at, ctx, part, span),
            Err(e) => part.skipped.push(at, format!("invalid JSON: {e}")),
        }
    }
}

/// An event's time: the first of [`TIME_FIELDS`] present, if it is one.
fn event_time(obj: &serde_json::Map<String, Value>) -> Option<DateTime<Utc>> {
    match TIME_FIELDS.iter().find_map(|f| obj.get(*f)) {
        Some(Value::Number(n)) => n.as_f64().and_then(unix_to_instant),
        Some(Value::String(s)) => parse_instant(s).ok(),
        _ => None,
    }
}

/// An event's message: the first of [`MESSAGE_FIELDS`] that is a string.
fn event_message(obj: &serde_json::Map<String, Value>) -> Option<&str> {
    MESSAGE_FIELDS
        .iter()
        .find_map(|f| obj.get(*f).and_then(Value::as_str))
}

/// One event (`span`: its bytes in the file), indexed by its instance, or skipped.
fn ingest_event(ev: &Value, at: &str, ctx: &FileCtx<'_>, part: &mut Part, span: (usize, usize)) {
    let (instance, timestamp) = match classify(ev, ctx) {
        Ok(found) => found,
        Err(why) => {
            part.skipped.push(at.to_string(), why);
            return;
        }
    };
    let Ok(len) = u32::try_from(span.1 - span.0) else {
        part.skipped
            .push(at.to_string(), "an event longer than 4 GiB");
        return;
    };
    part.add(
        instance,
        EventRef {
            timestamp,
            file: ctx.file,
            offset: span.0 as u64,
            len,
        },
    );
}

/// A usable event's instance and time, or why it is skipped.
fn classify(ev: &Value, ctx: &FileCtx<'_>) -> std::result::Result<(String, DateTime<Utc>), String> {
    let Some(obj) = ev.as_object() else {
        return Err("not a JSON object".into());
    };
    let Some(timestamp) = event_time(obj) else {
        return Err(format!(
            "missing or invalid timestamp (one of {})",
            TIME_FIELDS.join(", ")
        ));
    };
    if event_message(obj).is_none() {
        return Err(format!(
            "missing message (one of {})",
            MESSAGE_FIELDS.join(", ")
        ));
    }
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
        return Err("no instance id: no instance_id field, no log stream naming one, and the file is not named after one (get-log-events output: name the file i-0123456789abcdef0.json after its stream)".into());
    };
    Ok((instance, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index and the folder its files are in (read back while it lives).
    struct Indexed(tempfile::TempDir, LogIndex);

    /// Every event of an instance in the index (its runs read back), sorted by time.
    fn all_refs(index: &LogIndex, id: &str) -> Vec<EventRef> {
        let stream = stream_regex("{instance_id}").unwrap();
        let series = &index.by_instance[id];
        let mut opened = HashMap::new();
        let mut refs = series.single.clone();
        for run in &series.runs {
            refs.extend(run_events(index, &stream, id, run, &mut opened).unwrap());
        }
        refs.sort_by_key(|e| (e.timestamp, e.file, e.offset));
        refs
    }

    impl std::ops::Deref for Indexed {
        type Target = LogIndex;
        fn deref(&self) -> &LogIndex {
            &self.1
        }
    }

    impl Indexed {
        /// Every event of an instance, read back from the files, overlap copies dropped.
        fn events(&self, id: &str) -> Vec<LogEvent> {
            drop_overlap_copies(read_events(&self.1, &all_refs(&self.1, id)).unwrap())
        }
    }

    fn idx(content: &[u8], format: Format) -> Indexed {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, content).unwrap();
        let i = build_index(&p, format, &stream_regex("{instance_id}").unwrap()).unwrap();
        Indexed(dir, i)
    }

    #[test]
    fn json_lines_with_bad_lines_counted() {
        let text = b"{\"timestamp\":\"2026-01-05T10:00:00Z\",\"message\":\"hi\",\"instance_id\":\"i-0123abcd\"}\nnot json\n{\"ts\":1767607201000,\"msg\":\"two\",\"log_stream\":\"i-0123abcd\"}\n\xff\xfe\n";
        let i = idx(text, Format::Auto);
        assert_eq!(all_refs(&i, "i-0123abcd").len(), 2);
        assert_eq!(i.skipped.count, 2);
        assert!(i.skipped.kept[0].location.ends_with("x.log:2"));
    }

    #[test]
    fn filter_log_events_output() {
        let text = br#"{"events":[{"logStreamName":"web/i-0123456789abcdef0","timestamp":1767607200000,"message":"FATAL ERROR: x\n","ingestionTime":1767607201000,"eventId":"1"}],"searchedLogStreams":[]}"#;
        let i = idx(text, Format::Auto);
        assert_eq!(i.events("i-0123456789abcdef0")[0].message, "FATAL ERROR: x");
    }

    /// Indexes a folder holding `files` (name, content).
    fn folder(files: &[(&str, &str)]) -> Indexed {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        let i = build_index(
            dir.path(),
            Format::Auto,
            &stream_regex("{instance_id}").unwrap(),
        )
        .unwrap();
        Indexed(dir, i)
    }

    const A: &str = "i-0123456789abcdef0";
    const B: &str = "i-0fedcba9876543210";

    fn messages(i: &Indexed, id: &str) -> Vec<String> {
        i.events(id).into_iter().map(|e| e.message).collect()
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
    fn events_are_read_back_from_their_bytes() {
        // Brackets, braces and quotes inside strings, escapes in keys, nested values, an
        // `events` key given twice (the last counts, as in a parsed map), two pages.
        let page1 = format!(
            r#"{{"events": [{{"logStreamName": "{A}", "timestamp": 1000, "message": "old"}}],
              "ex\u0074ra": {{"a": ["]", "}}", "\"["]}},
              "events" : [ {{"logStreamName": "{A}", "timestamp": 2000, "message": "a [\"quoted\"] {{brace}}\n", "meta": {{"x": [1, {{"y": "]"}}]}}}} ,
                {{"logStreamName": "{A}", "timestamp": 3000, "message": "caf\u00e9 ✓"}} ]}}"#
        );
        let page2 = format!(
            r#"{{"nextToken": null, "events": [{{"logStreamName": "{A}", "timestamp": 4000, "message": "last"}}]}}"#
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), format!("{page1}\n{page2}\n")).unwrap();
        // A JSON line with an invalid byte inside its string (read lossily), CRLF, a blank line.
        let mut lines = format!(r#"{{"instance_id": "{B}", "ts": 5000, "msg": "bad "#).into_bytes();
        lines.push(0xff);
        lines.extend(
            format!("byte\"}}\r\n\n{{\"instance_id\": \"{B}\", \"ts\": 6000, \"msg\": \"two\"}}")
                .bytes(),
        );
        std::fs::write(dir.path().join("b.jsonl"), &lines).unwrap();
        let i = build_index(
            dir.path(),
            Format::Auto,
            &stream_regex("{instance_id}").unwrap(),
        )
        .unwrap();
        let i = Indexed(dir, i);
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        assert_eq!(
            messages(&i, A),
            ["a [\"quoted\"] {brace}", "café ✓", "last"],
            "the first `events` is replaced by the second"
        );
        let b = messages(&i, B);
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b[0].contains('\u{fffd}'), "read back as indexed: {b:?}");
        assert_eq!(b[1], "two");

        // The file changes under the index: an error naming it, never another line — from
        // the events' bytes, and from a run's.
        let refs = all_refs(&i, A);
        let a = i.0.path().join("a.json");
        std::fs::write(&a, format!("{page2}\n{page1}\n")).unwrap();
        let e = read_events(&i, &refs).unwrap_err().to_string();
        assert!(
            e.contains("a.json") && e.contains("changed since it was indexed"),
            "{e}"
        );
        let stream = stream_regex("{instance_id}").unwrap();
        let run = i.by_instance[A].runs[0];
        let e = run_events(&i, &stream, A, &run, &mut HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.json") && e.contains("changed since it was indexed"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn last_words_read_only_their_window() {
        let ev = |ts: u64, msg: &str| {
            format!(r#"{{"logStreamName": "{A}", "timestamp": {ts}, "message": "{msg}"}}"#)
        };
        // Minute-spaced events; two exports overlapping on the final ones.
        const T0: u64 = 1_767_607_200_000;
        let first: Vec<String> = (0..10)
            .map(|m| ev(T0 + m * 60_000, &format!("m{m}")))
            .collect();
        let second: Vec<String> = (8..12)
            .map(|m| ev(T0 + m * 60_000, &format!("m{m}")))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("1.json"),
            format!(r#"{{"events": [{}]}}"#, first.join(",")),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("2.json"),
            format!(r#"{{"events": [{}]}}"#, second.join(",")),
        )
        .unwrap();
        let logs = FileLogs {
            path: dir.path().to_path_buf(),
            format: Format::Auto,
            stream: Arc::new(stream_regex("{instance_id}").unwrap()),
            index: super::super::FileIndex::new(),
        };
        let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(T0 as i64 + ms).unwrap();
        let query = LastWordsQuery {
            instance_id: A.into(),
            origin: None,
            asg: "web".into(),
            terminated_at: t(9 * 60_000 + 10),
            window: chrono::Duration::minutes(2),
            grace: chrono::Duration::seconds(5),
            max_bytes: 1 << 20,
            launched_at: None,
            private_dns: None,
            private_ip: None,
        };
        let got = logs.last_words(&query).await.unwrap();
        let words: Vec<&str> = got.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            words,
            ["m7", "m8", "m9"],
            "overlap copies dropped, window only"
        );
        assert_eq!(got.last_event_at, Some(t(9 * 60_000)));
        let index = logs.index().await.unwrap();
        assert_eq!(
            (
                index.by_instance[A].runs.len(),
                index.by_instance[A].single.len()
            ),
            (2, 0),
            "each export's events of A are one run"
        );
        let all = drop_overlap_copies(read_events(&index, &all_refs(&index, A)).unwrap());
        assert_eq!(got, select_last_words(&all, &query), "as from every event");
    }

    #[tokio::test]
    async fn last_words_read_only_the_runs_of_their_window() {
        let line = |ts: u64, msg: &str| {
            format!("{{\"instance_id\": \"{A}\", \"ts\": {ts}, \"msg\": \"{msg}\"}}\n")
        };
        const T0: u64 = 1_767_607_200_000;
        const HOUR: u64 = 3_600_000;
        let old: String = (0..5).map(|m| line(T0 + m * 60_000, "old")).collect();
        let new: String = (0..5)
            .map(|m| line(T0 + HOUR + m * 60_000, "new"))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.jsonl"), &old).unwrap();
        std::fs::write(dir.path().join("new.jsonl"), &new).unwrap();
        let logs = FileLogs {
            path: dir.path().to_path_buf(),
            format: Format::Auto,
            stream: Arc::new(stream_regex("{instance_id}").unwrap()),
            index: super::super::FileIndex::new(),
        };
        let t = |ms: u64| DateTime::<Utc>::from_timestamp_millis((T0 + ms) as i64).unwrap();
        let query = |at: DateTime<Utc>, window: i64| LastWordsQuery {
            instance_id: A.into(),
            asg: "web".into(),
            terminated_at: at,
            window: chrono::Duration::minutes(window),
            grace: chrono::Duration::seconds(5),
            max_bytes: 1 << 20,
            ..LastWordsQuery::default()
        };
        let words = |lw: LastWords| lw.events.len();
        assert_eq!(
            words(
                logs.last_words(&query(t(HOUR + 4 * 60_000), 2))
                    .await
                    .unwrap()
            ),
            3
        );
        let index = logs.index().await.unwrap();
        assert_eq!(index.by_instance[A].runs.len(), 2, "one run a file");
        // old.jsonl grows after the index was built: a window that does not reach it never
        // reads it; one that does is an error naming it.
        let mut grown = old.clone();
        grown.push_str(&line(T0 + 10 * 60_000, "later"));
        std::fs::write(dir.path().join("old.jsonl"), grown).unwrap();
        assert_eq!(
            words(
                logs.last_words(&query(t(HOUR + 4 * 60_000), 2))
                    .await
                    .unwrap()
            ),
            3
        );
        let e = logs
            .last_words(&query(t(HOUR + 4 * 60_000), 120))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("old.jsonl") && e.contains("changed since it was indexed"),
            "{e}"
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
