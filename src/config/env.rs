//! Environment overrides: `EPITAPH_<SECTION>__<KEY>=value` (two underscores between levels,
//! e.g. `EPITAPH_SCAN__CONCURRENCY=8`, `EPITAPH_SOURCES__LOGS__LOKI__PASSWORD=…`), laid over
//! the file's table before it is checked. Which keys exist and how a value is typed (integer,
//! number, boolean, list, table) come from the derived schema; lists are a JSON array or
//! comma-separated, tables a JSON object.

use std::collections::BTreeMap;

use super::schema::{self, Node, ValueKind};
use super::ENV_PREFIX;

/// Applies `EPITAPH_A__B__C=value` overrides. Values are typed by the derived schema. Returns
/// which variable set each key it applied (`scan.since` → `EPITAPH_SCAN__SINCE`), so that a
/// problem with an overridden value names the variable, not the file.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: &[(String, String)],
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut applied = BTreeMap::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            // EPITAPH_CONFIG, EPITAPH_LOG and friends are not key overrides; but one
            // underscore where the separator needs two (EPITAPH_SCAN_CONCURRENCY) would be
            // silently ignored, so it is an error naming the right spelling.
            if let Some(key) = single_underscore_key(rest) {
                problems.push(format!(
                    "environment {name}: not applied — levels are separated by two underscores: EPITAPH_{}",
                    key.to_ascii_uppercase().replace('.', "__")
                ));
            }
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let Some(node) = schema::leaf(&key) else {
            let hint = schema::nearest_key(&key)
                .map(|k| {
                    format!(
                        " (did you mean EPITAPH_{}?)",
                        k.to_ascii_uppercase().replace('.', "__")
                    )
                })
                .unwrap_or_default();
            problems.push(format!("environment {name}: unknown key `{key}`{hint}"));
            continue;
        };
        let Some(typed) = typed_value(node, value) else {
            problems.push(format!(
                "environment {name}: `{value}` is not {}",
                schema::type_name(node)
            ));
            continue;
        };
        let parts: Vec<&str> = key.split('.').collect();
        insert_path(table, &parts, typed);
        applied.insert(key, name.clone());
    }
    applied
}

/// Where a problem (`key: message`) comes from: `environment VAR` when its key's value was
/// set by an override in `applied`, else `origin` (the file).
pub(super) fn problem_origin(
    problem: &str,
    origin: &str,
    applied: &BTreeMap<String, String>,
) -> String {
    problem
        .split_once(": ")
        .and_then(|(key, _)| applied.get(key))
        .map(|var| format!("environment {var}"))
        .unwrap_or_else(|| origin.to_string())
}

/// A list from the environment: a JSON array of strings (`["a","b"]`), or comma-separated
/// values (`a, b`; empty items dropped). `None` for a malformed JSON array.
fn env_list(value: &str) -> Option<toml::Value> {
    let items: Vec<String> = if value.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(value).ok()?
    } else {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(toml::Value::Array(
        items.into_iter().map(toml::Value::String).collect(),
    ))
}

/// A table from the environment: a JSON object of strings (`{"X-Scope-OrgID":"tenant-1"}`).
/// `None` when it is not one.
fn env_num_map(value: &str) -> Option<toml::Value> {
    let map = serde_json::from_str::<std::collections::BTreeMap<String, f64>>(value).ok()?;
    Some(toml::Value::Table(
        map.into_iter()
            .map(|(k, v)| (k, toml::Value::Float(v)))
            .collect(),
    ))
}

fn env_map(value: &str) -> Option<toml::Value> {
    let map = serde_json::from_str::<std::collections::BTreeMap<String, String>>(value).ok()?;
    Some(toml::Value::Table(
        map.into_iter()
            .map(|(k, v)| (k, toml::Value::String(v)))
            .collect(),
    ))
}

/// The key an `EPITAPH_` name with single underscores spells, when turning its first
/// underscore into a level separator (or each of them) gives a key the schema knows.
fn single_underscore_key(rest: &str) -> Option<String> {
    let lower = rest.to_ascii_lowercase();
    let positions: Vec<usize> = lower.match_indices('_').map(|(i, _)| i).collect();
    // Try one separator at each underscore, then two (sources_logs_path).
    for &i in &positions {
        let key = format!("{}.{}", &lower[..i], &lower[i + 1..]);
        if schema::leaf(&key).is_some() {
            return Some(key);
        }
    }
    for (a, &i) in positions.iter().enumerate() {
        for &j in &positions[a + 1..] {
            let key = format!("{}.{}.{}", &lower[..i], &lower[i + 1..j], &lower[j + 1..]);
            if schema::leaf(&key).is_some() {
                return Some(key);
            }
        }
    }
    None
}

/// Sets `parts` (a dotted key split at the dots) to `value`, creating sections on the way; a
/// scalar where a section belongs is replaced, since the override names a nested key.
fn insert_path(table: &mut toml::Table, parts: &[&str], value: toml::Value) {
    match parts {
        [] => {}
        [leaf] => {
            table.insert(leaf.to_string(), value);
        }
        [section, rest @ ..] => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                insert_path(t, rest, value);
            }
        }
    }
}

