//! `[sources.logs.loki]`: where Loki's HTTP API is, which streams are an instance's (a stream
//! selector template such as `{instance_id="{instance_id}"}` or
//! `{host="{private_dns}", job="app"}`, and an optional line filter), the tenant
//! (`X-Scope-OrgID`), basic or bearer auth, and how requests are made (entries per request,
//! lookback, timeout, attempts, concurrency, an extra CA).
//!
//! [`LokiConfig::problems`] is what `epitaph config check` reports for `kind = "loki"`;
//! [`Settings::resolve`] turns a valid table into typed settings (the selector parsed into
//! matchers, auth as an enum).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Config, HumanDuration, Secret};
use crate::sources::http::{parse_base_url, secret_source, HttpSettings, SecretSource};
use crate::sources::placeholders;

/// Key prefix of this table, for messages.
pub const KEY: &str = "sources.logs.loki";
/// Entries per request: the final minute of a busy instance fits in one (Loki's own
/// `max_entries_limit_per_query` is 5,000 by default).
pub const DEFAULT_LIMIT: usize = 1000;
/// How far before the end a query reaches when the inventory does not know the launch time.
pub const DEFAULT_LOOKBACK: &str = "24h";
/// `query_range` requests per second (`rate_limit`). Loki itself documents no request quota,
/// but every query fans out to the queriers a whole tenant shares, and gateways in front of it
/// (Grafana Cloud, GEL, an nginx `limit_req`) answer 429 beyond theirs: 10 a second with
/// `concurrency` 4 in flight reads a 1,000-instance backlog in under two minutes without
/// crowding dashboards out. A 429 or 503 with Retry-After halves it.
pub const DEFAULT_RATE_LIMIT: f64 = 10.0;

/// `[sources.logs.loki]` as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LokiConfig {
    /// Base URL of the API, without `/loki/api/v1`: `http://loki:3100`, or a gateway's.
    pub url: Option<String>,
    /// The stream selector of an instance's logs, with `{instance_id}`, `{private_dns}` or
    /// `{private_ip}` inside label values: `{instance_id="{instance_id}"}`. Values are
    /// LogQL-escaped (and regex-escaped for `=~`, `!~`).
    pub selector: Option<String>,
    /// Only lines containing this text (`|= "…"`, escaped).
    pub line_filter: Option<String>,
    /// The tenant, sent as `X-Scope-OrgID` (multi-tenant Loki, Grafana Enterprise Logs).
    pub tenant_id: Option<String>,
    /// Basic auth (Grafana Cloud: the user id and an API token as the password).
    pub username: Option<String>,
    /// A secret: prefer `password_file` or EPITAPH_SOURCES__LOGS__LOKI__PASSWORD.
    pub password: Option<Secret>,
    /// A file holding the password, read for every request (rotated tokens).
    pub password_file: Option<PathBuf>,
    /// `Authorization: Bearer …`. A secret: prefer `bearer_token_file` or
    /// EPITAPH_SOURCES__LOGS__LOKI__BEARER_TOKEN.
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token, read for every request (rotated tokens).
    pub bearer_token_file: Option<PathBuf>,
    /// Entries per request (`limit`); when a page is full, the next one ends at its oldest.
    #[schemars(range(min = 1))]
    pub limit: usize,
    /// How far before the end a query reaches when the launch time is unknown.
    pub lookback: HumanDuration,
    /// One request, from connecting to the last byte of the answer.
    pub timeout: HumanDuration,
    /// Attempts per request (429 and 502/503/504 with their Retry-After, connection failures).
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// Requests in flight at once.
    #[schemars(range(min = 1))]
    pub concurrency: usize,
    /// `query_range` requests per second, shared by every scan and query of the process (0:
    /// no limit); a throttled answer halves it until successes win it back.
    pub rate_limit: f64,
    /// PEM certificates to trust beside the built-in roots. Verification is always on.
    pub ca_file: Option<PathBuf>,
}

