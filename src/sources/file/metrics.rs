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

/// The top level of one JSON metrics document, as far as telling its kind goes; its series
/// are parsed from their byte spans afterwards.
#[derive(Debug, Default)]
struct MetricsDoc<'a> {
    metric_data: Shape,
    datapoints: Shape,
    status: LStr<'a>,
    label: LStr<'a>,
    /// `data`, and its `resultType` and `result` when it is an object.
    data: Shape,
    data_result_type: LStr<'a>,
    data_result: Shape,
    /// A bare matrix: `resultType` and `result` at the top level.
    result_type: LStr<'a>,
    result: Shape,
    tokens: Tokens<'a>,
}

/// What kind of JSON value a member holds (`Absent` when there is no such member).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Shape {
    #[default]
    Absent,
    Array,
    Object,
    Other,
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(d.deserialize_any(DataVisitor(std::marker::PhantomData))?.0)
    }
}

/// Reads a value's [`Shape`], and `resultType` / `result` when it is an object.
struct DataVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for DataVisitor<'a> {
    type Value = (Shape, LStr<'a>, Shape);
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let (mut result_type, mut result) = (LStr::default(), Shape::Absent);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "resultType" => result_type = map.next_value()?,
                "result" => result = map.next_value()?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok((Shape::Object, result_type, result))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok((Shape::Array, LStr::default(), Shape::Absent))
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok((Shape::Other, LStr::default(), Shape::Absent))
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok((Shape::Other, LStr::default(), Shape::Absent))
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok((Shape::Other, LStr::default(), Shape::Absent))
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok((Shape::Other, LStr::default(), Shape::Absent))
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok((Shape::Other, LStr::default(), Shape::Absent))
    }
    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok((Shape::Other, LStr::default(), Shape::Absent))
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for MetricsDoc<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = MetricsDoc<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON document")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut doc = MetricsDoc::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "MetricDataResults" => doc.metric_data = map.next_value()?,
                        "Datapoints" => doc.datapoints = map.next_value()?,
                        "status" => doc.status = map.next_value()?,
                        "Label" => doc.label = map.next_value()?,
                        "data" => {
                            let seed = DataSeed(std::marker::PhantomData);
                            (doc.data, doc.data_result_type, doc.data_result) =
                                map.next_value_seed(seed)?;
                        }
                        "resultType" => doc.result_type = map.next_value()?,
                        "result" => doc.result = map.next_value()?,
                        "NextToken" => doc.tokens.next_token = map.next_value()?,
                        "nextToken" => doc.tokens.next_token_logs = map.next_value()?,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(doc)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(MetricsDoc::default())
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
                Ok(MetricsDoc::default())
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
                Ok(MetricsDoc::default())
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
                Ok(MetricsDoc::default())
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
                Ok(MetricsDoc::default())
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
                Ok(MetricsDoc::default())
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(MetricsDoc::default())
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `data` read with [`DataVisitor`].
struct DataSeed<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::DeserializeSeed<'de> for DataSeed<'a> {
    type Value = (Shape, LStr<'a>, Shape);
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(DataVisitor(std::marker::PhantomData))
    }
}

