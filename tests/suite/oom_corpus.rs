//! OOM recognition measured on the sourced corpus (`tests/corpus/oom/*.tsv`): single log lines
//! taken from public issue threads, docs and the emitting programs' own format strings, each
//! with the URL it comes from, labelled by `tests/corpus/oom/LABELLING.md` (the project's
//! labelling rules). Every base line is scored raw and inside one shipper wrapper (CloudWatch
//! `aws logs tail`, syslog, journald, CRI, Docker json-file, pino, bunyan, ECS JSON, Serilog,
//! python-json-logger, Fluent Bit, kubectl --prefix, compose), chosen by a hash of the line.
//!
//! A fixed 30 % of the base lines (by a hash of the line's text) is the held-out split: nobody
//! looks at it while writing patterns. Its figures are the published ones (BENCHMARKS.md) and
//! the test fails below them. The development split's misses are printed for tuning.

use std::collections::{BTreeMap, BTreeSet};

use epitaph::analysis::signatures::SignatureLibrary;
use epitaph::model::SignatureKind;

use crate::common::{fnv1a, library_under_test};

/// Share of base lines in the held-out split, in percent.
const HOLDOUT_PERCENT: u64 = 30;
/// The held-out split's figures as published in BENCHMARKS.md, less a margin of about one
/// point: a change that loses generalisation fails here. Rounds 1–5: 0.958 / 0.965 (2026-11-29
/// morning); with round 6's held-out part (92 long-tail lines, 0.69 / 0.82 after tuning on its
/// development part only) all rounds are 0.946 / 0.959; with round 7's held-out part (98
/// long-tail lines, 0.90 / 0.70 after tuning on its development part only) all rounds are
/// 0.943 / 0.944. The floor moved down because the split gained harder lines; the round-7
/// tuning also cost rounds 1–3 one false alarm (FP 14 → 16 scored lines), said in
/// BENCHMARKS.md. With round 8's held-out part (87 long-tail lines, 0.79 / 0.79 after tuning
/// on its development part only) all rounds are 0.937 / 0.938, and the floor moved down again.
/// With round 9's held-out part (92 long-tail lines, 0.90 / 0.73 after tuning on its
/// development part only) all rounds are 0.936 / 0.927: the recall floor moved to 0.92. With
/// round 10's (100 lines, 1.00 / 0.82 after tuning) all rounds are 0.941 / 0.926; with
/// round 11's (87 lines, 0.94 / 0.94 after tuning) 0.941 / 0.926. With rounds 12–15's held-out
/// parts (421 lines from emitters and renderings no earlier round had, each round tuned on its
/// development part only; 0.88 / 0.81, 0.94 / 0.90, 0.89 / 0.97, 0.88 / 0.90 after tuning) all
/// rounds are 0.934 / 0.921, and the floors moved down a point again. With rounds 16–19's
/// (527 lines: kernel and container renderings, runtimes across versions, servers, native and
/// long-tail programs, ML stacks, OS killers, cloud services, and a round of hard negatives from
/// the common stacks; each tuned on its development part only) all rounds are 0.927 / 0.918:
/// the floors hold. With rounds 20–22's (666 lines: observability agents, network OSes and
/// appliances, localised messages, memory recycling, cloud event exports, the kernel across
/// versions, browsers, developer tooling, web applications, build pipelines, Python/JVM/Go/Rust
/// services, Windows servers; 0.75 / 0.82, 0.93 / 0.94, 0.87 / 0.94 after tuning on their
/// development parts only) all rounds are 0.917 / 0.919: the precision floor moved to 0.91.
/// With rounds 23–25's (588 lines: brokers, media workers, security tools, analytic databases,
/// log pipelines, long-tail runtimes, HPC, proxies, ML serving, CI/CD, non-memory kills, app
/// frameworks, other kernels, PaaS, caches; 0.91 / 0.90, 0.84 / 0.88, 0.86 / 0.86 after tuning)
/// all rounds are 0.916 / 0.917: the floors hold. With rounds 26–27's (460 lines: the common
/// stacks in their 2023–2026 versions, Windows and .NET, web application servers, builds and
/// CI, log pipelines — much of it people's prose about OOMs; 0.75 / 0.94 and 0.71 / 0.85 after
/// tuning on their development parts only) all rounds are 0.904 / 0.917, while rounds 1–25's
/// part rose from 0.916 / 0.917 to 0.921 / 0.919: the precision floor moved to 0.90. With round
/// 28's (450 lines from emitters the corpus had not met: 0.75 / 0.82 as mined, 0.77 / 0.86
/// after tuning on its development part only) all rounds are 0.894 / 0.913, rounds 1–27's part
/// 0.905 / 0.918: the precision floor moved to 0.88. With rounds 29–30's (828 lines) all rounds
/// are 0.890 / 0.914; with rounds 31–32's (1,275 lines of whole last words, every line of
/// excerpts people pasted: 1.000 / 0.959 and 0.962 / 0.981 as mined) 0.895 / 0.917. With rounds
/// 34–37's (1,343 lines: whole pastes around deaths, the long tail, one family per helper, a
/// fleet's stacks; 0.77 / 0.95, 0.92 / 0.81, 0.88 / 0.87, 0.97 / 0.97 after tuning on their
/// development parts only) all rounds are 0.898 / 0.914: the floors hold, recall close to its.
/// With rounds 39–44's (pages beyond issue threads, the long tail, the issue's own list, hard
/// negatives; 0.85 / 0.84, 0.93 / 0.91, 0.92 / 0.94, 0.89 / 0.96 as mined) 0.897 / 0.915.
/// With rounds 45–46's (the emitters' own format strings across versions, 0.91 / 0.85 as
/// mined; verbatim 2024–2026 threads, mostly people's titles and sentences, 0.69 / 0.98 as
/// mined) 0.893 / 0.913: the floors hold. With rounds 47–48's (the long tail, 0.92 / 0.86 as
/// mined; the newest versions of the common stacks, 0.90 / 0.87 as mined) 0.895 / 0.914; with
/// round 49's (the long tail again, 0.84 / 0.93 as mined) 0.894 / 0.915; with round 50's (the
/// long tail, program output only: 0.84 / 0.87 as mined, 0.85 / 0.88 after tuning on its
/// development part only) 0.893 / 0.914, rounds 1–49's part 0.895 / 0.915: the floors hold;
/// with round 51's (the long tail's program output again: 0.94 / 0.86 as mined, 0.96 / 0.86
/// after tuning) 0.895 / 0.913; with rounds 52–53's (the long tail's program output on Apple,
/// Windows, cloud data services, scripting libraries, firmware, network appliances, other
/// Unixes, newer databases, enterprise Java, Go and Rust tools: 0.85 / 0.82 and 0.92 / 0.86 as
/// mined, 0.93 / 0.87 and 0.92 / 0.88 after tuning) 0.895 / 0.912: the floors hold.
/// (The goal in issue #9 is 0.99 / 0.97; BENCHMARKS.md says where the split stands against it,
/// and what each round scored before anyone looked at it.)
const MIN_HOLDOUT_PRECISION: f64 = 0.88;
const MIN_HOLDOUT_RECALL: f64 = 0.91;
/// The development split is tuned on: it must stay where the tuning left it (0.9995 / 0.9997
/// after round 28's tuning; 0.991 / 0.986 after round 37's, with the long-tail rounds' one-program
/// misses left unpatterned on purpose — BENCHMARKS.md lists them — so the recall floor is 0.98;
/// 0.981 / 0.983 after round 46's, whose titles and sentences in the reporters' own words —
/// 143 false alarms on its development part after the guards that generalise — are left
/// rather than fitted one by one, so the precision floor is 0.98 too; 0.979 / 0.980 after round
/// 49's, whose long-tail handled ENOMEMs and reporters' titles — 38 false alarms on its
/// development part after the guards that generalise — are left the same way: 0.975).
/// Recall 0.979 after round 50's tuning, whose one-program misses — "Failed to allocate
/// <object>" without a word for memory (NuttX's TCB, Unikraft's TLS, sway's output config), a
/// hedge ("not enough swap space?"), Poly/ML's "Run out of store": 34 scored lines of its
/// development part — are left the same way: the recall floor is 0.975 too.
const MIN_DEV_PRECISION: f64 = 0.975;
const MIN_DEV_RECALL: f64 = 0.975;
/// Corpus shape required by the labelling rules and issue #9.
const MIN_BASE_LINES: usize = 1500;
const MIN_EMITTERS: usize = 40;
const MIN_NEGATIVE_SHARE: f64 = 0.55;
const MAX_CONSTRUCTED_SHARE: f64 = 0.40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Oom,
    Negative,
    Context,
}

