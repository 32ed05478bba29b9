//! The `loki` log backend: an instance's last words from Loki's
//! `GET /loki/api/v1/query_range` with `direction=backward`, `limit`, and `start` / `end` in
//! nanoseconds — `end` (exclusive) one nanosecond after the termination + drain + grace,
//! `start` the launch, or `lookback` before.
//!
//! The query is the configured stream selector with the instance's values put in — every label
//! value LogQL-escaped (backslash, double quote, newline and other control characters; values
//! of `=~` / `!~` regex-escaped first), so an instance id or host name cannot change the query
//! — and an optional `|= "…"` line filter. The answer
//! (`{"status":"success","data":{"resultType":"streams","result":[{"stream":{…},"values":[["<ns>","<line>"],…]}]}}`)
//! may hold several streams; they are merged by time. A full page means older lines may
//! remain: the next request ends just after the oldest timestamp seen, and the lines at that
//! timestamp already kept are dropped (see `sources::paging`) — one request per instance in
//! the common case, more only when the final minute holds more than `limit` lines.
//!
//! `X-Scope-OrgID` carries the tenant; basic or bearer auth. A failed request (an HTTP error
//! with Loki's plain-text or `{"status":"error"}` body, an answer that is not `streams`) is an
//! error naming Loki and what failed; no lines is an instance without logs. `epitaph doctor`
//! probes the API, the labels the selector names and the sampled instances' lines
//! ([`LokiLogs::probe`]).
//!
//! Length: about 530 lines of code; the rest are its unit tests.

pub mod config;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use self::config::{Auth, MatchOp, Settings, KEY};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::LastWords;
use crate::sources::http::{display_url, join, secret_header, CallFailed, HttpClient, HttpFailure};
use crate::sources::paging::{to_ns, Backwards, Entry, Next};
use crate::sources::probe::{
    ApiLookup, ApiLookupResult, CallRecord, Listing, LogApiProbe, ScopeSeen,
};
use crate::sources::ratelimit::RateLimiter;
use crate::sources::{placeholders, select_last_words, LastWordsQuery, LogSource};

/// The backend's name in errors.
pub const NAME: &str = "loki";
pub const QUERY_RANGE_PATH: &str = "/loki/api/v1/query_range";
pub const LABELS_PATH: &str = "/loki/api/v1/labels";
/// Calls counted in the scan summary.
pub const OP_QUERY_RANGE: &str = "loki:query_range";
pub const OP_LABELS: &str = "loki:labels";
pub const OP_LABEL_VALUES: &str = "loki:label_values";
/// An answer larger than this is refused (`limit` keeps real ones far below it).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Label names and values listed by `epitaph doctor`.
const MAX_LISTED: usize = 50;

/// The last words of instances, from Loki.
pub struct LokiLogs {
    settings: Settings,
    http: HttpClient,
}

