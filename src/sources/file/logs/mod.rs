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

mod ingest;

use ingest::*;

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

impl super::IndexedInputs for LogIndex {
    fn skip_log(&self) -> &SkipLog {
        &self.skipped
    }
    fn problems(&self) -> &InputProblems {
        &self.problems
    }
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
        self.index.skipped()
    }

    fn skipped_by_input(&self) -> Vec<crate::sources::SkippedGroup> {
        self.index.skipped_by_input()
    }

    fn input_problems(&self) -> InputProblems {
        self.index.input_problems()
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

#[cfg(test)]
mod tests;
