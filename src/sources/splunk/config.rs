//! `[sources.logs.splunk]`: where Splunk's REST API is (the management port, 8089), how to
//! authenticate (a token sent as `Authorization: Bearer …` or `Authorization: Splunk …`, from
//! the config, a file or an environment variable), which events are an instance's (the
//! index, an optional sourcetype, and `FIELD=TEMPLATE` terms naming the instance), and how
//! requests are made (events per search, lookback, timeout, attempts, concurrency, an extra
//! CA).
//!
//! [`SplunkConfig::problems`] is what `epitaph config check` reports for `kind = "splunk"`;
//! [`Settings::resolve`] turns a valid table into typed settings for the backend.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Config, HumanDuration, Secret};
use crate::sources::http::{parse_base_url, secret_source, HttpSettings, SecretSource};
use crate::sources::placeholders;

/// Key prefix of this table, for messages.
pub const KEY: &str = "sources.logs.splunk";
/// Events asked for per search (`| head N`): the final minute of a busy instance fits; more
/// are read (one more search each) only when it does not.
pub const DEFAULT_MAX_EVENTS: usize = 500;
/// How far before the end a search reaches when the inventory does not know the launch time.
pub const DEFAULT_LOOKBACK: &str = "24h";
/// Searches started per second (`rate_limit`). Splunk documents no request quota, but each
/// export is a search job on the search head, whose concurrent-search ceiling (by default 6
/// plus 1 per CPU, `limits.conf` `base_max_searches` / `max_searches_per_cpu`) is shared with
/// every user, dashboard and scheduled search: 5 a second with `concurrency` 4 in flight
/// keeps a scan's backlog from taking the head. A 429 or 503 with Retry-After halves it.
pub const DEFAULT_RATE_LIMIT: f64 = 5.0;

/// How the token is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `Authorization: Bearer <token>`: Splunk authentication tokens (JWT).
    #[default]
    Bearer,
    /// `Authorization: Splunk <token>`: session keys, and tokens on older setups.
    Splunk,
}

impl AuthScheme {
    pub fn prefix(self) -> &'static str {
        match self {
            AuthScheme::Bearer => "Bearer",
            AuthScheme::Splunk => "Splunk",
        }
    }
}

/// `[sources.logs.splunk]` as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SplunkConfig {
    /// Base URL of the REST API (the management port): `https://splunk.example.com:8089`.
    pub url: Option<String>,
    /// The index holding the instances' logs.
    pub index: Option<String>,
    /// Only events of this sourcetype (optional).
    pub sourcetype: Option<String>,
    /// The terms naming an instance's events: `FIELD=TEMPLATE`, separated by spaces, with
    /// `{instance_id}`, `{private_dns}`, `{private_ip}` (the last two from the inventory):
    /// `host={private_dns}`, `instance_id={instance_id}`. Each value is quoted and escaped; a
    /// `*` written in the template is Splunk's wildcard, one coming from an instance is refused.
    pub instance_filter: Option<String>,
    /// `bearer` (`Authorization: Bearer`) or `splunk` (`Authorization: Splunk`).
    pub auth_scheme: AuthScheme,
    /// The token. A secret: prefer `token_file`, `token_env` or
    /// EPITAPH_SOURCES__LOGS__SPLUNK__TOKEN.
    pub token: Option<Secret>,
    /// A file holding the token, read for every request (rotated tokens).
    pub token_file: Option<PathBuf>,
    /// The name of an environment variable holding the token.
    pub token_env: Option<String>,
    /// Events per search (`| head N`), newest first.
    #[schemars(range(min = 1))]
    pub max_events: usize,
    /// How far before the end a search reaches when the launch time is unknown.
    pub lookback: HumanDuration,
    /// One request, from connecting to the last byte of the answer.
    pub timeout: HumanDuration,
    /// Attempts per request (429 and 502/503/504 with their Retry-After, connection failures).
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// Searches in flight at once.
    #[schemars(range(min = 1))]
    pub concurrency: usize,
    /// Searches started per second, shared by every scan and query of the process (0: no
    /// limit); a throttled answer halves it until successes win it back.
    pub rate_limit: f64,
    /// PEM certificates to trust beside the built-in roots (a private CA). Verification is
    /// always on.
    pub ca_file: Option<PathBuf>,
}

