//! The `splunk` log backend: an instance's last words from Splunk's search export API
//! (`POST /services/search/v2/jobs/export`, `output_mode=json`), read as it streams — one JSON
//! object per line: `{"preview":false,"offset":N,"result":{"_time":…,"_raw":…}}`, a final
//! `"lastrow":true`, and `{"messages":[{"type":"ERROR","text":…}]}` for a search that failed.
//!
//! One search per instance: the index, the sourcetype and the `instance_filter` terms, each
//! value double-quoted with `\` and `"` escaped (an instance id cannot change the search; a `*`
//! from an instance is refused, as Splunk would read it as a wildcard), then `| head N` —
//! Splunk returns events newest first, so these are the last N before `latest_time` (the
//! termination + drain + grace; `earliest_time` is the launch, or `lookback` before). They are
//! put back in time order. When N events do not reach back over the last-words window, the
//! next search ends at the oldest one (see `sources::paging`).
//!
//! A search that fails (HTTP error, `messages[]` ERROR, an answer that is not the export's
//! JSON) is an error naming Splunk and what failed; no events is an instance without logs.
//! `epitaph doctor` probes the server, the token, the index and the sampled instances'
//! events ([`SplunkLogs::probe`]).
//!
//! Length: about 550 lines of code; the rest are its unit tests.

pub mod config;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use self::config::{Settings, KEY};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::LastWords;
use crate::sources::http::{
    display_url, join, secret_header, CallFailed, HttpClient, HttpFailure, LineSplitter,
};
use crate::sources::paging::{to_ns, Backwards, Entry, Next};
use crate::sources::probe::{
    ApiLookup, ApiLookupResult, CallRecord, Listing, LogApiProbe, ScopeSeen,
};
use crate::sources::{placeholders, select_last_words, LastWordsQuery, LogSource, SkipLog};

/// The backend's name in errors.
pub const NAME: &str = "splunk";
/// The export endpoint (Splunk 9.0.2 and later; older versions only have the v1 path).
pub const EXPORT_PATH: &str = "/services/search/v2/jobs/export";
/// The server's description: reachability and the token, for `epitaph doctor`.
pub const SERVER_INFO_PATH: &str = "/services/server/info";
/// Calls counted in the scan summary.
pub const OP_EXPORT: &str = "splunk:search/v2/jobs/export";
pub const OP_SERVER_INFO: &str = "splunk:server/info";
/// Splunk's time resolution: microseconds.
const TICK_NS: i64 = 1_000;
/// An export answer larger than this is refused (`| head N` keeps real ones far below it).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Index names listed by `epitaph doctor` when the configured one does not exist.
const MAX_LISTED: usize = 50;

/// The last words of instances, from Splunk.
pub struct SplunkLogs {
    settings: Settings,
    http: HttpClient,
    skipped: Mutex<SkipLog>,
}

/// Double-quotes an SPL value, escaping `\` and `"`: whatever it holds stays one literal.
pub fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The search for an instance's newest `head` events: every value quoted and escaped, so an
/// instance id cannot leave its string. Splunk still reads `*` inside quotes as a wildcard:
/// when a value from the instance holds one, the term is also matched exactly with
/// `| where 'FIELD'=="VALUE"` (a template that adds text of its own around such a value is
/// refused: its own wildcards could not be told from the instance's). Control characters are
/// refused: no id, host name or address holds one.
pub fn build_search(
    s: &Settings,
    q: &LastWordsQuery,
    head: usize,
) -> std::result::Result<String, String> {
    let mut spl = format!("search index={}", quote(&s.index));
    if let Some(st) = &s.sourcetype {
        spl.push_str(&format!(" sourcetype={}", quote(st)));
    }
    let mut exact = Vec::new();
    for term in &s.filter {
        let starred = std::cell::Cell::new(false);
        let value = placeholders::fill(&term.template, q, |v| {
            if v.chars().any(char::is_control) {
                return Err("holds control characters".into());
            }
            starred.set(starred.get() || v.contains('*'));
            Ok(v.to_string())
        })?;
        spl.push_str(&format!(" {}={}", term.field, quote(&value)));
        if starred.get() {
            if !placeholders::ALL.contains(&term.template.as_str()) {
                return Err(format!(
                    "{}: the value of `{}` holds `*`, which Splunk would read as a wildcard inside `{}`",
                    q.instance_id, term.field, term.template
                ));
            }
            exact.push(format!(" | where '{}'=={}", term.field, quote(&value)));
        }
    }
    for w in exact {
        spl.push_str(&w);
    }
    spl.push_str(&format!(" | head {head} | fields _time, _raw"));
    Ok(spl)
}

