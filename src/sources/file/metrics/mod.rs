//! File metrics: CSV `timestamp,instance_id,value` (header optional; with a header, columns are
//! found by name), a Prometheus `query_range` JSON response (matrix), or the AWS CLI's own
//! CloudWatch exports: `aws cloudwatch get-metric-data` and `get-metric-statistics` output.
//!
//! Which instance a CloudWatch series is: for `get-metric-data`, the query's dimensions when
//! the request is beside the output as a sidecar (`NAME.queries.json` beside `NAME.json`: the
//! `--metric-data-queries` JSON, or a `--cli-input-json` document), else the instance id in
//! the result's `Label` (a `SEARCH` expression labels each series with its dimension values;
//! a query can set `"Label": "i-…"`). For `get-metric-statistics` (one series per call): the
//! sidecar's `Dimensions`, else the instance id in the file or folder name (`i-0123….json`),
//! else in its `Label`. The dimension is `sources.metrics.instance_dimension` (InstanceId).
//!
//! A file that cannot be used at all (empty, not JSON, not a metrics export, no record usable)
//! is an input error naming it, never a skipped record; a pagination token left in it (or a
//! series ending in `PartialData`) is a warning that the export is truncated. Both make the
//! scan incomplete.
//!
//! Indexed once per source on first use, like the file logs, and like them the index holds
//! where the samples are, not the samples: per instance, its **runs** — a byte span of a file
//! that holds a stretch of its samples (consecutive CSV rows of that instance, one Prometheus
//! result, one `get-metric-data` result, one `get-metric-statistics` `Datapoints` array) with
//! the span's first and last sample time and its number of samples, 48 bytes a run. A run of
//! at most [`INLINE_MAX_SAMPLES`] samples (CSV rows interleaving instances) is kept as its
//! samples instead, 24 bytes each, so no layout costs more than the samples themselves. A
//! series query reads back only the runs overlapping its window and parses them again as the
//! index did. CSV files are read as a stream; a JSON export is read whole, its documents
//! checked and classified without building a `serde_json::Value` of the file, and each result
//! parsed on its own. A file that changed since it was indexed (size or modification time, or
//! a run no longer holding the samples the index found) is an error for the instance whose
//! series it holds (kept pending and retried by the next scan, which indexes the files again).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::json::{spans, LStr, Tokens};
use super::{
    find_instance_id, instance_from_path, json_documents, list_files, required_path, SkipLog,
    EMPTY_FILE,
};
use crate::config::{MetricFormat, MetricsConfig};
use crate::error::{Error, Result};
use crate::model::MemorySeries;
use crate::sources::{InputProblems, MetricSource, SeriesQuery, Skipped};
use crate::timefmt::{parse_instant, truncate, unix_to_instant};

mod csv_rows;
mod json_exports;
mod prometheus;
#[cfg(test)]
mod tests;

use csv_rows::*;
use json_exports::*;
use prometheus::*;

/// The name ending of a request sidecar: `NAME.queries.json` describes `NAME.json`.
pub const SIDECAR_SUFFIX: &str = ".queries.json";

/// CloudWatch statistics that are memory levels, in order of preference after the configured
/// `sources.metrics.statistic` (`Sum` and `SampleCount` are not).
const LEVEL_STATISTICS: [&str; 3] = ["Maximum", "Average", "Minimum"];

/// `StatusCode`s of a `get-metric-data` result whose values can be used.
const USABLE_STATUSES: [&str; 2] = ["Complete", "PartialData"];

/// A run of at most this many samples is kept in the index as its samples (24 bytes each)
/// rather than as a span to read back (48 bytes).
pub const INLINE_MAX_SAMPLES: usize = 2;

/// The read buffer of a CSV metrics file (read as a stream, never whole).
const CSV_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Auto,
    Csv,
    Prometheus,
}

pub struct FileMetrics {
    path: PathBuf,
    opts: Arc<Options>,
    limit: Option<f64>,
    index: super::FileIndex<MetricIndex>,
}

/// How files are read (from the source's config).
#[derive(Debug, Clone)]
struct Options {
    format: Format,
    /// `sources.metrics.instance_label`: the Prometheus label naming the instance.
    instance_label: String,
    /// `sources.metrics.instance_dimension`: the CloudWatch dimension naming the instance.
    instance_dimension: String,
    /// `sources.metrics.statistic`: the CloudWatch statistic preferred in a datapoint.
    statistic: String,
    /// `sources.metrics.unit`: which values are possible.
    unit: String,
}

