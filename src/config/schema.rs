//! The config's schema, derived from its types (`schemars::JsonSchema` on every section: field
//! names, types, doc comments as descriptions, enum values, `#[schemars(range(min = …))]`
//! bounds, durations as `format: "duration"`) — the one list of keys. From it:
//! - [`problems`]: every problem of a TOML table at once, each with its key — unknown keys
//!   (with the nearest known key, or the role section a backend's shared key belongs in),
//!   wrong types, values outside an enum (listing the allowed ones), numbers below their
//!   bound, bad durations — before serde deserializes the table (which stops at the first);
//! - [`leaf`] / [`keys`]: what an environment override's value is typed as, and the list of
//!   documented keys the example config is checked against.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::duration::{DURATION_FORMAT, SINCE_FORMAT};
use super::{Config, HumanDuration, Since};

/// The schema of [`Config`], subschemas inlined (no `$ref`), generated once.
static ROOT: LazyLock<Value> = LazyLock::new(|| {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
    });
    settings
        .into_generator()
        .into_root_schema_for::<Config>()
        .to_value()
});

/// The derived JSON schema of the whole config (descriptions from the doc comments).
pub fn json_schema() -> &'static Value {
    &ROOT
}

/// What a key's schema says, as far as checking a value goes.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// A table of known keys (`[scan]`, `[sources.logs.loki]`).
    Section(&'a Map<String, Value>),
    /// A table of free keys whose values share one schema (`headers`, `rate_limits`).
    Map(&'a Value),
    /// Anything else: a value.
    Leaf(&'a Value),
}

/// The JSON types a schema allows, `null` left out (an `Option` is a key left unset).
fn types(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    }
}

/// `s` without its `null` alternative (`anyOf: [T, {type: null}]` is `T`).
fn non_null(s: &Value) -> &Value {
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = s.get(key) {
            let rest: Vec<&Value> = alts
                .iter()
                .filter(|a| types(a) != ["null"] || a.get("const").is_some())
                .collect();
            if rest.len() == 1 && rest.len() < alts.len() {
                return non_null(rest[0]);
            }
        }
    }
    s
}

fn node(s: &Value) -> Node<'_> {
    let s = non_null(s);
    if types(s).contains(&"object") {
        if let Some(Value::Object(props)) = s.get("properties") {
            return Node::Section(props);
        }
        if let Some(v @ Value::Object(_)) = s.get("additionalProperties") {
            return Node::Map(v);
        }
    }
    Node::Leaf(s)
}

/// The allowed values of an enum's schema (`enum: [...]`, or `oneOf` of `const`s when the
/// variants carry doc comments).
fn enum_values(s: &Value) -> Option<Vec<&str>> {
    if let Some(Value::Array(vs)) = s.get("enum") {
        return Some(vs.iter().filter_map(Value::as_str).collect());
    }
    let Some(Value::Array(alts)) = s.get("oneOf") else {
        return None;
    };
    alts.iter()
        .map(|a| {
            a.get("const")
                .and_then(Value::as_str)
                .or_else(|| match a.get("enum") {
                    Some(Value::Array(one)) if one.len() == 1 => one[0].as_str(),
                    _ => None,
                })
        })
        .collect()
}

fn root_section() -> &'static Map<String, Value> {
    match node(&ROOT) {
        Node::Section(props) => props,
        _ => unreachable!("Config derives an object schema"),
    }
}

/// The schema of a dotted key, if the config has one (a section, a map or a value).
pub fn lookup(key: &str) -> Option<Node<'static>> {
    let mut current = Node::Section(root_section());
    for part in key.split('.') {
        let Node::Section(props) = current else {
            return None;
        };
        current = node(props.get(part)?);
    }
    Some(current)
}

/// The schema of a key that takes a value (a leaf or a map), not a section.
pub fn leaf(key: &str) -> Option<Node<'static>> {
    lookup(key).filter(|n| !matches!(n, Node::Section(_)))
}

/// A key's description: its field's doc comment (or, failing that, its type's).
pub fn description(key: &str) -> Option<&'static str> {
    let (parent, name) = match key.rsplit_once('.') {
        Some((p, n)) => (lookup(p)?, n),
        None => (Node::Section(root_section()), key),
    };
    let Node::Section(props) = parent else {
        return None;
    };
    let s = props.get(name)?;
    s.get("description")
        .or_else(|| non_null(s).get("description"))
        .and_then(Value::as_str)
}