/// A time as Splunk's `earliest_time` / `latest_time`: epoch seconds with microseconds.
pub fn splunk_time(ns: i64) -> String {
    let micros = ns.div_euclid(TICK_NS);
    format!(
        "{}.{:06}",
        micros.div_euclid(1_000_000),
        micros.rem_euclid(1_000_000)
    )
}

/// One line of the export's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A result (its fields).
    Result(serde_json::Map<String, Value>),
    /// The search failed: Splunk's ERROR / FATAL messages.
    Failed(String),
    /// Nothing to use: a preview, an INFO/WARN message, the end marker.
    Nothing,
}

/// Reads one line of the export's JSON answer; a line that is not JSON is an error (a proxy's
/// page, or another output mode).
pub fn parse_row(line: &str) -> std::result::Result<Row, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Row::Nothing);
    }
    let v: Value = serde_json::from_str(line).map_err(|_| {
        format!(
            "the answer is not Splunk's JSON export: `{}`",
            crate::timefmt::truncate(line, 120)
        )
    })?;
    if let Some(errors) = error_messages(&v) {
        return Ok(Row::Failed(errors));
    }
    if v.get("preview").and_then(Value::as_bool) == Some(true) {
        return Ok(Row::Nothing);
    }
    match v.get("result") {
        Some(Value::Object(m)) => Ok(Row::Result(m.clone())),
        _ => Ok(Row::Nothing),
    }
}

/// The ERROR and FATAL texts of a `{"messages":[{"type":…,"text":…}]}` object, joined.
fn error_messages(v: &Value) -> Option<String> {
    let texts: Vec<&str> = v
        .get("messages")?
        .as_array()?
        .iter()
        .filter(|m| {
            m.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("ERROR") || t.eq_ignore_ascii_case("FATAL"))
        })
        .filter_map(|m| m.get("text").and_then(Value::as_str))
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

/// What an error answer's body says: its `messages[]` texts (any type), else its start.
pub fn error_text(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let texts: Vec<&str> = v
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("text").and_then(Value::as_str))
            .collect();
        if !texts.is_empty() {
            return texts.join("; ");
        }
    }
    // Splunk's XML errors: <msg type="ERROR">text</msg>.
    if let Some(start) = body.find("<msg") {
        if let Some(open) = body[start..].find('>') {
            let rest = &body[start + open + 1..];
            if let Some(end) = rest.find("</msg>") {
                return rest[..end].trim().to_string();
            }
        }
    }
    if body.is_empty() {
        "(empty answer)".into()
    } else {
        crate::timefmt::truncate(body, 300)
    }
}

/// An event's time and text from a result row.
pub fn event_of(
    row: &serde_json::Map<String, Value>,
) -> std::result::Result<(i64, String), String> {
    let raw = row
        .get("_raw")
        .and_then(Value::as_str)
        .ok_or("a result without `_raw`")?;
    let time = match row.get("_time") {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(crate::timefmt::unix_to_instant)
                    .ok_or(())
            })
            .map_err(|_| format!("`_time` `{s}` is not a time"))?,
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(crate::timefmt::unix_to_instant)
            .ok_or_else(|| format!("`_time` `{n}` is not a time"))?,
        _ => return Err("a result without `_time`".into()),
    };
    Ok((to_ns(time), raw.trim_end_matches(['\n', '\r']).to_string()))
}

/// Why a request failed, for the error message: the status, Splunk's texts, and what to check.
fn failure(what: &str, f: &HttpFailure) -> CallFailed {
    let hint = match f.status {
        Some(401) => format!(
            " — the token was refused (check {KEY}.token / token_file / token_env and {KEY}.auth_scheme)"
        ),
        Some(403) => " — the token's role may not search (the `search` capability) or read the index".into(),
        Some(404) => format!(
            " — no {EXPORT_PATH} there ({KEY}.url is the management port, usually 8089; Splunk 9.0.2 or later)"
        ),
        _ => String::new(),
    };
    CallFailed::from_http(what, f, &hint, error_text)
}