#[derive(Debug, Clone)]
struct Row {
    family: String,
    at: String,
    label: Label,
    emitter: String,
    constructed: bool,
    line: String,
    /// The mining round (a `# round: N` comment sets it for the rows after it; rows before
    /// any such comment are rounds 1–3, counted as 3).
    round: u32,
}

/// Rows without a `# round:` comment above them: mined in rounds 1–3 (2026-11-27/28).
const FIRST_ROUNDS: u32 = 3;

fn holdout(row: &Row) -> bool {
    fnv1a(&row.line, 0) % 100 < HOLDOUT_PERCENT
}

/// The corpus directory: the checkout's, or (while tuning in another clone, to skip the
/// rebuild) the one named by `EPITAPH_OOM_CORPUS_DIR`.
fn corpus_dir() -> std::path::PathBuf {
    match std::env::var_os("EPITAPH_OOM_CORPUS_DIR") {
        Some(dir) => dir.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/oom"),
    }
}

fn corpus() -> Vec<Row> {
    let dir = corpus_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for file in files {
        let family = file.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut round = FIRST_ROUNDS;
        for (n, raw) in text.lines().enumerate() {
            let at = format!("{}:{}", file.display(), n + 1);
            if let Some(r) = raw.strip_prefix("# round:") {
                round = r
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{at}: round `{}`: {e}", r.trim()));
                continue;
            }
            if raw.starts_with('#') || raw.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = raw.splitn(5, '\t').collect();
            assert_eq!(cols.len(), 5, "{at}: want 5 tab-separated columns");
            let label = match cols[0] {
                "oom" => Label::Oom,
                "-" => Label::Negative,
                "context" => Label::Context,
                other => panic!("{at}: unknown label `{other}`"),
            };
            let constructed = match cols[2] {
                "verbatim" => false,
                "constructed" => true,
                other => panic!("{at}: provenance must be verbatim or constructed, not `{other}`"),
            };
            assert!(
                cols[3].starts_with("https://") || cols[3].starts_with("http://"),
                "{at}: no source URL"
            );
            assert!(!cols[1].trim().is_empty(), "{at}: no emitter");
            let line = cols[4].to_string();
            assert!(!line.trim().is_empty(), "{at}: empty line");
            if !seen.insert(line.clone()) {
                // The same line from two sources counts once.
                continue;
            }
            rows.push(Row {
                family: family.clone(),
                at,
                label,
                emitter: cols[1].to_string(),
                constructed,
                line,
                round,
            });
        }
    }
    rows
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The line as a shipper or logger would carry it. `0` is the raw line.
fn wrap(line: &str, which: u64) -> String {
    let j = json_str(line);
    let jn = json_str(&format!("{line}\n"));
    match which {
        0 => line.to_string(),
        1 => format!("2026-01-05T10:00:01.123000+00:00 i-0a1b2c3d4e5f60718 {line}"),
        2 => format!("Jan  5 10:00:01 ip-10-0-1-23 app[1234]: {line}"),
        3 => format!("{{\"MESSAGE\": {j}, \"_SYSTEMD_UNIT\": \"app.service\", \"PRIORITY\": \"3\", \"_HOSTNAME\": \"ip-10-0-1-23\"}}"),
        4 => format!("2026-01-05T10:00:01.123456789Z stderr F {line}"),
        5 => format!("{{\"log\":{jn},\"stream\":\"stderr\",\"time\":\"2026-01-05T10:00:01.123456789Z\"}}"),
        6 => format!("{{\"level\":60,\"time\":1767607201000,\"pid\":17,\"hostname\":\"api-1\",\"msg\":{j}}}"),
        7 => format!("{{\"name\":\"api\",\"hostname\":\"api-1\",\"pid\":17,\"level\":60,\"msg\":{j},\"time\":\"2026-01-05T10:00:01.123Z\",\"v\":0}}"),
        8 => format!("{{\"@timestamp\":\"2026-01-05T10:00:01.123Z\",\"log.level\":\"error\",\"message\":{j},\"ecs.version\":\"1.6.0\",\"service.name\":\"api\"}}"),
        9 => format!("{{\"@t\":\"2026-01-05T10:00:01.1234567Z\",\"@m\":{j},\"@i\":\"a1b2c3d4\",\"@l\":\"Fatal\"}}"),
        10 => format!("{{\"asctime\": \"2026-01-05 10:00:01,123\", \"levelname\": \"CRITICAL\", \"name\": \"app\", \"message\": {j}}}"),
        11 => format!("{{\"date\":1767607201.123,\"log\":{j},\"kubernetes\":{{\"pod_name\":\"api-7d9f8c6b5-x2x9q\",\"namespace_name\":\"prod\"}}}}"),
        12 => format!("[pod/api-7d9f8c6b5-x2x9q/api] {line}"),
        _ => format!("api-1  | {line}"),
    }
}
const WRAPPERS: u64 = 14;
/// Wrappers besides the raw line in which the bulk-scan test checks each corpus line.
const BULK_WRAPPERS_PER_LINE: u64 = 3;

#[derive(Default)]
struct Score {
    tp: usize,
    fp: usize,
    fn_: usize,
    positives: usize,
    negatives: usize,
    exact: usize,
    misses: Vec<String>,
}

impl Score {
    fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.tp as f64 / self.positives.max(1) as f64
    }
}