impl Default for SplunkConfig {
    fn default() -> Self {
        SplunkConfig {
            url: None,
            index: None,
            sourcetype: None,
            instance_filter: None,
            auth_scheme: AuthScheme::Bearer,
            token: None,
            token_file: None,
            token_env: None,
            max_events: DEFAULT_MAX_EVENTS,
            lookback: HumanDuration::default_of(DEFAULT_LOOKBACK),
            timeout: HumanDuration::default_of("30s"),
            max_attempts: 3,
            concurrency: 4,
            rate_limit: DEFAULT_RATE_LIMIT,
            ca_file: None,
        }
    }
}

/// One `FIELD=TEMPLATE` term of `instance_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterTerm {
    pub field: String,
    pub template: String,
}

/// The typed settings of a valid table.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: reqwest::Url,
    pub index: String,
    pub sourcetype: Option<String>,
    pub filter: Vec<FilterTerm>,
    pub auth_scheme: AuthScheme,
    pub token: SecretSource,
    pub max_events: usize,
    pub lookback: chrono::Duration,
    /// Searches started per second (≤ 0: no limit).
    pub rate_limit: f64,
    pub http: HttpSettings,
}

/// A Splunk field name: letters, digits, `_`, `.`, `:`, `-`, not starting with a digit.
fn valid_field(f: &str) -> bool {
    f.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// Parses `instance_filter`: one or more `FIELD=TEMPLATE` terms, at least one placeholder.
pub fn parse_filter(text: &str) -> Result<Vec<FilterTerm>, String> {
    let mut terms = Vec::new();
    for term in text.split_whitespace() {
        let Some((field, template)) = term.split_once('=') else {
            return Err(format!(
                "`{term}` is not FIELD=TEMPLATE (e.g. host={{private_dns}})"
            ));
        };
        if !valid_field(field) {
            return Err(format!("`{field}` is not a Splunk field name"));
        }
        if template.is_empty() {
            return Err(format!("`{term}` has no value"));
        }
        placeholders::used(template)?;
        terms.push(FilterTerm {
            field: field.to_string(),
            template: template.to_string(),
        });
    }
    if terms.is_empty() {
        return Err("must name the instance, e.g. \"host={private_dns}\"".into());
    }
    let any = terms
        .iter()
        .any(|t| placeholders::used(&t.template).is_ok_and(|p| !p.is_empty()));
    if !any {
        return Err(format!(
            "`{text}` names no instance: use {} (every instance would get the same events)",
            placeholders::ALL.join(", ")
        ));
    }
    Ok(terms)
}

impl SplunkConfig {
    /// Problems `epitaph config check` reports for `kind = "splunk"`, each naming its key (what
    /// depends on this machine — files, environment variables — is checked by
    /// [`Settings::resolve`] and `Config::filesystem_problems`).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.url.as_deref() {
            None => p.push(format!(
                "{KEY}.url: required for sources.logs.kind = \"splunk\" (the REST API, e.g. https://splunk.example.com:8089)"
            )),
            Some(u) => {
                if let Err(e) = parse_base_url(u) {
                    p.push(format!("{KEY}.url: {e}"));
                }
            }
        }
        if self.index.is_none() {
            p.push(format!(
                "{KEY}.index: required for sources.logs.kind = \"splunk\" (the index holding the instances' logs)"
            ));
        }
        match self.instance_filter.as_deref() {
            None => p.push(format!(
                "{KEY}.instance_filter: required for sources.logs.kind = \"splunk\" (e.g. \"host={{private_dns}}\" or \"instance_id={{instance_id}}\")"
            )),
            Some(f) => {
                if let Err(e) = parse_filter(f) {
                    p.push(format!("{KEY}.instance_filter: {e}"));
                }
            }
        }
        let tokens = [
            self.token.is_some(),
            self.token_file.is_some(),
            self.token_env.is_some(),
        ];
        match tokens.iter().filter(|t| **t).count() {
            0 => p.push(format!(
                "{KEY}.token: required (or {KEY}.token_file, or {KEY}.token_env naming an environment variable)"
            )),
            1 => {}
            _ => p.push(format!(
                "{KEY}.token, {KEY}.token_file and {KEY}.token_env: set only one of them"
            )),
        }
        if self.token.as_ref().is_some_and(Secret::is_empty) {
            p.push(format!("{KEY}.token: must not be empty"));
        }
        if let Some(e) = crate::sources::ratelimit::rate_problem(self.rate_limit) {
            p.push(format!("{KEY}.rate_limit: {e}"));
        }
        p
    }
}