impl SplunkLogs {
    pub fn from_config(cfg: &Config) -> Result<Self> {
        Self::new(Settings::resolve(cfg).map_err(Error::Config)?)
    }

    pub fn new(settings: Settings) -> Result<Self> {
        // One limiter for the searches of this backend: every scan and on-demand query of the
        // process shares it (the source is built once).
        let http = HttpClient::new(NAME, &settings.http)?.with_limiter(std::sync::Arc::new(
            crate::sources::ratelimit::RateLimiter::single(OP_EXPORT, settings.rate_limit),
        ));
        Ok(SplunkLogs {
            settings,
            http,
            skipped: Mutex::new(SkipLog::default()),
        })
    }

    fn authorization(&self) -> std::result::Result<reqwest::header::HeaderValue, CallFailed> {
        let token = self.settings.token.get().map_err(CallFailed::local)?;
        secret_header(&format!(
            "{} {}",
            self.settings.auth_scheme.prefix(),
            token.expose()
        ))
        .map_err(|e| CallFailed::local(format!("{KEY}.token: {e}")))
    }

    /// Runs `search` through the export API between two times (nanoseconds; `latest`
    /// exclusive) and returns the result rows as they stream in.
    async fn export(
        &self,
        what: &str,
        search: &str,
        range: Option<(i64, i64)>,
    ) -> std::result::Result<Vec<serde_json::Map<String, Value>>, CallFailed> {
        let auth = self.authorization()?;
        let url = join(&self.settings.url, EXPORT_PATH);
        let mut form = vec![
            ("search", search.to_string()),
            ("output_mode", "json".to_string()),
        ];
        if let Some((earliest, latest)) = range {
            form.push(("earliest_time", splunk_time(earliest)));
            form.push(("latest_time", splunk_time(latest)));
        }
        let mut reply = self
            .http
            .send(OP_EXPORT, |c| {
                c.post(url.clone())
                    .header(reqwest::header::AUTHORIZATION, auth.clone())
                    .form(&form)
            })
            .await
            .map_err(|f| failure(what, &f))?;
        let mut lines = LineSplitter::default();
        let mut rows = Vec::new();
        let mut total = 0usize;
        let read_error = |e: String| CallFailed {
            status: None,
            answered: true,
            message: format!("{what}: reading the answer: {e}"),
        };
        let take = |line: &str, rows: &mut Vec<_>| match parse_row(line) {
            Ok(Row::Result(r)) => {
                rows.push(r);
                Ok(())
            }
            Ok(Row::Nothing) => Ok(()),
            Ok(Row::Failed(text)) => Err(CallFailed {
                status: Some(200),
                answered: true,
                message: format!("{what}: the search failed: {text}"),
            }),
            Err(e) => Err(CallFailed {
                status: Some(200),
                answered: true,
                message: format!("{what}: {e}"),
            }),
        };
        while let Some(piece) = reply.chunk().await.map_err(read_error)? {
            total += piece.len();
            if total > MAX_ANSWER_BYTES {
                return Err(read_error(format!(
                    "the answer is larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            for line in lines.push(&piece) {
                take(&line, &mut rows)?;
            }
        }
        if let Some(line) = lines.finish() {
            take(&line, &mut rows)?;
        }
        Ok(rows)
    }

    /// An instance's events, newest first in pages, back over its last-words window.
    async fn read(&self, q: &LastWordsQuery) -> std::result::Result<LastWords, CallFailed> {
        let search =
            build_search(&self.settings, q, self.settings.max_events).map_err(CallFailed::local)?;
        let end = q.terminated_at + q.grace;
        let start = q
            .launched_at
            .filter(|l| *l < end)
            .unwrap_or(end - self.settings.lookback);
        let what = format!("search for {}", q.instance_id);
        let mut pages = Backwards::new(TICK_NS, q.window, q.max_bytes);
        let mut latest = to_ns(end) + TICK_NS;
        loop {
            let rows = self
                .export(&what, &search, Some((to_ns(start), latest)))
                .await?;
            let mut page = Vec::with_capacity(rows.len());
            for (i, row) in rows.iter().enumerate() {
                match event_of(row) {
                    Ok((ns, raw)) => page.push(Entry {
                        ns,
                        identity: raw.clone(),
                        message: raw,
                    }),
                    Err(reason) => {
                        if let Ok(mut s) = self.skipped.lock() {
                            s.push(format!("{what}: result {i}"), reason);
                        }
                    }
                }
            }
            // Rows without a usable time still count toward `| head N`.
            let full = rows.len() >= self.settings.max_events;
            match pages.add_page(page, full) {
                Next::Before(ns) => latest = ns,
                Next::Done => break,
            }
        }
        let incomplete = pages.incomplete;
        let events = pages.into_events();
        let mut words = select_last_words(&events, q);
        words.truncated |= incomplete && !words.events.is_empty();
        Ok(words)
    }

    /// `epitaph doctor`: the server and the token (server/info), the index (`eventcount`),
    /// then each sampled instance's last words as a scan reads them.
    pub async fn probe(&self, samples: &[LastWordsQuery]) -> LogApiProbe {
        let mut p = LogApiProbe {
            backend: NAME.into(),
            key: KEY.into(),
            url: display_url(&self.settings.url),
            connection: Ok(String::new()),
            scopes: Vec::new(),
            lookups: Vec::new(),
            instance_values: None,
            calls: Vec::new(),
        };
        let info_action = format!("GET {SERVER_INFO_PATH}");
        p.connection = self
            .server_info()
            .await
            .map_err(|f| f.call_error(&info_action));
        p.calls.push(CallRecord::of(&info_action, &p.connection));
        if p.connection.is_err() {
            return p;
        }
        let export_action = format!("POST {EXPORT_PATH}");
        let index = &self.settings.index;
        let counted = self
            .export(
                "eventcount",
                &format!("| eventcount summarize=false index={}", quote(index)),
                None,
            )
            .await
            .map_err(|f| f.call_error(&export_action));
        p.calls.push(CallRecord::of(&export_action, &counted));
        let indexes = |rows: &[serde_json::Map<String, Value>]| -> Vec<String> {
            let mut names: Vec<String> = rows
                .iter()
                .filter_map(|r| r.get("index").and_then(Value::as_str).map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names
        };
        let exists = counted.map(|rows| indexes(&rows).iter().any(|n| n == index));
        let mut others = Listing::default();
        if exists == Ok(false) {
            let all = self
                .export("eventcount", "| eventcount summarize=false index=*", None)
                .await
                .map_err(|f| f.call_error(&export_action));
            p.calls.push(CallRecord::of(&export_action, &all));
            if let Ok(rows) = all {
                let mut names = indexes(&rows);
                others.truncated = names.len() > MAX_LISTED;
                names.truncate(MAX_LISTED);
                others.items = names;
            }
        }
        p.scopes.push(ScopeSeen {
            key: format!("{KEY}.index"),
            what: format!("index `{index}`"),
            name: index.clone(),
            exists,
            others,
        });
        for q in samples {
            let looked_for = build_search(&self.settings, q, self.settings.max_events)
                .unwrap_or_else(|_| {
                    self.settings
                        .filter
                        .iter()
                        .map(|t| format!("{}={}", t.field, t.template))
                        .collect::<Vec<_>>()
                        .join(" ")
                });
            let result = match build_search(&self.settings, q, 1) {
                Err(why) => Ok(ApiLookupResult::Unmapped(why)),
                Ok(_) => {
                    let r = self.read(q).await;
                    p.calls.push(CallRecord {
                        action: export_action.clone(),
                        error: r.as_ref().err().map(|f| f.call_error(&export_action)),
                    });
                    match r {
                        Ok(w) if w.events.is_empty() => Ok(ApiLookupResult::NoEvents),
                        Ok(w) => Ok(ApiLookupResult::Events(w.events.len())),
                        Err(f) => Err(f.call_error(&export_action)),
                    }
                }
            };
            p.lookups.push(ApiLookup {
                instance_id: q.instance_id.clone(),
                looked_for,
                result,
            });
        }
        p
    }

    /// `GET /services/server/info`: the version, or why the server did not answer.
    async fn server_info(&self) -> std::result::Result<String, CallFailed> {
        let auth = self.authorization()?;
        let url = join(&self.settings.url, SERVER_INFO_PATH);
        let reply = self
            .http
            .send(OP_SERVER_INFO, |c| {
                c.get(url.clone())
                    .header(reqwest::header::AUTHORIZATION, auth.clone())
                    .query(&[("output_mode", "json")])
            })
            .await
            .map_err(|f| failure("server/info", &f))?;
        let body = reply
            .bytes(MAX_ANSWER_BYTES)
            .await
            .map_err(|e| CallFailed {
                status: None,
                answered: true,
                message: format!("server/info: {e}"),
            })?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let version = v
            .pointer("/entry/0/content/version")
            .and_then(Value::as_str);
        Ok(match version {
            Some(ver) => format!("Splunk {ver}"),
            None => "answers".into(),
        })
    }
}

#[async_trait]
impl LogSource for SplunkLogs {
    fn name(&self) -> String {
        format!("splunk:{}", display_url(&self.settings.url))
    }

    async fn last_words(&self, q: &LastWordsQuery) -> Result<LastWords> {
        self.read(q).await.map_err(|f| f.into_error(NAME))
    }

    fn skipped(&self) -> (usize, Vec<crate::sources::Skipped>) {
        self.skipped
            .lock()
            .map(|s| (s.count, s.report()))
            .unwrap_or_default()
    }

    fn skipped_by_input(&self) -> Vec<crate::sources::SkippedGroup> {
        self.skipped
            .lock()
            .map(|s| s.groups.rows())
            .unwrap_or_default()
    }

    fn calls(&self) -> BTreeMap<String, u64> {
        self.http.calls()
    }
}

#[cfg(test)]
mod tests {
    use super::config::{AuthScheme, FilterTerm};
    use super::*;
    use crate::config::Secret;
    use crate::sources::http::{HttpSettings, SecretSource};

    fn settings(filter: &[(&str, &str)]) -> Settings {
        Settings {
            url: reqwest::Url::parse("https://splunk.example.com:8089").unwrap(),
            index: "app".into(),
            sourcetype: Some("app:log".into()),
            filter: filter
                .iter()
                .map(|(f, t)| FilterTerm {
                    field: f.to_string(),
                    template: t.to_string(),
                })
                .collect(),
            auth_scheme: AuthScheme::Bearer,
            token: SecretSource::Inline(Secret::new("t")),
            max_events: 500,
            lookback: chrono::Duration::hours(24),
            rate_limit: 0.0,
            http: HttpSettings {
                timeout: std::time::Duration::from_secs(5),
                max_attempts: 1,
                concurrency: 1,
                ca_file: None,
            },
        }
    }

    fn q(id: &str) -> LastWordsQuery {
        LastWordsQuery {
            instance_id: id.into(),
            private_dns: Some("ip-10-0-1-23.ec2.internal".into()),
            ..Default::default()
        }
    }

    #[test]
    fn values_are_quoted_and_escaped() {
        assert_eq!(quote("app"), "\"app\"");
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote(r#"\""#), r#""\\\"""#);
    }

    #[test]
    fn the_search_names_index_sourcetype_and_instance() {
        let s = settings(&[("host", "{private_dns}"), ("source", "*app.log")]);
        assert_eq!(
            build_search(&s, &q("i-0abc"), 500).unwrap(),
            r#"search index="app" sourcetype="app:log" host="ip-10-0-1-23.ec2.internal" source="*app.log" | head 500 | fields _time, _raw"#
        );
    }

    #[test]
    fn an_instance_id_cannot_change_the_search() {
        let s = settings(&[("instance_id", "{instance_id}")]);
        let spl = build_search(&s, &q(r#"i-1" OR index=* ""#), 10).unwrap();
        assert_eq!(
            spl,
            r#"search index="app" sourcetype="app:log" instance_id="i-1\" OR index=* \"" | where 'instance_id'=="i-1\" OR index=* \"" | head 10 | fields _time, _raw"#
        );
        // The value is one quoted string: the next unescaped quote closes it at the end of the
        // id, and what follows is ours.
        let value = spl.split("instance_id=").nth(1).unwrap();
        let closing = closing_quote(value).unwrap();
        assert!(value[closing + 1..].starts_with(" | where 'instance_id'=="));
        // A backslash before the quote cannot escape the escape.
        let spl = build_search(&s, &q(r#"i-1\" | delete"#), 10).unwrap();
        let value = spl.split("instance_id=").nth(1).unwrap();
        assert_eq!(
            &value[closing_quote(value).unwrap() + 1..],
            " | head 10 | fields _time, _raw"
        );
    }

    /// Index of the quote closing an SPL string that starts at 0.
    fn closing_quote(s: &str) -> Option<usize> {
        assert!(s.starts_with('"'));
        let mut escaped = false;
        for (i, c) in s.char_indices().skip(1) {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return Some(i),
                _ => {}
            }
        }
        None
    }

    #[test]
    fn wildcards_from_instances_match_exactly_and_missing_inventory_is_refused() {
        let s = settings(&[("instance_id", "{instance_id}")]);
        let spl = build_search(&s, &q("i-*"), 10).unwrap();
        assert!(
            spl.contains(r#" | where 'instance_id'=="i-*" | head"#),
            "{spl}"
        );
        let s = settings(&[("source", "/var/log/{instance_id}/*")]);
        let err = build_search(&s, &q("i-*"), 10).unwrap_err();
        assert!(err.contains("wildcard"), "{err}");
        let err = build_search(&s, &q("i-1\nx"), 10).unwrap_err();
        assert!(err.contains("control characters"), "{err}");
        let s = settings(&[("host", "{private_ip}")]);
        let err = build_search(&s, &q("i-0abc"), 10).unwrap_err();
        assert!(err.contains("cannot be mapped"), "{err}");
    }

    #[test]
    fn rows_results_previews_and_errors() {
        let r = parse_row(
            r#"{"preview":false,"offset":0,"result":{"_time":"2026-01-04T09:58:41.003+00:00","_raw":"FATAL ERROR: x\n"}}"#,
        )
        .unwrap();
        let Row::Result(m) = r else { panic!("{r:?}") };
        let (ns, raw) = event_of(&m).unwrap();
        assert_eq!(raw, "FATAL ERROR: x");
        assert_eq!(
            crate::sources::paging::from_ns(ns).unwrap().to_rfc3339(),
            "2026-01-04T09:58:41.003+00:00"
        );
        assert_eq!(
            parse_row(r#"{"preview":true,"result":{"_raw":"x"}}"#).unwrap(),
            Row::Nothing
        );
        assert_eq!(
            parse_row(r#"{"preview":false,"lastrow":true}"#).unwrap(),
            Row::Nothing
        );
        assert_eq!(
            parse_row(r#"{"messages":[{"type":"INFO","text":"fine"}]}"#).unwrap(),
            Row::Nothing
        );
        assert_eq!(
            parse_row(r#"{"messages":[{"type":"ERROR","text":"Unknown search command 'hed'."}]}"#)
                .unwrap(),
            Row::Failed("Unknown search command 'hed'.".into())
        );
        assert!(parse_row("<html>proxy</html>")
            .unwrap_err()
            .contains("not Splunk's"));
        let m: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"_time":"1767520721.5","_raw":"x"}"#).unwrap();
        assert_eq!(event_of(&m).unwrap().0, 1_767_520_721_500_000_000);
        let m: serde_json::Map<String, Value> = serde_json::from_str(r#"{"_raw":"x"}"#).unwrap();
        assert!(event_of(&m).unwrap_err().contains("_time"));
    }

    #[test]
    fn error_answers_say_what_splunk_said() {
        assert_eq!(
            error_text(
                r#"{"messages":[{"type":"WARN","text":"call not properly authenticated"}]}"#
            ),
            "call not properly authenticated"
        );
        assert_eq!(
            error_text(
                r#"<response><messages><msg type="ERROR">Unauthorized</msg></messages></response>"#
            ),
            "Unauthorized"
        );
        assert_eq!(error_text(""), "(empty answer)");
    }

    #[test]
    fn times_are_epoch_seconds_with_microseconds() {
        assert_eq!(splunk_time(1_767_520_721_003_000_000), "1767520721.003000");
        assert_eq!(splunk_time(1_767_520_721_000_001_999), "1767520721.000001");
    }
}