/// The documents of a JSON metrics export with where each starts (one, or pages one after
/// the other): a syntax error is an error naming the file, line and column.
fn metric_documents<'a>(bytes: &'a [u8], origin: &str) -> Result<Vec<(MetricsDoc<'a>, usize)>> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<MetricsDoc>();
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

/// The elements of the array member `key` of the object starting at `start` (the last such
/// member, as a parsed map keeps), each parsed on its own, with its byte span.
fn elements_of(bytes: &[u8], start: usize, key: &[u8]) -> Vec<(Value, (u64, u64))> {
    let Some(at) = spans::last_member(bytes, start, key) else {
        return Vec::new();
    };
    spans::elements(bytes, at)
        .into_iter()
        .map(|(from, to)| {
            let v = serde_json::from_slice::<Value>(&bytes[from..to]).unwrap_or(Value::Null);
            (v, (from as u64, to as u64))
        })
        .collect()
}

/// One JSON metrics export (one or more documents): each document is recognised by its keys.
fn ingest_json(
    bytes: &[u8],
    root: &Path,
    file: &Path,
    opts: &Options,
    part: &mut Part,
) -> Result<()> {
    let origin = file.display().to_string();
    let docs = metric_documents(bytes, &origin)?;
    let sidecar = read_sidecar(file, &opts.instance_dimension)?;
    let mut partial: BTreeMap<String, bool> = BTreeMap::new();
    let mut truncated = false;
    for (n, (doc, start)) in docs.iter().enumerate() {
        let origin = if docs.len() > 1 {
            format!("{origin} (document {})", n + 1)
        } else {
            origin.clone()
        };
        if let Some(w) = doc.tokens.warning(&origin) {
            part.warnings.push(w);
            truncated = true;
        }
        if opts.format == Format::Auto && doc.metric_data != Shape::Absent {
            if doc.metric_data != Shape::Array {
                return Err(Error::input(
                    origin,
                    "\"MetricDataResults\" is not an array",
                ));
            }
            let results = elements_of(bytes, *start, b"MetricDataResults");
            ingest_metric_data(
                &results,
                &origin,
                sidecar.as_ref(),
                opts,
                part,
                &mut partial,
            )?;
        } else if opts.format == Format::Auto && doc.datapoints != Shape::Absent {
            let instance = sidecar
                .as_ref()
                .and_then(|s| s.dimensions.as_ref())
                .and_then(|d| instance_from_dimensions(d, &opts.instance_dimension))
                .or_else(|| instance_from_path(root, file))
                .or_else(|| doc.label.get().and_then(find_instance_id).map(str::to_string))
                .ok_or_else(|| {
                    Error::input(
                        &origin,
                        format!(
                            "get-metric-statistics output does not say which instance it is: name the file after it (i-0123456789abcdef0.json) or put the request beside it as {}",
                            sidecar_path(file).display()
                        ),
                    )
                })?;
            if doc.datapoints != Shape::Array {
                return Err(Error::input(origin, "\"Datapoints\" is not an array"));
            }
            let span = spans::last_member(bytes, *start, b"Datapoints")
                .map(|at| (at, spans::skip_value(bytes, at)))
                .unwrap_or((*start, *start));
            let points: Vec<Value> = elements_of(bytes, *start, b"Datapoints")
                .into_iter()
                .map(|(v, _)| v)
                .collect();
            let dims = sidecar.as_ref().and_then(|s| s.dimensions.clone());
            let span = (span.0 as u64, span.1 as u64);
            ingest_metric_statistics(&points, span, &origin, &instance, dims, opts, part);
        } else {
            ingest_prometheus(
                bytes,
                doc,
                *start,
                &origin,
                &opts.instance_label,
                &opts.unit,
                part,
            )?;
        }
    }
    let partial: Vec<String> = partial
        .into_iter()
        .filter(|(_, p)| *p)
        .map(|(id, _)| format!("`{id}`"))
        .collect();
    if !partial.is_empty() && !truncated {
        part.warnings.push(format!(
            "{origin}: truncated export: the series of Id {} end with StatusCode PartialData (CloudWatch had more); export it again without --no-paginate or --max-items",
            partial.join(", ")
        ));
    }
    Ok(())
}

/// A request beside an export: per query Id (get-metric-data) or for the one series
/// (get-metric-statistics), the dimensions asked for.
#[derive(Debug, Default)]
struct Sidecar {
    by_id: HashMap<String, BTreeMap<String, String>>,
    dimensions: Option<BTreeMap<String, String>>,
}

fn sidecar_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    file.with_file_name(format!("{stem}{SIDECAR_SUFFIX}"))
}

/// `Dimensions` (`[{"Name": …, "Value": …}]`) as a map.
fn dimensions(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let list = v?.as_array()?;
    Some(
        list.iter()
            .filter_map(|d| {
                Some((
                    d.get("Name")?.as_str()?.to_string(),
                    d.get("Value")?.as_str()?.to_string(),
                ))
            })
            .collect(),
    )
}

fn instance_from_dimensions(dims: &BTreeMap<String, String>, name: &str) -> Option<String> {
    dims.get(name).cloned().or_else(|| {
        dims.values()
            .find_map(|v| find_instance_id(v).map(str::to_string))
    })
}

/// Reads `NAME.queries.json` beside `NAME.json`, if there is one: the `--metric-data-queries`
/// array, a `--cli-input-json` document (`MetricDataQueries`, or `Dimensions` for
/// get-metric-statistics), or a `--dimensions` array.
fn read_sidecar(file: &Path, instance_dimension: &str) -> Result<Option<Sidecar>> {
    let path = sidecar_path(file);
    if !path.is_file() {
        return Ok(None);
    }
    let origin = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let doc = json_documents(&bytes, &origin)?
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    let mut out = Sidecar::default();
    let queries = match &doc {
        Value::Array(items) if items.iter().any(|q| q.get("Id").is_some()) => Some(items),
        Value::Object(m) => m.get("MetricDataQueries").and_then(Value::as_array),
        _ => None,
    };
    if let Some(queries) = queries {
        for q in queries {
            let (Some(id), Some(dims)) = (
                q.get("Id").and_then(Value::as_str),
                dimensions(q.pointer("/MetricStat/Metric/Dimensions")),
            ) else {
                continue; // an expression: its results are labelled, not mapped
            };
            out.by_id.insert(id.to_string(), dims);
        }
    } else if let Some(dims) = dimensions(doc.get("Dimensions")).or_else(|| dimensions(Some(&doc)))
    {
        out.dimensions = Some(dims);
    }
    let names_instance = out
        .by_id
        .values()
        .chain(out.dimensions.iter())
        .any(|d| instance_from_dimensions(d, instance_dimension).is_some());
    if !names_instance {
        return Err(Error::input(
            origin,
            format!("a request sidecar must name instances: the `--metric-data-queries` JSON (MetricStat.Metric.Dimensions with {instance_dimension}), or the `--cli-input-json` document of the command"),
        ));
    }
    Ok(Some(out))
}

