//! The pure parts of the Prometheus backend: PromQL built safely from a template (every
//! instance id regex-escaped where it sits in a regex, then escaped as a PromQL string, so no id
//! can change the query), the step that keeps an answer under the server's point limit, the
//! grouping of instances into requests, and the parsing of the documented `query_range`
//! answer (`status`, `data.resultType = "matrix"`, `result[].metric`, `values` as
//! `[unix_seconds, "value"]`; `status: "error"` with `errorType` and `error`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::config::{Template, INSTANCE_ID, INSTANCE_MATCHER};

/// A batch may take a step up to this many times the step its narrowest member would get
/// alone (a short-lived instance is not read at the resolution of a long window).
pub const MAX_STEP_INFLATION: i64 = 2;
/// Points the alignment of start and end to the step can add (one at each end).
pub const ALIGNMENT_POINTS: i64 = 2;

/// Escapes what Go's RE2 syntax treats as special (`regexp.QuoteMeta`'s set), so the text
/// matches itself literally.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes text for the inside of a double-quoted PromQL string (Go string-literal escapes):
/// backslash and quote, and control characters, so the string cannot end early.
pub fn string_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The regex matcher selecting exactly `ids`: `label=~"id1|id2"` (Prometheus anchors regex
/// matchers at both ends).
pub fn instance_matcher(label: &str, ids: &[&str]) -> String {
    let alternatives: Vec<String> = ids.iter().map(|id| regex_escape(id)).collect();
    format!("{label}=~\"{}\"", string_escape(&alternatives.join("|")))
}

/// The PromQL for a batch of instances (one id for a per-instance template).
pub fn render(template: &Template, label: &str, ids: &[&str]) -> String {
    match template {
        Template::Batched(t) => t.replace(INSTANCE_MATCHER, &instance_matcher(label, ids)),
        Template::PerInstance(t) => {
            let id = ids.first().copied().unwrap_or_default();
            let mut out = String::with_capacity(t.len() + id.len());
            let mut rest = t.as_str();
            while let Some(i) = rest.find(INSTANCE_ID) {
                let before = &rest[..i];
                // The template was checked: the placeholder is a whole quoted value after a
                // matcher operator; in a regex (=~, !~) the id is regex-escaped first.
                let op = before.trim_end_matches('"').trim_end();
                let value = if op.ends_with("=~") || op.ends_with("!~") {
                    regex_escape(id)
                } else {
                    id.to_string()
                };
                out.push_str(before);
                out.push_str(&string_escape(&value));
                rest = &rest[i + INSTANCE_ID.len()..];
            }
            out.push_str(rest);
            out
        }
    }
}

/// The step (whole seconds) for a window: at least `min_step`, and long enough that the
/// window, once aligned to the step, holds at most `max_points` points.
pub fn choose_step(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    min_step: i64,
    max_points: usize,
) -> i64 {
    let range = (end - start).num_seconds().max(0);
    // floor(aligned / step) + 1 ≤ max_points, where aligned ≤ range + 2·step.
    let intervals = (max_points as i64 - 1 - ALIGNMENT_POINTS).max(1);
    let needed = (range + intervals - 1) / intervals;
    needed.max(min_step).max(1)
}

/// `start` rounded down and `end` up to multiples of `step` (stable evaluation times: a
/// sample written on a step boundary comes back with its own timestamp).
pub fn align(start: DateTime<Utc>, end: DateTime<Utc>, step: i64) -> (i64, i64) {
    let s = start.timestamp().div_euclid(step) * step;
    let e = end.timestamp();
    let e = if e.rem_euclid(step) == 0 {
        e
    } else {
        (e.div_euclid(step) + 1) * step
    };
    (s, e.max(s))
}

/// One request: which queries it serves, over which window, at which step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indexes into the queries, in order.
    pub members: Vec<usize>,
    /// Aligned window, unix seconds.
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

/// Groups windows into requests of at most `batch` instances: by start time, a request taking
/// a member only while its step stays within `MAX_STEP_INFLATION` of the step its narrowest
/// member would get alone.
pub fn plan(
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
    batch: usize,
    min_step: i64,
    max_points: usize,
) -> Vec<Plan> {
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&i| (windows[i].0, windows[i].1, i));
    let own = |i: usize| choose_step(windows[i].0, windows[i].1, min_step, max_points);
    let mut plans: Vec<Plan> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let finish = |members: Vec<usize>, plans: &mut Vec<Plan>| {
        if members.is_empty() {
            return;
        }
        let start = members
            .iter()
            .map(|&i| windows[i].0)
            .min()
            .unwrap_or_default();
        let end = members
            .iter()
            .map(|&i| windows[i].1)
            .max()
            .unwrap_or_default();
        let step = choose_step(start, end, min_step, max_points);
        let (s, e) = align(start, end, step);
        let mut members = members;
        members.sort_unstable();
        plans.push(Plan {
            members,
            start: s,
            end: e,
            step,
        });
    };
    for i in order {
        if !current.is_empty() {
            let mut with = current.clone();
            with.push(i);
            let start = with.iter().map(|&j| windows[j].0).min().unwrap_or_default();
            let end = with.iter().map(|&j| windows[j].1).max().unwrap_or_default();
            let narrowest = with.iter().map(|&j| own(j)).min().unwrap_or(min_step);
            let fits = with.len() <= batch
                && choose_step(start, end, min_step, max_points) <= narrowest * MAX_STEP_INFLATION;
            if !fits {
                finish(std::mem::take(&mut current), &mut plans);
            }
        }
        current.push(i);
    }
    finish(current, &mut plans);
    plans
}

