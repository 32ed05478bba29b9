//! Typed, lenient reading of JSON exports: the few fields epitaph uses are deserialised
//! straight from the file's bytes (strings borrowed where they hold no escapes), everything
//! else is skipped without being built — no `serde_json::Value` tree of a whole export.
//!
//! "Lenient" keeps what reading a `Value` and asking for a field did: a field of the wrong JSON
//! type counts as absent ([`LStr`], [`LSeq`], [`LObj`] hold `None`), never as an error; only
//! the JSON syntax itself can fail, with serde_json's line and column.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Skips the rest of a map.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of a sequence.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the visits of anything that is not the expected JSON type: consumed, `None`.
macro_rules! other_types_are_none {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

/// A JSON string field (`None` when absent or not a string).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LStr<'a>(pub Option<Cow<'a, str>>);

impl LStr<'_> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Owned(v))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| LStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| LStr(None))
            }
            other_types_are_none!();
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON array field, its elements as `T` (`None` when absent or not an array).
#[derive(Debug)]
pub(crate) struct LSeq<T>(pub Option<Vec<T>>);

impl<T> Default for LSeq<T> {
    fn default() -> Self {
        LSeq(None)
    }
}

impl<T> LSeq<T> {
    /// The elements (none when the field was not an array).
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flatten()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LSeq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LSeq<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(x) = seq.next_element::<T>()? {
                    out.push(x);
                }
                Ok(LSeq(Some(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| LSeq(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LSeq(None))
            }
            other_types_are_none!();
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON object field read as `T` (a derived struct of lenient fields); `None` when absent
/// or not an object.
#[derive(Debug)]
pub(crate) struct LObj<T>(pub Option<T>);

impl<T> Default for LObj<T> {
    fn default() -> Self {
        LObj(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LObj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LObj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| LObj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| LObj(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LObj(None))
            }
            other_types_are_none!();
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The pagination tokens a document's top level may hold ([`super::PAGINATION_TOKENS`]).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Tokens<'a> {
    #[serde(rename = "NextToken", default, borrow)]
    pub next_token: LStr<'a>,
    #[serde(rename = "nextToken", default, borrow)]
    pub next_token_logs: LStr<'a>,
}

impl Tokens<'_> {
    /// The truncation warning these tokens call for (see [`super::token_warning`]).
    pub fn warning(&self, origin: &str) -> Option<String> {
        super::token_warning(
            [
                (super::PAGINATION_TOKENS[0], self.next_token.get()),
                (super::PAGINATION_TOKENS[1], self.next_token_logs.get()),
            ],
            origin,
        )
    }
}

/// The JSON documents of an export, typed (one, or several written one after the other):
/// an empty file and a syntax error are errors naming `origin` (and line:column), as
/// [`super::json_documents`].
pub(crate) fn typed_documents<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    origin: &str,
) -> crate::error::Result<Vec<T>> {
    if super::is_blank(bytes) {
        return Err(crate::error::Error::input(origin, super::EMPTY_FILE));
    }
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<T>()
        .map(|doc| {
            doc.map_err(|e| {
                crate::error::Error::input(
                    format!("{origin}:{}:{}", e.line(), e.column()),
                    format!("invalid JSON: {e}"),
                )
            })
        })
        .collect()
}

/// Byte spans inside a JSON document serde_json has already accepted (so only well-formed
/// JSON is walked here).
pub(crate) mod spans {
    /// The first byte at or after `i` that is not JSON whitespace.
    pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    /// `i` at a string's opening quote: the byte after its closing quote.
    fn skip_string(b: &[u8], mut i: usize) -> usize {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        i
    }

    /// `i` at a value's first byte: the byte after the value.
    pub fn skip_value(b: &[u8], i: usize) -> usize {
        match b.get(i) {
            Some(b'"') => skip_string(b, i),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        b'"' => {
                            j = skip_string(b, j);
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return j + 1;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                j
            }
            _ => {
                let mut j = i;
                while j < b.len()
                    && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    j += 1;
                }
                j
            }
        }
    }

    /// `start` at an object's `{`: where the value of its last member named `key` starts (the
    /// one a parsed map keeps).
    pub fn last_member(b: &[u8], start: usize, key: &[u8]) -> Option<usize> {
        let mut found = None;
        let mut i = skip_ws(b, start + 1);
        while i < b.len() && b[i] == b'"' {
            let key_end = skip_string(b, i);
            let name = &b[i..key_end];
            let same = if name.contains(&b'\\') {
                serde_json::from_slice::<String>(name).is_ok_and(|n| n.as_bytes() == key)
            } else {
                &name[1..name.len() - 1] == key
            };
            let colon = skip_ws(b, key_end);
            let value = skip_ws(b, colon + 1);
            if same {
                found = Some(value);
            }
            i = skip_ws(b, skip_value(b, value));
            if b.get(i) == Some(&b',') {
                i = skip_ws(b, i + 1);
            }
        }
        found
    }

    /// `start` at an array's `[`: each element's span.
    pub fn elements(b: &[u8], start: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        if b.get(start) != Some(&b'[') {
            return out;
        }
        let mut i = skip_ws(b, start + 1);
        while i < b.len() && b[i] != b']' {
            let end = skip_value(b, i);
            out.push((i, end));
            i = skip_ws(b, end);
            if b.get(i) == Some(&b',') {
                i = skip_ws(b, i + 1);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    struct Rec<'a> {
        #[serde(default, borrow)]
        a: LStr<'a>,
        #[serde(default)]
        list: LSeq<LObj<Inner<'a>>>,
    }
    #[derive(Debug, Default, serde::Deserialize)]
    struct Inner<'a> {
        #[serde(default, borrow)]
        b: LStr<'a>,
    }

    #[test]
    fn wrong_types_are_absent_and_strings_borrowed() {
        let r: Rec = serde_json::from_str(
            r#"{"a": "x", "z": {"deep": [1, 2]}, "list": [{"b": "y"}, 3, [1], {"b": 7}]}"#,
        )
        .unwrap();
        assert!(matches!(r.a.0, Some(Cow::Borrowed("x"))));
        let list: Vec<_> = r.list.items().collect();
        assert_eq!(list.len(), 4);
        assert_eq!(list[0].0.as_ref().unwrap().b.get(), Some("y"));
        assert!(list[1].0.is_none() && list[2].0.is_none());
        assert_eq!(list[3].0.as_ref().unwrap().b.get(), None);
        let r: Rec = serde_json::from_str(r#"{"a": ["x"], "list": {"b": "y"}}"#).unwrap();
        assert_eq!(r.a.get(), None);
        assert!(r.list.0.is_none());
        let r: Rec = serde_json::from_str(r#"{"a": "esc\u0041ped"}"#).unwrap();
        assert_eq!(r.a.get(), Some("escAped"));
        let e = typed_documents::<Rec>(b"{\"a\": [1,\n", "cut.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cut.json:2:"), "{e}");
    }
}