/// Scores one variant of a line (a prediction is an OOM-kind match), matched once, in every
/// tally given (the split, the line's family, its round).
fn score(lib: &SignatureLibrary, row: &Row, text: &str, tallies: [&mut Score; 3]) {
    let got = lib.match_line(text);
    let oom = got
        .as_ref()
        .is_some_and(|m| m.signature.spec.kind == SignatureKind::Oom);
    let id = got
        .as_ref()
        .map(|m| m.signature.spec.id.as_str())
        .unwrap_or("-");
    for s in tallies {
        tally(row, text, oom, id, s);
    }
}

fn tally(row: &Row, text: &str, oom: bool, id: &str, s: &mut Score) {
    match row.label {
        Label::Oom => {
            s.positives += 1;
            if oom {
                s.tp += 1;
                s.exact += usize::from(!id.starts_with("generic."));
            } else {
                s.fn_ += 1;
                s.misses.push(format!(
                    "MISS {} [{}] got {id}: {text}",
                    row.at, row.emitter
                ));
            }
        }
        Label::Negative | Label::Context => {
            s.negatives += 1;
            if oom {
                s.fp += 1;
                s.misses.push(format!(
                    "FALSE {} [{}] got {id}: {text}",
                    row.at, row.emitter
                ));
            }
        }
    }
}

