//! How a log line was carried, taken off before matching: the message out of a structured record
//! (JSON loggers and shippers, a pretty-printed JSON field, logfmt, Fluent Bit's `stdout` print,
//! the AWS CLI's text output, a CSV export's row), terminal colours, and the
//! prefixes shippers, runtimes, terminals and listings put in front of it (CRI, syslog, journald,
//! compose, kubectl, Heroku, Lambda, logback, Spring Boot, Python logging, `grep`, `cat -n`…).
//!
//! [`readings`] gives the line with each prefix taken off in turn: a pattern may match any of
//! them (an anchored one needs the prefixes gone, another may need a level word) and a guard
//! vetoes from any of them. A line's verdict should not depend on which logger or shipper carried
//! it: `tests/suite/oom_corpus.rs` checks that on the corpus in thirty-eight renderings its scoring
//! rotation does not use.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// JSON fields that carry the log message in structured loggers and log shippers, in the order
/// they are tried: pino/bunyan/zap/logrus (`msg`), ECS/python-json-logger/winston (`message`),
/// Docker json-file and Fluent Bit (`log`), journald (`MESSAGE`), Cloud Logging
/// (`textPayload`), Serilog compact JSON (`@m`, `@mt`), CloudWatch Logs Insights (`@message`),
/// GELF (`short_message`, `full_message`), OpenTelemetry (`body`, `Body`), structlog (`event`).
/// logfmt records and Fluent Bit's `stdout` print are read by the same names.
const MESSAGE_FIELDS: [&str; 13] = [
    "msg",
    "message",
    "log",
    "MESSAGE",
    "textPayload",
    "@m",
    "@message",
    "short_message",
    "full_message",
    "body",
    "Body",
    "event",
    "@mt",
];

/// JSON fields where structured loggers put an exception beside the message: Serilog (`@x`),
/// python-json-logger (`exc_info`), ECS and pino (`error`/`err`, as text or as an object with
/// `message`, `stack_trace` or `stack`), and MongoDB's logv2 (`attr`, whose `message` holds
/// WiredTiger's error text and the fatal message: `"msg":"WiredTiger error","attr":{"error":12,
/// "message":"… memory allocation of … failed"}`), zap's and logrus's `reason` beside an event
/// name (RoadRunner: `"msg":"memory_limit","reason":"max memory is reached"`), and Cloud
/// Foundry's lager (`data`, whose `error` holds what failed: `"message":"rep.….run-step-failed-
/// with-nonzero-status-code","data":{"error":"Exit status 137 (out of memory)"}`). Their text is
/// appended to the message on new lines.
const EXCEPTION_FIELDS: [&str; 10] = [
    "@x",
    "exc_info",
    "exception",
    "stack_trace",
    "error",
    "err",
    "stack",
    "attr",
    "reason",
    "data",
];
/// Text fields inside an exception object (or lager's `data`).
const EXCEPTION_OBJECT_FIELDS: [&str; 7] = [
    "type",
    "message",
    "stack_trace",
    "stack",
    "msg",
    "error",
    "reason",
];

/// Most prefixes taken off one line (they stack: compose, then a timestamp, then syslog's).
const MAX_PREFIXES: usize = 4;