/// One series of a matrix answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawSeries {
    #[serde(default)]
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    pub values: Vec<(f64, String)>,
}

/// Why an answer is not a matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// `status: "error"`: the server's `errorType` and `error`.
    Api { error_type: String, error: String },
    /// Not the documented shape.
    Malformed(String),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Api { error_type, error } => write!(f, "{error_type}: {error}"),
            AnswerError::Malformed(m) => write!(f, "not a Prometheus API answer: {m}"),
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: serde_json::Value,
}

/// A parsed matrix answer, and the server's warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    pub series: Vec<RawSeries>,
    pub warnings: Vec<String>,
}
/// Prometheus's default lookback delta: `query_range` repeats a series' last sample for this
/// long after the series ends (no staleness marker when the target vanished with the instance
/// or the data was backfilled).
pub const LOOKBACK_DELTA_SECS: i64 = 300;

/// Drops the tail `query_range` invents after a series ends: the points of the final run of
/// equal values that lie within the lookback delta before its end (the run's first point
/// stays). A real flat tail loses at most five minutes of identical values; a spike that ended
/// the series is no longer repeated at its peak, where it read as a higher floor.
pub fn trim_lookback_tail(pts: &mut Vec<(DateTime<Utc>, f64)>) {
    let Some(&(last_t, last_v)) = pts.last() else {
        return;
    };
    let mut first = pts.len() - 1;
    while first > 0 && pts[first - 1].1 == last_v {
        first -= 1;
    }
    let cutoff = pts[first]
        .0
        .max(last_t - chrono::Duration::seconds(LOOKBACK_DELTA_SECS));
    let keep = first + pts[first..].iter().filter(|p| p.0 <= cutoff).count();
    pts.truncate(keep.max(first + 1));
}

/// Parses a `query_range` answer body.
pub fn parse_answer(body: &[u8]) -> Result<Matrix, AnswerError> {
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| AnswerError::Malformed(format!("{e} in `{}`", snippet(body))))?;
    if env.status != "success" {
        return Err(AnswerError::Api {
            error_type: env.error_type.unwrap_or_else(|| env.status.clone()),
            error: env.error.unwrap_or_default(),
        });
    }
    let data = env
        .data
        .ok_or_else(|| AnswerError::Malformed("status \"success\" without data".into()))?;
    if data.result_type != "matrix" {
        return Err(AnswerError::Malformed(format!(
            "resultType `{}`, expected `matrix`",
            data.result_type
        )));
    }
    let series: Vec<RawSeries> = serde_json::from_value(data.result)
        .map_err(|e| AnswerError::Malformed(format!("data.result: {e}")))?;
    Ok(Matrix {
        series,
        warnings: env.warnings,
    })
}