/// An instant as the AWS CLI prints it: ISO 8601 text, or epoch seconds.
fn aws_instant(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => parse_instant(s).ok(),
        Value::Number(n) => n.as_f64().and_then(unix_to_instant),
        _ => None,
    }
}
/// `aws cloudwatch get-metric-data` output: `MetricDataResults[]` with `Id`, `Label`,
/// `Timestamps`, `Values`, `StatusCode` (pages the CLI joined repeat an Id); each result with
/// its byte span.
fn ingest_metric_data(
    results: &[(Value, (u64, u64))],
    origin: &str,
    sidecar: Option<&Sidecar>,
    opts: &Options,
    part: &mut Part,
    partial: &mut BTreeMap<String, bool>,
) -> Result<()> {
    for (i, (r, span)) in results.iter().enumerate() {
        let id = r.get("Id").and_then(Value::as_str).unwrap_or("");
        let at = format!("{origin}: MetricDataResults[{i}] (Id `{id}`)");
        let status = r
            .get("StatusCode")
            .and_then(Value::as_str)
            .unwrap_or("Complete");
        if !USABLE_STATUSES.contains(&status) {
            return Err(Error::input(
                at,
                format!("StatusCode `{status}`: CloudWatch returned no data for this query; export it again"),
            ));
        }
        partial.insert(id.to_string(), status == "PartialData");
        let dims = sidecar.and_then(|s| s.by_id.get(id));
        let label = r.get("Label").and_then(Value::as_str).unwrap_or("");
        let instance = dims
            .and_then(|d| instance_from_dimensions(d, &opts.instance_dimension))
            .or_else(|| find_instance_id(label).map(str::to_string));
        let Some(instance) = instance else {
            part.skipped.push(
                at,
                format!(
                    "which instance? its Label `{}` holds no instance id, and no {SIDECAR_SUFFIX} request beside the file maps Id `{id}` to a {} dimension",
                    truncate(label, 60),
                    opts.instance_dimension
                ),
            );
            continue;
        };
        let sampled = match metric_data_samples(r, &opts.unit) {
            Ok(s) => s,
            Err(why) => {
                part.skipped.push(at, why);
                continue;
            }
        };
        if let Some(d) = dims {
            part.series(&instance).labels.extend(d.clone());
        }
        part.add_run(&instance, RunKind::MetricData, *span, &sampled.samples);
        count_bad_samples(part, &at, sampled.bad, sampled.impossible, &opts.unit);
    }
    Ok(())
}

/// The usable samples of one part of an export, and how many were refused.
#[derive(Debug, Default)]
struct Sampled {
    samples: Vec<Sample>,
    /// Samples with a bad timestamp or value.
    bad: usize,
    /// Samples whose value is impossible for the unit.
    impossible: usize,
}

impl Sampled {
    fn add(&mut self, t: Option<DateTime<Utc>>, v: Option<f64>, unit: &str) {
        match (t, v) {
            (Some(t), Some(v)) if crate::sources::impossible_memory_value(v, unit).is_none() => {
                self.samples.push((t, v))
            }
            (Some(_), Some(_)) => self.impossible += 1,
            _ => self.bad += 1,
        }
    }
}

/// One `MetricDataResults` element's samples, or why it has none to give.
fn metric_data_samples(r: &Value, unit: &str) -> std::result::Result<Sampled, String> {
    let (Some(times), Some(values)) = (
        r.get("Timestamps").and_then(Value::as_array),
        r.get("Values").and_then(Value::as_array),
    ) else {
        return Err("no Timestamps and Values arrays".into());
    };
    if times.len() != values.len() {
        return Err(format!(
            "{} Timestamps but {} Values",
            times.len(),
            values.len()
        ));
    }
    let mut out = Sampled::default();
    for (t, v) in times.iter().zip(values) {
        out.add(aws_instant(t), v.as_f64().filter(|v| v.is_finite()), unit);
    }
    Ok(out)
}

/// `aws cloudwatch get-metric-statistics` output: one series, `Datapoints[]` with `Timestamp`,
/// the statistics asked for, `Unit`; `span`: the array's bytes.
fn ingest_metric_statistics(
    points: &[Value],
    span: (u64, u64),
    origin: &str,
    instance: &str,
    dims: Option<BTreeMap<String, String>>,
    opts: &Options,
    part: &mut Part,
) {
    if let Some(d) = dims {
        part.series(instance).labels.extend(d);
    }
    let mut samples = Vec::new();
    for (i, p) in points.iter().enumerate() {
        match datapoint(p, opts) {
            Ok(s) => samples.push(s),
            Err(why) => part.skipped.push(format!("{origin}: Datapoints[{i}]"), why),
        }
    }
    part.add_run(instance, RunKind::Datapoints, span, &samples);
}