/// Line prefixes added by shippers, runtimes and terminals: CRI (`<time> stderr F `),
/// syslog/journald (`Jan  5 10:00:00 host proc[pid]: `, `<time> host proc[pid]: `), RFC 5424
/// syslog, Heroku (`<time> app[web.1]: `), AWS Lambda's runtimes (`<time>\t<request id>\tERROR\t`,
/// `[ERROR]\t<time>\t<request id>\t`), logback's default pattern (`10:00:01.123 [main] ERROR
/// c.e.App - `), Spring Boot's console (`<time>  ERROR 1234 --- [main] c.e.App : `), Python
/// logging's common format (`<time> - name - ERROR - `), docker compose (`web-1  | `),
/// `kubectl logs --prefix` (`[pod/name/container] `), dmesg (`[ 123.456] `), klog (`E0105
/// 10:00:00.123456  1 file.go:12] `), printk caller ids (`[ T1234]`), `aws logs tail` (`<time>
/// <stream> `), Loki's `logcli` (`<time> {app="api"} `), `kubectl get events` rows (`5m Warning
/// OOMKilling node/ip-10-0-1-23 `), `stern` (`<pod>-<hash>-<id> <container> `, the pod name in
/// Kubernetes' generated-name alphabet), PowerShell's `Format-List` of an event (`Message : `),
/// `journalctl -o verbose` (`MESSAGE=`), a YAML message field (`message: `),
/// what pastes and build logs put in front of a line (a Markdown quote or Gradle's cause `> `,
/// BuildKit's `#12 45.67 `, GitHub Actions' `##[error]`, `npm ERR! `, pytest's `E       `,
/// git's `remote: `, Maven's `[ERROR] `, a box-drawn frame's `│ `), and timestamps with a level
/// word. Alternatives are tried in order at the same place, so the
/// specific shapes come before the general timestamp at the end. Where none of them is at the
/// start, a listing's prefix may be ([`LISTING`]: `grep`'s file name and line number, `cat -n`).
///
/// A syslog host is a word without a colon and its process name has a lower-case letter or a
/// `[pid]`, and a log stream has a `/` and neither opens with a bracket nor ends in a colon: so
/// `<time> slurmstepd: error: …`, `<time> F LDR: …`, `<time> [0329/101657:WARNING:…]` and
/// `<time> /usr/bin/grep: …` (`docker logs -t`) keep the program's own first words.
static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:",
        r"\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:?\d{2}) (?:stdout|stderr) [FP] ",
        r"|<\d{1,3}>1 \S+ \S+ \S+ \S+ \S+ (?:-|\[[^\]]*\]) ",
        r"|<\d{1,3}>",
        r"|\d{4}-\d{2}-\d{2}T[\d:.]+Z\t[0-9a-fA-F-]{36}\t(?:TRACE|DEBUG|INFO|WARN|ERROR|FATAL)\t",
        r"|\[(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\]\t\d{4}-\d{2}-\d{2}T[\d:.]+Z\t[0-9a-fA-F-]{36}\t",
        r"|\d{4}-\d{2}-\d{2}[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?\s+(?:TRACE|DEBUG|INFO|WARN|ERROR|FATAL)\s+\d+ --- (?:\[[^\]\n]*\]\s*)+\S+\s+: ",
        r"|\d{4}-\d{2}-\d{2} [\d:,.]+ - \S+ - (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) - ",
        r"|(?:\d{4}-\d{2}-\d{2} )?\d{2}:\d{2}:\d{2}[.,]\d{3} \[[^\]\n]*\] (?:TRACE|DEBUG|INFO|WARN|ERROR)\s+\S+ - ",
        r"|\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:?\d{2}) [a-z][\w-]*\[[\w.-]+\]: ",
        r"|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)? [A-Za-z0-9][^\s:\[\]]* (?:[^:\[\s]+\[\d+\]|[^:\[\s]*[a-z][^:\[\s]*): ",
        r"|\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:?\d{2}) [A-Za-z0-9][^\s:\[\]]* (?:[^:\[\s]+\[\d+\]|[^:\[\s]*[a-z][^:\[\s]*): ",
        r"|\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:?\d{2}) (?:i-[0-9a-f]{8,17}\S*|[^\s\[(/]\S*/\S*[^\s:]) ",
        r"|[\w.-]{2,} +\| ",
        r"|\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:?\d{2}) \{[^}\n]*\}\s+",
        r"|(?:[a-z0-9][\w.-]*\s+)?(?:\d+[smhd](?:\d+[smh])?|<unknown>)\s+(?:Normal|Warning)\s+\w+\s+[\w.-]+/[\w.:-]+\s+",
        r"|[a-z0-9][a-z0-9-]*-(?:[bcdfghjklmnpqrstvwxz2-9]{6,10}-)?[bcdfghjklmnpqrstvwxz2-9]{5} [a-z0-9][a-z0-9-]* ",
        r"|Message\s*: ",
        r"|(?:MESSAGE=|(?:message|msg): )",
        r"|>\s+",
        r"|#\d+ \d+\.\d+ ",
        r"|##\[\w+\]",
        r"|npm (?:ERR!|error) ",
        r"|E {3,}",
        r"|remote: ",
        r"|\[(?:TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|CRITICAL)\]:?\s+",
        r"|[│┃]\s",
        r"|\[pod/[^\]]+\] ",
        r"|\[\s*\d+\.\d+\]\s*",
        r"|\[\s*[TC]\d+\]\s*",
        r"|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d [\d:]+ \d{4}\] ",
        r"|[IWEF]\d{4} [\d:.]+\s+\d+ [^\]\s]+\] ",
        r"|\[?\d{4}-\d{2}-\d{2}[T ][\d:.,]+(?:Z|[+-]\d{2}:?\d{2})?\]?\s+(?:\[?(?:TRACE|DEBUG|INFO|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|EMERG)\]?:?\s+)?",
        r")"
    ))
    .expect("the prefix regex compiles")
});

