//! Decoding a submission's body into raw fields: the urlencoded form body
//! and the API's JSON body, `{"fields": {name: value, ...}}`. Both yield the
//! same list of `(name, RawValue)` pairs for the validator in
//! `submission.rs`; neither checks anything against a form. Values go
//! straight into [`Zeroizing`] buffers, and an error never quotes the body.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use super::{MAX_RAW_FIELDS, RawValue, Rejection};

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn decode_urlencoded(body: &[u8]) -> Result<Vec<(String, RawValue)>, Rejection> {
    let mut out = Vec::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        if out.len() == MAX_RAW_FIELDS {
            return Err(Rejection::TooManyFields);
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        let name = percent_decode(name)?;
        let value = percent_decode(value)?;
        out.push((name.to_string(), RawValue::Text(value)));
    }
    Ok(out)
}

/// `+` to space and `%XX` to a byte (a `%` not followed by two hex digits is
/// kept, as browsers do), then UTF-8.
fn percent_decode(s: &[u8]) -> Result<Zeroizing<String>, Rejection> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(s.len()));
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        let hex = |c: u8| (c as char).to_digit(16);
        match b {
            b'+' => bytes.push(b' '),
            b'%' => match (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    bytes.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => bytes.push(b'%'),
            },
            _ => bytes.push(b),
        }
        i += 1;
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(Rejection::InvalidUtf8)
        }
    }
}

/// Decodes the API's JSON body, `{"fields": {name: value, ...}}`.
pub fn decode_json(body: &[u8]) -> Result<Vec<(String, RawValue)>, Rejection> {
    match serde_json::from_slice::<JsonBody>(body) {
        Ok(b) => Ok(b.fields.0),
        Err(e) if e.to_string().starts_with(TOO_MANY) => Err(Rejection::TooManyFields),
        Err(e) => Err(Rejection::Malformed(match e.classify() {
            serde_json::error::Category::Eof => "the JSON ends too early",
            serde_json::error::Category::Syntax => "not valid JSON (or not UTF-8)",
            serde_json::error::Category::Data => "expected an object {\"fields\": {name: value}}",
            serde_json::error::Category::Io => "unreadable body",
        })),
    }
}

const TOO_MANY: &str = "sealform: too many fields";

/// The API body, `{"fields": {...}}` and nothing else. Written by hand
/// because serde's derived struct impl also accepts a JSON array
/// (`[{...}]` would be read as a one-element tuple of the struct's fields).
struct JsonBody {
    fields: JsonFields,
}

impl<'de> Deserialize<'de> for JsonBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonBody;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object {\"fields\": {...}}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonBody, A::Error> {
                let mut fields = None;
                // The key is not echoed in the error: it is client-chosen.
                while let Some(key) = map.next_key::<String>()? {
                    let key = Zeroizing::new(key);
                    if key.as_str() != "fields" {
                        return Err(de::Error::custom("unknown top-level key"));
                    }
                    if fields.is_some() {
                        return Err(de::Error::custom("duplicate top-level key"));
                    }
                    fields = Some(map.next_value::<JsonFields>()?);
                }
                match fields {
                    Some(fields) => Ok(JsonBody { fields }),
                    None => Err(de::Error::missing_field("fields")),
                }
            }
        }
        d.deserialize_map(V)
    }
}

struct JsonFields(Vec<(String, RawValue)>);

impl<'de> Deserialize<'de> for JsonFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonFields, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.len() == MAX_RAW_FIELDS {
                        return Err(de::Error::custom(TOO_MANY));
                    }
                    let value: JsonValue = map.next_value()?;
                    out.push((name, value.0));
                }
                Ok(JsonFields(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct JsonValue(RawValue);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonValue, E> {
                Ok(JsonValue(RawValue::Text(Zeroizing::new(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<JsonValue, E> {
                Ok(JsonValue(RawValue::Text(Zeroizing::new(v))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsonValue, E> {
                Ok(JsonValue(RawValue::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<JsonValue, E> {
                Ok(JsonValue(RawValue::Other))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<JsonValue, E> {
                Ok(JsonValue(RawValue::Other))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsonValue, E> {
                Ok(JsonValue(RawValue::Other))
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonValue, E> {
                Ok(JsonValue(RawValue::Other))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonValue(RawValue::Other))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonValue(RawValue::Other))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::Submission;
    use crate::submission::tests::form;

    #[test]
    fn urlencoded_values_are_percent_and_plus_decoded() {
        let raw = decode_urlencoded(b"msg=a+b%20c%C3%A9%&x=%2").expect("decode");
        let RawValue::Text(v) = &raw[0].1 else {
            panic!("text")
        };
        assert_eq!(&**v, "a b c\u{e9}%");
        let RawValue::Text(v) = &raw[1].1 else {
            panic!("text")
        };
        assert_eq!(&**v, "%2");
    }

    #[test]
    fn json_bodies_decode_strings_and_booleans_and_flag_other_types() {
        let raw = decode_json(br#"{"fields": {"msg": "hi \u00e9", "ok": true, "name": 3}}"#)
            .expect("decode");
        assert_eq!(raw.len(), 3);
        let err = Submission::validate(&form(), raw).err();
        assert_eq!(err, Some(Rejection::WrongType("name".into())));
        assert!(matches!(
            decode_json(b"{\"fields\": []}"),
            Err(Rejection::Malformed(_))
        ));
        assert!(matches!(
            decode_json(b"{\"fields\": {}, \"x\": 1}"),
            Err(Rejection::Malformed(_))
        ));
        for not_an_object in [
            &br#"[{"fields": {"msg": "hi"}}]"#[..],
            br#"[{"msg": "hi"}]"#,
            br#"{"fields": {"msg": "hi"}, "fields": {}}"#,
            br#"{}"#,
            b"null",
        ] {
            assert!(
                matches!(decode_json(not_an_object), Err(Rejection::Malformed(_))),
                "{}",
                String::from_utf8_lossy(not_an_object)
            );
        }
        assert!(matches!(
            decode_json(b"{\"fields\": {"),
            Err(Rejection::Malformed(_))
        ));
        let dup = decode_json(br#"{"fields": {"msg": "a", "msg": "b"}}"#).expect("decode");
        assert_eq!(
            Submission::validate(&form(), dup).err(),
            Some(Rejection::DuplicateField("msg".into()))
        );
    }
}
