//! Tests of the signature library: loading, validation, matching, the bulk scan, lazy compilation.

use super::*;

fn lib() -> SignatureLibrary {
    SignatureLibrary::default_library().unwrap()
}

fn id(line: &str) -> Option<String> {
    lib().match_line(line).map(|m| m.signature.spec.id.clone())
}

#[test]
fn default_library_compiles() {
    let l = lib();
    assert!(l.signatures().len() >= 20);
    // Loading checks the built-in entries without compiling them: compiling them all is
    // what this test is for (a broken built-in entry is a build defect).
    l.compile().unwrap();
    for (s, m) in l.signatures().iter().zip(&l.ready().matchers) {
        assert_eq!(
            m.patterns.regexes.len(),
            s.spec.patterns.len(),
            "{}",
            s.spec.id
        );
        assert_eq!(m.unless.regexes.len(), s.spec.unless.len(), "{}", s.spec.id);
    }
}

#[test]
fn node_heap_oom_variants() {
    for line in [
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        "FATAL ERROR: CALL_AND_RETRY_LAST Allocation failed - JavaScript heap out of memory",
        "FATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed - JavaScript heap out of memory",
    ] {
        assert_eq!(id(line).as_deref(), Some("node.heap_oom"), "{line}");
    }
}

#[test]
fn kernel_oom_extracts_pid_and_process() {
    let line = "[12345.678901] Out of memory: Killed process 4242 (node) total-vm:2345678kB, anon-rss:1987654kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:4096kB oom_score_adj:0";
    let l = lib();
    let m = l.match_line(line).unwrap();
    assert_eq!(m.signature.spec.id, "linux.oom_kill");
    assert_eq!(m.details.get("pid").map(String::as_str), Some("4242"));
    assert_eq!(m.details.get("process").map(String::as_str), Some("node"));
}

#[test]
fn jvm_flags_are_not_oom() {
    assert_eq!(
        id("exec java -Xmx2g -XX:+ExitOnOutOfMemoryError -jar app.jar"),
        None
    );
    assert_eq!(
        id("Exception in thread \"http-nio-8080-exec-3\" java.lang.OutOfMemoryError: Java heap space").as_deref(),
        Some("jvm.out_of_memory_error")
    );
}

#[test]
fn unwraps_json_loggers() {
    let line = r#"{"level":"fatal","time":1767607200,"msg":"fatal error: runtime: out of memory"}"#;
    assert_eq!(id(line).as_deref(), Some("go.out_of_memory"));
    let docker = r#"{"log":"FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n","stream":"stderr","time":"2026-01-05T10:00:00.000000001Z"}"#;
    assert_eq!(id(docker).as_deref(), Some("node.heap_oom"));
    // MongoDB 4.4+ (logv2) keeps WiredTiger's error text in `attr.message`, not in `msg`.
    let mongo = r#"{"t":{"$date":"2023-09-05T11:12:00.447+00:00"},"s":"E",  "c":"STORAGE",  "id":22435,   "ctx":"conn31","msg":"WiredTiger error","attr":{"error":-31807,"message":"[1693912320:447112][1:0x7f3c99a1b640], WT_CURSOR.insert: __wt_txn_commit, 1644: WT_CACHE_FULL: operation would overflow cache"}}"#;
    assert_eq!(id(mongo).as_deref(), Some("database.out_of_memory"));
    // … and a logv2 record without that text stays unmatched.
    let healthy = r#"{"t":{"$date":"2024-03-15T04:18:23.536+00:00"},"s":"I",  "c":"CONTROL",  "id":23378,   "ctx":"SignalHandler","msg":"Signal was sent by kill(2)","attr":{"pid":108,"uid":999}}"#;
    assert_eq!(id(healthy), None);
    // Cloud Foundry's lager names the event in `message` and keeps what failed in `data.error`;
    // zap puts an event's cause in `reason`.
    let lager = r#"{"timestamp":"2026-06-02T08:14:51.203817Z","level":"error","source":"rep","message":"rep.executing-container-operation.run-step.run-step-failed-with-nonzero-status-code","data":{"error":"Exit status 137 (out of memory)","status-code":137}}"#;
    let kind = lib().match_line(lager).map(|m| m.signature.spec.kind);
    assert_eq!(kind, Some(SignatureKind::Oom), "lager's data.error is read");
    let stopped = r#"{"timestamp":"2026-06-02T08:14:51.203817Z","level":"error","source":"rep","message":"rep.executing-container-operation.run-step.run-step-failed-with-nonzero-status-code","data":{"error":"Exit status 137 (exceeded 10s graceful shutdown interval)","status-code":137}}"#;
    let kind = lib().match_line(stopped).map(|m| m.signature.spec.kind);
    assert_ne!(
        kind,
        Some(SignatureKind::Oom),
        "a stop timeout is no memory death"
    );
    let zap = r#"{"level":"debug","ts":1712308351.204,"logger":"http","msg":"memory_limit","reason":"max memory is reached","pid":2231,"internal_event_name":"EventMaxMemory"}"#;
    assert_eq!(id(zap).as_deref(), Some("supervisor.memory_kill"));
}