/// A host and process name that are a program's own level word (`<time> fatal error: …`,
/// `Jan  5 10:00:01 runtime error: …`): only the timestamp in front of them is a prefix.
static LEVEL_AS_PROCESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\s(?:error|err|warning|warn|fatal|panic|info|debug|exception|critical|alert|emerg)(?:\[\d+\])?:\s*$")
        .expect("the level-word regex compiles")
});

/// A timestamp alone at the start (ISO 8601 or syslog's).
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:\[?\d{4}-\d{2}-\d{2}[T ][\d:.,]+(?:Z|[+-]\d{2}:?\d{2})?\]?",
        r"|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)?)\s+"
    ))
    .expect("the timestamp regex compiles")
});

/// What a listing puts in front of a line when people paste it: `grep`'s file name (several
/// files or `-r`: `/var/log/syslog.1:`, `kern.log:`), its line number (`-n`: `48213:`, context
/// lines `48214-`), or both (`logs/app.log:1207:`), and `cat -n`'s or `nl`'s number and tab. A
/// file name has a `/` or a log file's suffix. grep writes the line right after the colon, so a
/// program naming itself (`/usr/bin/grep: memory exhausted`, one space) is not a listing, though
/// an indented line after one is (`app.yaml:  summary: …`); and a bare number
/// must not run on into another digit, so a timestamp (`10:00:01`, `2026-01-05`) is not one
/// either (`48213:0 pages in swap cache` stays whole: it cannot be told from a time).
static LISTING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:",
        r"(?:[\w.~-]*/[\w./~-]*|syslog|messages|[\w.-]+\.(?:log|txt|out|err))(?:\.\d+)?(?:\.gz)?:(?:\d{1,9}:)?",
        r"|\d{1,9}[:-]",
        r"|\s*\d{1,9}\t",
        r")"
    ))
    .expect("the listing regex compiles")
});

/// Where a listing's prefix ([`LISTING`]) ends, if the line has one.
fn listing_end(text: &str) -> Option<usize> {
    let m = LISTING.find(text)?;
    if m.as_str().ends_with('\t') {
        return Some(m.end());
    }
    let bare_number = m.as_str().starts_with(|c: char| c.is_ascii_digit());
    let rest = &text[m.end()..];
    let mut next = rest.chars();
    let (first, second) = (next.next()?, next.next());
    // One space and a word: a program naming itself; more: a listed line that was indented.
    let names_itself = first == ' ' && second.is_some_and(|c| !c.is_whitespace());
    let runs_on = names_itself || (bare_number && first.is_ascii_digit());
    (!runs_on).then_some(m.end())
}

/// Where the prefix at the start of `text` ends, if there is one.
fn prefix_end(text: &str) -> Option<usize> {
    let Some(m) = PREFIX.find(text).filter(|m| !m.is_empty()) else {
        return listing_end(text);
    };
    if LEVEL_AS_PROCESS.is_match(m.as_str()) {
        return TIMESTAMP
            .find(text)
            .map(|t| t.end())
            .filter(|&end| end < m.end());
    }
    Some(m.end())
}

/// Removes the prefixes above (up to a few, in any order), so that patterns can anchor at the
/// start of what the program itself printed.
pub fn strip_prefixes(text: &str) -> &str {
    readings(text)[0]
}

