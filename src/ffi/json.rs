//! JSON records in: a malformed document (`TESSERA_INVALID_JSON`) told apart from a
//! well-formed one holding a value that is not allowed (`TESSERA_INVALID_ARGUMENT`).
//!
//! The header promises that split: syntax errors and documents of the wrong shape (not an
//! object, an unknown or missing field, a string where a number belongs) are
//! `TESSERA_INVALID_JSON`; an unknown enum value (`"user_id_policy": "lax"`, device type
//! `"fax"`) or a number its field cannot hold (a negative count) is `TESSERA_INVALID_ARGUMENT`.
//! serde_json reports all of the second group and most of the first as one kind of "data"
//! error, distinguishable only by its message text. So a record that fails as a data error is
//! deserialised a second time, from a [`Json`] tree through a deserializer whose error type
//! records *which* `serde::de::Error` constructor the derived code called: `unknown_variant` and
//! `invalid_value` are the invalid-value ones. No message is parsed, and only failing records
//! pay for the second pass. The tree keeps keys in document order and keeps duplicates, so the
//! second pass meets the same first error as serde_json did.

use std::fmt;

use serde::de::value::{MapAccessDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected, Visitor};
use serde::{forward_to_deserialize_any, Deserialize, Deserializer};

use super::boundary::Failure;
use super::status::tessera_status::{TESSERA_INVALID_ARGUMENT, TESSERA_INVALID_JSON};

/// Parses `text` as `T`. Failures name `what` (the parameter) and carry serde_json's message,
/// which has the line and column.
pub(crate) fn from_str<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, Failure> {
    serde_json::from_str(text).map_err(|e| {
        let status = if e.is_data() && is_invalid_value::<T>(text) {
            TESSERA_INVALID_ARGUMENT
        } else {
            TESSERA_INVALID_JSON
        };
        Failure::new(status, format!("{what}: {e}"))
    })
}

/// Whether deserialising the (syntactically valid) `text` as `T` fails on a value that is not
/// allowed rather than on the document's shape.
fn is_invalid_value<T: DeserializeOwned>(text: &str) -> bool {
    match serde_json::from_str::<Json>(text) {
        Ok(tree) => matches!(T::deserialize(tree), Err(ShapeOrValue::Value)),
        Err(_) => false,
    }
}

/// A parsed JSON document that, unlike `serde_json::Value`, keeps object keys in document
/// order and keeps duplicate keys.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
                Json::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(n)
                    .map(Json::Number)
                    .ok_or_else(|| E::invalid_value(Unexpected::Float(n), &self))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Json::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why the second pass failed: the document's shape, or a value not allowed. The derived
/// `Deserialize` code reports through the `serde::de::Error` constructors; the two that mean
/// "this value is not allowed here" are overridden, every other one is the default `custom`.
#[derive(Debug)]
enum ShapeOrValue {
    Shape,
    Value,
}

impl fmt::Display for ShapeOrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never shown: the caller reports serde_json's own message.
        f.write_str(match self {
            ShapeOrValue::Shape => "wrong shape",
            ShapeOrValue::Value => "invalid value",
        })
    }
}

impl std::error::Error for ShapeOrValue {}

impl de::Error for ShapeOrValue {
    fn custom<T: fmt::Display>(_: T) -> ShapeOrValue {
        ShapeOrValue::Shape
    }

    fn invalid_value(_: Unexpected<'_>, _: &dyn de::Expected) -> ShapeOrValue {
        ShapeOrValue::Value
    }

    fn unknown_variant(_: &str, _: &'static [&'static str]) -> ShapeOrValue {
        ShapeOrValue::Value
    }
}

impl IntoDeserializer<'_, ShapeOrValue> for Json {
    type Deserializer = Json;
    fn into_deserializer(self) -> Json {
        self
    }
}

