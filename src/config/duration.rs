//! The config's time types, parsed once when the config is loaded: [`HumanDuration`] (`90s`,
//! `15m`, `1.5h`, `7d`, `2w`, a bare number of seconds) and [`Since`] (a duration back from
//! now, or an instant). Both keep the text as written, for messages and for writing a config
//! back (`epitaph export`'s bundle).
//!
//! A newtype around `timefmt::parse_duration` rather than humantime-serde or jiff: the accepted
//! syntax includes fractions (`1.5h`), bare seconds (`45`) and the `d`/`w` units next to
//! `sec`/`min`/`hr`, which those crates spell differently or refuse; a config that loads today
//! must keep loading.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::timefmt;

/// The JSON-schema `format` of a [`HumanDuration`] (the validator checks it with the parser).
pub const DURATION_FORMAT: &str = "duration";
/// The JSON-schema `format` of a [`Since`].
pub const SINCE_FORMAT: &str = "since";

/// A duration as written in the config, parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct HumanDuration {
    text: String,
    value: chrono::Duration,
}

impl HumanDuration {
    /// Parses `90s`, `15m`, `24h`, `7d`, `1.5h`, `45` (seconds); the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(HumanDuration {
            value: timefmt::parse_duration(text)?,
            text: text.to_string(),
        })
    }

    /// A built-in default, written as `text`. Only for literals of this crate: a bad one is a
    /// build defect, caught by the config's own tests (`defaults_are_valid`).
    pub(crate) fn default_of(text: &'static str) -> Self {
        HumanDuration::parse(text)
            .unwrap_or_else(|e| panic!("built-in default duration `{text}`: {e}"))
    }

    /// A whole number of seconds (negative ones count as zero), written `{n}s`.
    pub fn seconds(n: i64) -> Self {
        let n = n.max(0);
        HumanDuration {
            text: format!("{n}s"),
            value: chrono::Duration::seconds(n),
        }
    }

    /// The duration.
    pub fn get(&self) -> chrono::Duration {
        self.value
    }

    /// The duration for std APIs (timeouts); never negative, as parsed.
    pub fn to_std(&self) -> std::time::Duration {
        self.value.to_std().unwrap_or_default()
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        HumanDuration::parse(s)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "format": DURATION_FORMAT,
            "description": "A duration: 90s, 15m, 24h, 7d, 1.5h, or a number of seconds."
        })
    }
}

/// When a window starts or ends: a duration back from the moment of use, or an instant.
#[derive(Clone, PartialEq, Eq)]
pub struct Since {
    text: String,
    value: SinceValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinceValue {
    Ago(chrono::Duration),
    At(DateTime<Utc>),
}

impl Since {
    /// Parses a duration (`24h`) or an instant (RFC 3339, `YYYY-MM-DD HH:MM:SS` in UTC, unix
    /// seconds or milliseconds).
    pub fn parse(text: &str) -> Result<Self, String> {
        let value = match timefmt::parse_duration(text) {
            Ok(d) => SinceValue::Ago(d),
            Err(_) => {
                // One message for both readings, as `timefmt::parse_since` words it.
                let at = timefmt::parse_since(text, DateTime::<Utc>::MIN_UTC)?;
                SinceValue::At(at)
            }
        };
        Ok(Since {
            text: text.to_string(),
            value,
        })
    }

    /// An instant, written in RFC 3339.
    pub fn at(t: DateTime<Utc>) -> Self {
        Since {
            text: t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            value: SinceValue::At(t),
        }
    }

    pub(crate) fn default_of(text: &'static str) -> Self {
        Since::parse(text).unwrap_or_else(|e| panic!("built-in default `{text}`: {e}"))
    }

    /// The instant this names, counting back from `now` for a duration.
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.value {
            SinceValue::Ago(d) => now - d,
            SinceValue::At(t) => t,
        }
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Since {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Debug for Since {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl Serialize for Since {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Since {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Since::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Since {
    fn schema_name() -> Cow<'static, str> {
        "Since".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "format": SINCE_FORMAT,
            "description": "A duration back from now (24h) or an RFC 3339 time."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_their_text_and_every_accepted_spelling() {
        for (text, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("1.5h", 5400),
            ("7d", 604_800),
            ("2w", 1_209_600),
            ("45", 45),
            ("3 mins", 180),
        ] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.get(), chrono::Duration::seconds(secs), "{text}");
            assert_eq!(d.to_string(), text);
        }
        let err = HumanDuration::parse("sixty").unwrap_err();
        assert!(err.contains("is not a duration"), "{err}");
    }

    #[test]
    fn since_is_a_duration_back_or_an_instant() {
        let now = DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Since::parse("24h").unwrap().resolve(now),
            now - chrono::Duration::hours(24)
        );
        let at = Since::parse("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(at.resolve(now).to_rfc3339(), "2026-01-01T00:00:00+00:00");
        let err = Since::parse("yesterday").unwrap_err();
        assert!(err.contains("nor is it a timestamp"), "{err}");
        assert_eq!(Since::at(now).to_string(), "2026-01-05T10:00:00Z");
    }
}