/// The ways of reading a (unwrapped) line, in the order patterns try them: all prefixes taken
/// off ([`strip_prefixes`]), then fewer, then the line as it is. Each reading appears once.
pub fn readings(text: &str) -> Vec<&str> {
    let mut steps = vec![text, text.trim_start()];
    let mut rest = text.trim_start();
    for _ in 0..MAX_PREFIXES {
        match prefix_end(rest) {
            Some(end) => rest = rest[end..].trim_start(),
            None => break,
        }
        steps.push(rest);
    }
    let mut out: Vec<&str> = Vec::with_capacity(steps.len());
    for r in steps.into_iter().rev() {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// A JSON `\u` escape: the bulk pass lists the lines holding one, as it lists keywords.
pub const UNICODE_ESCAPE: &str = "\\u";

/// Whether a line holds a JSON `\u` escape: python-json-logger escapes every non-ASCII
/// character by default, Go's `encoding/json` escapes `<`, `>` and `&`, so a keyword with such
/// a character is only found in the unwrapped message.
pub fn has_unicode_escape(line: &str) -> bool {
    memchr::memmem::find(line.as_bytes(), UNICODE_ESCAPE.as_bytes()).is_some()
}

/// Takes the message out of a structured record (a JSON logger's line or a Docker json-file
/// record, a logfmt record, Fluent Bit's `stdout` print), or returns the line unchanged, in
/// both cases without terminal colour codes. Only called for prefilter candidates, so its cost
/// is off the hot path.
pub fn unwrap_message(line: &str) -> Cow<'_, str> {
    let uncoloured = |text: String| match text.contains('\x1b') {
        true => ANSI.replace_all(&text, "").into_owned(),
        false => text,
    };
    if line.contains('\x1b') {
        let clean = ANSI.replace_all(line, "");
        return Cow::Owned(uncoloured(
            structured_message(&clean).unwrap_or_else(|| clean.into_owned()),
        ));
    }
    if let Some(inner) = framed(line) {
        return Cow::Owned(structured_message(inner).unwrap_or_else(|| inner.to_string()));
    }
    structured_message(line).map_or(Cow::Borrowed(line), |m| Cow::Owned(uncoloured(m)))
}

/// The text inside a box-drawn frame (`│ … │`, as rich and other terminal UIs draw tracebacks
/// and panels), if the line is one row of it.
fn framed(line: &str) -> Option<&str> {
    let trimmed = line.trim();
    ["│", "┃"].iter().find_map(|bar| {
        let inner = trimmed.strip_prefix(bar)?.strip_suffix(bar)?;
        Some(inner.trim())
    })
}

/// The message of a structured record, taken out once more if it is itself one (a JSON event
/// in a CSV export, a JSON log line inside a shipper's record).
fn structured_message(line: &str) -> Option<String> {
    let outer = structured_once(line)?;
    Some(structured_once(&outer).unwrap_or(outer))
}

/// ANSI terminal sequences (SGR colours and the other CSI ones): Spring Boot's and
/// tracing-subscriber's coloured consoles, chalk-red error lines, a TTY's `kubectl logs`.
static ANSI: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\x1b\[[0-9;:?<=>]*[ -/]*[@-~]").expect("the ANSI regex compiles")
});

/// The message of a structured record, if the line is one.
fn structured_once(line: &str) -> Option<String> {
    json_message(line)
        .or_else(|| json_field_message(line))
        .or_else(|| fluent_bit_message(line))
        .or_else(|| logfmt_message(line))
        .or_else(|| cloudwatch_text_message(line))
        .or_else(|| csv_message(line))
}

/// One field of pretty-printed JSON holding a message, as pasted from `aws logs get-log-events`,
/// `journalctl -o json-pretty` or `kubectl get events -o json` (`    "message": "…",`), or of
/// YAML with a double-quoted value (`kubectl get … -o yaml`: `  message: "…"`).
static JSON_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^\s*(?:"([@\w]+)"|(\w+))\s*:\s*("(?:[^"\\]|\\.)*")\s*,?\s*$"#)
        .expect("the JSON field regex compiles")
});