impl Default for LokiConfig {
    fn default() -> Self {
        LokiConfig {
            url: None,
            selector: None,
            line_filter: None,
            tenant_id: None,
            username: None,
            password: None,
            password_file: None,
            bearer_token: None,
            bearer_token_file: None,
            limit: DEFAULT_LIMIT,
            lookback: HumanDuration::default_of(DEFAULT_LOOKBACK),
            timeout: HumanDuration::default_of("30s"),
            max_attempts: 3,
            concurrency: 4,
            rate_limit: DEFAULT_RATE_LIMIT,
            ca_file: None,
        }
    }
}

/// A label matcher's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    NotEq,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }
}

/// One matcher of the selector, its value a template (unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub template: String,
}

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: SecretSource,
    },
    Bearer(SecretSource),
}

/// The typed settings of a valid table.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: reqwest::Url,
    pub selector: Vec<Matcher>,
    pub line_filter: Option<String>,
    pub tenant_id: Option<String>,
    pub auth: Auth,
    pub limit: usize,
    pub lookback: chrono::Duration,
    /// `query_range` requests per second (≤ 0: no limit).
    pub rate_limit: f64,
    pub http: HttpSettings,
}

/// Parses a stream selector template: `{label="value", label=~"regex", …}`; values in double
/// quotes (with `\\`, `\"`, `\n`, `\t`, `\r` escapes) or backticks. At least one value must
/// name the instance by a placeholder, and one matcher must be `=` or `=~` (Loki's rule).
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, String> {
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| format!("`{text}` is not a stream selector {{label=\"value\", …}}"))?;
    let mut chars = inner.chars().peekable();
    let mut out = Vec::new();
    let skip_ws = |c: &mut std::iter::Peekable<std::str::Chars>| {
        while c.peek().is_some_and(|x| x.is_whitespace()) {
            c.next();
        }
    };
    loop {
        skip_ws(&mut chars);
        if chars.peek().is_none() {
            break;
        }
        let mut label = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                label.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("`{text}`: expected a label name"));
        }
        skip_ws(&mut chars);
        let op = match (chars.next(), chars.peek()) {
            (Some('='), Some('~')) => {
                chars.next();
                MatchOp::Regex
            }
            (Some('='), _) => MatchOp::Eq,
            (Some('!'), Some('=')) => {
                chars.next();
                MatchOp::NotEq
            }
            (Some('!'), Some('~')) => {
                chars.next();
                MatchOp::NotRegex
            }
            _ => {
                return Err(format!(
                    "`{text}`: expected =, !=, =~ or !~ after `{label}`"
                ))
            }
        };
        skip_ws(&mut chars);
        let template = match chars.next() {
            Some('"') => {
                let mut v = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("`{text}`: unterminated value of `{label}`")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\\') => v.push('\\'),
                            Some('"') => v.push('"'),
                            Some('n') => v.push('\n'),
                            Some('t') => v.push('\t'),
                            Some('r') => v.push('\r'),
                            Some(other) => {
                                return Err(format!(
                                    "`{text}`: unknown escape `\\{other}` in the value of `{label}` (write `\\\\` for a backslash)"
                                ))
                            }
                            None => return Err(format!("`{text}`: unterminated value of `{label}`")),
                        },
                        Some(c) => v.push(c),
                    }
                }
                v
            }
            Some('`') => {
                let mut v = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("`{text}`: unterminated value of `{label}`")),
                        Some('`') => break,
                        Some(c) => v.push(c),
                    }
                }
                v
            }
            _ => return Err(format!("`{text}`: the value of `{label}` must be quoted")),
        };
        placeholders::used(&template).map_err(|e| format!("label `{label}`: {e}"))?;
        out.push(Matcher {
            label,
            op,
            template,
        });
        skip_ws(&mut chars);
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(c) => {
                return Err(format!(
                    "`{text}`: unexpected `{c}` (matchers are separated by commas)"
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(format!("`{text}` has no label matcher"));
    }
    if !out
        .iter()
        .any(|m| placeholders::used(&m.template).is_ok_and(|p| !p.is_empty()))
    {
        return Err(format!(
            "`{text}` names no instance: put {} in a label value (every instance would get the same lines)",
            placeholders::ALL.join(", ")
        ));
    }
    if !out
        .iter()
        .any(|m| matches!(m.op, MatchOp::Eq | MatchOp::Regex) && !m.template.is_empty())
    {
        return Err(format!(
            "`{text}`: Loki needs at least one = or =~ matcher with a non-empty value"
        ));
    }
    Ok(out)
}

impl LokiConfig {
    /// Problems `epitaph config check` reports for `kind = "loki"`, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.url.as_deref() {
            None => p.push(format!(
                "{KEY}.url: required for sources.logs.kind = \"loki\" (the API's base URL, e.g. http://loki:3100)"
            )),
            Some(u) => {
                if let Err(e) = parse_base_url(u) {
                    p.push(format!("{KEY}.url: {e}"));
                }
            }
        }
        match self.selector.as_deref() {
            None => p.push(format!(
                "{KEY}.selector: required for sources.logs.kind = \"loki\" (e.g. '{{instance_id=\"{{instance_id}}\"}}')"
            )),
            Some(s) => {
                if let Err(e) = parse_selector(s) {
                    p.push(format!("{KEY}.selector: {e}"));
                }
            }
        }
        if let Some(t) = &self.tenant_id {
            if reqwest::header::HeaderValue::from_str(t).is_err() {
                p.push(format!(
                    "{KEY}.tenant_id: `{t}` cannot be sent as an X-Scope-OrgID header"
                ));
            }
        }
        let basic = self.username.is_some();
        let bearer = self.bearer_token.is_some() || self.bearer_token_file.is_some();
        if basic && bearer {
            p.push(format!(
                "{KEY}.username and {KEY}.bearer_token: basic and bearer auth exclude each other; set one"
            ));
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            p.push(format!(
                "{KEY}.bearer_token and {KEY}.bearer_token_file: set only one of them"
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            p.push(format!(
                "{KEY}.password and {KEY}.password_file: set only one of them"
            ));
        }
        if !basic && (self.password.is_some() || self.password_file.is_some()) {
            p.push(format!("{KEY}.username: required with a password"));
        }
        if basic && self.password.is_none() && self.password_file.is_none() {
            p.push(format!(
                "{KEY}.password: required with {KEY}.username (or {KEY}.password_file)"
            ));
        }
        if let Some(e) = crate::sources::ratelimit::rate_problem(self.rate_limit) {
            p.push(format!("{KEY}.rate_limit: {e}"));
        }
        p
    }
}

impl Settings {
    /// Typed settings from `[sources.logs.loki]` (paths relative to the config file), or every
    /// problem, each naming its key.
    pub fn resolve(cfg: &Config) -> Result<Settings, Vec<String>> {
        let default = LokiConfig::default();
        let c = cfg.sources.logs.loki.as_ref().unwrap_or(&default);
        let problems = c.problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        let no_env = |_: &str| None;
        let secret = |inline: Option<&Secret>, file: Option<&PathBuf>, names: [&str; 2]| {
            secret_source(
                [
                    &format!("{KEY}.{}", names[0]),
                    &format!("{KEY}.{}", names[1]),
                    "",
                ],
                inline,
                file.map(|p| cfg.resolve(p)),
                None,
                &no_env,
                false,
            )
        };
        let auth = if let Some(username) = &c.username {
            match secret(
                c.password.as_ref(),
                c.password_file.as_ref(),
                ["password", "password_file"],
            ) {
                Ok(Some(password)) => Auth::Basic {
                    username: username.clone(),
                    password,
                },
                Ok(None) => return Err(vec![format!("{KEY}.password: required")]),
                Err(e) => return Err(vec![e]),
            }
        } else {
            match secret(
                c.bearer_token.as_ref(),
                c.bearer_token_file.as_ref(),
                ["bearer_token", "bearer_token_file"],
            ) {
                Ok(Some(t)) => Auth::Bearer(t),
                Ok(None) => Auth::None,
                Err(e) => return Err(vec![e]),
            }
        };
        let (lookback, timeout) = (c.lookback.get(), c.timeout.to_std());
        let (Some(url), Some(selector)) = (
            c.url.as_deref().and_then(|u| parse_base_url(u).ok()),
            c.selector.as_deref().and_then(|s| parse_selector(s).ok()),
        ) else {
            return Err(vec![format!("{KEY}: incomplete")]);
        };
        Ok(Settings {
            url,
            selector,
            line_filter: c.line_filter.clone(),
            tenant_id: c.tenant_id.clone(),
            auth,
            limit: c.limit.max(1),
            lookback,
            rate_limit: c.rate_limit,
            http: HttpSettings {
                timeout,
                max_attempts: c.max_attempts.max(1),
                concurrency: c.concurrency.max(1),
                ca_file: c
                    .ca_file
                    .as_ref()
                    .map(|p| (format!("{KEY}.ca_file"), cfg.resolve(p))),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_into_matchers() {
        let m = parse_selector(r#"{host="{private_dns}", job=~"app|web" , env!=`dev`}"#).unwrap();
        assert_eq!(
            m,
            vec![
                Matcher {
                    label: "host".into(),
                    op: MatchOp::Eq,
                    template: "{private_dns}".into()
                },
                Matcher {
                    label: "job".into(),
                    op: MatchOp::Regex,
                    template: "app|web".into()
                },
                Matcher {
                    label: "env".into(),
                    op: MatchOp::NotEq,
                    template: "dev".into()
                },
            ]
        );
        let m = parse_selector(r#"{path="C:\\logs\\{instance_id}\"x\""}"#).unwrap();
        assert_eq!(m[0].template, r#"C:\logs\{instance_id}"x""#);
    }

    #[test]
    fn bad_selectors_say_why() {
        for (text, needle) in [
            ("instance_id={instance_id}", "not a stream selector"),
            (r#"{job="app"}"#, "names no instance"),
            (r#"{instance_id="{instance}"}"#, "unknown placeholder"),
            (r#"{instance_id={instance_id}}"#, "must be quoted"),
            (r#"{instance_id="{instance_id}""#, "not a stream selector"),
            (r#"{instance_id!="{instance_id}"}"#, "at least one = or =~"),
            (r#"{a="{instance_id}" b="x"}"#, "separated by commas"),
            (r#"{a="\d{instance_id}"}"#, "unknown escape"),
            (r#"{}"#, "no label matcher"),
        ] {
            let err = parse_selector(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn every_problem_names_its_key() {
        let c = LokiConfig {
            url: Some("loki:3100".into()),
            selector: Some(r#"{job="app"}"#.into()),
            username: Some("u".into()),
            bearer_token: Some(Secret::new("t")),
            rate_limit: -1.0,
            ..Default::default()
        };
        let p = c.problems().join("\n");
        for needle in [
            "sources.logs.loki.url: `loki:3100`",
            "sources.logs.loki.rate_limit: `-1` is not a rate",
            "sources.logs.loki.selector: `{job=\"app\"}` names no instance",
            "basic and bearer auth exclude each other",
            "sources.logs.loki.password: required with sources.logs.loki.username",
        ] {
            assert!(p.contains(needle), "missing {needle} in {p}");
        }
        let p = LokiConfig::default().problems().join("\n");
        assert!(p.contains("sources.logs.loki.url: required"), "{p}");
        assert!(p.contains("sources.logs.loki.selector: required"), "{p}");
    }
}
