//! JSON Schema (schemars) of the value types whose `Deserialize` is a hand-written visitor
//! (`StatusSpec`, `ValueMatchSpec`, `OneOrMany`, `ByteSize`) and of the durations, which the raw
//! types keep as text: each says what that visitor or parser accepts, no more, no less, so an
//! editor's completion and `check-jsonschema` agree with the loader. The patterns are the
//! parsers' grammar (`units.rs`, `StatusSpec`); the tests below run both on the same inputs.
//!
//! Semantic checks stay with `statusgate check` (a status in the canonical set, one operator
//! per matcher, a glob that starts with `/`): the schema describes the shape serde accepts.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::spec::{ByteSize, OneOrMany, StatusSpec, ValueMatch, ValueMatchSpec};

/// `units::parse_duration`: digits, then `ms`, `s`, `m` or `h` (surrounding blanks ignored).
pub const DURATION_PATTERN: &str = r"^\s*[0-9]+\s*(ms|s|m|h)\s*$";
/// `units::parse_size` as text: digits, then nothing, `B`, `KiB`, `K`, `MiB`, `M`, `KB` or `MB`.
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*(B|KiB|K|MiB|M|KB|MB)?\s*$";
/// `StatusSpec` as text: a class `4xx` (any case of `x`), or a status 100-599 in digits (Rust's
/// integer parser also takes a leading `+` and zeros).
pub const STATUS_TEXT_PATTERN: &str = r"^([1-5][xX][xX]|\+?0*[1-5][0-9][0-9])$";

/// A duration as operators write it (`250ms`, `1s`, `2m`, `1h`): a schema-only type, named by
/// `#[schemars(with = ...)]` on the raw types' duration fields (which stay `String`).
pub struct Duration;

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a whole number and a unit, ms, s, m or h (250ms, 1s, 2m, 1h).",
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size in bytes: a number (65536), or a number and a unit, B, KiB, K (1024), MiB, M (1024 KiB), KB (1000), MB (1000000): 64KiB, 10MiB, 1MB.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": SIZE_PATTERN },
            ],
        })
    }
}

impl JsonSchema for StatusSpec {
    fn schema_name() -> Cow<'static, str> {
        "StatusSpec".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An HTTP status (100-599) or a status class like \"4xx\".",
            "anyOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": STATUS_TEXT_PATTERN },
            ],
        })
    }
}

impl JsonSchema for ValueMatchSpec {
    fn schema_name() -> Cow<'static, str> {
        "ValueMatchSpec".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let map = generator.subschema_for::<ValueMatch>();
        json_schema!({
            "description": "A value to equal (a string, number or boolean), or a map with one operator: equals, one_of, regex or exists, plus ignore_case.",
            "anyOf": [
                { "type": ["string", "number", "boolean"] },
                map,
            ],
        })
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }

    fn schema_id() -> Cow<'static, str> {
        format!("OneOrMany<{}>", T::schema_id()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<T>();
        json_schema!({
            "description": "One value or a list of them.",
            "anyOf": [
                one.clone(),
                { "type": "array", "items": one },
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{parse_duration, parse_size};
    use serde::de::value::{Error, StrDeserializer};
    use serde::Deserialize;

    fn re(p: &str) -> regex::Regex {
        regex::Regex::new(p).unwrap()
    }

    const TEXTS: &[&str] = &[
        "",
        "0",
        "5",
        "0s",
        "250ms",
        "1s",
        "2m",
        "1h",
        " 3s ",
        "3 s",
        "1d",
        "s",
        "ms",
        "-1s",
        "1.5s",
        "1S",
        "64KiB",
        "64 KiB",
        "10MiB",
        "1MB",
        "1KB",
        "7K",
        "7M",
        "12B",
        "3 parsecs",
        "1GiB",
        "1kib",
        "+5s",
        "400",
        "4xx",
        "4XX",
        "6xx",
        "099",
        "0404",
        "+404",
        "600",
        "100",
        "599",
        "4x",
        "40x",
        " 404",
        "1e3",
    ];

    #[test]
    fn the_duration_pattern_is_the_parser() {
        let p = re(DURATION_PATTERN);
        for t in TEXTS {
            assert_eq!(p.is_match(t), parse_duration(t).is_ok(), "{t:?}");
        }
    }

    #[test]
    fn the_size_pattern_is_the_parser() {
        let p = re(SIZE_PATTERN);
        for t in TEXTS {
            assert_eq!(p.is_match(t), parse_size(t).is_ok(), "{t:?}");
        }
    }

    #[test]
    fn the_status_pattern_is_the_visitor() {
        let p = re(STATUS_TEXT_PATTERN);
        for t in TEXTS {
            let parsed = StatusSpec::deserialize(StrDeserializer::<Error>::new(t)).is_ok();
            assert_eq!(p.is_match(t), parsed, "{t:?}");
        }
    }
}