/// The message of a pretty-printed JSON (or YAML) field line whose key is one of
/// [`MESSAGE_FIELDS`].
fn json_field_message(line: &str) -> Option<String> {
    let caps = JSON_FIELD.captures(line)?;
    let key = caps.get(1).or_else(|| caps.get(2))?.as_str();
    if !MESSAGE_FIELDS.contains(&key) {
        return None;
    }
    let text = serde_json::from_str::<String>(&caps[3]).ok()?;
    Some(text.trim_end_matches(['\n', '\r']).to_string())
}

/// A row of the AWS CLI's text output for CloudWatch Logs: `EVENTS\t<ingestionTime>\t<message>\t
/// <timestamp>` (`get-log-events`) or `EVENTS\t<eventId>\t<ingestionTime>\t<logStreamName>\t
/// <message>\t<timestamp>` (`filter-log-events`); the columns come in the keys' order.
static CLOUDWATCH_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^EVENTS\t(?:\d+\t\d{13}\t[^\t]+\t|\d{13}\t)(.*)\t\d{13}\s*$")
        .expect("the CLI text-output regex compiles")
});

fn cloudwatch_text_message(line: &str) -> Option<String> {
    CLOUDWATCH_TEXT
        .captures(line)
        .map(|caps| caps[1].to_string())
}

/// The message of a row of a CSV export (CloudWatch Logs Insights' "Download table (CSV)",
/// Datadog's and Grafana's exports): the longest field written in quotes, with its doubled
/// quotes undone. The row has to read as CSV from start to end (RFC 4180 quoting, at least two
/// fields, ending in a quoted one), so a line that only has commas is left as it is.
fn csv_message(line: &str) -> Option<String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if !line.ends_with('"') || !line.contains(",\"") {
        return None;
    }
    let (mut fields, mut rest) = (Vec::new(), line);
    loop {
        let (field, quoted, after) = match rest.strip_prefix('"') {
            Some(inner) => {
                let mut text = String::new();
                let mut chars = inner.char_indices();
                let end = loop {
                    let (i, c) = chars.next()?;
                    if c != '"' {
                        text.push(c);
                    } else if inner[i + 1..].starts_with('"') {
                        text.push('"');
                        chars.next();
                    } else {
                        break i + 1;
                    }
                };
                (text, true, &inner[end..])
            }
            None => {
                let end = rest.find(',').unwrap_or(rest.len());
                if rest[..end].contains('"') {
                    return None;
                }
                (rest[..end].to_string(), false, &rest[end..])
            }
        };
        fields.push((field, quoted));
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None if after.is_empty() => break,
            None => return None,
        }
    }
    if fields.len() < 2 {
        return None;
    }
    fields
        .into_iter()
        .filter(|(_, quoted)| *quoted)
        .max_by_key(|(f, _)| f.len())
        .map(|(f, _)| f)
}

/// The message of a JSON record, with any exception text on the lines after it.
fn json_message(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    // Wrappers such as "2026-01-05T10:00:00Z stdout F {...}" put the JSON after a prefix.
    let json_start = trimmed.find('{')?;
    if !trimmed.trim_end().ends_with('}') {
        return None;
    }
    let candidate = &trimmed[json_start..];
    let Ok(serde_json::Value::Object(map)) =
        serde_json::from_str::<serde_json::Value>(candidate.trim_end())
    else {
        return None;
    };
    let message = MESSAGE_FIELDS
        .iter()
        .find_map(|f| map.get(*f).and_then(|v| v.as_str()))?;
    let mut text = message.trim_end_matches(['\n', '\r']).to_string();
    for field in EXCEPTION_FIELDS {
        match map.get(field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => {
                text.push('\n');
                text.push_str(s);
            }
            Some(serde_json::Value::Object(o)) => {
                for f in EXCEPTION_OBJECT_FIELDS {
                    if let Some(s) = o.get(f).and_then(|v| v.as_str()) {
                        text.push('\n');
                        text.push_str(s);
                    }
                }
            }
            _ => {}
        }
    }
    Some(text)
}

/// Fluent Bit's `stdout` output in its default format, a msgpack print: `[0] kube.var.log…:
/// [1767607201.123456789, {"log"=>"…", "stream"=>"stderr"}]` (since 2.1 the timestamp is
/// `[[<time>, {}], {…}]`). Strings are printed raw between quotes, so a value ends at a quote
/// followed by the next `, "key"=>` or by the record's closing brace.
static FLUENT_BIT_PRINT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^\s*\[\d+\] \S+: \[\[?[\d.]+"#).expect("the Fluent Bit regex compiles")
});