#[test]
fn finds_keywords_hidden_behind_json_unicode_escapes() {
    // python-json-logger's default (`ensure_ascii`): "bash: fork: メモリを確保できません".
    let line = r#"{"levelname": "ERROR", "message": "bash: fork: \u30e1\u30e2\u30ea\u3092\u78ba\u4fdd\u3067\u304d\u307e\u305b\u3093"}"#;
    let l = lib();
    let m = l.match_line(line).expect("the escaped message matches");
    assert_eq!(m.signature.spec.kind, SignatureKind::Oom);
    // The bulk pass lists the line too (it holds no keyword as written).
    let buf = format!("plain line\n{line}\n{{\"message\": \"caf\\u00e9 open\"}}\n");
    let mut found = Vec::new();
    l.scan_buffer(buf.as_bytes(), 1, |n, _, m| {
        found.push((n, m.signature.spec.kind))
    });
    assert_eq!(found, [(2, SignatureKind::Oom)]);
}

#[test]
fn ordinary_lines_do_not_match() {
    for line in [
        "GET /healthz 200 1ms",
        "[GC (Allocation Failure) [PSYoungGen: 65536K->10720K(76288K)] 65536K->10728K(251392K), 0.0123 secs]",
        "echo -1000 > /proc/self/oom_score_adj",
        "node --max-old-space-size=4096 server.js",
    ] {
        assert_eq!(id(line), None, "{line}");
    }
    // An orderly stop is recognised, as a shutdown, not a death.
    let l = lib();
    let m = l
        .match_line("Received SIGTERM, shutting down gracefully")
        .unwrap();
    assert_eq!(m.signature.spec.kind, SignatureKind::Shutdown);
    // What servers print while they stop (tests/corpus/last_words/, development part)…
    for line in [
        "^CGracefully stopping... (press Ctrl+C again to force)",
        "^C[2019-10-25 16:43:59 +0000] [6] [INFO] Handling signal: int",
        "Nov 18 18:55:15.179990 sonic INFO pmon#supervisord 2020-11-18 18:54:38,926 INFO stopped: xcvrd (exit status 0)",
        r#"{"t":{"$date":"2024-03-15T04:18:23.536+00:00"},"s":"I",  "c":"COMMAND",  "id":4784901, "ctx":"SignalHandler","msg":"Shutting down the MirrorMaestro"}"#,
        r#"ts=2024-08-14T10:42:00.215Z caller=main.go:1058 level=info msg="Stopping scrape manager...""#,
        "     Active: inactive (dead) since Wed 2024-11-06 10:32:08 EST; 6s ago",
        "[ 3858.890000] reboot: Restarting system",
        "2018-05-09T01:45:32.855Z 10067 TID-gnkzxwuv0 INFO: Pushed 2 jobs back to Redis",
        "2022-03-30T18:31:04.831711045Z [30-Mar-2022 18:31:04] NOTICE: exiting, bye-bye!",
        "[47287] - Gracefully shutting down workers...",
        "2018-05-20 17:29:15.997 EDT [18502] LOG:  received fast shutdown request",
        "May 17 21:58:23 haproxy haproxy[1625]: [WARNING] 136/215823 (1625) : Exiting Master process...",
        "s6-rc: info: service legacy-cont-init successfully stopped",
        // A level tag in capitals is not an error (Airflow, apache/airflow#19635).
        "[2022-01-24, 16:18:18 UTC] {taskinstance.py:1408} ERROR - Received SIGTERM. Terminating subprocesses.",
        // Exit code 143 (128 + SIGTERM) in a controller's and a task script's words
        // (control-center/serviced#642, open-mpi/ompi#2498).
        "I0701 19:00:45.068708 00001 controller.go:441] Exiting with status:143 due to exit status 143",
        "[12613] : Normal Exit : 143",
    ] {
        let m = l.match_line(line).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(m.signature.spec.kind, SignatureKind::Shutdown, "{line}");
    }
    // …but not code that installs a handler, nor a stop that went wrong.
    for line in [
        "      #signal.signal(signal.SIGTERM, signal_handler)",
        "Shutting down: error while closing the database: connection reset",
        "Error: graceful shutdown timed out after 30s",
        "ERROR graceful shutdown failed: context deadline exceeded",
    ] {
        assert!(l.match_line(line).is_none(), "{line}");
    }
}