/// One sample: its time and value.
type Sample = (DateTime<Utc>, f64);

#[derive(Debug, Default)]
struct MetricIndex {
    /// The files indexed, by number.
    files: Vec<IndexedFile>,
    by_instance: HashMap<String, Series>,
    skipped: SkipLog,
    problems: InputProblems,
}

impl super::IndexedInputs for MetricIndex {
    fn skip_log(&self) -> &SkipLog {
        &self.skipped
    }
    fn problems(&self) -> &InputProblems {
        &self.problems
    }
}

/// A file of the index, as it was when indexed.
#[derive(Debug)]
struct IndexedFile {
    path: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
    /// A CSV file's columns: timestamp, instance, value.
    columns: (usize, usize, usize),
}

/// One instance's samples: the runs to read back, and the samples of short runs, in the
/// order the files hold them.
#[derive(Debug, Default)]
struct Series {
    runs: Vec<Run>,
    inline: Vec<Inline>,
    labels: BTreeMap<String, String>,
}

/// A stretch of one instance's samples in a file: the bytes to parse again, the time range
/// and number of the samples they held when indexed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    offset: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    file: u32,
    len: u32,
    samples: u32,
    kind: RunKind,
}

/// What a run's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    /// CSV rows (the file's columns).
    CsvRows,
    /// One element of a Prometheus matrix `result`.
    Prometheus,
    /// One element of `get-metric-data`'s `MetricDataResults`.
    MetricData,
    /// A `get-metric-statistics` `Datapoints` array.
    Datapoints,
}

/// A sample of a short run, kept in the index; `after`: how many of the series' runs come
/// before it in the files.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Inline {
    t: DateTime<Utc>,
    after: u32,
    v: f64,
}

/// What one file gave, kept apart until the file is judged usable.
#[derive(Debug, Default)]
struct Part {
    file: u32,
    by_instance: HashMap<String, Series>,
    skipped: SkipLog,
    warnings: Vec<String>,
    /// Samples taken.
    used: usize,
}

impl Part {
    fn series(&mut self, instance: &str) -> &mut Series {
        if !self.by_instance.contains_key(instance) {
            self.by_instance
                .insert(instance.to_string(), Series::default());
        }
        self.by_instance.get_mut(instance).expect("inserted above")
    }

    /// Adds a run of an instance's usable samples found in `span` (bytes of the file).
    fn add_run(&mut self, instance: &str, kind: RunKind, span: (u64, u64), samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        self.used += samples.len();
        let file = self.file;
        let series = self.series(instance);
        let (len, count) = (u32::try_from(span.1 - span.0), u32::try_from(samples.len()));
        match (len, count) {
            (Ok(len), Ok(count)) if samples.len() > INLINE_MAX_SAMPLES => {
                let first = samples.iter().map(|s| s.0).min().expect("not empty");
                let last = samples.iter().map(|s| s.0).max().expect("not empty");
                series.runs.push(Run {
                    offset: span.0,
                    first,
                    last,
                    file,
                    len,
                    samples: count,
                    kind,
                });
            }
            _ => {
                let after = series.runs.len() as u32;
                series
                    .inline
                    .extend(samples.iter().map(|&(t, v)| Inline { t, after, v }));
            }
        }
    }
}

impl FileMetrics {
    pub fn new(cfg: &MetricsConfig) -> Result<Self> {
        let format = match cfg.format {
            MetricFormat::Csv => Format::Csv,
            MetricFormat::Prometheus => Format::Prometheus,
            MetricFormat::Auto => Format::Auto,
        };
        Ok(FileMetrics {
            path: required_path("sources.metrics", &cfg.path)?,
            opts: Arc::new(Options {
                format,
                instance_label: cfg.instance_label.clone(),
                instance_dimension: cfg.instance_dimension.clone(),
                statistic: cfg.statistic.clone(),
                unit: cfg.unit.as_str().to_string(),
            }),
            limit: cfg.memory_limit(),
            index: super::FileIndex::new(),
        })
    }

    async fn index(&self) -> Result<Arc<MetricIndex>> {
        let (path, opts) = (self.path.clone(), self.opts.clone());
        self.index
            .get(&self.path, move || build_index(&path, &opts))
            .await
    }
}

