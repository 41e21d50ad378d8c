//! The schema of rule files as operators write them (canonical profile, vendor profiles with
//! their rules and examples, and the value types they share with the main file): serde types
//! only, every struct rejects unknown keys. `CompiledProfile::compile` gives them meaning.
//! Each also derives `JsonSchema` (`statusgate schema`): a `Spanned<T>` field is described as
//! its `T` (`#[schemars(with = ...)]`), and the hand-written visitors' schemas are in
//! `spec_schema.rs`.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// `rules/canonical.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCanonical {
    #[schemars(with = "BTreeMap<u16, RawCanonicalStatus>")]
    pub statuses: BTreeMap<u16, Spanned<RawCanonicalStatus>>,
    pub fallback: RawFallback,
    /// Problem types of the errors the gateway answers itself, by failure kind.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawProblemType>")]
    pub gateway_problems: BTreeMap<String, Spanned<RawProblemType>>,
    /// `Retry-After` on the errors the gateway answers itself, by status: only 503 and 504, a
    /// whole number of seconds (`503: 5s`). Sent only when the problem is `retryable` (a 504 to
    /// a POST gets none); absent when the status is not listed.
    #[serde(default)]
    #[schemars(with = "BTreeMap<u16, crate::spec_schema::Duration>")]
    pub gateway_retry_after: BTreeMap<u16, Spanned<String>>,
    /// The filter applied to every problem member rendered from upstream data.
    #[serde(default)]
    pub redaction: RawRedaction,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCanonicalStatus {
    /// Standard reason phrase.
    pub reason: String,
    /// RFC 9457 type; `about:blank` when absent (then the title is the reason phrase).
    #[serde(rename = "type")]
    pub type_uri: Option<String>,
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFallback {
    #[serde(rename = "4xx")]
    #[schemars(with = "u16")]
    pub client: Spanned<u16>,
    #[serde(rename = "5xx")]
    #[schemars(with = "u16")]
    pub server: Spanned<u16>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProblemType {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
}

/// A vendor profile, e.g. `rules/huawei-vpcep.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Who the profile is for; documentation only, like `description`.
    pub vendor: Option<String>,
    /// What the profile corrects; documentation only (statusgate neither checks nor uses it).
    pub description: Option<String>,
    /// Overrides `limits.body_buffer` for this profile.
    #[schemars(with = "Option<ByteSize>")]
    pub body_buffer: Option<Spanned<ByteSize>>,
    /// Overrides `limits.body_depth` for this profile.
    #[schemars(with = "Option<usize>")]
    pub body_depth: Option<Spanned<usize>>,
    /// Response header carrying the vendor's own request id (kept as `vendor_request_id`).
    pub vendor_request_id_header: Option<String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<u16, BTreeMap<String, String>>")]
    pub ensure_headers: BTreeMap<u16, BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    #[schemars(with = "Vec<RawRule>")]
    pub rules: Vec<Spanned<RawRule>>,
    /// Upstream responses with the canonical response expected; checked on every load.
    #[serde(default)]
    pub examples: Vec<RawExample>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExample {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub request: RawExampleRequest,
    pub upstream: RawExampleUpstream,
    pub expect: RawExpect,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExampleRequest {
    /// Default GET.
    pub method: Option<String>,
    /// The path as the upstream sees it (after any prefix strip); default `/`.
    pub path: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExampleUpstream {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    /// `gzip` or `deflate`: the body is sent compressed (stored, uncompressed blocks, so its
    /// raw size is predictable) with that `Content-Encoding`.
    pub encoding: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub status: u16,
    /// The rule expected to match; `none` for the canonical defaults.
    pub rule: Option<String>,
    /// Headers the response must carry, with these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers the response must not carry.
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// Members the problem body must have, with these values (`null`: must be absent).
    #[serde(default)]
    pub problem: BTreeMap<String, serde_json::Value>,
    /// The body must be the upstream body, unchanged.
    #[serde(default)]
    pub body_unchanged: bool,
    /// Text that must not appear anywhere in the response body (e.g. a stack trace).
    #[serde(default)]
    pub body_excludes: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub when: RawWhen,
    #[serde(default)]
    pub then: RawThen,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    #[schemars(with = "Option<OneOrMany<StatusSpec>>")]
    pub status: Option<Spanned<OneOrMany<StatusSpec>>>,
    #[schemars(with = "Option<OneOrMany<String>>")]
    pub method: Option<Spanned<OneOrMany<String>>>,
    /// A glob on the whole upstream path (`/v1/*/vpc-endpoints/**`): `*` matches any run of
    /// characters but `/`, `**` any run including `/` (docs/configuration.md, "Path globs").
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub path_prefix: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ValueMatchSpec>")]
    pub request_headers: BTreeMap<String, Spanned<ValueMatchSpec>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ValueMatchSpec>")]
    pub headers: BTreeMap<String, Spanned<ValueMatchSpec>>,
    /// Media type of the upstream response, parameters ignored (`application/json`, `*/xml`).
    #[schemars(with = "Option<OneOrMany<String>>")]
    pub content_type: Option<Spanned<OneOrMany<String>>>,
    /// JSON pointer (`/error/code`) or dotted path (`error.code`) -> matcher.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ValueMatchSpec>")]
    pub json: BTreeMap<String, Spanned<ValueMatchSpec>>,
    /// XML element path (`Error/Message`), attribute (`Error/@Message`); namespaces ignored.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ValueMatchSpec>")]
    pub xml: BTreeMap<String, Spanned<ValueMatchSpec>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawThen {
    #[schemars(with = "Option<u16>")]
    pub status: Option<Spanned<u16>>,
    #[serde(default)]
    pub problem: RawProblem,
    #[serde(default)]
    pub headers: RawHeaderOps,
    /// Send the upstream body unchanged instead of a problem body.
    #[serde(default)]
    pub keep_body: bool,
    /// The problem's `retryable` member, overriding the default (true for 429 and 503, for
    /// 504 only when the method is idempotent, false otherwise).
    pub retryable: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProblem {
    #[serde(rename = "type")]
    #[schemars(with = "Option<String>")]
    pub type_uri: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub title: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub detail: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub instance: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub vendor_code: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub vendor_request_id: Option<Spanned<String>>,
    /// Extra members; a template that is exactly one `${json:...}` copies the JSON value.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub extensions: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderOps {
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub set: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub add: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub remove: Vec<Spanned<String>>,
}

/// `400`, `"4xx"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusSpec {
    Code(u16),
    Class(u8),
}

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code like 404 or a class like \"4xx\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusSpec, E> {
                match u16::try_from(v) {
                    Ok(c) if (100..=599).contains(&c) => Ok(StatusSpec::Code(c)),
                    _ => Err(E::custom(format!("status {v} is outside 100-599"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusSpec, E> {
                self.visit_u64(u64::try_from(v).map_err(|_| E::custom("negative status"))?)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusSpec, E> {
                let b = v.as_bytes();
                if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && b[1..].eq_ignore_ascii_case(b"xx") {
                    return Ok(StatusSpec::Class(b[0] - b'0'));
                }
                match v.parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("`{v}` is neither a status nor a class like 4xx"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A matcher on one value: a scalar means `equals`; a map gives the operator.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    pub equals: Option<String>,
    pub one_of: Option<Vec<String>>,
    pub regex: Option<String>,
    pub exists: Option<bool>,
    /// Compare `equals`/`one_of` without regard to ASCII case.
    #[serde(default)]
    pub ignore_case: bool,
}

/// Accepts `Value`, `404`, `true` (all meaning `equals`) or the operator map above.
#[derive(Debug, Clone, Default)]
pub struct ValueMatchSpec(pub ValueMatch);

impl<'de> Deserialize<'de> for ValueMatchSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn eq(s: String) -> ValueMatchSpec {
            ValueMatchSpec(ValueMatch {
                equals: Some(s),
                ..ValueMatch::default()
            })
        }
        impl<'de> Visitor<'de> for V {
            type Value = ValueMatchSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value to equal, or a map with equals / one_of / regex / exists / ignore_case")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(eq(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(eq(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(eq(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(eq(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(eq(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ValueMatch::deserialize(de::value::MapAccessDeserializer::new(map)).map(ValueMatchSpec)
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("one value or a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(OneOrMany(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::<E>::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::<E>::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(de::value::I64Deserializer::<E>::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| OneOrMany(vec![t]))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `65536`, `64KiB`, `10MiB`, `1MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 65536, 64KiB or 10MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom("negative size"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                crate::units::parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `redaction:` in the canonical profile (engine/redact.rs says what the builtin set removes).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedaction {
    /// The builtin stack-trace and exception-name filter (default true).
    #[serde(default = "yes")]
    pub builtin: bool,
    /// More regexes; each match is replaced by `replacement`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub patterns: Vec<Spanned<String>>,
    /// What replaced text becomes (default `[redacted]`).
    pub replacement: Option<String>,
}

impl Default for RawRedaction {
    fn default() -> Self {
        RawRedaction {
            builtin: true,
            patterns: Vec::new(),
            replacement: None,
        }
    }
}

fn yes() -> bool {
    true
}