/// A LogQL double-quoted string: `\`, `"`, newline, carriage return, tab and every other
/// control character escaped (Go string syntax, which Loki's parser reads).
pub fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The LogQL query for an instance: the selector with its values put in and quoted, and the
/// line filter.
pub fn build_query(s: &Settings, q: &LastWordsQuery) -> std::result::Result<String, String> {
    let mut matchers = Vec::with_capacity(s.selector.len());
    for m in &s.selector {
        let regex = m.op.is_regex();
        let value = placeholders::fill(&m.template, q, |v| {
            Ok(if regex {
                regex::escape(v)
            } else {
                v.to_string()
            })
        })?;
        matchers.push(format!("{}{}{}", m.label, m.op.as_str(), quote(&value)));
    }
    let mut query = format!("{{{}}}", matchers.join(", "));
    if let Some(f) = &s.line_filter {
        query.push_str(&format!(" |= {}", quote(f)));
    }
    Ok(query)
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

/// A page of a `query_range` answer: its entries (streams merged) and how many the server
/// sent (entries that cannot be read are left out of the first, not the second).
pub fn parse_page(body: &[u8]) -> std::result::Result<(Vec<Entry>, usize, usize), String> {
    let a: Answer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the answer is not Loki's query_range JSON ({e}): `{}`",
            crate::timefmt::truncate(&String::from_utf8_lossy(body), 120)
        )
    })?;
    if a.status != "success" {
        return Err(format!(
            "status `{}`: {}",
            a.status,
            a.error.unwrap_or_else(|| "(no error text)".into())
        ));
    }
    let data = a.data.ok_or("status success without data")?;
    if data.result_type != "streams" {
        return Err(format!(
            "the query gives `{}`, not log lines (streams): {KEY}.selector and line_filter must make a log query",
            data.result_type
        ));
    }
    let mut entries = Vec::new();
    let mut sent = 0usize;
    let mut unreadable = 0usize;
    for s in data.result {
        let labels: Vec<String> = s.stream.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let labels = labels.join(",");
        for v in s.values {
            sent += 1;
            let ns = v
                .first()
                .and_then(serde_json::Value::as_str)
                .and_then(|t| t.parse::<i64>().ok());
            let line = v.get(1).and_then(serde_json::Value::as_str);
            match (ns, line) {
                (Some(ns), Some(line)) => entries.push(Entry {
                    ns,
                    identity: format!("{labels}\n{line}"),
                    message: line.trim_end_matches(['\n', '\r']).to_string(),
                }),
                _ => unreadable += 1,
            }
        }
    }
    Ok((entries, sent, unreadable))
}

/// What an error answer's body says: Loki's `error` field (`{"status":"error",…}`), a
/// gateway's `message`, or the plain text Loki answers 4xx with.
pub fn error_text(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(t) = v.get(key).and_then(serde_json::Value::as_str) {
                return t.to_string();
            }
        }
    }
    if body.is_empty() {
        "(empty answer)".into()
    } else {
        crate::timefmt::truncate(body, 300)
    }
}

/// Why a request failed, for the error message: the status, Loki's text, what to check.
fn failure(what: &str, f: &HttpFailure) -> CallFailed {
    let hint = match f.status {
        Some(401) | Some(403) => format!(
            " — the credentials were refused (check {KEY}.username / password, bearer_token, and {KEY}.tenant_id for X-Scope-OrgID)"
        ),
        Some(404) => format!(
            " — no Loki API there ({KEY}.url is the base the API lives under, without /loki/api/v1)"
        ),
        Some(400) => format!(" — check {KEY}.selector and {KEY}.line_filter"),
        _ => String::new(),
    };
    CallFailed::from_http(what, f, &hint, error_text)
}

impl LokiLogs {
    pub fn from_config(cfg: &Config) -> Result<Self> {
        Self::new(Settings::resolve(cfg).map_err(Error::Config)?)
    }

    pub fn new(settings: Settings) -> Result<Self> {
        // One limiter for the query calls of this backend: every scan and on-demand query of
        // the process shares it (the source is built once).
        let http = HttpClient::new(NAME, &settings.http)?.with_limiter(std::sync::Arc::new(
            RateLimiter::single(OP_QUERY_RANGE, settings.rate_limit),
        ));
        Ok(LokiLogs { settings, http })
    }

    /// The credentials a request carries, as of now (a token file is read again).
    fn credentials(&self) -> std::result::Result<Credentials, CallFailed> {
        Ok(match &self.settings.auth {
            Auth::None => Credentials::None,
            Auth::Bearer(t) => {
                let t = t.get().map_err(CallFailed::local)?;
                Credentials::Bearer(
                    secret_header(&format!("Bearer {}", t.expose()))
                        .map_err(|e| CallFailed::local(format!("{KEY}.bearer_token: {e}")))?,
                )
            }
            Auth::Basic { username, password } => Credentials::Basic(
                username.clone(),
                password
                    .get()
                    .map_err(CallFailed::local)?
                    .expose()
                    .to_string(),
            ),
        })
    }