/// One `get-metric-statistics` datapoint as a sample, or why it is skipped.
fn datapoint(p: &Value, opts: &Options) -> std::result::Result<Sample, String> {
    let Some(t) = p.get("Timestamp").and_then(aws_instant) else {
        return Err("missing or bad Timestamp".into());
    };
    let want_unit = if opts.unit == "percent" {
        "Percent"
    } else {
        "Bytes"
    };
    if let Some(u) = p.get("Unit").and_then(Value::as_str) {
        if u != want_unit && u != "None" {
            return Err(format!(
                "Unit `{u}`, but sources.metrics.unit = \"{}\" reads {want_unit}",
                opts.unit
            ));
        }
    }
    let preferred = std::iter::once(opts.statistic.as_str()).chain(LEVEL_STATISTICS);
    let value = preferred
        .clone()
        .find_map(|s| p.get(s).and_then(Value::as_f64))
        .or_else(|| {
            p.get("ExtendedStatistics")
                .and_then(|e| e.get(&opts.statistic))
                .and_then(Value::as_f64)
        })
        .filter(|v| v.is_finite());
    let Some(v) = value else {
        return Err(format!(
            "no memory level: none of {} (Sum and SampleCount are not levels)",
            preferred.collect::<Vec<_>>().join(", ")
        ));
    };
    if let Some(why) = crate::sources::impossible_memory_value(v, &opts.unit) {
        return Err(why);
    }
    Ok((t, v))
}

fn count_bad_samples(part: &mut Part, at: &str, bad: usize, impossible: usize, unit: &str) {
    if bad > 0 {
        part.skipped.push(
            at.to_string(),
            format!("{bad} sample(s) with a bad timestamp or value"),
        );
    }
    if impossible > 0 {
        part.skipped.push(
            at.to_string(),
            format!("{impossible} sample(s) with an impossible value for a {unit} series (negative, or above what an instance can hold)"),
        );
    }
}

/// The CSV reader of metrics files (and of a run's bytes read back): no header handling (the
/// first row is looked at by [`ingest_csv`]), `#` comments, cells trimmed.
fn csv_reader<R: std::io::Read>(reader: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .buffer_capacity(CSV_BUFFER)
        .from_reader(reader)
}

/// One CSV row as an instance's sample, or why it is skipped.
fn csv_sample<'r>(
    rec: &'r csv::ByteRecord,
    cols: (usize, usize, usize),
    unit: &str,
) -> std::result::Result<(std::borrow::Cow<'r, str>, DateTime<Utc>, f64), String> {
    let field = |i: usize| rec.get(i).map(String::from_utf8_lossy);
    let (Some(ts), Some(inst), Some(val)) = (field(cols.0), field(cols.1), field(cols.2)) else {
        return Err("expected 3 columns: timestamp,instance_id,value".into());
    };
    let Ok(t) = parse_instant(&ts) else {
        return Err(format!("bad timestamp `{}`", truncate(&ts, 40)));
    };
    let Some(v) = val.parse::<f64>().ok().filter(|v| v.is_finite()) else {
        return Err(format!("bad value `{}`", truncate(&val, 40)));
    };
    if inst.is_empty() {
        return Err("empty instance_id".into());
    }
    if let Some(why) = crate::sources::impossible_memory_value(v, unit) {
        return Err(why);
    }
    Ok((inst, t, v))
}

/// A CSV metrics file, read as a stream: its usable rows indexed as runs (consecutive rows of
/// one instance), bad rows skipped with their line. The columns it uses come back (a header
/// row may reorder them); an I/O error is the file's.
fn ingest_csv<R: std::io::Read>(
    reader: R,
    file: &Path,
    unit: &str,
    part: &mut Part,
) -> Result<(usize, usize, usize)> {
    let origin = file.display().to_string();
    let mut reader = csv_reader(reader);
    // Column positions: timestamp, instance, value. A header row may reorder them.
    let mut cols = (0usize, 1usize, 2usize);
    let mut rec = csv::ByteRecord::new();
    // The run being read: its instance and byte span, and its samples.
    let mut run: Option<(String, u64, u64)> = None;
    let mut samples: Vec<Sample> = Vec::new();
    let mut n = 0usize;
    loop {
        let row = n;
        n += 1;
        match reader.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    if let csv::ErrorKind::Io(io) = e.into_kind() {
                        return Err(Error::io(file, io));
                    }
                    unreachable!("matched as an I/O error above");
                }
                let at = format!("{origin}:{}", row + 1);
                part.skipped.push(at, format!("unreadable CSV row: {e}"));
                continue;
            }
        }
        let (line, start) = rec
            .position()
            .map_or((row as u64 + 1, 0), |p| (p.line(), p.byte()));
        let end = reader.position().byte();
        if row == 0 {
            let names: Vec<String> = rec
                .iter()
                .map(|b| String::from_utf8_lossy(b).to_ascii_lowercase())
                .collect();
            let find = |opts: &[&str]| names.iter().position(|c| opts.contains(&c.as_str()));
            if let (Some(t), Some(i), Some(v)) = (
                find(&["timestamp", "time", "ts"]),
                find(&["instance_id", "instance", "instanceid"]),
                find(&["value", "mem_used_percent", "memory"]),
            ) {
                cols = (t, i, v);
                continue;
            }
        }
        match csv_sample(&rec, cols, unit) {
            Err(why) => part.skipped.push(format!("{origin}:{line}"), why),
            Ok((inst, t, v)) => {
                match &mut run {
                    Some((id, _, run_end)) if *id == *inst => *run_end = end,
                    _ => {
                        if let Some((id, from, to)) = run.take() {
                            part.add_run(&id, RunKind::CsvRows, (from, to), &samples);
                            samples.clear();
                        }
                        run = Some((inst.into_owned(), start, end));
                    }
                }
                samples.push((t, v));
            }
        }
    }
    if let Some((id, from, to)) = run {
        part.add_run(&id, RunKind::CsvRows, (from, to), &samples);
    }
    Ok(cols)
}