/// The TOML value of an override's text, typed by its key's schema; `None` when the text is
/// not one.
fn typed_value(node: Node<'_>, value: &str) -> Option<toml::Value> {
    match schema::value_kind(node) {
        ValueKind::NumMap => env_num_map(value),
        ValueKind::StrMap => env_map(value),
        ValueKind::Int => value.parse::<i64>().map(toml::Value::Integer).ok(),
        ValueKind::Num => value.parse::<f64>().map(toml::Value::Float).ok(),
        ValueKind::Bool => value.parse::<bool>().map(toml::Value::Boolean).ok(),
        ValueKind::List => env_list(value),
        ValueKind::Table | ValueKind::Str => Some(toml::Value::String(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::tests::parse;
    use crate::config::LogFormat;

    #[test]
    fn env_overrides() {
        let c = parse(
            "[scan]\nconcurrency = 4\n",
            &[
                ("EPITAPH_SCAN__CONCURRENCY", "8"),
                ("EPITAPH_SOURCES__LOGS__PATH", "/l"),
                ("EPITAPH_CONFIG", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.scan.concurrency, 8);
        assert_eq!(c.sources.logs.path, Some(PathBuf::from("/l")));
        let err = parse("", &[("EPITAPH_SCAN__NOPE", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("EPITAPH_SCAN__NOPE: unknown key `scan.nope`"),
            "{err}"
        );
        let err = parse("", &[("EPITAPH_SCAN__CONCURRENCY", "many")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`many` is not an integer"), "{err}");
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable_not_the_file() {
        let err = parse(
            "[scan]\nlast_words_window = \"5 parsecs\"\n",
            &[("EPITAPH_SCAN__SINCE", "yesterdayish")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("environment EPITAPH_SCAN__SINCE: scan.since: `yesterdayish`"),
            "{err}"
        );
        // The file's own problem still names the file, in the same report.
        assert!(
            err.lines()
                .any(|l| l.contains("scan.last_words_window") && !l.contains("environment")),
            "{err}"
        );
    }

    #[test]
    fn env_lists_typos_and_single_underscores() {
        let c = parse(
            "",
            &[
                (
                    "EPITAPH_ALERTS__REDACT_PATTERNS",
                    r#"["corp-[0-9]{6}", "a,b"]"#,
                ),
                ("EPITAPH_AWS__TARGETS", "us-east-1, eu-west-1"),
            ],
        )
        .unwrap();
        assert_eq!(c.alerts.redact_patterns, vec!["corp-[0-9]{6}", "a,b"]);
        assert_eq!(c.aws.targets, vec!["us-east-1", "eu-west-1"]);
        let err = parse("", &[("EPITAPH_AWS__TARGETS", "[not json")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("EPITAPH_AWS__TARGETS"), "{err}");
        let err = parse("", &[("EPITAPH_SCAN_CONCURRENCY", "8")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("EPITAPH_SCAN__CONCURRENCY"), "{err}");
        let err = parse("", &[("EPITAPH_SCAN__CONCURENCY", "8")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did you mean EPITAPH_SCAN__CONCURRENCY"),
            "{err}"
        );
        // Variables that are not key overrides stay allowed.
        assert!(parse(
            "",
            &[("EPITAPH_CONFIG", "x"), ("EPITAPH_AWS_INSTANCES", "60")]
        )
        .is_ok());
    }

    #[test]
    fn env_overrides_are_typed_by_the_derived_schema() {
        let c = parse(
            "",
            &[
                ("EPITAPH_SOURCES__METRICS__LIMIT", "2147483648"),
                ("EPITAPH_SOURCES__ACTIVITIES__DESCRIBE_INSTANCES", "false"),
                ("EPITAPH_AWS__RATE_LIMITS", r#"{"logs:GetLogEvents": 5}"#),
                ("EPITAPH_SOURCES__LOGS__FORMAT", "jsonl"),
            ],
        )
        .unwrap();
        assert_eq!(c.sources.metrics.limit, Some(2_147_483_648.0));
        assert!(!c.sources.activities.describe_instances);
        assert_eq!(c.aws.rate_limits["logs:GetLogEvents"], 5.0);
        assert_eq!(c.sources.logs.format, LogFormat::Jsonl);
        let err = parse(
            "",
            &[
                ("EPITAPH_SOURCES__ACTIVITIES__DESCRIBE_INSTANCES", "yes"),
                ("EPITAPH_AWS__RATE_LIMITS", "5"),
                ("EPITAPH_SOURCES__METRICS__LIMIT", "lots"),
            ],
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "EPITAPH_SOURCES__ACTIVITIES__DESCRIBE_INSTANCES: `yes` is not true or false",
            "EPITAPH_AWS__RATE_LIMITS: `5` is not a table of numbers",
            "EPITAPH_SOURCES__METRICS__LIMIT: `lots` is not a number",
        ] {
            assert!(err.contains(needle), "missing {needle} in {err}");
        }
        let err = parse("[aws]\nrate_limits = { \"logs:GetLogEvents\" = -1 }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aws.rate_limits: `logs:GetLogEvents` must be a number ≥ 0"),
            "{err}"
        );
    }
}
