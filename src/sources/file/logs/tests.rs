//! Tests of the file logs: formats, the run index, last-words windows read back, files changed under a scan.

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