#[test]
fn kills_without_a_cause_are_kills_not_crashes() {
    let l = lib();
    // Lines that report a SIGKILL without naming the killer (tests/corpus/last_words/,
    // development part, and the emitters' formats).
    for line in [
        "billiard.exceptions.WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL) Job: 2.",
        "ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: -9) local_rank: 3 (pid: 812917) of binary: /usr/bin/python",
        "  exitcode  : -9 (pid: 3309)",
        "Sun Apr 21 19:42:50 2019 daemon.info uwsgi: DAMN ! worker 3 (pid: 22783) died, killed by signal 9 :( trying respawn ...",
        "Jan 10 16:23:27 host systemd[1]: app.service: Main process exited, code=killed, status=9/KILL",
        "app_1 exited with code 137",
        "      Exit Code:    137",
        "make: *** [Makefile:12: all] Error 137",
        "Killed",
        "./run.sh: line 3:  1234 Killed                  python train.py",
        "subprocess.CalledProcessError: Command '['ffmpeg', '-i', 'in.mp4']' died with <Signals.SIGKILL: 9>.",
    ] {
        let m = l.match_line(line).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(m.signature.spec.kind, SignatureKind::Kill, "{line}");
        // Too ambiguous alone: bulk scans leave them out.
        let mut bulk = 0;
        l.scan_buffer(format!("{line}\n").as_bytes(), 1, |_, _, _| bulk += 1);
        assert_eq!(bulk, 0, "{line}");
    }
    // A supervisor announcing the kill it sends, an operator's command, and a kill the line
    // attributes to memory are not kills without a cause.
    for line in [
        "[core:error] [pid 10968] AH00046: child process 28471 still did not exit, sending a SIGKILL",
        "$ kill -9 1234",
        "[2024-01-01 10:00:00 +0000] [1] [ERROR] Worker (pid:7) was sent SIGKILL! Perhaps out of memory?",
    ] {
        let kind = l.match_line(line).map(|m| m.signature.spec.kind);
        assert_ne!(kind, Some(SignatureKind::Kill), "{line}");
    }
}

