//! Tests of the file metrics index and read-back: formats, runs and inline samples, windows,
//! files changed under a scan.

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