/// Every key that takes a value, dotted, in declaration order: the documented keys.
pub fn keys() -> Vec<String> {
    fn walk(props: &Map<String, Value>, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in props {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match node(v) {
                Node::Section(inner) => walk(inner, &key, out),
                _ => out.push(key),
            }
        }
    }
    let mut out = Vec::new();
    walk(root_section(), "", &mut out);
    out
}

/// The shape of a value a key takes: what an environment override's text is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Table,
    StrMap,
    NumMap,
    Int,
    Num,
    Bool,
    List,
    Str,
}

pub fn value_kind(n: Node<'_>) -> ValueKind {
    let numeric = |s: &Value| {
        types(non_null(s))
            .iter()
            .any(|t| matches!(*t, "number" | "integer"))
    };
    match n {
        Node::Section(_) => ValueKind::Table,
        Node::Map(v) if numeric(v) => ValueKind::NumMap,
        Node::Map(_) => ValueKind::StrMap,
        Node::Leaf(s) => {
            let ts = types(s);
            if enum_values(s).is_some() {
                ValueKind::Str
            } else if ts.contains(&"integer") {
                ValueKind::Int
            } else if ts.contains(&"number") {
                ValueKind::Num
            } else if ts.contains(&"boolean") {
                ValueKind::Bool
            } else if ts.contains(&"array") {
                ValueKind::List
            } else {
                ValueKind::Str
            }
        }
    }
}

/// What a value of this schema is, for messages ("expected …", "`x` is not …").
pub fn type_name(n: Node<'_>) -> &'static str {
    if let Node::Leaf(s) = n {
        match s.get("format").and_then(Value::as_str) {
            Some(DURATION_FORMAT) => return "a duration string such as \"60s\"",
            Some(SINCE_FORMAT) => return "a duration or an RFC 3339 time",
            _ => {}
        }
    }
    match value_kind(n) {
        ValueKind::Table => "a table",
        ValueKind::NumMap => "a table of numbers (from the environment, a JSON object)",
        ValueKind::StrMap => "a table of strings (from the environment, a JSON object)",
        ValueKind::Int => "an integer",
        ValueKind::Num => "a number",
        ValueKind::Bool => "true or false",
        ValueKind::List => "a list of strings",
        ValueKind::Str => "a string",
    }
}

/// Every problem of `table` (the config as written, overrides applied), each `key: message`.
pub fn problems(table: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    check_section(table, root_section(), "", &mut out);
    out
}

fn check_section(
    table: &toml::Table,
    props: &Map<String, Value>,
    prefix: &str,
    out: &mut Vec<String>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let Some(schema) = props.get(k) else {
            let what = if v.is_table() { "section" } else { "key" };
            out.push(format!("{key}: unknown {what}{}", unknown_key_hint(&key)));
            continue;
        };
        match (node(schema), v) {
            (Node::Section(inner), toml::Value::Table(t)) => check_section(t, inner, &key, out),
            (Node::Section(_), other) => out.push(format!(
                "{key}: expected a table ([{key}]), got {}",
                other.type_str()
            )),
            (n, v) => {
                if let Err(msg) = check_value(n, v) {
                    out.push(format!("{key}: {msg}"));
                }
            }
        }
    }
}

/// Whether `v` is a value the schema of a leaf or map allows; the message says why not.
pub fn check_value(n: Node<'_>, v: &toml::Value) -> Result<(), String> {
    use toml::Value as V;
    let mismatch = || format!("expected {}, got {}", type_name(n), v.type_str());
    match n {
        Node::Section(_) => Err(mismatch()),
        Node::Map(values) => {
            let V::Table(t) = v else {
                return Err(mismatch());
            };
            let numbers = value_kind(n) == ValueKind::NumMap;
            for (k, item) in t {
                if check_scalar(non_null(values), item).is_err() {
                    return Err(if numbers {
                        let min = values.get("minimum").and_then(Value::as_f64);
                        match min {
                            Some(m) => format!("`{k}` must be a number ≥ {m}"),
                            None => format!("`{k}` must be a number"),
                        }
                    } else {
                        format!("`{k}` must be a non-empty string")
                    });
                }
            }
            Ok(())
        }
        Node::Leaf(s) if types(s).contains(&"array") => {
            let V::Array(items) = v else {
                return Err(mismatch());
            };
            let item_schema = s.get("items").map_or(&Value::Null, non_null);
            for (i, item) in items.iter().enumerate() {
                match check_scalar(item_schema, item) {
                    Ok(()) => {}
                    // A value outside an enum says which values are allowed.
                    Err(Some(msg)) if enum_values(item_schema).is_some() => {
                        return Err(format!("item {i}: {msg}"))
                    }
                    Err(_) => return Err(format!("item {i} must be a non-empty string")),
                }
            }
            Ok(())
        }
        Node::Leaf(s) => check_scalar(s, v).map_err(|e| e.unwrap_or_else(mismatch)),
    }
}