#[test]
fn generic_tier_comes_after_precise_entries_and_has_its_own_negatives() {
    let l = lib();
    let ranks: Vec<u8> = l.signatures().iter().map(|s| s.spec.rank()).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    // A phrasing no precise entry names.
    assert_eq!(
        id("acme-indexer: worker 3 ran out of memory, exiting").as_deref(),
        Some("generic.out_of_memory")
    );
    // The same words in a changelog line are not a death.
    assert_eq!(id("Fix out of memory in the indexer worker"), None);
    // A precise entry still matches where the generic negatives would not let a generic one.
    let user = r#"
generic_unless = ['acme']
"#;
    let l = SignatureLibrary::with_overrides(user, "user.toml").unwrap();
    assert!(l
        .match_line("acme-indexer: worker 3 ran out of memory")
        .is_none());
    assert_eq!(
        l.match_line("acme: fatal error: runtime: out of memory")
            .map(|m| m.signature.spec.id.clone())
            .as_deref(),
        Some("go.out_of_memory")
    );
}

#[test]
fn patterns_are_case_insensitive() {
    assert_eq!(
        id("FATAL ERROR: REACHED HEAP LIMIT ALLOCATION FAILED - JAVASCRIPT HEAP OUT OF MEMORY")
            .as_deref(),
        Some("node.heap_oom")
    );
}

#[test]
fn exception_fields_of_structured_loggers_are_matched() {
    let serilog = r#"{"@t":"2026-01-05T10:00:00Z","@mt":"Request failed","@x":"System.OutOfMemoryException: Exception of type 'System.OutOfMemoryException' was thrown."}"#;
    assert_eq!(id(serilog).as_deref(), Some("dotnet.out_of_memory"));
    let pino = r#"{"level":50,"msg":"worker died","err":{"type":"Error","message":"spawn ENOMEM","stack":"Error: spawn ENOMEM
at ChildProcess.spawn"}}"#;
    assert_eq!(id(pino).as_deref(), Some("generic.allocation_failure"));
}

#[test]
fn crashes() {
    assert_eq!(
        id("panic: runtime error: invalid memory address or nil pointer dereference").as_deref(),
        Some("go.panic")
    );
    assert_eq!(
        id("thread 'main' panicked at src/main.rs:10:5:").as_deref(),
        Some("rust.panic")
    );
    assert_eq!(
        id("Segmentation fault (core dumped)").as_deref(),
        Some("native.segfault")
    );
}

#[test]
fn buffer_scan_agrees_with_line_by_line() {
    let l = lib();
    let text = "ok\r\nFATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\npanic: x\n\nfatal error: runtime: out of memory\r\nlast line without newline";
    let mut found = Vec::new();
    let lines = l.scan_buffer(text.as_bytes(), 1, |n, line, m| {
        found.push((n, line.to_string(), m.signature.spec.id.clone()))
    });
    let expected: Vec<(usize, String, String)> = text
        .split('\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim_end_matches('\r');
            l.match_line(line)
                .map(|m| (i + 1, line.to_string(), m.signature.spec.id.clone()))
        })
        .collect();
    assert_eq!(found, expected);
    assert_eq!(found.len(), 3);
    assert_eq!(lines, 6);
    assert_eq!(l.scan_buffer(b"", 1, |_, _, _| {}), 0);
    assert_eq!(l.scan_buffer(b"a\nb\n", 1, |_, _, _| {}), 2);
}

/// An OOM report's task-table rows (`bulk = false`) are OOM evidence in last words, but a bulk
/// scan reports the report's own kill line, not its hundreds of rows.
#[test]
fn task_table_rows_are_last_words_evidence_but_not_bulk_scan_hits() {
    let l = lib();
    let row = "[   4242]  1000  4242   586419   496913  4001792        0             0 node";
    let kill = "Out of memory: Killed process 4242 (node) total-vm:2345678kB, anon-rss:1987654kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:4096kB oom_score_adj:0";
    assert_eq!(
        l.match_line(row)
            .map(|m| m.signature.spec.id.clone())
            .as_deref(),
        Some("linux.oom_task_row")
    );
    assert!(l.match_death_line(row).is_none());
    let text = format!("{row}\n{row}\n{kill}\n");
    let mut found = Vec::new();
    l.scan_buffer(text.as_bytes(), 1, |n, _, m| {
        found.push((n, m.signature.spec.id.clone()))
    });
    assert_eq!(found, vec![(3, "linux.oom_kill".to_string())]);
}