/// A split scored: in all, by family, and by mining round (with its count of base lines).
struct Evaluation {
    all: Score,
    by_family: BTreeMap<String, Score>,
    by_round: BTreeMap<u32, (usize, Score)>,
}

/// Matches every line of `rows` once per variant and tallies the result three ways.
fn evaluate(rows: &[&Row]) -> Evaluation {
    let lib = library_under_test();
    let mut all = Score::default();
    let mut by_family: BTreeMap<String, Score> = BTreeMap::new();
    let mut by_round: BTreeMap<u32, (usize, Score)> = BTreeMap::new();
    for row in rows {
        let which = 1 + fnv1a(&row.line, 7) % (WRAPPERS - 1);
        let family = by_family.entry(row.family.clone()).or_default();
        let (base_lines, round) = by_round.entry(row.round).or_default();
        *base_lines += 1;
        for variant in [wrap(&row.line, 0), wrap(&row.line, which)] {
            score(&lib, row, &variant, [&mut all, &mut *family, &mut *round]);
        }
    }
    Evaluation {
        all,
        by_family,
        by_round,
    }
}

fn print(name: &str, all: &Score, by_family: &BTreeMap<String, Score>, show_misses: bool) {
    println!(
        "{name}: {} scored lines ({} positive, {} negative/context): precision {:.4}, recall {:.4} ({} TP, {} FP, {} FN; {} by a precise signature)",
        all.positives + all.negatives,
        all.positives,
        all.negatives,
        all.precision(),
        all.recall(),
        all.tp,
        all.fp,
        all.fn_,
        all.exact
    );
    for (family, s) in by_family {
        println!(
            "  {family:<20} {:>4} pos {:>4} neg  precision {:.4}  recall {:.4}  (FP {}, FN {})",
            s.positives,
            s.negatives,
            s.precision(),
            s.recall(),
            s.fp,
            s.fn_
        );
    }
    if show_misses {
        for m in &all.misses {
            println!("  {m}");
        }
    }
}