/// The samples of a run of CSV rows read back: `None` when a usable row is another
/// instance's (the file changed).
fn csv_run_samples<R: std::io::Read>(
    reader: &mut csv::Reader<R>,
    cols: (usize, usize, usize),
    unit: &str,
    instance: &str,
) -> Option<Vec<Sample>> {
    let mut rec = csv::ByteRecord::new();
    let mut out = Vec::new();
    while reader.read_byte_record(&mut rec).unwrap_or(true) {
        if let Ok((inst, t, v)) = csv_sample(&rec, cols, unit) {
            if inst != instance {
                return None;
            }
            out.push((t, v));
        }
    }
    Some(out)
}

/// A Prometheus `query_range` response (or a bare matrix), its document starting at `start`.
fn ingest_prometheus(
    bytes: &[u8],
    doc: &MetricsDoc<'_>,
    start: usize,
    origin: &str,
    instance_label: &str,
    unit: &str,
    part: &mut Part,
) -> Result<()> {
    if doc.status.get() == Some("error") {
        return Err(Error::input(
            origin,
            "Prometheus response has status \"error\"",
        ));
    }
    let in_data = doc.data != Shape::Absent;
    let (result_type, result) = if in_data {
        (&doc.data_result_type, doc.data_result)
    } else {
        (&doc.result_type, doc.result)
    };
    if let Some(rt) = result_type.get() {
        if rt != "matrix" {
            return Err(Error::input(
                origin,
                format!("resultType `{rt}`: expected a query_range matrix"),
            ));
        }
    }
    if result != Shape::Array {
        return Err(Error::input(
            origin,
            "not a metrics export: expected a Prometheus query_range response (data.result), `aws cloudwatch get-metric-data` output (MetricDataResults) or `aws cloudwatch get-metric-statistics` output (Datapoints)",
        ));
    }
    let object = if in_data {
        spans::last_member(bytes, start, b"data").unwrap_or(start)
    } else {
        start
    };
    for (i, (r, span)) in elements_of(bytes, object, b"result")
        .into_iter()
        .enumerate()
    {
        let at = format!("{origin}: data.result[{i}]");
        let labels: BTreeMap<String, String> = r
            .get("metric")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let instance = labels.get(instance_label).cloned().or_else(|| {
            labels
                .values()
                .find_map(|v| find_instance_id(v).map(str::to_string))
        });
        let Some(instance) = instance else {
            part.skipped.push(
                at,
                format!("no `{instance_label}` label naming an instance"),
            );
            continue;
        };
        let Some(sampled) = prometheus_samples(&r, unit) else {
            part.skipped.push(at, "no values array");
            continue;
        };
        part.series(&instance).labels.extend(labels);
        part.add_run(&instance, RunKind::Prometheus, span, &sampled.samples);
        count_bad_samples(part, &at, sampled.bad, sampled.impossible, unit);
    }
    Ok(())
}

