//! Canonical JSON as TUF signs it (OLPC canonical JSON, as securesystemslib encodes it).
//!
//! Written as a `serde_json` formatter rather than taken from a crate: olpc-cjson was measured about
//! 50x slower than serde_json (see ARCHITECTURE.md), while a formatter keeps serde_json's own speed.
//! The model types serialize their fields in sorted order themselves (see [`SortedFields`]) and
//! every map in the model is a `BTreeMap`, so no re-sorting pass is needed. The rules:
//! no insignificant whitespace; object keys sorted by code point; strings escape only `"` and `\`,
//! every other character is written as is; integers only (a float is an error).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;

use serde::Serialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde_json::ser::{CharEscape, Formatter};

use crate::error::{Error, Result};

struct CanonicalFormatter;

impl Formatter for CanonicalFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, _: &mut W, value: f64) -> io::Result<()> {
        Err(io::Error::other(format!(
            "{value} is not an integer; canonical JSON has no floats"
        )))
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, value.into())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        let raw: &[u8] = match char_escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\x08",
            CharEscape::FormFeed => b"\x0c",
            CharEscape::LineFeed => b"\n",
            CharEscape::CarriageReturn => b"\r",
            CharEscape::Tab => b"\t",
            CharEscape::AsciiControl(byte) => return writer.write_all(&[byte]),
        };
        writer.write_all(raw)
    }
}

/// Serializes `value` as canonical JSON bytes: the bytes TUF signatures are made over.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    write_canonical(&mut out, value)?;
    Ok(out)
}

/// Writes `value` as canonical JSON into `out`.
pub fn write_canonical<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(out, CanonicalFormatter);
    value
        .serialize(&mut serializer)
        .map_err(|e| Error::Canonical(e.to_string()))
}

/// Serializes a struct's known fields merged, in sorted key order, with the unrecognized fields it
/// kept from parsing, so that metadata from other implementations re-serializes to the exact bytes
/// that were signed.
///
/// Known fields must be given in ascending key order; unrecognized fields never share a name with
/// a known one because parsing routes known names to their fields.
pub(crate) struct SortedFields<'a, M> {
    map: M,
    unrecognized:
        std::iter::Peekable<std::collections::btree_map::Iter<'a, String, serde_json::Value>>,
    #[cfg(debug_assertions)]
    last: &'static str,
}

impl<'a, M: SerializeMap> SortedFields<'a, M> {
    pub(crate) fn new(map: M, unrecognized: &'a BTreeMap<String, serde_json::Value>) -> Self {
        SortedFields {
            map,
            unrecognized: unrecognized.iter().peekable(),
            #[cfg(debug_assertions)]
            last: "",
        }
    }

    pub(crate) fn field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                self.last < name,
                "fields out of order: {} then {name}",
                self.last
            );
            self.last = name;
        }
        while let Some((key, extra)) = self.unrecognized.next_if(|(key, _)| key.as_str() < name) {
            self.map.serialize_entry(key, extra)?;
        }
        self.map.serialize_entry(name, value)
    }

    pub(crate) fn optional<T: Serialize>(
        &mut self,
        name: &'static str,
        value: &Option<T>,
    ) -> Result<(), M::Error> {
        match value {
            Some(value) => self.field(name, value),
            None => Ok(()),
        }
    }

    pub(crate) fn end(mut self) -> Result<M::Ok, M::Error> {
        for (key, extra) in self.unrecognized {
            self.map.serialize_entry(key, extra)?;
        }
        self.map.end()
    }
}

/// Refuses JSON in which an object repeats a key. serde (like most parsers) keeps the last value,
/// python-tuf keeps the last too, other parsers the first: a document that means different things
/// to different verifiers is an attack surface, so it is refused before it is interpreted.
pub fn check_no_duplicate_keys(bytes: &[u8]) -> Result<()> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walked = Walk(&duplicate)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match (walked, duplicate.into_inner()) {
        (_, Some(key)) => Err(Error::DuplicateJsonKey { key }),
        (Err(e), None) => Err(Error::Json(e)),
        (Ok(()), None) => Ok(()),
    }
}

struct Walk<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if seen.contains(&key) {
                *self.0.borrow_mut() = Some(key.into_owned());
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(Walk(self.0))?;
            seen.insert(key);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let value = json!({"b": 1, "a": [true, null, {"d": "x", "c": -2}]});
        assert_eq!(
            to_canonical_bytes(&value).unwrap(),
            br#"{"a":[true,null,{"c":-2,"d":"x"}],"b":1}"#
        );
    }

    #[test]
    fn escapes_only_quote_and_backslash() {
        let value = json!("a\"b\\c\nd\u{1}e/f\u{e9}");
        assert_eq!(
            to_canonical_bytes(&value).unwrap(),
            "\"a\\\"b\\\\c\nd\u{1}e/f\u{e9}\"".as_bytes()
        );
    }

    #[test]
    fn refuses_floats() {
        assert!(matches!(
            to_canonical_bytes(&json!({"x": 1.5})),
            Err(Error::Canonical(_))
        ));
    }

    #[test]
    fn sorts_by_code_point_not_by_utf16() {
        // U+FF61 sorts before U+1F600 by code point (and by UTF-8 bytes) but after it in UTF-16.
        let value = json!({"\u{1F600}": 1, "\u{FF61}": 2, "Z": 3, "_": 4});
        assert_eq!(
            to_canonical_bytes(&value).unwrap(),
            "{\"Z\":3,\"_\":4,\"\u{FF61}\":2,\"\u{1F600}\":1}".as_bytes()
        );
    }

    #[test]
    fn finds_duplicate_keys_at_any_depth() {
        assert!(check_no_duplicate_keys(br#"{"a":1,"b":[{"c":1}]}"#).is_ok());
        match check_no_duplicate_keys(br#"{"a":1,"b":[{"c":1,"c":2}]}"#) {
            Err(Error::DuplicateJsonKey { key }) => assert_eq!(key, "c"),
            other => panic!("expected a duplicate key error, got {other:?}"),
        }
        // Escaped spellings of the same key are the same key.
        assert!(matches!(
            check_no_duplicate_keys(br#"{"a":1,"\u0061":2}"#),
            Err(Error::DuplicateJsonKey { .. })
        ));
    }

    #[test]
    fn malformed_json_is_a_json_error() {
        assert!(matches!(
            check_no_duplicate_keys(b"{\"a\":"),
            Err(Error::Json(_))
        ));
        assert!(matches!(
            check_no_duplicate_keys(b"{} trailing"),
            Err(Error::Json(_))
        ));
    }
}