/// Each mining round's share of a split on its own: a round mined after the patterns were
/// written measures how they generalise.
fn print_by_round(name: &str, by_round: &BTreeMap<u32, (usize, Score)>) {
    for (&round, (base_lines, s)) in by_round {
        let which = if round == FIRST_ROUNDS {
            "rounds 1-3".to_string()
        } else {
            format!("round {round}")
        };
        println!(
            "{name}, {which}: {} base lines, {} scored: precision {:.4}, recall {:.4} (FP {}, FN {})",
            base_lines,
            s.positives + s.negatives,
            s.precision(),
            s.recall(),
            s.fp,
            s.fn_
        );
    }
}

#[test]
fn corpus_is_sourced_and_shaped_as_the_rules_ask() {
    let rows = corpus();
    let n = rows.len();
    let negatives = rows.iter().filter(|r| r.label != Label::Oom).count();
    let constructed = rows.iter().filter(|r| r.constructed).count();
    let emitters: BTreeSet<&str> = rows.iter().map(|r| r.emitter.as_str()).collect();
    let held = rows.iter().filter(|r| holdout(r)).count();
    println!(
        "{n} base lines ({} scored with their wrapped variant), {} oom, {negatives} negative or context, {constructed} constructed from a format source, {} emitters; held out: {held}",
        2 * n,
        n - negatives,
        emitters.len()
    );
    assert!(n >= MIN_BASE_LINES, "{n} base lines < {MIN_BASE_LINES}");
    assert!(
        emitters.len() >= MIN_EMITTERS,
        "{} emitters",
        emitters.len()
    );
    assert!(
        negatives as f64 >= MIN_NEGATIVE_SHARE * n as f64,
        "negatives {negatives} of {n}"
    );
    assert!(
        constructed as f64 <= MAX_CONSTRUCTED_SHARE * n as f64,
        "constructed {constructed} of {n}"
    );
    let share = held as f64 / n as f64;
    assert!((0.25..=0.35).contains(&share), "held-out share {share:.3}");
}

#[test]
fn development_split() {
    let rows = corpus();
    let dev: Vec<&Row> = rows.iter().filter(|r| !holdout(r)).collect();
    let Evaluation {
        all,
        by_family,
        by_round,
    } = evaluate(&dev);
    print("development split", &all, &by_family, true);
    print_by_round("development split", &by_round);
    assert!(
        all.precision() >= MIN_DEV_PRECISION,
        "dev precision {:.4}",
        all.precision()
    );
    assert!(
        all.recall() >= MIN_DEV_RECALL,
        "dev recall {:.4}",
        all.recall()
    );
}