/// One Prometheus matrix result's samples (`None`: it has no `values` array).
fn prometheus_samples(r: &Value, unit: &str) -> Option<Sampled> {
    let values = r.get("values").and_then(Value::as_array)?;
    let mut out = Sampled::default();
    for pair in values {
        let t = pair
            .get(0)
            .and_then(Value::as_f64)
            .and_then(unix_to_instant);
        let v = pair
            .get(1)
            .and_then(|v| {
                v.as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .or_else(|| v.as_f64())
            })
            .filter(|v| v.is_finite());
        out.add(t, v, unit);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            format: Format::Auto,
            instance_label: "instance_id".into(),
            instance_dimension: "InstanceId".into(),
            statistic: "Maximum".into(),
            unit: "percent".into(),
        }
    }

    /// An index with the folder its files are in (read back while it lives).
    struct Indexed {
        _dir: tempfile::TempDir,
        index: MetricIndex,
    }

    impl std::ops::Deref for Indexed {
        type Target = MetricIndex;
        fn deref(&self) -> &MetricIndex {
            &self.index
        }
    }

    impl Indexed {
        /// Every sample of an instance, read back as a query reads them.
        fn points(&self, instance: &str) -> Vec<Sample> {
            let s = &self.by_instance[instance];
            let (start, end) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
            let mut files = OpenFiles::default();
            samples_in(&self.index, &opts(), &mut files, instance, s, start, end).unwrap()
        }
    }

    /// Indexes a folder holding `files` (name, content).
    fn folder(files: &[(&str, &str)]) -> Indexed {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        let index = build_index(dir.path(), &opts()).unwrap();
        Indexed { _dir: dir, index }
    }

    const A: &str = "i-0123456789abcdef0";
    const B: &str = "i-0fedcba9876543210";

    #[test]
    fn get_metric_data_by_label_and_pages_joined() {
        let page = |ts: &str, v: f64, status: &str| {
            format!(
                r#"{{"Id": "m0", "Label": "{A}", "Timestamps": ["{ts}"], "Values": [{v}], "StatusCode": "{status}"}}"#
            )
        };
        let doc = format!(
            r#"{{"MetricDataResults": [{}, {}], "Messages": []}}"#,
            page("2026-01-05T10:01:00+00:00", 41.0, "PartialData"),
            page("2026-01-05T10:00:00Z", 40.0, "Complete")
        );
        let i = folder(&[("mem.json", &doc)]);
        let s = i.points(A);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].1, 40.0, "sorted by time");
        assert!(i.problems.is_empty(), "{:?}", i.problems);
    }

    #[test]
    fn get_metric_data_by_sidecar_ids() {
        let doc = String::from(
            r#"{"MetricDataResults": [
              {"Id": "a", "Label": "mem_used_percent", "Timestamps": [1767607200, 1767607260], "Values": [40, 41], "StatusCode": "Complete"},
              {"Id": "b", "Label": "mem_used_percent", "Timestamps": [1767607200], "Values": [70], "StatusCode": "Complete"}]}"#,
        );
        let q = |id: &str, inst: &str| {
            format!(
                r#"{{"Id": "{id}", "MetricStat": {{"Metric": {{"Namespace": "CWAgent", "MetricName": "mem_used_percent", "Dimensions": [{{"Name": "InstanceId", "Value": "{inst}"}}]}}, "Period": 60, "Stat": "Maximum"}}}}"#
            )
        };
        let queries = format!("[{}, {}]", q("a", A), q("b", B));
        let i = folder(&[("m.json", &doc), ("m.queries.json", &queries)]);
        assert_eq!(i.points(A).len(), 2);
        assert_eq!(
            i.points(B),
            [(unix_to_instant(1767607200.0).unwrap(), 70.0)]
        );
        assert_eq!(i.by_instance[A].labels["InstanceId"], A);
        assert!(
            i.problems.is_empty(),
            "the sidecar is not read as data: {:?}",
            i.problems
        );
        // Without the sidecar, the labels name no instance: the whole file is refused.
        let i = folder(&[("m.json", &doc)]);
        assert!(i.by_instance.is_empty());
        assert_eq!(i.skipped.count, 0);
        assert_eq!(i.problems.errors.len(), 1, "{:?}", i.problems);
        assert!(
            i.problems.errors[0].contains("m.json: no usable sample"),
            "{:?}",
            i.problems
        );
        assert!(
            i.problems.errors[0].contains("queries.json"),
            "{:?}",
            i.problems
        );
    }

    #[test]
    fn truncated_and_failed_metric_data() {
        let token = format!(
            r#"{{"MetricDataResults": [{{"Id": "m0", "Label": "{A}", "Timestamps": ["2026-01-05T10:00:00Z"], "Values": [40], "StatusCode": "PartialData"}}], "NextToken": "tok"}}"#
        );
        let partial = token.replace(r#", "NextToken": "tok""#, "");
        let forbidden = format!(
            r#"{{"MetricDataResults": [{{"Id": "m0", "Label": "{B}", "Timestamps": [], "Values": [], "StatusCode": "Forbidden"}}]}}"#
        );
        let i = folder(&[
            ("a.json", &token),
            ("b.json", &partial),
            ("c.json", &forbidden),
        ]);
        assert_eq!(i.points(A).len(), 1, "what a truncated file holds is used");
        let w = &i.problems.warnings;
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("a.json") && w[0].contains("NextToken") && w[0].contains("--no-paginate"),
            "{w:?}"
        );
        assert!(
            w[1].contains("b.json") && w[1].contains("PartialData"),
            "{w:?}"
        );
        let e = &i.problems.errors;
        assert!(
            e.len() == 1 && e[0].contains("c.json") && e[0].contains("Forbidden"),
            "{e:?}"
        );
    }

    #[test]
    fn get_metric_statistics_by_file_name() {
        let doc = r#"{"Label": "mem_used_percent", "Datapoints": [
          {"Timestamp": "2026-01-05T10:01:00Z", "Maximum": 41.5, "Average": 30.0, "Unit": "Percent"},
          {"Timestamp": "2026-01-05T10:00:00Z", "Average": 40.0, "Unit": "Percent"},
          {"Timestamp": "2026-01-05T10:02:00Z", "SampleCount": 3.0, "Unit": "Percent"},
          {"Timestamp": "2026-01-05T10:03:00Z", "Maximum": 4e9, "Unit": "Bytes"}]}"#;
        let i = folder(&[(&format!("web/{A}.json"), doc)]);
        assert_eq!(
            i.points(A).iter().map(|p| p.1).collect::<Vec<_>>(),
            [40.0, 41.5]
        );
        assert_eq!(i.skipped.count, 2);
        assert!(i.skipped.kept[0].reason.contains("Sum and SampleCount"));
        assert!(i.skipped.kept[1].reason.contains("Unit `Bytes`"));
        // Named by nothing: the file is an input error naming it.
        let i = folder(&[("web/mem.json", doc)]);
        assert!(i.by_instance.is_empty());
        assert!(
            i.problems.errors[0].contains("mem.json")
                && i.problems.errors[0].contains("mem.queries.json"),
            "{:?}",
            i.problems
        );
        // A sidecar with the request names it.
        let req = format!(
            r#"{{"Namespace": "CWAgent", "MetricName": "mem_used_percent", "Dimensions": [{{"Name": "InstanceId", "Value": "{B}"}}]}}"#
        );
        let i = folder(&[("web/mem.json", doc), ("web/mem.queries.json", &req)]);
        assert_eq!(i.points(B).len(), 2);
    }

    #[test]
    fn empty_and_unparsable_files_are_input_errors() {
        let i = folder(&[
            ("empty.json", ""),
            ("blank.csv", "\n  \n"),
            ("cut.json", "{\"MetricDataResults\": [\n"),
            ("other.json", "{\"Reservations\": []}"),
            ("garbage.csv", "a,b\nnope\n"),
            ("good.csv", &format!("2026-01-05T10:00:00Z,{A},40\n")),
        ]);
        let e = i.problems.errors.join("\n");
        assert_eq!(i.problems.errors.len(), 5, "{e}");
        for name in [
            "empty.json: empty file",
            "blank.csv: empty file",
            "cut.json:2:",
            "other.json: not a metrics export",
            "garbage.csv: no usable sample",
        ] {
            assert!(e.contains(name), "{name} in {e}");
        }
        assert_eq!(
            i.skipped.count, 0,
            "a refused file is not counted as skipped records"
        );
        assert_eq!(i.points(A).len(), 1);
    }

    fn idx(content: &[u8]) -> Indexed {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        std::fs::write(&p, content).unwrap();
        let index = build_index(&p, &opts()).unwrap();
        Indexed { _dir: dir, index }
    }

    #[test]
    fn impossible_values_are_skipped_with_their_line() {
        let i = idx(b"instance_id,timestamp,value\ni-0123abcd,1767607200,40\ni-0123abcd,1767607260,99999\ni-0123abcd,1767607320,-3\ni-0123abcd,1767607380,1e308\ni-0123abcd,1767607440,42\n");
        assert_eq!(i.points("i-0123abcd").len(), 2);
        assert_eq!(i.skipped.count, 3);
        assert!(
            i.skipped.kept[0].location.ends_with("m:3"),
            "{:?}",
            i.skipped.kept
        );
        assert!(
            i.skipped.kept[0].reason.contains("99999"),
            "{:?}",
            i.skipped.kept
        );
        let p = idx(br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"instance_id":"i-0123abcd"},"values":[[1767607200,"40"],[1767607260,"99999"]]}]}}"#);
        assert_eq!(p.points("i-0123abcd").len(), 1);
        assert!(
            p.skipped.kept[0].reason.contains("impossible"),
            "{:?}",
            p.skipped.kept
        );
    }

    #[test]
    fn csv_with_header_and_bad_rows() {
        let i = idx(b"instance_id,timestamp,value\ni-0123abcd,2026-01-05T10:00:00Z,40.5\ni-0123abcd,1767607500,41\ni-0123abcd,nope,1\ni-0123abcd,1767607800,NaN\nshort\n");
        assert_eq!(i.points("i-0123abcd").len(), 2);
        assert_eq!(i.skipped.count, 3);
        assert!(
            i.skipped.kept[0].location.ends_with("m:4"),
            "{:?}",
            i.skipped.kept
        );
    }

    /// CSV rows `instance,second,value` as `timestamp,instance_id,value` lines.
    fn rows(rows: &[(&str, i64, f64)]) -> String {
        rows.iter()
            .map(|(i, t, v)| format!("{},{i},{v}\n", 1767607200 + t))
            .collect()
    }

    fn at(second: i64) -> DateTime<Utc> {
        unix_to_instant(1767607200.0 + second as f64).unwrap()
    }

    #[test]
    fn grouped_rows_are_runs_and_interleaved_rows_samples() {
        let grouped: Vec<(&str, i64, f64)> = (0..5)
            .map(|k| (A, k * 60, 40.0 + k as f64))
            .chain((0..5).map(|k| (B, k * 60, 50.0 + k as f64)))
            .collect();
        let i = folder(&[("g.csv", &rows(&grouped))]);
        let a = &i.by_instance[A];
        assert_eq!((a.runs.len(), a.inline.len()), (1, 0), "{a:?}");
        assert_eq!((a.runs[0].samples, a.runs[0].first), (5, at(0)));
        assert_eq!(a.runs[0].last, at(240));
        assert_eq!(
            i.points(A),
            (0..5)
                .map(|k| (at(k * 60), 40.0 + k as f64))
                .collect::<Vec<_>>()
        );
        // Rows sorted by time, instances interleaved: each run is one row, kept as a sample.
        let interleaved: Vec<(&str, i64, f64)> = (0..5)
            .flat_map(|k| [(A, k * 60, 40.0 + k as f64), (B, k * 60, 50.0 + k as f64)])
            .collect();
        let i = folder(&[("t.csv", &rows(&interleaved))]);
        let b = &i.by_instance[B];
        assert_eq!((b.runs.len(), b.inline.len()), (0, 5), "{b:?}");
        assert_eq!(
            i.points(B),
            (0..5)
                .map(|k| (at(k * 60), 50.0 + k as f64))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn of_samples_at_one_time_the_first_file_s_is_kept() {
        // a.csv: a run of A (0..4 min) and a lone sample at 10 min; b.csv: a lone sample at
        // 2 min (inside a.csv's run) and a run over 8..12 min (over a.csv's lone sample).
        let a: Vec<(&str, i64, f64)> = (0..5)
            .map(|k| (A, k * 60, 40.0))
            .chain([(B, 0, 1.0), (A, 600, 41.0)])
            .collect();
        let b: Vec<(&str, i64, f64)> = [(A, 120, 99.0), (B, 0, 2.0)]
            .into_iter()
            .chain((8..13).map(|k| (A, k * 60, 60.0)))
            .collect();
        let i = folder(&[("a.csv", &rows(&a)), ("b.csv", &rows(&b))]);
        let s = &i.by_instance[A];
        assert_eq!((s.runs.len(), s.inline.len()), (2, 2), "{s:?}");
        let got = i.points(A);
        let value = |second: i64| got.iter().find(|p| p.0 == at(second)).map(|p| p.1);
        assert_eq!(value(120), Some(40.0), "a.csv's run before b.csv's sample");
        assert_eq!(value(600), Some(41.0), "a.csv's sample before b.csv's run");
        assert_eq!(value(540), Some(60.0));
        assert_eq!(got.len(), 10, "one sample per time: {got:?}");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "sorted: {got:?}");
    }

    #[test]
    fn a_window_reads_only_its_runs_and_a_changed_file_is_an_error() {
        let old: Vec<(&str, i64, f64)> = (0..5).map(|k| (A, k * 60, 40.0)).collect();
        let new: Vec<(&str, i64, f64)> = (0..5).map(|k| (A, 3600 + k * 60, 45.0)).collect();
        let i = folder(&[("old.csv", &rows(&old)), ("new.csv", &rows(&new))]);
        let series = |start: i64, end: i64| {
            let mut files = OpenFiles::default();
            samples_in(
                &i,
                &opts(),
                &mut files,
                A,
                &i.by_instance[A],
                at(start),
                at(end),
            )
        };
        assert_eq!(series(60, 3660).unwrap().len(), 4 + 2);
        // old.csv grows after the index was built: a window without its run never reads it.
        let old_path = i._dir.path().join("old.csv");
        let mut grown = rows(&old);
        grown.push_str(&rows(&[(B, 0, 1.0)]));
        std::fs::write(&old_path, &grown).unwrap();
        assert_eq!(series(3600, 7200).unwrap().len(), 5);
        let e = series(0, 7200).unwrap_err().to_string();
        assert!(
            e.contains("old.csv") && e.contains("changed since it was indexed"),
            "{e}"
        );
        // new.csv rewritten with a sample moved, same size and modification time: the run read
        // back is not the one indexed.
        let new_path = i._dir.path().join("new.csv");
        let modified = std::fs::metadata(&new_path).unwrap().modified().unwrap();
        let moved = rows(&new).replace(
            &format!("{}", 1767607200 + 3600 + 240),
            &format!("{}", 1767607200 + 3600 + 250),
        );
        assert_eq!(moved.len(), rows(&new).len());
        std::fs::write(&new_path, &moved).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new_path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        let e = series(3600, 7200).unwrap_err().to_string();
        assert!(
            e.contains("new.csv") && e.contains("not the ones indexed"),
            "{e}"
        );
    }

    #[test]
    fn prometheus_matrix() {
        let i = idx(br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"instance_id":"i-0123abcd","version":"v2"},"values":[[1767607200,"40"],[1767607260.5,"41.5"],[1767607320,"x"]]}]}}"#);
        assert_eq!(i.points("i-0123abcd").len(), 2);
        assert_eq!(i.by_instance["i-0123abcd"].labels["version"], "v2");
        assert_eq!(i.skipped.count, 1);
    }
}