/// A scalar against its schema: `Err(None)` for a wrong type (the caller words it),
/// `Err(Some(msg))` for a wrong value of the right type.
fn check_scalar(s: &Value, v: &toml::Value) -> Result<(), Option<String>> {
    use toml::Value as V;
    let ts = types(s);
    if let Some(allowed) = enum_values(s) {
        let V::String(text) = v else {
            return Err(None);
        };
        return if allowed.contains(&text.as_str()) {
            Ok(())
        } else {
            Err(Some(format!(
                "`{text}` is not one of {}",
                allowed.join(", ")
            )))
        };
    }
    let min = s.get("minimum").and_then(Value::as_f64);
    match v {
        V::String(text) if ts.contains(&"string") => {
            match s.get("format").and_then(Value::as_str) {
                Some(DURATION_FORMAT) => HumanDuration::parse(text).map(|_| ()).map_err(Some),
                Some(SINCE_FORMAT) => Since::parse(text).map(|_| ()).map_err(Some),
                _ if text.trim().is_empty() => Err(Some("must not be empty".into())),
                _ => Ok(()),
            }
        }
        V::Integer(i) if ts.contains(&"integer") || ts.contains(&"number") => match min {
            Some(m) if (*i as f64) < m => Err(Some(format!("must be at least {m}, got {i}"))),
            _ => Ok(()),
        },
        V::Float(f) if ts.contains(&"number") => match min {
            Some(m) if !(f.is_finite() && *f >= m) => {
                Err(Some(format!("must be at least {m}, got {f}")))
            }
            _ => Ok(()),
        },
        V::Boolean(_) if ts.contains(&"boolean") => Ok(()),
        _ => Err(None),
    }
}

/// Where an unknown key probably belongs: for a key set in a backend's table that belongs
/// to its role's section (`sources.metrics.prometheus.unit` is `sources.metrics.unit`),
/// that section; else the nearest known key, if one is close.
fn unknown_key_hint(key: &str) -> String {
    if let Some(hint) = moved_key_hint(key) {
        return hint;
    }
    nearest_key(key)
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

fn moved_key_hint(key: &str) -> Option<String> {
    let (section, leaf_name) = key.rsplit_once('.')?;
    let (parent, _) = section.rsplit_once('.')?;
    let shared = format!("{parent}.{leaf_name}");
    (parent.starts_with("sources.") && leaf(&shared).is_some()).then(|| {
        format!(" — `{leaf_name}` is shared by every backend of this source: set {shared} in [{parent}]")
    })
}

/// The known key `key` most likely means: one with the same name in another section (a
/// key of another source role: `sources.logs.unit` is `sources.metrics.unit`), else the
/// closest by edit distance (at most a third of its length).
pub fn nearest_key(key: &str) -> Option<String> {
    let name = key.rsplit('.').next().unwrap_or(key);
    let keys = keys();
    let same_name = keys
        .iter()
        .filter(|k| k.rsplit('.').next() == Some(name))
        .map(|k| (edit_distance(key, k), k.clone()))
        .min();
    same_name.map(|(_, k)| k).or_else(|| {
        keys.into_iter()
            .map(|k| (edit_distance(key, &k), k))
            .filter(|(d, _)| *d * 3 <= key.len().max(3))
            .min()
            .map(|(_, k)| k)
    })
}

/// Levenshtein distance over bytes (keys are ASCII; also used for resource names by
/// `analysis::doctor`).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
