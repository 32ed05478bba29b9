//! The AWS CLI's CloudWatch metric exports read into the index: `get-metric-data` and
//! `get-metric-statistics` output, with their request sidecars —
//! documents classified without a `serde_json::Value` of the file, each result
//! parsed on its own into runs or inline samples.

use super::*;

/// The top level of one JSON metrics document, as far as telling its kind goes; its series
/// are parsed from their byte spans afterwards.
#[derive(Debug, Default)]
pub(super) struct MetricsDoc<'a> {
    pub(super) metric_data: Shape,
    pub(super) datapoints: Shape,
    pub(super) status: LStr<'a>,
    pub(super) label: LStr<'a>,
    /// `data`, and its `resultType` and `result` when it is an object.
    pub(super) data: Shape,
    pub(super) data_result_type: LStr<'a>,
    pub(super) data_result: Shape,
    /// A bare matrix: `resultType` and `result` at the top level.
    pub(super) result_type: LStr<'a>,
    pub(super) result: Shape,
    pub(super) tokens: Tokens<'a>,
}

/// What kind of JSON value a member holds (`Absent` when there is no such member).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
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
pub(super) struct DataVisitor<'a>(std::marker::PhantomData<&'a ()>);

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
pub(super) struct DataSeed<'a>(std::marker::PhantomData<&'a ()>);

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
pub(super) fn metric_documents<'a>(
    bytes: &'a [u8],
    origin: &str,
) -> Result<Vec<(MetricsDoc<'a>, usize)>> {
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
pub(super) fn elements_of(bytes: &[u8], start: usize, key: &[u8]) -> Vec<(Value, (u64, u64))> {
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
pub(super) fn ingest_json(
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
pub(super) struct Sidecar {
    pub(super) by_id: HashMap<String, BTreeMap<String, String>>,
    pub(super) dimensions: Option<BTreeMap<String, String>>,
}

pub(super) fn sidecar_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    file.with_file_name(format!("{stem}{SIDECAR_SUFFIX}"))
}

/// `Dimensions` (`[{"Name": …, "Value": …}]`) as a map.
pub(super) fn dimensions(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
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

pub(super) fn instance_from_dimensions(
    dims: &BTreeMap<String, String>,
    name: &str,
) -> Option<String> {
    dims.get(name).cloned().or_else(|| {
        dims.values()
            .find_map(|v| find_instance_id(v).map(str::to_string))
    })
}

/// Reads `NAME.queries.json` beside `NAME.json`, if there is one: the `--metric-data-queries`
/// array, a `--cli-input-json` document (`MetricDataQueries`, or `Dimensions` for
/// get-metric-statistics), or a `--dimensions` array.
pub(super) fn read_sidecar(file: &Path, instance_dimension: &str) -> Result<Option<Sidecar>> {
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
pub(super) fn aws_instant(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => parse_instant(s).ok(),
        Value::Number(n) => n.as_f64().and_then(unix_to_instant),
        _ => None,
    }
}
/// `aws cloudwatch get-metric-data` output: `MetricDataResults[]` with `Id`, `Label`,
/// `Timestamps`, `Values`, `StatusCode` (pages the CLI joined repeat an Id); each result with
/// its byte span.
pub(super) fn ingest_metric_data(
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
pub(super) struct Sampled {
    pub(super) samples: Vec<Sample>,
    /// Samples with a bad timestamp or value.
    pub(super) bad: usize,
    /// Samples whose value is impossible for the unit.
    pub(super) impossible: usize,
}

impl Sampled {
    pub(super) fn add(&mut self, t: Option<DateTime<Utc>>, v: Option<f64>, unit: &str) {
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
pub(super) fn metric_data_samples(r: &Value, unit: &str) -> std::result::Result<Sampled, String> {
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
pub(super) fn ingest_metric_statistics(
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
pub(super) fn datapoint(p: &Value, opts: &Options) -> std::result::Result<Sample, String> {
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

pub(super) fn count_bad_samples(
    part: &mut Part,
    at: &str,
    bad: usize,
    impossible: usize,
    unit: &str,
) {
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
