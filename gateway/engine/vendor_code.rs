//! Finding a vendor's own error code (and message) in an error body, for unmatched-response
//! discovery and `statusgate suggest`: the first of a fixed list of JSON paths or XML paths that
//! holds a scalar, read with the engine's bounded body readers and written in the rule
//! language's own path syntax (so a suggestion can match on it as found). Pure: bytes in.

use super::body::{BodyDoc, JsonPath, XmlPath, DEFAULT_BODY_DEPTH};

/// The JSON paths tried, in order: Huawei's `error_code`, Veeam's `errorCode`, ForgeRock's and
/// Oracle's `code` (top level, then nested under `error` and in the first of `errors`).
/// Key lookups fall back to any letter case (`/code` finds `Code`), as rules do.
pub const JSON_FIELDS: [&str; 9] = [
    "/error_code",
    "/errorCode",
    "/code",
    "/error/code",
    "/error/error_code",
    "/error/errorCode",
    "/errors/0/code",
    "/errors/0/errorCode",
    "/status_code",
];

/// The XML paths tried, in order: the root element's `StatusCode` (Veeam), `ErrorCode` or
/// `Code` attribute, then a `Code`, `ErrorCode` or `error_code` child element.
pub const XML_FIELDS: [&str; 6] = [
    "*/@StatusCode",
    "*/@ErrorCode",
    "*/@Code",
    "*/Code",
    "*/ErrorCode",
    "*/error_code",
];

/// Where a message a problem's `detail` may quote is usually found.
pub const JSON_MESSAGES: [&str; 7] = [
    "/error_msg",
    "/message",
    "/errorMessage",
    "/msg",
    "/detail",
    "/error_description",
    "/error/message",
];
pub const XML_MESSAGES: [&str; 3] = ["*/@Message", "*/Message", "*/message"];

/// Longest code kept (longer values are not codes but messages).
pub const MAX_CODE_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    Json,
    Xml,
}

impl BodyKind {
    /// The rule key (`json:` or `xml:`) and the template prefix (`${json:...}`).
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Json => "json",
            BodyKind::Xml => "xml",
        }
    }
}

/// A field found in a body: which reader, the path as a rule writes it, the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    pub kind: BodyKind,
    pub path: &'static str,
    pub value: String,
}

/// How to read a body: JSON or XML by its media type, else by its first non-blank byte.
pub fn kind_of(content_type: Option<&str>, body: &[u8]) -> Option<BodyKind> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.contains("json") {
        return Some(BodyKind::Json);
    }
    if ct.contains("xml") {
        return Some(BodyKind::Xml);
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') => Some(BodyKind::Json),
        Some(b'<') => Some(BodyKind::Xml),
        _ => None,
    }
}

fn first_of(doc: &BodyDoc<'_>, kind: BodyKind, paths: &[&'static str]) -> Option<Field> {
    // Every path of the lists compiles (the tests say so); one that did not would be skipped.
    for &path in paths {
        let text = match kind {
            BodyKind::Json => JsonPath::compile(path).ok().and_then(|p| match doc.json_value(&p) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => Some(v.to_string()),
                _ => None,
            }),
            BodyKind::Xml => XmlPath::compile(path)
                .ok()
                .and_then(|p| doc.xml_text(&p).map(str::to_owned)),
        };
        match text {
            Some(t) if !t.trim().is_empty() && t.len() <= MAX_CODE_LEN => return Some(Field { kind, path, value: t }),
            _ => {}
        }
    }
    None
}

fn lookup(content_type: Option<&str>, body: &[u8], json: &[&'static str], xml: &[&'static str]) -> Option<Field> {
    let kind = kind_of(content_type, body)?;
    let doc = BodyDoc::with_depth(body, DEFAULT_BODY_DEPTH);
    match kind {
        BodyKind::Json if doc.json().is_some() => first_of(&doc, kind, json),
        BodyKind::Xml if doc.xml().is_some() => first_of(&doc, kind, xml),
        _ => None,
    }
}