#[async_trait]
impl MetricSource for FileMetrics {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    async fn memory_series(
        &self,
        queries: &[SeriesQuery],
    ) -> Result<Vec<Result<Option<MemorySeries>>>> {
        let index = self.index().await?;
        let (opts, limit) = (self.opts.clone(), self.limit);
        let queries: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = queries
            .iter()
            .map(|q| (q.instance_id.clone(), q.start, q.end))
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut files = OpenFiles::default();
            queries
                .iter()
                .map(|(id, start, end)| {
                    let Some(s) = index.by_instance.get(id) else {
                        return Ok(None);
                    };
                    let points = samples_in(&index, &opts, &mut files, id, s, *start, *end)?;
                    Ok((!points.is_empty()).then(|| MemorySeries {
                        points,
                        limit,
                        labels: s.labels.clone(),
                    }))
                })
                .collect()
        })
        .await
        .map_err(|e| Error::source(self.name(), e.to_string()))
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

    async fn input_stamps(&self) -> Result<Option<Vec<crate::model::InputStamp>>> {
        let path = self.path.clone();
        let stamps = tokio::task::spawn_blocking(move || super::stamps(&path))
            .await
            .map_err(|e| Error::source(self.name(), e.to_string()))??;
        Ok(Some(stamps))
    }

    fn read_stamps(&self) -> Option<Vec<crate::model::InputStamp>> {
        self.index.stamps()
    }
}

fn build_index(path: &Path, opts: &Options) -> Result<MetricIndex> {
    use std::io::Read;
    let mut index = MetricIndex::default();
    for file in list_files(path)? {
        if file.to_string_lossy().ends_with(SIDECAR_SUFFIX) {
            continue; // read beside the file it describes
        }
        let file_no = u32::try_from(index.files.len()).map_err(|_| {
            Error::input(path.display().to_string(), "more than 2^32 metrics files")
        })?;
        let mut handle = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
        let meta = handle.metadata().map_err(|e| Error::io(&file, e))?;
        let mut indexed = IndexedFile {
            path: file.clone(),
            len: meta.len(),
            modified: meta.modified().ok(),
            columns: (0, 1, 2),
        };
        let origin = file.display().to_string();
        // The first bytes tell JSON from CSV (and an empty file).
        let mut head = Vec::new();
        (&mut handle)
            .take(64 * 1024)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(&file, e))?;
        let mut first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first.is_none() && (head.len() as u64) < meta.len() {
            // More than the head of whitespace: blank only if all of it is.
            handle
                .read_to_end(&mut head)
                .map_err(|e| Error::io(&file, e))?;
            first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
        }
        let blank = first.is_none();
        let mut part = Part {
            file: file_no,
            ..Part::default()
        };
        let read = if blank {
            Err(Error::input(&origin, EMPTY_FILE))
        } else {
            let is_json = match opts.format {
                Format::Prometheus => true,
                Format::Csv => false,
                Format::Auto => first == Some(b'{'),
            };
            if is_json {
                let mut bytes = head;
                handle
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::io(&file, e))?;
                ingest_json(&bytes, path, &file, opts, &mut part)
            } else {
                let reader = std::io::Cursor::new(head).chain(handle);
                ingest_csv(reader, &file, &opts.unit, &mut part).map(|cols| {
                    indexed.columns = cols;
                })
            }
        };
        index.files.push(indexed);
        if let Err(e) = read {
            index.problems.errors.push(e.to_string());
            continue;
        }
        index.problems.warnings.append(&mut part.warnings);
        if let Some(refused) = super::refused_file(&origin, "sample", part.used, &part.skipped) {
            index.problems.errors.push(refused);
            continue;
        }
        index.skipped.merge(part.skipped);
        for (instance, s) in part.by_instance {
            let series = index.by_instance.entry(instance).or_default();
            let before = series.runs.len() as u32;
            series.inline.extend(s.inline.into_iter().map(|p| Inline {
                after: p.after + before,
                ..p
            }));
            series.runs.extend(s.runs);
            series.labels.extend(s.labels);
        }
    }
    for s in index.by_instance.values_mut() {
        s.runs.shrink_to_fit();
        s.inline.shrink_to_fit();
    }
    Ok(index)
}

/// Files opened while reading runs back (each checked once against what was indexed), and one
/// CSV reader for every run of CSV rows (building a reader and its buffer per run cost more
/// than parsing the run).
#[derive(Default)]
struct OpenFiles {
    open: HashMap<u32, std::fs::File>,
    csv: Option<csv::Reader<std::io::Cursor<Vec<u8>>>>,
}