/// The held-out split. Its misses are printed only when `EPITAPH_SHOW_HOLDOUT=1` (for
/// BENCHMARKS.md once the patterns are final), so that nobody tunes against them.
#[test]
fn held_out_split() {
    let rows = corpus();
    let held: Vec<&Row> = rows.iter().filter(|r| holdout(r)).collect();
    let Evaluation {
        all,
        by_family,
        by_round,
    } = evaluate(&held);
    let show = std::env::var("EPITAPH_SHOW_HOLDOUT").is_ok_and(|v| v == "1");
    print("held-out split", &all, &by_family, show);
    print_by_round("held-out split", &by_round);
    assert!(
        all.precision() >= MIN_HOLDOUT_PRECISION,
        "held-out precision {:.4} < {MIN_HOLDOUT_PRECISION}",
        all.precision()
    );
    assert!(
        all.recall() >= MIN_HOLDOUT_RECALL,
        "held-out recall {:.4} < {MIN_HOLDOUT_RECALL}",
        all.recall()
    );
}

/// The bulk scanner (`scan_buffer`, what `epitaph signatures match FILE` runs) reports, for
/// every corpus line raw and in [`BULK_WRAPPERS_PER_LINE`] wrappers (both splits, as one buffer,
/// some lines ending in CRLF), exactly what matching that line alone reports
/// (`match_death_line`). The wrappers rotate with the row, so each of the thirteen carries about
/// 3/13 of the corpus (every wrapper for every line was 456,000 lines and five minutes of one
/// core, the longest test of the suite). A disagreement names the row, never its text: the
/// held-out split stays unread.
#[test]
fn bulk_scan_agrees_with_line_matching_on_every_corpus_line() {
    let lib = library_under_test();
    let rows = corpus();
    let mut buf = String::new();
    let mut origin = Vec::new();
    let mut expected = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let k = i as u64 % (WRAPPERS - 1);
        let wrappers = (0..BULK_WRAPPERS_PER_LINE).map(|j| 1 + (k + 4 * j) % (WRAPPERS - 1));
        for which in std::iter::once(0).chain(wrappers) {
            let text = wrap(&row.line, which);
            origin.push(format!("{} (wrapper {which})", row.at));
            if let Some(m) = lib.match_death_line(&text) {
                expected.push((origin.len(), m.signature.spec.id.clone()));
            }
            buf.push_str(&text);
            buf.push_str(if origin.len() % 5 == 0 { "\r\n" } else { "\n" });
        }
    }
    let mut found = Vec::new();
    let lines = lib.scan_buffer(buf.as_bytes(), 1, |n, _, m| {
        found.push((n, m.signature.spec.id.clone()))
    });
    assert_eq!(lines, origin.len(), "lines counted");
    let found_set: BTreeSet<_> = found.iter().cloned().collect();
    let expected_set: BTreeSet<_> = expected.iter().cloned().collect();
    let differ: Vec<String> = found_set
        .symmetric_difference(&expected_set)
        .map(|(n, id)| {
            let side = if found_set.contains(&(*n, id.clone())) {
                "bulk only"
            } else {
                "line only"
            };
            format!("{side}: {} as {id}", origin[n - 1])
        })
        .collect();
    assert!(
        differ.is_empty(),
        "bulk scan and line matching differ:\n{}",
        differ.join("\n")
    );
    assert_eq!(found, expected, "order of reports");
    println!(
        "bulk scan = line matching on {} corpus lines ({} matches)",
        origin.len(),
        found.len()
    );
}