/// Lines for [`bulk_scan_agrees_with_line_matching_at_every_window_edge`]: crash lines,
/// keywords in other cases, cut across lines, wrapped in JSON, ordinary lines, CRLF, empty
/// lines and bytes that are not UTF-8.
const SCAN_LINES: &[&[u8]] = &[
    b"FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    b"fatal error: runtime: out of memory",
    b"panic: runtime error: invalid memory address or nil pointer dereference",
    br#"Exception in thread "main" java.lang.OutOfMemoryError: Java heap space"#,
    b"[1234567.890123] Out of memory: Killed process 4242 (node) total-vm:2345678kB, anon-rss:1987654kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:4096kB oom_score_adj:0",
    br#"{"level":50,"msg":"FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"}"#,
    b"2026-01-05T10:00:01.123456789Z stderr F fatal error: runtime: OUT OF MEMORY",
    b"WARN  [cache] LRU eviction: memory limit reached, dropped 200 keys",
    b"Received SIGTERM, shutting down gracefully",
    b"oom",
    b"OoM",
    b"out of",
    b" memory",
    b"memory lim",
    b"it reached",
    b"",
    b"\r",
    b"ok\r",
    b"fatal error: runtime: out of memory\r",
    b"10.0.3.17 - - [05/Jan/2026:10:00:01 +0000] \"GET /api/cart HTTP/1.1\" 200 1532",
    b"invalid \xff utf8 then out of memory",
    b"\xe5\x86\x85\xe5\xad\x98\xe4\xb8\x8d\xe8\xb6\xb3 \xe5\x86\x85",
];

#[test]
fn bulk_scan_agrees_with_line_matching_at_every_window_edge() {
    let l = lib();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for round in 0..24 {
        // Up to ~24 KiB: past the size where the pass splits into interleaved walks.
        let target = [0usize, 1, 60, 3000, 5000, 24_000][round % 6];
        let mut buf: Vec<u8> = Vec::new();
        while buf.len() < target {
            buf.extend_from_slice(SCAN_LINES[next(SCAN_LINES.len())]);
            // Now and then two lines run together (no newline between them).
            if next(17) != 0 {
                buf.push(b'\n');
            }
        }
        let expected: Vec<(usize, String, String)> = buf
            .split(|&b| b == b'\n')
            .enumerate()
            .filter_map(|(i, raw)| {
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let line = String::from_utf8_lossy(raw);
                l.match_death_line(&line)
                    .map(|m| (i + 1, line.to_string(), m.signature.spec.id.clone()))
            })
            .collect();
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        let lines = newlines + usize::from(buf.last().is_some_and(|&b| b != b'\n'));
        for window in [1, 7, 100, 4096, 5000, BULK_WINDOW_BYTES] {
            let mut found = Vec::new();
            let counted = l.scan_windows(&buf, 1, window, |n, line, m| {
                found.push((n, line.to_string(), m.signature.spec.id.clone()))
            });
            assert_eq!(found, expected, "round {round}, window {window}");
            assert_eq!(counted, lines, "round {round}, window {window}");
        }
        if target >= 3000 {
            assert!(
                !expected.is_empty(),
                "round {round}: the mix holds crash lines"
            );
        }
    }
}

#[test]
fn user_file_overrides_by_id_and_appends() {
    let user = r#"
[[signature]]
id = "node.heap_oom"
runtime = "node"
kind = "oom"
keywords = ["heap exploded"]
patterns = ["heap exploded"]
explanation = "x"
next_step = "y"

[[signature]]
id = "acme.custom"
runtime = "acme"
kind = "crash"
keywords = ["acme died"]
patterns = ["acme died"]
explanation = "x"
next_step = "y"
"#;
    let l = SignatureLibrary::with_overrides(user, "user.toml").unwrap();
    assert_eq!(l.signatures().len(), lib().signatures().len() + 1);
    assert_eq!(
        l.match_line("heap exploded").unwrap().signature.spec.id,
        "node.heap_oom"
    );
    assert!(l
        .match_line(
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"
        )
        .is_none_or(|m| m.signature.spec.id != "node.heap_oom"));
    assert_eq!(
        l.match_line("acme died").unwrap().signature.spec.id,
        "acme.custom"
    );
}

