//! Reading one log export into the index: JSON lines, or `aws logs filter-log-events` /
//! `get-log-events` output — documents classified without a `serde_json::Value` of the file,
//! each event attributed to its instance and kept as a run or an inline event.

use super::*;

/// How events of one file find their instance.
pub(super) struct FileCtx<'a> {
    pub(super) stream: &'a Regex,
    /// The instance the file (or its folder) is named after, for events that name none.
    pub(super) default_instance: Option<String>,
    /// The file's number in the index.
    pub(super) file: u32,
}

/// One JSON document of a log export, as far as telling its kind goes (its events are read
/// from their byte spans afterwards).
pub(super) enum LogDoc<'a> {
    Object {
        /// The last `events` key's value was an array (None: no `events` key).
        events_array: Option<bool>,
        tokens: Tokens<'a>,
    },
    Array,
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for LogDoc<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        /// Whether a value is an array (its content skipped).
        struct IsArray(bool);
        impl<'de> serde::Deserialize<'de> for IsArray {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = IsArray;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("any JSON value")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> std::result::Result<IsArray, A::Error> {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(IsArray(true))
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> std::result::Result<IsArray, A::Error> {
                        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        Ok(IsArray(false))
                    }
                    fn visit_str<E>(self, _: &str) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_bool<E>(self, _: bool) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_i64<E>(self, _: i64) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_u64<E>(self, _: u64) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_f64<E>(self, _: f64) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                    fn visit_unit<E>(self) -> std::result::Result<IsArray, E> {
                        Ok(IsArray(false))
                    }
                }
                d.deserialize_any(V)
            }
        }
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LogDoc<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON document")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut events_array = None;
                let mut tokens = Tokens::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "events" => events_array = Some(map.next_value::<IsArray>()?.0),
                        "NextToken" => tokens.next_token = map.next_value()?,
                        "nextToken" => tokens.next_token_logs = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(LogDoc::Object {
                    events_array,
                    tokens,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LogDoc::Array)
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(LogDoc::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The documents of a JSON export with where each starts (one, or pages one after the
/// other); errors as [`super::super::json_documents`].
pub(super) fn log_documents<'a>(bytes: &'a [u8], origin: &str) -> Result<Vec<(LogDoc<'a>, usize)>> {
    if super::super::is_blank(bytes) {
        return Err(Error::input(origin, EMPTY_FILE));
    }
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<LogDoc>();
    let mut start = 0;
    while let Some(doc) = stream.next() {
        let doc = doc.map_err(|e| {
            Error::input(
                format!("{origin}:{}:{}", e.line(), e.column()),
                format!("invalid JSON: {e}"),
            )
        })?;
        out.push((doc, spans::skip_ws(bytes, start)));
        start = stream.byte_offset();
    }
    Ok(out)
}

/// One log file: a whole JSON export (one document, or pages one after the other), or JSON
/// lines. An error is the whole file's.
pub(super) fn ingest_file(
    bytes: &[u8],
    origin: &str,
    format: Format,
    ctx: &FileCtx<'_>,
    part: &mut Part,
) -> Result<()> {
    if format == Format::JsonLines {
        ingest_json_lines(bytes, origin, ctx, part);
        return Ok(());
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if !matches!(first, Some(b'{' | b'[')) {
        if format == Format::FilterLogEvents {
            return Err(Error::input(
                origin,
                "not filter-log-events output (expected a JSON object with an \"events\" array)",
            ));
        }
        ingest_json_lines(bytes, origin, ctx, part);
        return Ok(());
    }
    let docs = match log_documents(bytes, origin) {
        Ok(docs) => docs,
        // JSON lines with a bad line: its first line stands alone as an event.
        Err(_) if format == Format::Auto && first_line_is_an_object(bytes) => {
            ingest_json_lines(bytes, origin, ctx, part);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let exports = docs.iter().all(|(d, _)| match d {
        LogDoc::Object { events_array, .. } => events_array.is_some(),
        LogDoc::Array => docs.len() == 1,
        LogDoc::Other => false,
    });
    if !exports {
        if format == Format::FilterLogEvents {
            return Err(Error::input(
                origin,
                "not filter-log-events output (no \"events\" array)",
            ));
        }
        ingest_json_lines(bytes, origin, ctx, part);
        return Ok(());
    }
    for (n, (doc, start)) in docs.iter().enumerate() {
        let origin = if docs.len() > 1 {
            format!("{origin} (document {})", n + 1)
        } else {
            origin.to_string()
        };
        let (events, label) = match doc {
            LogDoc::Array => (*start, ""),
            LogDoc::Object {
                events_array,
                tokens,
            } => {
                if let Some(w) = tokens.warning(&origin) {
                    part.warnings.push(w);
                }
                if *events_array != Some(true) {
                    return Err(Error::input(origin, "\"events\" is not an array"));
                }
                let Some(at) = spans::last_member(bytes, *start, b"events") else {
                    return Err(Error::input(origin, "\"events\" is not an array"));
                };
                (at, "events")
            }
            LogDoc::Other => continue,
        };
        for (i, (from, to)) in spans::elements(bytes, events).into_iter().enumerate() {
            let Ok(v) = serde_json::from_slice::<Value>(&bytes[from..to]) else {
                return Err(Error::input(origin, "unreadable event (internal)"));
            };
            ingest_event(
                &v,
                &format!("{origin}: {label}[{i}]"),
                ctx,
                part,
                (from, to),
            );
        }
        // A run never spans two documents.
        part.end_run();
    }
    Ok(())
}

pub(super) fn first_line_is_an_object(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .find(|l| !super::super::is_blank(l))
        .and_then(|l| serde_json::from_slice::<Value>(l).ok())
        .is_some_and(|v| v.is_object())
}

pub(super) fn ingest_json_lines(bytes: &[u8], origin: &str, ctx: &FileCtx<'_>, part: &mut Part) {
    part.lines = true;
    let mut start = 0usize;
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let span = (start, start + raw.len());
        start += raw.len() + 1;
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{origin}:{}", n + 1);
        match serde_json::from_str::<Value>(line) {
            Ok(v) => ingest_event(&v, &at, ctx, part, span),
            Err(e) => part.skipped.push(at, format!("invalid JSON: {e}")),
        }
    }
}

/// An event's time: the first of [`TIME_FIELDS`] present, if it is one.
pub(super) fn event_time(obj: &serde_json::Map<String, Value>) -> Option<DateTime<Utc>> {
    match TIME_FIELDS.iter().find_map(|f| obj.get(*f)) {
        Some(Value::Number(n)) => n.as_f64().and_then(unix_to_instant),
        Some(Value::String(s)) => parse_instant(s).ok(),
        _ => None,
    }
}

/// An event's message: the first of [`MESSAGE_FIELDS`] that is a string.
pub(super) fn event_message(obj: &serde_json::Map<String, Value>) -> Option<&str> {
    MESSAGE_FIELDS
        .iter()
        .find_map(|f| obj.get(*f).and_then(Value::as_str))
}

/// One event (`span`: its bytes in the file), indexed by its instance, or skipped.
pub(super) fn ingest_event(
    ev: &Value,
    at: &str,
    ctx: &FileCtx<'_>,
    part: &mut Part,
    span: (usize, usize),
) {
    let (instance, timestamp) = match classify(ev, ctx) {
        Ok(found) => found,
        Err(why) => {
            part.skipped.push(at.to_string(), why);
            return;
        }
    };
    let Ok(len) = u32::try_from(span.1 - span.0) else {
        part.skipped
            .push(at.to_string(), "an event longer than 4 GiB");
        return;
    };
    part.add(
        instance,
        EventRef {
            timestamp,
            file: ctx.file,
            offset: span.0 as u64,
            len,
        },
    );
}

/// A usable event's instance and time, or why it is skipped.
pub(super) fn classify(
    ev: &Value,
    ctx: &FileCtx<'_>,
) -> std::result::Result<(String, DateTime<Utc>), String> {
    let Some(obj) = ev.as_object() else {
        return Err("not a JSON object".into());
    };
    let Some(timestamp) = event_time(obj) else {
        return Err(format!(
            "missing or invalid timestamp (one of {})",
            TIME_FIELDS.join(", ")
        ));
    };
    if event_message(obj).is_none() {
        return Err(format!(
            "missing message (one of {})",
            MESSAGE_FIELDS.join(", ")
        ));
    }
    let instance = INSTANCE_FIELDS
        .iter()
        .find_map(|f| obj.get(*f).and_then(Value::as_str).map(str::to_string))
        .or_else(|| {
            STREAM_FIELDS
                .iter()
                .find_map(|f| obj.get(*f).and_then(Value::as_str))
                .and_then(|s| instance_from_stream(ctx.stream, s))
        })
        .or_else(|| ctx.default_instance.clone());
    let Some(instance) = instance else {
        return Err("no instance id: no instance_id field, no log stream naming one, and the file is not named after one (get-log-events output: name the file i-0123456789abcdef0.json after its stream)".into());
    };
    Ok((instance, timestamp))
}