/// Log renderings the scoring rotation (`wrap`) does not use, each in its documented default
/// shape: what the same fleet's lines look like when another logger, shipper or terminal
/// carried them. A line's verdict must not depend on which one did.
const RENDERINGS: [&str; 38] = [
    "logrus text (logfmt)",
    "logrus JSON (Go escapes <, >, &)",
    "python-json-logger (ASCII escapes)",
    "GELF",
    "Fluent Bit stdout (msgpack print)",
    "CloudWatch Logs Insights CSV export",
    "aws logs filter-log-events --output text",
    "pretty-printed JSON field (aws logs get-log-events)",
    "kubectl get -o yaml (a quoted message)",
    "Heroku router/app",
    "Lambda Node.js console",
    "docker logs -t",
    "kubectl logs --prefix --timestamps",
    "docker compose logs -t",
    "logback default pattern",
    "Spring Boot 3 console",
    "Python logging (asctime - name - levelname)",
    "journalctl -o short-iso",
    "syslog with priority and RFC 3339 time",
    "Spring Boot's coloured console (ANSI)",
    "a red error line (ANSI, chalk)",
    "Loki logcli",
    "stern",
    "kubectl get events -A",
    "PowerShell Format-List of an event",
    "a Markdown quote in an issue",
    "docker build (BuildKit plain progress)",
    "GitHub Actions error annotation",
    "npm ERR!",
    "pytest's failure lines",
    "a rich-drawn panel row",
    "git push's remote: lines",
    "Maven's [ERROR]",
    "journalctl -o verbose",
    "kubectl get -o yaml (a plain message)",
    "grep over several files (the file's name)",
    "grep -n over several files (name and line number)",
    "cat -n",
];

/// The renderings from [`RENDERINGS`]' tenth on only put text around the line: what comes before
/// and after it, in the same order.
const AROUND: [(&str, &str); 29] = [
    ("2026-01-05T10:00:01.123456+00:00 app[web.1]: ", ""),
    ("2026-01-05T10:00:01.123Z\t3f1c2a4b-1111-2222-3333-444455556666\tERROR\t", ""),
    ("2026-01-05T10:00:01.123456789Z ", ""),
    ("[pod/api-7d9f8c6b5-x2x9q/api] 2026-01-05T10:00:01.123456789Z ", ""),
    ("api-1  | 2026-01-05T10:00:01.123456789Z ", ""),
    ("10:00:01.123 [main] ERROR com.example.App - ", ""),
    ("2026-01-05T10:00:01.123Z ERROR 1234 --- [api] [           main] c.e.App                                  : ", ""),
    ("2026-01-05 10:00:01,123 - app - ERROR - ", ""),
    ("2026-01-05T10:00:01+0000 ip-10-0-1-23 app[1234]: ", ""),
    ("<11>2026-01-05T10:00:01.123456+00:00 ip-10-0-1-23 app[1234]: ", ""),
    ("\x1b[2m2026-01-05T10:00:01.123Z\x1b[0;39m \x1b[31mERROR\x1b[0;39m \x1b[35m1234\x1b[0;39m \x1b[2m---\x1b[0;39m \x1b[2m[           main]\x1b[0;39m \x1b[36mc.e.App                                 \x1b[0;39m \x1b[2m:\x1b[0;39m ", ""),
    ("\x1b[31m", "\x1b[39m"),
    ("2026-01-05T10:00:01Z {app=\"api\", namespace=\"prod\", pod=\"api-7d9f8c6b5-x2x9q\"} ", ""),
    ("api-7d9f8c6b5-x2x9q api ", ""),
    ("prod        5m          Warning   BackOff     pod/api-7d9f8c6b5-x2x9q   ", ""),
    ("Message              : ", ""),
    ("> ", ""),
    ("#12 45.67 ", ""),
    ("##[error]", ""),
    ("npm ERR! ", ""),
    ("E       ", ""),
    ("│ ", " │"),
    ("remote: ", ""),
    ("[ERROR] ", ""),
    ("    MESSAGE=", ""),
    ("  message: ", ""),
    ("/var/log/syslog.1:", ""),
    ("logs/app.log:48213:", ""),
    ("  4821\t", ""),
];