impl<'de> Deserializer<'de> for Json {
    type Error = ShapeOrValue;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeOrValue> {
        match self {
            Json::Null => visitor.visit_unit(),
            Json::Bool(b) => visitor.visit_bool(b),
            Json::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Json::String(s) => visitor.visit_string(s),
            Json::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Json::Object(entries) => {
                let mut map = MapDeserializer::new(entries.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeOrValue> {
        match self {
            Json::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ShapeOrValue> {
        visitor.visit_newtype_struct(self)
    }

    /// serde_json's enum forms: `"variant"`, or `{"variant": content}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ShapeOrValue> {
        match self {
            Json::String(s) => visitor.visit_enum(s.into_deserializer()),
            Json::Object(entries) if entries.len() == 1 => visitor.visit_enum(
                MapAccessDeserializer::new(MapDeserializer::new(entries.into_iter())),
            ),
            _ => Err(ShapeOrValue::Shape),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::NewDevice;
    use crate::ffi::tessera_status;
    use crate::user::{NewUser, UserPatch};

    fn status<T: DeserializeOwned>(text: &str) -> tessera_status {
        match from_str::<T>(text, "x") {
            Ok(_) => tessera_status::TESSERA_OK,
            Err(f) => f.status,
        }
    }

    #[test]
    fn invalid_values_are_invalid_argument() {
        for text in [
            r#"{"device_type": "fax", "push_token": "p"}"#,
            r#"{"device_type": "ios", "push_token": "p", "mode": "debug"}"#,
            // An invalid value after a valid field, and before another error.
            r#"{"push_token": "p", "device_type": "FAX", "nope": 1}"#,
        ] {
            assert_eq!(
                status::<NewDevice>(text),
                TESSERA_INVALID_ARGUMENT,
                "{text}"
            );
        }
        assert_eq!(
            status::<Option<u32>>("-1"),
            TESSERA_INVALID_ARGUMENT,
            "a number its type cannot hold"
        );
        assert_eq!(status::<u8>("256"), TESSERA_INVALID_ARGUMENT);
    }

    #[test]
    fn malformed_or_misshapen_documents_are_invalid_json() {
        for text in [
            "",
            "{",
            "[]",
            "null",
            r#"{"device_type": "ios"}"#,
            r#"{"device_type": "ios", "push_token": "p", "os": 1}"#,
            r#"{"device_type": 5, "push_token": "p"}"#,
            r#"{"device_type": {"ios": 1, "web": 2}, "push_token": "p"}"#,
            r#"{"device_type": "ios", "push_token": "p"} x"#,
            // The shape error comes first, so it is the one reported.
            r#"{"nope": 1, "device_type": "fax", "push_token": "p"}"#,
            // A duplicate field is a shape error even when a value is also bad.
            r#"{"push_token": "p", "push_token": "q", "device_type": "fax"}"#,
        ] {
            assert_eq!(status::<NewDevice>(text), TESSERA_INVALID_JSON, "{text}");
        }
        assert_eq!(status::<u8>("1.5"), TESSERA_INVALID_JSON);
    }

    #[test]
    fn valid_records_parse_through_the_first_pass_unchanged() {
        let u: NewUser = from_str(
            r#"{"user_id": "a", "metadata": {"k": [1, -2, 2.5, null]}}"#,
            "x",
        )
        .unwrap();
        assert_eq!(u.user_id, "a");
        let p: UserPatch = from_str(r#"{"role": null}"#, "x").unwrap();
        assert_eq!(p.role, Some(None));
    }

    /// The second pass reads every form the records use: nested objects and arrays, options,
    /// `null` clearing a field, and both enum forms.
    #[test]
    fn the_second_pass_reads_what_the_first_does() {
        fn same<T: DeserializeOwned + PartialEq + fmt::Debug>(text: &str) {
            let tree: Json = serde_json::from_str(text).unwrap();
            assert_eq!(
                T::deserialize(tree).unwrap(),
                serde_json::from_str::<T>(text).unwrap(),
                "{text}"
            );
        }
        same::<NewUser>(
            r#"{"user_id": "a", "nickname": "A", "tags": ["x", "y"],
                "metadata": {"k": {"n": [1, -2, 2.5, true, null, "s"]}}}"#,
        );
        same::<UserPatch>(r#"{"role": null, "tags": [], "email": "e@x.io"}"#);
        same::<NewDevice>(r#"{"device_type": "web", "push_token": "p", "mode": "sandbox"}"#);
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Sync {
            Durable,
            RelaxedMs(u64),
        }
        same::<Vec<Sync>>(r#"["durable", {"relaxed_ms": 5}]"#);
        assert_eq!(
            status::<Sync>(r#"{"relaxed_ms": -5}"#),
            TESSERA_INVALID_ARGUMENT
        );
        assert_eq!(status::<Sync>(r#""sometimes""#), TESSERA_INVALID_ARGUMENT);
        assert_eq!(status::<Sync>(r#"{"a": 1, "b": 2}"#), TESSERA_INVALID_JSON);
    }
}
