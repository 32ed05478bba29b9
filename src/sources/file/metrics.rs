//! File metrics: CSV `timestamp,instance_id,value` (header optional; with a header, columns are
//! found by name), or a Prometheus `query_range` JSON response (matrix).
//!
//! Indexed once per source on first use, like the file logs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{find_instance_id, list_files, required_path, SkipLog};
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::model::MemorySeries;
use crate::sources::{MetricSource, SeriesQuery, Skipped};
use crate::timefmt::{parse_instant, unix_to_instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Auto,
    Csv,
    Prometheus,
}

pub struct FileMetrics {
    path: PathBuf,
    format: Format,
    instance_label: String,
    /// `sources.metrics.unit`: which values are possible.
    unit: String,
    limit: Option<f64>,
    index: super::FileIndex<MetricIndex>,
}

#[derive(Debug, Default)]
struct MetricIndex {
    by_instance: HashMap<String, Series>,
    skipped: SkipLog,
}

#[derive(Debug, Default)]
struct Series {
    points: Vec<(DateTime<Utc>, f64)>,
    labels: BTreeMap<String, String>,
}

impl FileMetrics {
    pub fn new(cfg: &SourceConfig) -> Result<Self> {
        let format = match cfg.format.as_str() {
            "csv" => Format::Csv,
            "prometheus" => Format::Prometheus,
            _ => Format::Auto,
        };
        Ok(FileMetrics {
            path: required_path("sources.metrics", &cfg.path)?,
            format,
            instance_label: cfg.instance_label.clone(),
            unit: cfg.unit.clone(),
            limit: cfg.memory_limit(),
            index: super::FileIndex::new(),
        })
    }

    async fn index(&self) -> Result<Arc<MetricIndex>> {
        let (path, format, label) = (self.path.clone(), self.format, self.instance_label.clone());
        let unit = self.unit.clone();
        self.index
            .get(&self.path, move || {
                build_index(&path, format, &label, &unit)
            })
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
}

fn build_index(
    path: &Path,
    format: Format,
    instance_label: &str,
    unit: &str,
) -> Result<MetricIndex> {
    let mut index = MetricIndex::default();
    for file in list_files(path)? {
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let origin = file.display().to_string();
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let is_json = match format {
            Format::Prometheus => true,
            Format::Csv => false,
            Format::Auto => first == Some(b'{'),
        };
        if is_json {
            ingest_prometheus(&bytes, &origin, instance_label, unit, &mut index);
        } else {
            ingest_csv(&bytes, &origin, unit, &mut index);
        }
    }
    for s in index.by_instance.values_mut() {
        s.points.sort_by_key(|p| p.0);
        s.points.dedup_by_key(|p| p.0);
    }
    Ok(index)
}

fn ingest_csv(bytes: &[u8], origin: &str, unit: &str, index: &mut MetricIndex) {
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
                index.skipped.push(at, format!("unreadable CSV row: {e}"));
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
            index
                .skipped
                .push(at, "expected 3 columns: timestamp,instance_id,value");
            continue;
        };
        let Ok(t) = parse_instant(&ts) else {
            index.skipped.push(
                at,
                format!("bad timestamp `{}`", crate::timefmt::truncate(&ts, 40)),
            );
            continue;
        };
        let Some(v) = val.parse::<f64>().ok().filter(|v| v.is_finite()) else {
            index.skipped.push(
                at,
                format!("bad value `{}`", crate::timefmt::truncate(&val, 40)),
            );
            continue;
        };
        if inst.is_empty() {
            index.skipped.push(at, "empty instance_id");
            continue;
        }
        if let Some(why) = crate::sources::impossible_memory_value(v, unit) {
            index.skipped.push(at, why);
            continue;
        }
        index
            .by_instance
            .entry(inst)
            .or_default()
            .points
            .push((t, v));
    }
}

fn ingest_prometheus(
    bytes: &[u8],
    origin: &str,
    instance_label: &str,
    unit: &str,
    index: &mut MetricIndex,
) {
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            index.skipped.push(
                format!("{origin}:{}:{}", e.line(), e.column()),
                format!("invalid JSON: {e}"),
            );
            return;
        }
    };
    if doc.get("status").and_then(Value::as_str) == Some("error") {
        index.skipped.push(
            origin.to_string(),
            "Prometheus response has status \"error\"",
        );
        return;
    }
    let data = doc.get("data").unwrap_or(&doc);
    if let Some(rt) = data.get("resultType").and_then(Value::as_str) {
        if rt != "matrix" {
            index.skipped.push(
                origin.to_string(),
                format!("resultType `{rt}`: expected a query_range matrix"),
            );
            return;
        }
    }
    let Some(results) = data.get("result").and_then(Value::as_array) else {
        index.skipped.push(
            origin.to_string(),
            "not a Prometheus query_range response (no data.result array)",
        );
        return;
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
            index.skipped.push(
                at,
                format!("no `{instance_label}` label naming an instance"),
            );
            continue;
        };
        let Some(values) = r.get("values").and_then(Value::as_array) else {
            index.skipped.push(at, "no values array");
            continue;
        };
        let series = index.by_instance.entry(instance).or_default();
        series.labels.extend(labels);
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
                (Some(_), Some(v))
                    if crate::sources::impossible_memory_value(v, unit).is_some() =>
                {
                    impossible += 1
                }
                (Some(t), Some(v)) => series.points.push((t, v)),
                _ => bad += 1,
            }
        }
        if bad > 0 {
            index.skipped.push(
                at.clone(),
                format!("{bad} sample(s) with a bad timestamp or value"),
            );
        }
        if impossible > 0 {
            index.skipped.push(
                at,
                format!("{impossible} sample(s) with an impossible value for a {unit} series (negative, or above what an instance can hold)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(content: &[u8]) -> MetricIndex {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        std::fs::write(&p, content).unwrap();
        build_index(&p, Format::Auto, "instance_id", "percent").unwrap()
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