impl OpenFiles {
    fn get(&mut self, index: &MetricIndex, file: u32) -> Result<&std::fs::File> {
        use std::collections::hash_map::Entry;
        match self.open.entry(file) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let f = &index.files[file as usize];
                let handle = std::fs::File::open(&f.path).map_err(|e| Error::io(&f.path, e))?;
                let meta = handle.metadata().map_err(|e| Error::io(&f.path, e))?;
                if meta.len() != f.len || meta.modified().ok() != f.modified {
                    return Err(changed(&f.path, None));
                }
                Ok(e.insert(handle))
            }
        }
    }
}

/// The error for a file that is not what the index found in it.
fn changed(path: &Path, offset: Option<u64>) -> Error {
    let what = match offset {
        Some(o) => format!("the samples at byte {o} are not the ones indexed"),
        None => "its size or modification time differs".to_string(),
    };
    Error::input(
        path.display().to_string(),
        format!("changed since it was indexed ({what}): scan again"),
    )
}

/// An instance's samples from `start` to `end` (both included), sorted by time, one per time
/// (the first in file order): its inline samples and the runs overlapping the window, read
/// back and checked against the index.
fn samples_in(
    index: &MetricIndex,
    opts: &Options,
    files: &mut OpenFiles,
    instance: &str,
    s: &Series,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Sample>> {
    let within = |t: DateTime<Utc>| t >= start && t <= end;
    let mut out: Vec<Sample> = Vec::new();
    let mut inline = s.inline.iter().peekable();
    for (k, run) in s.runs.iter().enumerate() {
        while let Some(p) = inline.next_if(|p| p.after as usize <= k) {
            if within(p.t) {
                out.push((p.t, p.v));
            }
        }
        if run.last < start || run.first > end {
            continue;
        }
        let samples = read_run(index, opts, files, instance, run)?;
        out.extend(samples.into_iter().filter(|p| within(p.0)));
    }
    out.extend(inline.filter(|p| within(p.t)).map(|p| (p.t, p.v)));
    // Stable: of samples at the same time, the first in file order is kept (as when the whole
    // series was held).
    out.sort_by_key(|p| p.0);
    out.dedup_by_key(|p| p.0);
    Ok(out)
}

/// A run's samples, parsed again from its bytes; an error naming the file when they are not
/// the ones indexed.
fn read_run(
    index: &MetricIndex,
    opts: &Options,
    files: &mut OpenFiles,
    instance: &str,
    run: &Run,
) -> Result<Vec<Sample>> {
    use std::os::unix::fs::FileExt;
    let f = &index.files[run.file as usize];
    let handle = files.get(index, run.file)?;
    let mut buf = vec![0u8; run.len as usize];
    handle
        .read_exact_at(&mut buf, run.offset)
        .map_err(|e| Error::io(&f.path, e))?;
    let samples = match run.kind {
        RunKind::CsvRows => {
            let reader = files
                .csv
                .get_or_insert_with(|| csv_reader(std::io::Cursor::new(Vec::new())));
            *reader.get_mut() = std::io::Cursor::new(buf);
            reader
                .seek_raw(std::io::SeekFrom::Start(0), csv::Position::new())
                .map_err(|e| Error::input(f.path.display().to_string(), e.to_string()))?;
            csv_run_samples(reader, f.columns, &opts.unit, instance)
                .ok_or_else(|| changed(&f.path, Some(run.offset)))?
        }
        RunKind::Prometheus => serde_json::from_slice::<Value>(&buf)
            .ok()
            .and_then(|r| prometheus_samples(&r, &opts.unit))
            .map(|s| s.samples)
            .unwrap_or_default(),
        RunKind::MetricData => serde_json::from_slice::<Value>(&buf)
            .ok()
            .and_then(|r| metric_data_samples(&r, &opts.unit).ok())
            .map(|s| s.samples)
            .unwrap_or_default(),
        RunKind::Datapoints => serde_json::from_slice::<Value>(&buf)
            .ok()
            .and_then(|v| {
                let points = v.as_array()?;
                Some(
                    points
                        .iter()
                        .filter_map(|p| datapoint(p, opts).ok())
                        .collect(),
                )
            })
            .unwrap_or_default(),
    };
    let first = samples.iter().map(|s| s.0).min();
    let last = samples.iter().map(|s| s.0).max();
    if samples.len() != run.samples as usize || first != Some(run.first) || last != Some(run.last) {
        return Err(changed(&f.path, Some(run.offset)));
    }
    Ok(samples)
}