/// The vendor code of an error body: the first of `JSON_FIELDS` or `XML_FIELDS` (by the body's
/// kind) that holds a non-empty scalar of at most `MAX_CODE_LEN` bytes.
pub fn vendor_code(content_type: Option<&str>, body: &[u8]) -> Option<Field> {
    lookup(content_type, body, &JSON_FIELDS, &XML_FIELDS)
}

/// A message field (`JSON_MESSAGES`, `XML_MESSAGES`) of an error body, if any.
pub fn message(content_type: Option<&str>, body: &[u8]) -> Option<Field> {
    let kind = kind_of(content_type, body)?;
    let doc = BodyDoc::with_depth(body, DEFAULT_BODY_DEPTH);
    let paths: &[&'static str] = match kind {
        BodyKind::Json => &JSON_MESSAGES,
        BodyKind::Xml => &XML_MESSAGES,
    };
    paths.iter().find_map(|&path| {
        let found = match kind {
            BodyKind::Json => JsonPath::compile(path)
                .ok()
                .and_then(|p| doc.json_value(&p).map(serde_json::Value::is_string))
                .unwrap_or(false),
            BodyKind::Xml => XmlPath::compile(path).ok().is_some_and(|p| doc.xml_text(&p).is_some()),
        };
        found.then(|| Field {
            kind,
            path,
            value: String::new(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(ct: &str, body: &str) -> Option<(&'static str, String)> {
        vendor_code(Some(ct), body.as_bytes()).map(|f| (f.path, f.value))
    }

    #[test]
    fn each_vendor_dialect_gives_its_code_and_the_path_a_rule_would_use() {
        let huawei = r#"{"error_code":"EndPoint.0022","error_msg":"slow","code":"x"}"#;
        assert_eq!(
            code("application/json", huawei),
            Some(("/error_code", "EndPoint.0022".into()))
        );
        let veeam = r#"{"errorCode":"NotFound","message":"gone"}"#;
        assert_eq!(
            code("application/json; charset=utf-8", veeam),
            Some(("/errorCode", "NotFound".into()))
        );
        let crest = r#"{"code":409,"reason":"Conflict","message":"exists"}"#;
        assert_eq!(code("application/json", crest), Some(("/code", "409".into())));
        let nested = r#"{"error":{"code":"E1","message":"m"}}"#;
        assert_eq!(code("application/json", nested), Some(("/error/code", "E1".into())));
        let xml = r#"<Error Message="m" StatusCode="NotFound"/>"#;
        assert_eq!(code("application/xml", xml), Some(("*/@StatusCode", "NotFound".into())));
        let child = "<fault><Code>F-1</Code></fault>";
        assert_eq!(code("text/xml", child), Some(("*/Code", "F-1".into())));
    }

    #[test]
    fn no_code_in_text_in_broken_json_in_structures_or_in_messages_posing_as_codes() {
        assert_eq!(code("text/html", "<html><body>oops"), None);
        assert_eq!(code("application/json", r#"{"error_code":"E"#), None);
        assert_eq!(code("application/json", r#"{"code":{"a":1}}"#), None);
        assert_eq!(
            code("application/json", &format!(r#"{{"code":"{}"}}"#, "x".repeat(200))),
            None
        );
        assert_eq!(code("text/plain", "no body kind"), None);
    }

    #[test]
    fn every_listed_path_compiles() {
        for p in JSON_FIELDS.iter().chain(&JSON_MESSAGES) {
            assert!(JsonPath::compile(p).is_ok(), "{p}");
        }
        for p in XML_FIELDS.iter().chain(&XML_MESSAGES) {
            assert!(XmlPath::compile(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn the_message_field_is_found_by_kind() {
        let m = message(Some("application/json"), br#"{"error_code":"E","error_msg":"m"}"#).unwrap();
        assert_eq!((m.kind, m.path), (BodyKind::Json, "/error_msg"));
        let m = message(Some("application/xml"), br#"<Error Message="m"/>"#).unwrap();
        assert_eq!(m.path, "*/@Message");
    }
}