#[test]
fn invalid_user_file_names_the_problem() {
    let err = SignatureLibrary::with_overrides("[[signature]]\nid = 3\n", "user.toml").unwrap_err();
    assert!(err.to_string().contains("user.toml:"), "{err}");
    let bad_regex = r#"
[[signature]]
id = "x"
runtime = "x"
kind = "oom"
keywords = ["x"]
patterns = ["(unclosed"]
explanation = "x"
next_step = "y"
"#;
    let err = SignatureLibrary::with_overrides(bad_regex, "user.toml").unwrap_err();
    assert!(
        err.to_string().contains("patterns[0]: invalid regex"),
        "{err}"
    );
}

#[test]
fn library_unless_false_exempts_one_precise_entry_from_library_guards() {
    // A library of two precise entries (the second exempt from the library-wide guards).
    let entry = |id: &str, keyword: &str, pattern: &str, extra: &str| {
        format!(
            "[[signature]]\nid = \"{id}\"\nruntime = \"any\"\nkind = \"oom\"\nkeywords = [\"{keyword}\"]\npatterns = ['{pattern}']\n{extra}explanation = \"e\"\nnext_step = \"n\"\n"
        )
    };
    let text = format!(
        "unless = ['\\(\\?P?<\\w+>']\n{}{}",
        entry(
            "guarded",
            "failed to allocate memory",
            "failed to allocate memory",
            ""
        ),
        entry(
            "fluentd.parser_oom",
            "failed to allocate memory: /",
            r#"\berror="failed to allocate memory: /"#,
            "library_unless = false\n"
        )
    );
    let l = SignatureLibrary::from_toml(&text, "test.toml").unwrap();
    let got = |line: &str| l.match_line(line).map(|m| m.signature.spec.id.clone());
    // The guard still blocks the entry that keeps the library-wide guards...
    assert_eq!(got("parse (?<message>.+) failed to allocate memory"), None);
    // ...the exempt entry matches past it, though the guarded entry comes first...
    assert_eq!(
        got(r#""<very long line" error="failed to allocate memory: /^(?<message>.+)$/""#)
            .as_deref(),
        Some("fluentd.parser_oom")
    );
    // ...and without the guard the first entry wins, as before.
    assert_eq!(got("failed to allocate memory").as_deref(), Some("guarded"));

    // A generic entry may not leave the library-wide guards.
    let generic = text.replace(
        "library_unless = false",
        "library_unless = false\ntier = \"generic\"",
    );
    let err = SignatureLibrary::from_toml(&generic, "test.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("library_unless = false is for precise entries only"),
        "{err}"
    );
    assert!(err.contains("fluentd.parser_oom"), "{err}");
}

#[test]
fn a_neighbouring_field_refutes_a_match_in_last_words_and_in_bulk() {
    // `kubectl describe` and `kubectl get -o yaml` print a container's state as a block of
    // fields; kubelets report drained pods as OOMKilled with exit code 143
    // (kubernetes/kubernetes#140716). The built-in entry reads the block around its match.
    let l = lib();
    let events = |lines: &[&str]| -> Vec<LogEvent> {
        lines
            .iter()
            .map(|m| LogEvent {
                timestamp: chrono::DateTime::UNIX_EPOCH,
                message: m.to_string(),
            })
            .collect()
    };
    let describe = |code: &str| {
        vec![
            "    Last State:     Terminated".to_string(),
            "      Reason:       OOMKilled".to_string(),
            format!("      Exit Code:    {code}"),
            "      Started:      Mon, 30 Nov 2026 10:02:11 +0000".to_string(),
        ]
    };
    let yaml = |code: &str| {
        vec![
            "      terminated:".to_string(),
            "        containerID: containerd://4f2a".to_string(),
            format!("        exitCode: {code}"),
            "        finishedAt: \"2026-11-30T10:12:40Z\"".to_string(),
            "        reason: OOMKilled".to_string(),
        ]
    };
    for (block, line) in [(describe("143"), 1), (yaml("143"), 4)] {
        let lines: Vec<&str> = block.iter().map(String::as_str).collect();
        assert_eq!(l.match_events(&events(&lines)), vec![], "{lines:?}");
        let buf = lines.join("\n");
        let mut bulk = 0;
        l.scan_buffer(buf.as_bytes(), 1, |_, _, _| bulk += 1);
        assert_eq!(bulk, 0, "bulk: {lines:?}");
        // The line alone still matches: the refutation is the neighbours', not the line's.
        assert!(l.match_line(lines[line]).is_some(), "{}", lines[line]);
    }
    // A kernel OOM kill is a SIGKILL (137); with exit code 0 a process in the container was
    // OOM-killed before the main one exited (amazon-ecs-agent#2467): both keep the reason.
    for (block, line) in [
        (describe("137"), 1),
        (yaml("137"), 4),
        (describe("0"), 1),
        (yaml("0"), 4),
    ] {
        let lines: Vec<&str> = block.iter().map(String::as_str).collect();
        // (The exit code's own line may be a kill without a cause.)
        let got: Vec<_> = l
            .match_events(&events(&lines))
            .into_iter()
            .filter(|m| m.kind == SignatureKind::Oom)
            .collect();
        assert_eq!(got.len(), 1, "{lines:?}");
        assert_eq!(
            (got[0].signature.as_str(), got[0].line),
            ("kubernetes.oomkilled", line)
        );
        let mut bulk = Vec::new();
        l.scan_buffer(lines.join("\n").as_bytes(), 1, |n, _, m| {
            if m.signature.spec.kind == SignatureKind::Oom {
                bulk.push(n)
            }
        });
        assert_eq!(bulk, vec![line + 1]);
    }
    // Beyond the reach (three lines), an exit code is another block's.
    let far = [
        "      Reason:       OOMKilled",
        "      Exit Code:    137",
        "      Started:      Mon, 30 Nov 2026 10:02:11 +0000",
        "      Finished:     Mon, 30 Nov 2026 10:12:40 +0000",
        "      Exit Code:    143",
    ];
    let oom = |m: &SignatureMatch| m.kind == SignatureKind::Oom;
    assert_eq!(
        l.match_events(&events(&far))
            .iter()
            .filter(|m| oom(m))
            .count(),
        1
    );
}

#[test]
fn refuted_nearby_is_checked_when_loaded() {
    let entry = |nearby: &str| {
        format!(
            "[[signature]]\nid = \"x\"\nruntime = \"x\"\nkind = \"oom\"\nkeywords = [\"x\"]\npatterns = ['x']\n{nearby}\nexplanation = \"e\"\nnext_step = \"n\"\n"
        )
    };
    let err = |nearby: &str| {
        SignatureLibrary::from_toml(&entry(nearby), "t.toml")
            .unwrap_err()
            .to_string()
    };
    assert!(err("refuted_nearby = { lines = 0, patterns = ['y'] }")
        .contains("refuted_nearby.lines: 0 is not between 1 and 5"));
    assert!(err("refuted_nearby = { lines = 2, patterns = [] }")
        .contains("refuted_nearby.patterns: at least one pattern is required"));
    assert!(err("refuted_nearby = { lines = 2, patterns = ['(y'] }")
        .contains("refuted_nearby.patterns[0]: invalid regex"));
    assert!(err("refuted_nearby = { lines = 2, pattern = ['y'] }").contains("t.toml:"));
    SignatureLibrary::from_toml(
        &entry("refuted_nearby = { lines = 2, patterns = ['y'] }"),
        "t.toml",
    )
    .unwrap();
}
