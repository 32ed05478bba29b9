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
//! Indexed once per source on first use, like the file logs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    find_instance_id, instance_from_path, json_documents, list_files, required_path,
    truncation_warning, SkipLog, EMPTY_FILE,
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

#[derive(Debug, Default)]
struct MetricIndex {
    by_instance: HashMap<String, Series>,
    skipped: SkipLog,
    problems: InputProblems,
}

#[derive(Debug, Default)]
struct Series {
    points: Vec<(DateTime<Utc>, f64)>,
    labels: BTreeMap<String, String>,
}

/// What one file gave, kept apart until the file is judged usable.
#[derive(Debug, Default)]
struct Part {
    by_instance: HashMap<String, Series>,
    skipped: SkipLog,
    warnings: Vec<String>,
    /// Samples taken.
    used: usize,
}

impl Part {
    fn series(&mut self, instance: &str) -> &mut Series {
        self.by_instance.entry(instance.to_string()).or_default()
    }

    /// Adds a sample unless its value is impossible for the unit (then counted in `impossible`).
    fn push(&mut self, instance: &str, t: DateTime<Utc>, v: f64, unit: &str) -> bool {
        if crate::sources::impossible_memory_value(v, unit).is_some() {
            return false;
        }
        self.series(instance).points.push((t, v));
        self.used += 1;
        true
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
        Ok(queries
            .iter()
            .map(|q| {
                Ok(index.by_instance.get(&q.instance_id).and_then(|s| {
                    let lo = s.points.partition_point(|p| p.0 < q.start);
                    let hi = s.points.partition_point(|p| p.0 <= q.end);
                    (lo < hi).then(|| MemorySeries {
                        points: s.points[lo..hi].to_vec(),
                        limit: self.limit,
                        labels: s.labels.clone(),
                    })
                }))
            })
            .collect())
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
    let mut index = MetricIndex::default();
    for file in list_files(path)? {
        if file.to_string_lossy().ends_with(SIDECAR_SUFFIX) {
            continue; // read beside the file it describes
        }
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let origin = file.display().to_string();
        if super::is_blank(&bytes) {
            index
                .problems
                .errors
                .push(format!("{origin}: {EMPTY_FILE}"));
            continue;
        }
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let is_json = match opts.format {
            Format::Prometheus => true,
            Format::Csv => false,
            Format::Auto => first == Some(b'{'),
        };
        let mut part = Part::default();
        let read = if is_json {
            ingest_json(&bytes, path, &file, opts, &mut part)
        } else {
            ingest_csv(&bytes, &origin, &opts.unit, &mut part);
            Ok(())
        };
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
            series.points.extend(s.points);
            series.labels.extend(s.labels);
        }
    }
    for s in index.by_instance.values_mut() {
        s.points.sort_by_key(|p| p.0);
        s.points.dedup_by_key(|p| p.0);
    }
    Ok(index)
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
    let docs = json_documents(bytes, &origin)?;
    let sidecar = read_sidecar(file, &opts.instance_dimension)?;
    let mut partial: BTreeMap<String, bool> = BTreeMap::new();
    let mut truncated = false;
    for (n, doc) in docs.iter().enumerate() {
        let origin = if docs.len() > 1 {
            format!("{origin} (document {})", n + 1)
        } else {
            origin.clone()
        };
        if let Some(w) = truncation_warning(doc, &origin) {
            part.warnings.push(w);
            truncated = true;
        }
        if opts.format == Format::Auto && doc.get("MetricDataResults").is_some() {
            ingest_metric_data(doc, &origin, sidecar.as_ref(), opts, part, &mut partial)?;
        } else if opts.format == Format::Auto && doc.get("Datapoints").is_some() {
            let instance = sidecar
                .as_ref()
                .and_then(|s| s.dimensions.as_ref())
                .and_then(|d| instance_from_dimensions(d, &opts.instance_dimension))
                .or_else(|| instance_from_path(root, file))
                .or_else(|| {
                    doc.get("Label")
                        .and_then(Value::as_str)
                        .and_then(find_instance_id)
                        .map(str::to_string)
                })
                .ok_or_else(|| {
                    Error::input(
                        &origin,
                        format!(
                            "get-metric-statistics output does not say which instance it is: name the file after it (i-0123456789abcdef0.json) or put the request beside it as {}",
                            sidecar_path(file).display()
                        ),
                    )
                })?;
            let dims = sidecar.as_ref().and_then(|s| s.dimensions.clone());
            ingest_metric_statistics(doc, &origin, &instance, dims, opts, part)?;
        } else {
            ingest_prometheus(doc, &origin, &opts.instance_label, &opts.unit, part)?;
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
/// `Timestamps`, `Values`, `StatusCode` (pages the CLI joined repeat an Id).
fn ingest_metric_data(
    doc: &Value,
    origin: &str,
    sidecar: Option<&Sidecar>,
    opts: &Options,
    part: &mut Part,
    partial: &mut BTreeMap<String, bool>,
) -> Result<()> {
    let Some(results) = doc.get("MetricDataResults").and_then(Value::as_array) else {
        return Err(Error::input(
            origin,
            "\"MetricDataResults\" is not an array",
        ));
    };
    for (i, r) in results.iter().enumerate() {
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
        let (Some(times), Some(values)) = (
            r.get("Timestamps").and_then(Value::as_array),
            r.get("Values").and_then(Value::as_array),
        ) else {
            part.skipped.push(at, "no Timestamps and Values arrays");
            continue;
        };
        if times.len() != values.len() {
            part.skipped.push(
                at,
                format!("{} Timestamps but {} Values", times.len(), values.len()),
            );
            continue;
        }
        if let Some(d) = dims {
            part.series(&instance).labels.extend(d.clone());
        }
        let (mut bad, mut impossible) = (0usize, 0usize);
        for (t, v) in times.iter().zip(values) {
            match (aws_instant(t), v.as_f64().filter(|v| v.is_finite())) {
                (Some(t), Some(v)) => {
                    if !part.push(&instance, t, v, &opts.unit) {
                        impossible += 1;
                    }
                }
                _ => bad += 1,
            }
        }
        count_bad_samples(part, &at, bad, impossible, &opts.unit);
    }
    Ok(())
}

/// `aws cloudwatch get-metric-statistics` output: one series, `Datapoints[]` with `Timestamp`,
/// the statistics asked for, `Unit`.
fn ingest_metric_statistics(
    doc: &Value,
    origin: &str,
    instance: &str,
    dims: Option<BTreeMap<String, String>>,
    opts: &Options,
    part: &mut Part,
) -> Result<()> {
    let Some(points) = doc.get("Datapoints").and_then(Value::as_array) else {
        return Err(Error::input(origin, "\"Datapoints\" is not an array"));
    };
    if let Some(d) = dims {
        part.series(instance).labels.extend(d);
    }
    let preferred: Vec<&str> = std::iter::once(opts.statistic.as_str())
        .chain(LEVEL_STATISTICS)
        .collect();
    let want_unit = if opts.unit == "percent" {
        "Percent"
    } else {
        "Bytes"
    };
    for (i, p) in points.iter().enumerate() {
        let at = format!("{origin}: Datapoints[{i}]");
        let Some(t) = p.get("Timestamp").and_then(aws_instant) else {
            part.skipped.push(at, "missing or bad Timestamp");
            continue;
        };
        if let Some(u) = p.get("Unit").and_then(Value::as_str) {
            if u != want_unit && u != "None" {
                part.skipped.push(
                    at,
                    format!(
                        "Unit `{u}`, but sources.metrics.unit = \"{}\" reads {want_unit}",
                        opts.unit
                    ),
                );
                continue;
            }
        }
        let value = preferred
            .iter()
            .find_map(|s| p.get(*s).and_then(Value::as_f64))
            .or_else(|| {
                p.get("ExtendedStatistics")
                    .and_then(|e| e.get(&opts.statistic))
                    .and_then(Value::as_f64)
            })
            .filter(|v| v.is_finite());
        let Some(v) = value else {
            part.skipped.push(
                at,
                format!(
                    "no memory level: none of {} (Sum and SampleCount are not levels)",
                    preferred.join(", ")
                ),
            );
            continue;
        };
        if !part.push(instance, t, v, &opts.unit) {
            let why = crate::sources::impossible_memory_value(v, &opts.unit).unwrap_or_default();
            part.skipped.push(at, why);
        }
    }
    Ok(())
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

fn ingest_csv(bytes: &[u8], origin: &str, unit: &str, part: &mut Part) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    // Column positions: timestamp, instance, value. A header row may reorder them.
    let mut cols = (0usize, 1usize, 2usize);
    for (n, rec) in reader.byte_records().enumerate() {
        let line = rec
            .as_ref()
            .map(|r| r.position().map_or(n as u64 + 1, |p| p.line()))
            .unwrap_or(n as u64 + 1);
        let at = format!("{origin}:{line}");
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                part.skipped.push(at, format!("unreadable CSV row: {e}"));
                continue;
            }
        };
        let field = |i: usize| rec.get(i).map(|b| String::from_utf8_lossy(b).into_owned());
        if n == 0 {
            let names: Vec<String> = (0..rec.len())
                .filter_map(field)
                .map(|s| s.to_ascii_lowercase())
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
        let (Some(ts), Some(inst), Some(val)) = (field(cols.0), field(cols.1), field(cols.2))
        else {
            part.skipped
                .push(at, "expected 3 columns: timestamp,instance_id,value");
            continue;
        };
        let Ok(t) = parse_instant(&ts) else {
            part.skipped
                .push(at, format!("bad timestamp `{}`", truncate(&ts, 40)));
            continue;
        };
        let Some(v) = val.parse::<f64>().ok().filter(|v| v.is_finite()) else {
            part.skipped
                .push(at, format!("bad value `{}`", truncate(&val, 40)));
            continue;
        };
        if inst.is_empty() {
            part.skipped.push(at, "empty instance_id");
            continue;
        }
        if let Some(why) = crate::sources::impossible_memory_value(v, unit) {
            part.skipped.push(at, why);
            continue;
        }
        part.push(&inst, t, v, unit);
    }
}

fn ingest_prometheus(
    doc: &Value,
    origin: &str,
    instance_label: &str,
    unit: &str,
    part: &mut Part,
) -> Result<()> {
    if doc.get("status").and_then(Value::as_str) == Some("error") {
        return Err(Error::input(
            origin,
            "Prometheus response has status \"error\"",
        ));
    }
    let data = doc.get("data").unwrap_or(doc);
    if let Some(rt) = data.get("resultType").and_then(Value::as_str) {
        if rt != "matrix" {
            return Err(Error::input(
                origin,
                format!("resultType `{rt}`: expected a query_range matrix"),
            ));
        }
    }
    let Some(results) = data.get("result").and_then(Value::as_array) else {
        return Err(Error::input(
            origin,
            "not a metrics export: expected a Prometheus query_range response (data.result), `aws cloudwatch get-metric-data` output (MetricDataResults) or `aws cloudwatch get-metric-statistics` output (Datapoints)",
        ));
    };
    for (i, r) in results.iter().enumerate() {
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
        let Some(values) = r.get("values").and_then(Value::as_array) else {
            part.skipped.push(at, "no values array");
            continue;
        };
        part.series(&instance).labels.extend(labels);
        let (mut bad, mut impossible) = (0usize, 0usize);
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
            match (t, v) {
                (Some(t), Some(v)) => {
                    if !part.push(&instance, t, v, unit) {
                        impossible += 1;
                    }
                }
                _ => bad += 1,
            }
        }
        count_bad_samples(part, &at, bad, impossible, unit);
    }
    Ok(())
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

    /// Indexes a folder holding `files` (name, content).
    fn folder(files: &[(&str, &str)]) -> MetricIndex {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        build_index(dir.path(), &opts()).unwrap()
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
        let s = &i.by_instance[A];
        assert_eq!(s.points.len(), 2);
        assert_eq!(s.points[0].1, 40.0, "sorted by time");
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
        assert_eq!(i.by_instance[A].points.len(), 2);
        assert_eq!(
            i.by_instance[B].points,
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
        assert_eq!(
            i.by_instance[A].points.len(),
            1,
            "what a truncated file holds is used"
        );
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
        let s = &i.by_instance[A];
        assert_eq!(
            s.points.iter().map(|p| p.1).collect::<Vec<_>>(),
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
        assert_eq!(i.by_instance[B].points.len(), 2);
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
        assert_eq!(i.by_instance[A].points.len(), 1);
    }

    fn idx(content: &[u8]) -> MetricIndex {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        std::fs::write(&p, content).unwrap();
        build_index(&p, &opts()).unwrap()
    }

    #[test]
    fn impossible_values_are_skipped_with_their_line() {
        let i = idx(b"instance_id,timestamp,value\ni-0123abcd,1767607200,40\ni-0123abcd,1767607260,99999\ni-0123abcd,1767607320,-3\ni-0123abcd,1767607380,1e308\ni-0123abcd,1767607440,42\n");
        assert_eq!(i.by_instance["i-0123abcd"].points.len(), 2);
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
        assert_eq!(p.by_instance["i-0123abcd"].points.len(), 1);
        assert!(
            p.skipped.kept[0].reason.contains("impossible"),
            "{:?}",
            p.skipped.kept
        );
    }

    #[test]
    fn csv_with_header_and_bad_rows() {
        let i = idx(b"instance_id,timestamp,value\ni-0123abcd,2026-01-05T10:00:00Z,40.5\ni-0123abcd,1767607500,41\ni-0123abcd,nope,1\ni-0123abcd,1767607800,NaN\nshort\n");
        assert_eq!(i.by_instance["i-0123abcd"].points.len(), 2);
        assert_eq!(i.skipped.count, 3);
        assert!(
            i.skipped.kept[0].location.ends_with("m:4"),
            "{:?}",
            i.skipped.kept
        );
    }

    #[test]
    fn prometheus_matrix() {
        let i = idx(br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"instance_id":"i-0123abcd","version":"v2"},"values":[[1767607200,"40"],[1767607260.5,"41.5"],[1767607320,"x"]]}]}}"#);
        let s = &i.by_instance["i-0123abcd"];
        assert_eq!(s.points.len(), 2);
        assert_eq!(s.labels["version"], "v2");
        assert_eq!(i.skipped.count, 1);
    }
}
