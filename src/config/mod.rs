//! Configuration: a TOML file (documented key by key in `config/epitaph.example.toml`), with
//! environment overrides `EPITAPH_<SECTION>__<KEY>` (double underscore between levels, e.g.
//! `EPITAPH_SCAN__CONCURRENCY=8`, `EPITAPH_SOURCES__LOGS__PATH=/data/logs`).
//!
//! The types are the one source of truth for keys: every section is a serde struct deriving
//! `schemars::JsonSchema` (doc comments are descriptions, kinds are enums, durations are
//! [`HumanDuration`]s parsed once here). Loading lays the environment over the file's table
//! (`env.rs`), checks the table against the schema derived from the types so that
//! `epitaph config check` reports every problem at once, each with its key (`schema.rs`),
//! deserializes, then checks the rules across keys (`checks.rs`).
//!
//! - `sections.rs`: `[scan]`, `[deployment]`, `[analysis]`, `[state]`, `[aws]`, `[alerts]`,
//!   `[serve]`; `sources.rs`: `[sources.*]`, one struct per role (the backend tables live
//!   with their backend: `sources/{prometheus,loki,splunk,events}/config.rs`);
//! - `duration.rs`: the duration and window-start types; `tests.rs`: the unit tests.

use std::path::{Path, PathBuf};

use chrono::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::correlate::{DeploymentIdentity, FindingPolicy};
use crate::error::{Error, Result};

mod checks;
mod duration;
mod env;
pub mod schema;
mod sections;
mod sources;
#[cfg(test)]
mod tests;

pub use checks::{parse_target, partition_of, AwsTarget};
pub use duration::{HumanDuration, Since};
pub(crate) use schema::edit_distance;
pub use sections::*;
pub use sources::*;

/// Environment variables with this prefix and a `__` override config keys.
pub const ENV_PREFIX: &str = "EPITAPH_";

/// epitaph's configuration (`epitaph.toml`): every key optional, defaults built in; any key can
/// be overridden by an `EPITAPH_SECTION__KEY` environment variable. `epitaph config schema`
/// prints this schema; `epitaph config check` enforces it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The scan: its window (`since`/`until`), the last-words window and series lookback per
    /// instance, fetch concurrency, the overlap a re-scan reads again, and the lookback
    /// deployments are judged over.
    pub scan: ScanConfig,
    /// What a deployment is: the identity instances are grouped by (launch template version,
    /// AMI, a tag, a log field or metric label).
    pub deployment: DeploymentConfig,
    /// The judgement: instances a deployment needs for a verdict, and early warning of the
    /// running instances.
    pub analysis: AnalysisConfig,
    /// Where the state lives (SQLite path or PostgreSQL URL) and how long it is kept.
    pub state: StateConfig,
    /// Extra signature files added to the built-in crash and OOM library.
    pub signatures: SignaturesConfig,
    /// The evidence sources: terminations (`activities`), last words (`logs`), the memory
    /// series (`metrics`) and `events`, each a backend with its own keys.
    pub sources: SourcesConfig,
    /// AWS: region, profile or endpoint, the accounts and roles to assume (`targets`),
    /// retries, timeouts and request pacing.
    pub aws: AwsConfig,
    /// Alerts: the Slack or webhook URL, which verdicts fire, cooldown and resolution,
    /// redaction, delivery retries.
    pub alerts: AlertsConfig,
    /// `epitaph serve`: the listen address, the scan schedule (cron), the API token, alert
    /// delivery and shutdown.
    pub serve: ServeConfig,
    /// Directory relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where the config came from, for messages.
    #[serde(skip)]
    pub origin: String,
}

impl Config {
    /// Loads `path`, or with no path the built-in defaults; applies `EPITAPH_…__…` overrides
    /// from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                Config::parse(&text, &p.display().to_string(), &base, &env)
            }
            None => {
                let base = std::env::current_dir().unwrap_or_default();
                Config::parse("", "(defaults)", &base, &env)
            }
        }
    }

    /// Parses config text, applies overrides from `env`, checks every key against the schema
    /// derived from the types (all problems reported together), deserializes, checks the
    /// rules across keys, and resolves relative paths against `base_dir`.
    pub fn parse(
        text: &str,
        origin: &str,
        base_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Config> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(":{}", crate::analysis::signatures::line_of(text, s.start)))
                .unwrap_or_default();
            Error::input(format!("{origin}{line}"), e.message().to_string())
        })?;
        let mut problems = Vec::new();
        let applied = env::apply_env(&mut table, env, &mut problems);
        problems.extend(schema::problems(&table));
        let located = |problems: Vec<String>| -> Vec<String> {
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", env::problem_origin(&p, origin, &applied)))
                .collect()
        };
        if !problems.is_empty() {
            return Err(Error::Config(located(problems)));
        }
        let mut cfg: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    Error::Config(vec![format!("{origin}: {}", e.message())])
                })?;
        cfg.base_dir = base_dir.to_path_buf();
        cfg.origin = origin.to_string();
        let problems = cfg.semantic_problems();
        if !problems.is_empty() {
            return Err(Error::Config(located(problems)));
        }
        Ok(cfg)
    }

    /// A path from the config, relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.resolve(&self.state.path)
    }

    pub fn last_words_window(&self) -> Duration {
        self.scan.last_words_window.get()
    }
    pub fn last_words_grace(&self) -> Duration {
        self.scan.last_words_grace.get()
    }
    pub fn drain_window(&self) -> Duration {
        self.scan.drain_window.get()
    }
    pub fn series_lookback(&self) -> Duration {
        self.scan.series_lookback.get()
    }
    pub fn fetch_timeout(&self) -> Duration {
        self.scan.fetch_timeout.get()
    }
    /// `state.retention`: how long evidence is kept.
    pub fn evidence_retention(&self) -> Duration {
        self.state.retention.get()
    }

    /// `state.facts_retention`: how long compact rows are kept.
    pub fn facts_retention(&self) -> Duration {
        self.state.facts_retention.get()
    }

    pub fn finding_lookback(&self) -> Duration {
        self.scan.finding_lookback.get()
    }
    pub fn overlap(&self) -> Duration {
        self.scan.overlap.get()
    }

    pub fn deployment_identity(&self) -> DeploymentIdentity {
        let d = &self.deployment;
        match d.identity {
            Identity::Asg => DeploymentIdentity::Asg,
            Identity::LaunchTemplate => DeploymentIdentity::LaunchTemplate,
            Identity::Tag => DeploymentIdentity::Tag {
                key: d.tag.clone().unwrap_or_default(),
            },
            Identity::LogField => DeploymentIdentity::LogField {
                field: d.log_field.clone().unwrap_or_default(),
            },
            Identity::MetricLabel => DeploymentIdentity::MetricLabel {
                label: d.metric_label.clone().unwrap_or_default(),
            },
        }
    }

    pub fn finding_policy(&self) -> FindingPolicy {
        FindingPolicy {
            min_instances: self.analysis.min_instances,
        }
    }
}