fn fluent_bit_message(line: &str) -> Option<String> {
    if !FLUENT_BIT_PRINT.is_match(line) {
        return None;
    }
    MESSAGE_FIELDS.iter().find_map(|field| {
        let key = format!("\"{field}\"=>\"");
        let start = line.find(&key)? + key.len();
        let value = &line[start..];
        let end = value.match_indices('"').map(|(i, _)| i).find(|&i| {
            let after = &value[i + 1..];
            after.starts_with('}') || next_fluent_bit_key(after)
        })?;
        Some(value[..end].to_string())
    })
}

/// Whether text opens with `, "key"=>`: the next field of a Fluent Bit print.
fn next_fluent_bit_key(text: &str) -> bool {
    text.strip_prefix(", \"")
        .and_then(|rest| rest.find('"').map(|q| (rest, q)))
        .is_some_and(|(rest, q)| rest[q + 1..].starts_with("=>") && !rest[..q].contains([' ', ',']))
}

/// A logfmt record (logrus's and go-kit's text format, Heroku's and Grafana's tools):
/// `time="…" level=error msg="…"`, the message quoted with Go's escapes when it holds spaces.
/// At least one field comes before the message, so a lone setting (`log=/var/log/oom.log`)
/// is not taken for a record.
static LOGFMT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^\s*[\w.@-]+=(?:"(?:[^"\\]|\\.)*"|\S*)(?:\s+[\w.@-]+=(?:"(?:[^"\\]|\\.)*"|\S*))*?\s+(?:msg|message|log)=("(?:[^"\\]|\\.)*"|\S+)"#,
    )
    .expect("the logfmt regex compiles")
});

/// A logfmt record has a level field (logrus, go-kit, Prometheus, Loki, Grafana, containerd):
/// a line that only looks like fields (`type=INSUFFICIENT_RESOURCES, name=…, message="…"`, an
/// exception's rendering) is left as it is.
static LOGFMT_LEVEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|\s)(?:level|lvl|severity)=\S").expect("the logfmt level regex compiles")
});

/// One `key=value` field of a logfmt record, the value quoted or bare.
static LOGFMT_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([\w.@-]+)=("(?:[^"\\]|\\.)*"|\S*)"#).expect("the logfmt field regex compiles")
});

/// The message of a logfmt record, then its other fields on the next line, unquoted (`level=error
/// err=open …: cannot allocate memory topic=/tasks/oom`): they often carry what the message only
/// summarises.
fn logfmt_message(line: &str) -> Option<String> {
    if !LOGFMT_LEVEL.is_match(line) {
        return None;
    }
    let caps = LOGFMT.captures(line)?;
    let message = caps.get(1)?;
    let mut out = unquoted(message.as_str());
    let others: Vec<String> = LOGFMT_FIELD
        .captures_iter(line)
        .filter(|c| c.get(2).is_some_and(|v| v.range() != message.range()))
        .map(|c| format!("{}={}", &c[1], unquoted(&c[2])))
        .collect();
    if !others.is_empty() {
        out.push('\n');
        out.push_str(&others.join(" "));
    }
    Some(out)
}

/// A logfmt value's text: a Go-quoted string unquoted, a bare value as it is.
fn unquoted(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(quoted) => go_unquoted(quoted),
        None => value.to_string(),
    }
}