    /// `GET path?params` with the tenant and the credentials: the whole answer.
    async fn get(
        &self,
        op: &str,
        what: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> std::result::Result<Vec<u8>, CallFailed> {
        let creds = self.credentials()?;
        let url = join(&self.settings.url, path);
        let reply = self
            .http
            .send(op, |c| {
                let mut r = c.get(url.clone()).query(params);
                if let Some(t) = &self.settings.tenant_id {
                    r = r.header("X-Scope-OrgID", t);
                }
                match &creds {
                    Credentials::None => r,
                    Credentials::Bearer(h) => r.header(reqwest::header::AUTHORIZATION, h.clone()),
                    Credentials::Basic(u, p) => r.basic_auth(u, Some(p)),
                }
            })
            .await
            .map_err(|f| failure(what, &f))?;
        reply.bytes(MAX_ANSWER_BYTES).await.map_err(|e| CallFailed {
            status: None,
            answered: true,
            message: format!("{what}: reading the answer: {e}"),
        })
    }

    /// An instance's lines, backwards in pages over its last-words window.
    async fn read(&self, q: &LastWordsQuery) -> std::result::Result<LastWords, CallFailed> {
        let query = build_query(&self.settings, q).map_err(CallFailed::local)?;
        let end = q.terminated_at + q.grace;
        let start = to_ns(
            q.launched_at
                .filter(|l| *l < end)
                .unwrap_or(end - self.settings.lookback),
        );
        let what = format!("query_range for {}", q.instance_id);
        let limit = self.settings.limit;
        let mut pages = Backwards::new(1, q.window, q.max_bytes);
        let mut end_ns = to_ns(end).saturating_add(1);
        while end_ns > start {
            let body = self
                .get(
                    OP_QUERY_RANGE,
                    &what,
                    QUERY_RANGE_PATH,
                    &[
                        ("query", query.clone()),
                        ("direction", "backward".into()),
                        ("limit", limit.to_string()),
                        ("start", start.to_string()),
                        ("end", end_ns.to_string()),
                    ],
                )
                .await?;
            let (entries, sent, _) = parse_page(&body).map_err(|e| CallFailed {
                status: Some(200),
                answered: true,
                message: format!("{what}: {e}"),
            })?;
            match pages.add_page(entries, sent >= limit) {
                Next::Before(ns) => end_ns = ns,
                Next::Done => break,
            }
        }
        let incomplete = pages.incomplete;
        let events = pages.into_events();
        let mut words = select_last_words(&events, q);
        words.truncated |= incomplete && !words.events.is_empty();
        Ok(words)
    }

    /// The time range label lookups cover: the samples' lives (as far as `lookback`), or the
    /// last `lookback` when there is no sample.
    fn label_range(&self, samples: &[LastWordsQuery]) -> [(&'static str, String); 2] {
        let now = Utc::now();
        let end: DateTime<Utc> = samples
            .iter()
            .map(|q| q.terminated_at + q.grace)
            .max()
            .unwrap_or(now);
        let start = end - self.settings.lookback;
        [
            ("start", to_ns(start).to_string()),
            ("end", to_ns(end).to_string()),
        ]
    }

    /// A label listing (`data` is a list of strings).
    async fn listing(
        &self,
        op: &str,
        path: &str,
        range: &[(&str, String)],
    ) -> std::result::Result<Vec<String>, CallFailed> {
        let body = self.get(op, path, path, range).await?;
        #[derive(Deserialize)]
        struct Names {
            status: String,
            #[serde(default)]
            data: Vec<String>,
        }
        let n: Names = serde_json::from_slice(&body).map_err(|e| CallFailed {
            status: Some(200),
            answered: true,
            message: format!("{path}: not Loki's JSON ({e})"),
        })?;
        if n.status != "success" {
            return Err(CallFailed {
                status: Some(200),
                answered: true,
                message: format!("{path}: status `{}`", n.status),
            });
        }
        Ok(n.data)
    }

    /// `epitaph doctor`: the API and the credentials (labels), the labels the selector names
    /// (and the fixed values it asks for), then each sampled instance's lines as a scan reads
    /// them.
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
        let range = self.label_range(samples);
        let labels_action = format!("GET {LABELS_PATH}");
        let labels = self
            .listing(OP_LABELS, LABELS_PATH, &range)
            .await
            .map_err(|f| f.call_error(&labels_action));
        p.calls.push(CallRecord::of(&labels_action, &labels));
        let labels = match labels {
            Ok(l) => {
                p.connection = Ok(format!("{} label names in the range", l.len()));
                l
            }
            Err(e) => {
                p.connection = Err(e);
                return p;
            }
        };
        let listed = |mut names: Vec<String>| {
            names.sort();
            let truncated = names.len() > MAX_LISTED;
            names.truncate(MAX_LISTED);
            Listing {
                items: names,
                truncated,
            }
        };
        let selector_key = format!("{KEY}.selector");
        for m in &self.settings.selector {
            let exists = labels.contains(&m.label);
            p.scopes.push(ScopeSeen {
                key: selector_key.clone(),
                what: format!("label `{}`", m.label),
                name: m.label.clone(),
                exists: Ok(exists),
                others: if exists {
                    Listing::default()
                } else {
                    listed(labels.clone())
                },
            });
            if !exists {
                continue;
            }
            let templated = placeholders::used(&m.template).is_ok_and(|u| !u.is_empty());
            let fixed_eq = !templated && m.op == MatchOp::Eq;
            if !(templated || fixed_eq) {
                continue;
            }
            let path = format!("/loki/api/v1/label/{}/values", m.label);
            let action = format!("GET {path}");
            let values = self
                .listing(OP_LABEL_VALUES, &path, &range)
                .await
                .map_err(|f| f.call_error(&action));
            p.calls.push(CallRecord::of(&action, &values));
            match values {
                Ok(v) if templated => {
                    if p.instance_values.is_none() {
                        p.instance_values = Some(listed(v));
                    }
                }
                Ok(v) => {
                    let exists = v.contains(&m.template);
                    p.scopes.push(ScopeSeen {
                        key: selector_key.clone(),
                        what: format!("`{}{}{}`", m.label, m.op.as_str(), quote(&m.template)),
                        name: m.template.clone(),
                        exists: Ok(exists),
                        others: if exists {
                            Listing::default()
                        } else {
                            listed(v)
                        },
                    });
                }
                Err(e) if !templated => p.scopes.push(ScopeSeen {
                    key: selector_key.clone(),
                    what: format!("`{}{}{}`", m.label, m.op.as_str(), quote(&m.template)),
                    name: m.template.clone(),
                    exists: Err(e),
                    others: Listing::default(),
                }),
                Err(_) => {}
            }
        }
        let query_action = format!("GET {QUERY_RANGE_PATH}");
        for q in samples {
            let (looked_for, result) = match build_query(&self.settings, q) {
                Err(why) => (
                    self.settings
                        .selector
                        .iter()
                        .map(|m| format!("{}{}\"{}\"", m.label, m.op.as_str(), m.template))
                        .collect::<Vec<_>>()
                        .join(", "),
                    Ok(ApiLookupResult::Unmapped(why)),
                ),
                Ok(query) => {
                    let r = self.read(q).await;
                    p.calls.push(CallRecord {
                        action: query_action.clone(),
                        error: r.as_ref().err().map(|f| f.call_error(&query_action)),
                    });
                    (
                        query,
                        match r {
                            Ok(w) if w.events.is_empty() => Ok(ApiLookupResult::NoEvents),
                            Ok(w) => Ok(ApiLookupResult::Events(w.events.len())),
                            Err(f) => Err(f.call_error(&query_action)),
                        },
                    )
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
}

#[async_trait]
impl LogSource for LokiLogs {
    fn name(&self) -> String {
        format!("loki:{}", display_url(&self.settings.url))
    }

    async fn last_words(&self, q: &LastWordsQuery) -> Result<LastWords> {
        self.read(q).await.map_err(|f| f.into_error(NAME))
    }

    fn calls(&self) -> BTreeMap<String, u64> {
        self.http.calls()
    }
}

/// What a request sends to authenticate.
enum Credentials {
    None,
    Bearer(reqwest::header::HeaderValue),
    Basic(String, String),
}

#[cfg(test)]
mod tests {
    use super::config::Matcher;
    use super::*;
    use crate::sources::http::HttpSettings;

    fn settings(selector: &str, line_filter: Option<&str>) -> Settings {
        Settings {
            url: reqwest::Url::parse("http://loki:3100").unwrap(),
            selector: config::parse_selector(selector).unwrap(),
            line_filter: line_filter.map(str::to_string),
            tenant_id: None,
            auth: Auth::None,
            limit: 1000,
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
    fn label_values_are_logql_escaped() {
        assert_eq!(quote("i-0abc"), r#""i-0abc""#);
        assert_eq!(quote("a\"b\\c\nd\re\tf"), r#""a\"b\\c\nd\re\tf""#);
        assert_eq!(quote("\u{1}"), r#""\u0001""#);
    }

    #[test]
    fn the_query_puts_the_instance_into_the_selector() {
        let s = settings(r#"{host="{private_dns}", job="app"}"#, Some("ERROR \"x\""));
        assert_eq!(
            build_query(&s, &q("i-0abc")).unwrap(),
            r#"{host="ip-10-0-1-23.ec2.internal", job="app"} |= "ERROR \"x\"""#
        );
        let s = settings(r#"{instance_id=~"{instance_id}|none"}"#, None);
        assert_eq!(
            build_query(&s, &q("i-0a.c")).unwrap(),
            r#"{instance_id=~"i\\-0a\\.c|none"}"#
        );
    }

    #[test]
    fn an_injected_label_value_stays_a_value() {
        let s = settings(r#"{instance_id="{instance_id}"}"#, None);
        let evil = "i-1\"} |= \"\" or {job=~\".+\n";
        let query = build_query(&s, &q(evil)).unwrap();
        assert_eq!(query, r#"{instance_id="i-1\"} |= \"\" or {job=~\".+\n"}"#);
        // Unescaping the one quoted value gives the id back, and nothing follows the selector.
        let inner = &query[r#"{instance_id=""#.len()..query.len() - 2];
        let parsed =
            config::parse_selector(&format!("{{x=\"{inner}\", y=\"{{instance_id}}\"}}")).unwrap();
        assert_eq!(
            parsed[0],
            Matcher {
                label: "x".into(),
                op: MatchOp::Eq,
                template: evil.into()
            }
        );
        assert!(query.ends_with("\"}"));
    }

    #[test]
    fn pages_merge_streams_and_read_errors() {
        let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"job":"app"},"values":[["1767520721003000000","b"],["1767520720000000000","a\n"]]},
            {"stream":{"job":"sys"},"values":[["1767520721500000000","c"],["bad","x"]]}
        ],"stats":{}}}"#;
        let (entries, sent, unreadable) = parse_page(body).unwrap();
        assert_eq!((sent, unreadable), (4, 1));
        let mut msgs: Vec<(i64, &str)> =
            entries.iter().map(|e| (e.ns, e.message.as_str())).collect();
        msgs.sort();
        assert_eq!(
            msgs,
            vec![
                (1767520720000000000, "a"),
                (1767520721003000000, "b"),
                (1767520721500000000, "c")
            ]
        );
        assert_ne!(entries[0].identity, entries[2].identity);
        let err = parse_page(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
            .unwrap_err();
        assert!(err.contains("not log lines"), "{err}");
        let err = parse_page(br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
            .unwrap_err();
        assert!(err.contains("parse error"), "{err}");
        assert!(parse_page(b"<html>").unwrap_err().contains("not Loki's"));
        assert_eq!(
            error_text(
                r#"{"status":"error","errorType":"bad_data","error":"parse error at line 1"}"#
            ),
            "parse error at line 1"
        );
        assert_eq!(
            error_text("parse error at line 1, col 2: syntax error"),
            "parse error at line 1, col 2: syntax error"
        );
    }
}