/// The first characters of a body, for messages.
pub fn snippet(body: &[u8]) -> String {
    crate::timefmt::truncate(String::from_utf8_lossy(body).trim(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn ids_are_regex_escaped_then_string_escaped() {
        assert_eq!(regex_escape("i-1|.*"), r"i-1\|\.\*");
        assert_eq!(string_escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(string_escape("a\nb\u{1}"), r"a\nb\x01");
        let batched = Template::Batched("m{job=\"x\",{instance_matcher}}".into());
        assert_eq!(
            render(&batched, "instance_id", &["i-a", "i-1|.*", "i-\"q"]),
            r#"m{job="x",instance_id=~"i-a|i-1\\|\\.\\*|i-\"q"}"#
        );
        let eq = Template::PerInstance("m{instance_id=\"{instance_id}\"}".into());
        assert_eq!(
            render(&eq, "instance_id", &["i-1.*\"}"]),
            r#"m{instance_id="i-1.*\"}"}"#
        );
        let re =
            Template::PerInstance("m{host=~\"{instance_id}\"} / n{h=\"{instance_id}\"}".into());
        assert_eq!(
            render(&re, "x", &["i-1."]),
            r#"m{host=~"i-1\\."} / n{h="i-1."}"#
        );
    }

    #[test]
    fn escaped_ids_survive_a_regex_engine_unchanged() {
        // The Rust engine stands in for RE2 here (the same literal-escape rules for this set).
        for id in ["i-1|.*", "i-(1", "a+b?c", "^x$", "[z]{2}", r"back\slash"] {
            let re = regex::Regex::new(&format!("^(?:{})$", regex_escape(id))).unwrap();
            assert!(re.is_match(id), "{id}");
            assert!(!re.is_match("i-1"), "{id} must not match another id");
        }
    }

    #[test]
    fn the_lookback_tail_after_a_series_ends_is_dropped() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 10, 0, 0).unwrap();
        let at = |m: i64, v: f64| (t0 + chrono::Duration::minutes(m), v);
        // A spike at minute 3 that ends the series, repeated for five minutes by the server.
        let mut pts = vec![
            at(0, 40.0),
            at(1, 41.0),
            at(2, 40.5),
            at(3, 97.0),
            at(4, 97.0),
            at(5, 97.0),
            at(6, 97.0),
            at(7, 97.0),
            at(8, 97.0),
        ];
        trim_lookback_tail(&mut pts);
        assert_eq!(pts.last(), Some(&at(3, 97.0)));
        assert_eq!(pts.len(), 4);
        // A flat tail of half an hour loses its last five minutes only.
        let mut flat: Vec<_> = (0..=30).map(|m| at(m, 50.0)).collect();
        trim_lookback_tail(&mut flat);
        assert_eq!(flat.last(), Some(&at(25, 50.0)));
        // A series whose last value differs from the one before keeps everything.
        let mut rising = vec![at(0, 1.0), at(1, 2.0), at(2, 3.0)];
        trim_lookback_tail(&mut rising);
        assert_eq!(rising.len(), 3);
        trim_lookback_tail(&mut Vec::new());
    }

    #[test]
    fn the_step_keeps_every_window_under_max_points() {
        for (hours, min_step, max_points) in [
            (1, 60, 11_000),
            (24 * 7, 60, 11_000),
            (24 * 30, 60, 11_000),
            (24 * 365, 15, 11_000),
            (24 * 30, 60, 10),
            (5, 1, 100),
        ] {
            for offset_secs in [0, 1, 59, 61, 3599] {
                let start = t(0) + Duration::seconds(offset_secs);
                let end = start + Duration::hours(hours) + Duration::seconds(offset_secs / 2);
                let step = choose_step(start, end, min_step, max_points);
                assert!(step >= min_step);
                let (s, e) = align(start, end, step);
                assert!(s <= start.timestamp() && e >= end.timestamp());
                let points = (e - s) / step + 1;
                assert!(
                    points <= max_points as i64,
                    "{hours}h at {step}s: {points} points > {max_points}"
                );
            }
        }
        // A week at one minute needs no coarser step than the scrape interval.
        assert_eq!(choose_step(t(0), t(24 * 7), 60, 11_000), 60);
        // Thirty days do.
        assert!(choose_step(t(0), t(24 * 30), 60, 11_000) > 60);
    }

    #[test]
    fn plans_batch_similar_windows_and_split_the_rest() {
        let windows = vec![
            (t(0), t(10)),
            (t(1), t(12)),
            (t(2), t(11)),
            (t(-24 * 60), t(12)), // sixty days: its own step, far coarser
        ];
        let plans = plan(&windows, 2, 60, 11_000);
        let members: Vec<Vec<usize>> = plans.iter().map(|p| p.members.clone()).collect();
        assert_eq!(members, vec![vec![3], vec![0, 1], vec![2]]);
        for p in &plans {
            assert!((p.end - p.start) / p.step < 11_000);
            for &m in &p.members {
                assert!(p.start <= windows[m].0.timestamp() && p.end >= windows[m].1.timestamp());
            }
        }
        assert_eq!(plan(&windows, 10, 60, 11_000).len(), 2);
        assert!(plan(&[], 10, 60, 11_000).is_empty());
    }

    #[test]
    fn answers_parse_or_say_why_not() {
        let ok = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"m","instance_id":"i-a"},"values":[[1750000000,"10"],[1750000060.5,"NaN"]]}]},
            "warnings":["partial"]}"#;
        let m = parse_answer(ok).unwrap();
        assert_eq!(m.series.len(), 1);
        assert_eq!(m.series[0].metric["instance_id"], "i-a");
        assert_eq!(m.series[0].values[1], (1750000060.5, "NaN".to_string()));
        assert_eq!(m.warnings, vec!["partial"]);

        let err = br#"{"status":"error","errorType":"bad_data","error":"1:43: parse error: unexpected end of input"}"#;
        assert_eq!(
            parse_answer(err).unwrap_err(),
            AnswerError::Api {
                error_type: "bad_data".into(),
                error: "1:43: parse error: unexpected end of input".into()
            }
        );
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_answer(vector)
            .unwrap_err()
            .to_string()
            .contains("vector"));
        assert!(matches!(
            parse_answer(b"<html>bad gateway</html>"),
            Err(AnswerError::Malformed(_))
        ));
        let empty = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse_answer(empty).unwrap().series.is_empty());
    }
}