/// A Go-quoted string's text (`\"`, `\\`, `\n`, `\t`, `\r` undone).
fn go_unquoted(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_rendering_back_to_the_programs_line() {
        let line =
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory";
        let rendered = [
            format!("time=\"2026-01-05T10:00:01Z\" level=error msg=\"{line}\""),
            format!("[0] kube.var.log.containers.api.log: [1767607201.123456789, {{\"log\"=>\"{line}\", \"stream\"=>\"stderr\"}}]"),
            format!("[0] app: [[1767607201.123456789, {{}}], {{\"stream\"=>\"stderr\", \"log\"=>\"{line}\"}}]"),
            format!("2026-01-05T10:00:01.123456+00:00 app[web.1]: {line}"),
            format!("2026-01-05T10:00:01.123Z\t3f1c2a4b-1111-2222-3333-444455556666\tERROR\t{line}"),
            format!("[ERROR]\t2026-01-05T10:00:01.123Z\t3f1c2a4b-1111-2222-3333-444455556666\t{line}"),
            format!("10:00:01.123 [main] ERROR com.example.App - {line}"),
            format!("2026-01-05T10:00:01.123Z ERROR 1234 --- [api] [           main] c.e.App     : {line}"),
            format!("2026-01-05 10:00:01,123 - app - ERROR - {line}"),
        ];
        for r in &rendered {
            let unwrapped = unwrap_message(r);
            // (A logfmt record's other fields follow its message on the next line.)
            assert_eq!(strip_prefixes(&unwrapped).lines().next(), Some(line), "{r}");
        }
    }

    #[test]
    fn reads_exports_and_tables_back_to_the_programs_line() {
        let line = r#"Memory cgroup out of memory: Killed process 4242 (node) "api""#;
        let doubled = line.replace('"', "\"\"");
        let json = serde_json::to_string(line).unwrap();
        for r in [
            format!("2026-01-05 10:00:01.123,\"{doubled}\""),
            format!("\"2026-01-05T10:00:01.123Z\",\"i-0abc\",\"{doubled}\""),
            format!("EVENTS\t1767607201456\t{line}\t1767607201123"),
            format!("EVENTS\t3801234567\t1767607201456\ti-0abc/stream\t{line}\t1767607201123"),
            format!("            \"message\": {json},"),
            format!("    \"MESSAGE\" : {json}"),
            format!("2026-01-05T10:00:01Z {{app=\"api\", pod=\"api-1\"}} {line}"),
            format!("api-7d9f8c6b5-x2x9q api {line}"),
            format!("node-exporter-k2x9q exporter {line}"),
            format!("5m          Warning   OOMKilling   node/ip-10-0-1-23   {line}"),
            format!("prod   2m10s   Warning   BackOff   pod/api-7d9f8c6b5-x2x9q   {line}"),
            format!("Message              : {line}"),
            format!("    MESSAGE={line}"),
            format!("  message: {line}"),
            format!("    message: {json}"),
            format!("> {line}"),
            format!("> > {line}"),
            format!("#12 45.67 {line}"),
            format!("##[error]{line}"),
            format!("npm ERR! {line}"),
            format!("npm error {line}"),
            format!("E       {line}"),
            format!("remote: {line}"),
            format!("[ERROR] {line}"),
            format!("│ {line}  │"),
            format!("/var/log/syslog.1:{line}"),
            format!("kern.log:{line}"),
            format!("logs/app.log:1207:{line}"),
            format!("48213:{line}"),
            format!("48214-{line}"),
            format!("  4821\t{line}"),
            format!("/var/log/kern.log:Jan  5 10:00:01 ip-10-0-1-23 kernel: [ 12.345678] {line}"),
        ] {
            assert_eq!(strip_prefixes(&unwrap_message(&r)), line, "{r}");
        }
        // A JSON event inside a CSV export is taken out of both.
        let event = r#"2026-01-05 10:00:01,"{""message"":""Out of memory"",""level"":""error""}""#;
        assert_eq!(unwrap_message(event), "Out of memory");
        // Lines that only have commas or quotes, or a field that is not a message, stay as
        // they are; so do words that are not a pod name.
        for text in [
            "usage 102360kB, limit 102400kB, failcnt 125402",
            r#"error: "out of memory", retrying"#,
            r#"  "reason": "OOMKilled","#,
            "oom-killer invoked the victim",
            "| OOMKill | counter | /proc/vmstat |",
            "10:00:01 out of memory",
            "2026-01-05 out of memory",
            "48213:0 pages in swap cache",
            "/usr/bin/grep: memory exhausted",
            "12: out of memory",
        ] {
            assert_eq!(strip_prefixes(&unwrap_message(text)), text.trim_start());
        }
    }

    #[test]
    fn keeps_the_programs_first_words() {
        for (line, own) in [
            (
                "2026-01-05T10:00:01.123456789Z slurmstepd: error: Detected 1 oom-kill event(s)",
                "slurmstepd: error: Detected 1 oom-kill event(s)",
            ),
            (
                "2026-01-05T10:00:01Z F LDR: class std::runtime_error thrown",
                "F LDR: class std::runtime_error thrown",
            ),
            (
                "2026-01-05T10:00:01Z [0329/101657.101380:WARNING:x.cc(90)] failed",
                "[0329/101657.101380:WARNING:x.cc(90)] failed",
            ),
            (
                "2026-01-05T10:00:01Z /usr/bin/grep: memory exhausted",
                "/usr/bin/grep: memory exhausted",
            ),
            (
                "2026-01-05T10:00:01Z fatal error: out of memory",
                "fatal error: out of memory",
            ),
            (
                "2026-01-05T10:00:01Z ### java.lang.OutOfMemoryError: x",
                "### java.lang.OutOfMemoryError: x",
            ),
            ("2026-01-05T10:00:01Z /tasks/oom {}", "/tasks/oom {}"),
            ("2026-01-05T10:00:01Z ip-10-0-1-23 CRON[12]: x", "x"),
            ("2026-01-05T10:00:01Z i-0a1b2c3d4e5f60718 x", "x"),
            // `cat -n` of a table: the row, not a compose service (compose pads with spaces).
            ("  4821\t| OOMKill | counter |", "| OOMKill | counter |"),
            (
                "deploy/rules.yml:  summary: OOMKilled",
                "summary: OOMKilled",
            ),
        ] {
            assert_eq!(strip_prefixes(line), own);
        }
        let line = "api-1  | 2026-01-05T10:00:01.123456789Z slurmstepd: error: oom";
        let r = readings(line);
        let own = &line[line.find("slurmstepd").unwrap()..];
        let after_compose = &line[line.find("2026").unwrap()..];
        assert_eq!(r, [own, after_compose, line]);
        // A journald line reads as its message first, and once only in each reading.
        let r = readings("Jan  5 10:00:01 ip-10-0-1-23 app[1234]: Out of memory");
        assert_eq!(r[0], "Out of memory");
        assert_eq!(
            r.len(),
            r.iter().collect::<std::collections::BTreeSet<_>>().len()
        );
    }

    #[test]
    fn logfmt_values_are_unescaped_and_only_records_are_read() {
        let record = r#"level=error msg="cannot allocate \"heap\"\nnext" caller=x.go:1"#;
        assert_eq!(
            unwrap_message(record),
            "cannot allocate \"heap\"\nnext\nlevel=error caller=x.go:1"
        );
        assert_eq!(unwrap_message("lvl=error msg=oom"), "oom\nlvl=error");
        let fields = "type=INSUFFICIENT_RESOURCES, name=EXCEEDED_LOCAL_MEMORY_LIMIT, message=\"x\"";
        assert_eq!(unwrap_message(fields), fields);
        // Prose that happens to hold "msg=" is not a record, nor is a lone setting.
        for text in [
            "we saw msg=\"out of memory\" in the log",
            "log=/var/log/oom.log",
        ] {
            assert_eq!(unwrap_message(text), text);
        }
    }

    #[test]
    fn takes_terminal_colours_off() {
        let line = "\x1b[2m2026-01-05T10:00:01.123Z\x1b[0;39m \x1b[31mERROR\x1b[0;39m \x1b[35m1234\x1b[0;39m \x1b[2m---\x1b[0;39m \x1b[2m[main]\x1b[0;39m \x1b[36mc.e.App\x1b[0;39m \x1b[2m:\x1b[0;39m \x1b[31mOut of memory\x1b[39m";
        assert_eq!(strip_prefixes(&unwrap_message(line)), "Out of memory");
        let docker = r#"{"log":"\u001b[31mOut of memory\u001b[39m\n","stream":"stderr"}"#;
        assert_eq!(unwrap_message(docker), "Out of memory");
    }

    #[test]
    fn finds_unicode_escapes() {
        assert!(has_unicode_escape(
            r#"{"message": "\u5185\u5b58\u4e0d\u8db3"}"#
        ));
        assert!(!has_unicode_escape(r#"{"message": "out of memory\n"}"#));
    }
}