/// A JSON string literal as Go's `encoding/json` writes it (`<`, `>`, `&` as `\u003c`…), or,
/// with `ascii`, as Python's `json.dumps` does by default (every non-ASCII character escaped).
fn json_escaped(s: &str, ascii: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if !ascii => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The line in rendering `which` of [`RENDERINGS`].
fn render(line: &str, which: usize) -> String {
    let logfmt = line.replace('\\', "\\\\").replace('"', "\\\"");
    match which {
        0 => format!("time=\"2026-01-05T10:00:01Z\" level=error msg=\"{logfmt}\""),
        1 => format!(
            "{{\"level\":\"error\",\"msg\":{},\"time\":\"2026-01-05T10:00:01Z\"}}",
            json_escaped(line, false)
        ),
        2 => format!(
            "{{\"asctime\": \"2026-01-05 10:00:01,123\", \"levelname\": \"ERROR\", \"name\": \"app\", \"message\": {}}}",
            json_escaped(line, true)
        ),
        3 => format!(
            "{{\"version\":\"1.1\",\"host\":\"ip-10-0-1-23\",\"short_message\":{},\"level\":3}}",
            json_str(line)
        ),
        4 => format!(
            "[0] kube.var.log.containers.api.log: [1767607201.123456789, {{\"log\"=>\"{line}\", \"stream\"=>\"stderr\"}}]"
        ),
        5 => format!(
            "2026-01-05 10:00:01.123,\"{}\"",
            line.replace('"', "\"\"")
        ),
        6 => format!(
            "EVENTS\t38012345678901234567890123456789012345678901234567890123\t1767607201456\ti-0abc123def4567890\t{line}\t1767607201123"
        ),
        7 => format!("            \"message\": {},", json_str(line)),
        8 => format!("    message: {}", json_str(line)),
        _ => {
            let (before, after) = AROUND[which - 9];
            format!("{before}{line}{after}")
        }
    }
}

/// Agreement with the raw line's verdict, per rendering, that both splits must keep.
const MIN_RENDERING_AGREEMENT: f64 = 0.995;

/// Renderings each corpus line is checked in (chosen by a hash of the line, as `wrap` is): every
/// rendering gets about a twelfth of each split, and the test stays about a minute.
const RENDERINGS_PER_LINE: usize = 3;

/// Every corpus line, in [`RENDERINGS_PER_LINE`] renderings of [`RENDERINGS`], gets its raw
/// verdict (OOM or not). Development disagreements are listed; held-out ones only counted.
#[test]
fn verdicts_do_not_depend_on_the_rendering() {
    let lib = library_under_test();
    let rows = corpus();
    let is_oom = |text: &str| {
        lib.match_line(text)
            .is_some_and(|m| m.signature.spec.kind == SignatureKind::Oom)
    };
    let mut failures = Vec::new();
    for (split, held) in [("development", false), ("held-out", true)] {
        let of_split: Vec<&Row> = rows.iter().filter(|r| holdout(r) == held).collect();
        let raw: Vec<bool> = of_split.iter().map(|r| is_oom(&r.line)).collect();
        for (which, name) in RENDERINGS.iter().enumerate() {
            let (mut lost, mut gained, mut checked, mut listed) =
                (0usize, 0usize, 0usize, Vec::new());
            for (row, &was) in of_split.iter().zip(&raw) {
                let first = fnv1a(&row.line, 11) as usize % RENDERINGS.len();
                if (which + RENDERINGS.len() - first) % RENDERINGS.len() >= RENDERINGS_PER_LINE {
                    continue;
                }
                checked += 1;
                let text = render(&row.line, which);
                if is_oom(&text) == was {
                    continue;
                }
                if was {
                    lost += 1
                } else {
                    gained += 1
                }
                if !held {
                    let what = if was { "lost" } else { "gained" };
                    listed.push(format!("    {what} {} [{}]: {text}", row.at, row.emitter));
                }
            }
            let agreement = 1.0 - (lost + gained) as f64 / checked.max(1) as f64;
            println!(
                "{split}, {name}: agreement {agreement:.4} ({lost} deaths lost, {gained} false alarms gained, of {checked} lines)"
            );
            for l in &listed {
                println!("{l}");
            }
            if agreement < MIN_RENDERING_AGREEMENT {
                failures.push(format!("{split}, {name}: {agreement:.4}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "verdicts change with the rendering (< {MIN_RENDERING_AGREEMENT}): {failures:?}"
    );
}