impl Settings {
    /// Typed settings from `[sources.logs.splunk]` (paths relative to the config file, the
    /// token's environment variable read now), or every problem, each naming its key.
    pub fn resolve(cfg: &Config) -> Result<Settings, Vec<String>> {
        Self::resolve_with_env(cfg, &|v| std::env::var(v).ok())
    }

    pub fn resolve_with_env(
        cfg: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, Vec<String>> {
        let default = SplunkConfig::default();
        let c = cfg.sources.logs.splunk.as_ref().unwrap_or(&default);
        let mut problems = c.problems();
        let token = secret_source(
            [
                &format!("{KEY}.token"),
                &format!("{KEY}.token_file"),
                &format!("{KEY}.token_env"),
            ],
            c.token.as_ref(),
            c.token_file.as_ref().map(|p| cfg.resolve(p)),
            c.token_env.as_deref(),
            env,
            true,
        );
        let token = match token {
            Ok(Some(t)) => Some(t),
            Ok(None) => None,
            Err(e) => {
                if !problems
                    .iter()
                    .any(|p| p.starts_with(&format!("{KEY}.token")))
                {
                    problems.push(e);
                }
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let (lookback, timeout) = (c.lookback.get(), c.timeout.to_std());
        let (Some(url), Some(index), Some(filter), Some(token)) = (
            c.url.as_deref().and_then(|u| parse_base_url(u).ok()),
            c.index.clone(),
            c.instance_filter
                .as_deref()
                .and_then(|f| parse_filter(f).ok()),
            token,
        ) else {
            return Err(vec![format!("{KEY}: incomplete")]);
        };
        Ok(Settings {
            url,
            index,
            sourcetype: c.sourcetype.clone(),
            filter,
            auth_scheme: c.auth_scheme,
            token,
            max_events: c.max_events.max(1),
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
    fn filters_are_field_template_terms_naming_the_instance() {
        assert_eq!(
            parse_filter("host={private_dns} source=/var/log/app.log").unwrap(),
            vec![
                FilterTerm {
                    field: "host".into(),
                    template: "{private_dns}".into()
                },
                FilterTerm {
                    field: "source".into(),
                    template: "/var/log/app.log".into()
                }
            ]
        );
        assert!(parse_filter("host").unwrap_err().contains("FIELD=TEMPLATE"));
        assert!(parse_filter("9x={instance_id}")
            .unwrap_err()
            .contains("field name"));
        assert!(parse_filter("host=web01")
            .unwrap_err()
            .contains("names no instance"));
        assert!(parse_filter("host={hostname}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(parse_filter("  ").is_err());
    }

    #[test]
    fn every_problem_names_its_key() {
        let c = SplunkConfig {
            url: Some("splunk:8089".into()),
            token: Some(Secret::new("t")),
            token_env: Some("SPLUNK_TOKEN".into()),
            instance_filter: Some("host=web".into()),
            rate_limit: f64::NAN,
            ..Default::default()
        };
        let p = c.problems().join("\n");
        for needle in [
            "sources.logs.splunk.rate_limit: `NaN` is not a rate",
            "sources.logs.splunk.url: `splunk:8089`",
            "sources.logs.splunk.index: required",
            "sources.logs.splunk.instance_filter: `host=web` names no instance",
            "set only one of them",
        ] {
            assert!(p.contains(needle), "missing {needle} in {p}");
        }
        let p = SplunkConfig::default().problems().join("\n");
        assert!(p.contains("sources.logs.splunk.token: required"), "{p}");
    }
}
