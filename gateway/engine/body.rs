//! Reading fields out of an upstream body: JSON paths and XML paths, each parsed at most once
//! per response, on first use.
//!
//! JSON: a pointer (`/error/code`) or a dotted path (`error.code`); a key is looked up exactly
//! first, then without regard to ASCII case (vendors disagree on `Message` vs `message`).
//! `null` counts as absent. XML: `Error/@Message`, `Error/Message`, `*/Href`; namespaces and
//! prefixes are ignored and names compare without regard to ASCII case.
//!
//! Both readers are bounded by construction: the body is already capped in size
//! (`body_buffer`), and nesting is capped in depth (`body_depth`, at most `MAX_BODY_DEPTH`).
//! XML stops at the first element past the limit; JSON is pre-scanned (strings and escapes
//! understood) before serde_json sees it. A JSON body that is not valid UTF-8 is read after a
//! lossy decode (each invalid sequence becomes U+FFFD), so one bad byte does not hide the error
//! code next to it.

use std::borrow::Cow;
use std::cell::OnceCell;

use quick_xml::events::Event;
use serde_json::Value;

use super::BodySkip;

/// Default nesting limit of the body readers (`limits.body_depth`).
pub const DEFAULT_BODY_DEPTH: usize = 64;

/// The largest `body_depth` accepted: under serde_json's own recursion limit (128), so one
/// limit means the same for both readers, and small enough that dropping a tree this deep
/// never comes near a thread's stack.
pub const MAX_BODY_DEPTH: usize = 100;

/// Why a reader produced no document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Nested deeper than the limit.
    TooDeep,
    /// Not well-formed (or not this format at all).
    Malformed,
}

/// Why a JSON or XML path does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyPathError {
    #[error("empty JSON path")]
    EmptyJson,
    #[error("`{0}` has an empty segment")]
    EmptySegment(String),
    #[error("`{0}`: an @attribute may only end the path")]
    AttributeNotLast(String),
    #[error("`{0}` names no element")]
    NoElement(String),
}

/// A compiled JSON path: the list of keys / indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    pub fn compile(s: &str) -> Result<JsonPath, BodyPathError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(BodyPathError::EmptyJson);
        }
        let parts: Vec<String> = if let Some(p) = s.strip_prefix('/') {
            p.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
        } else {
            s.split('.').map(str::to_owned).collect()
        };
        if parts.iter().any(String::is_empty) {
            return Err(BodyPathError::EmptySegment(s.to_owned()));
        }
        Ok(JsonPath(parts))
    }

    pub fn lookup<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut cur = root;
        for key in &self.0 {
            cur = match cur {
                Value::Object(map) => match map.get(key.as_str()) {
                    Some(v) => v,
                    None => map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)?,
                },
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        (!cur.is_null()).then_some(cur)
    }
}

/// A compiled XML path: element local names from the root, optionally ending in an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlPath {
    elements: Vec<String>,
    attribute: Option<String>,
}

impl XmlPath {
    pub fn compile(s: &str) -> Result<XmlPath, BodyPathError> {
        let s = s.trim().trim_start_matches('/');
        let mut elements: Vec<String> = Vec::new();
        let mut attribute = None;
        for (i, seg) in s.split('/').enumerate() {
            if seg.is_empty() {
                return Err(BodyPathError::EmptySegment(s.to_owned()));
            }
            if let Some(a) = seg.strip_prefix('@') {
                if i != s.split('/').count() - 1 || a.is_empty() {
                    return Err(BodyPathError::AttributeNotLast(s.to_owned()));
                }
                attribute = Some(local(a).to_owned());
            } else {
                elements.push(local(seg).to_owned());
            }
        }
        if elements.is_empty() {
            return Err(BodyPathError::NoElement(s.to_owned()));
        }
        Ok(XmlPath { elements, attribute })
    }
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// A parsed XML element; only what paths need.
#[derive(Debug, Default)]
pub struct XmlNode {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<XmlNode>,
}

impl XmlNode {
    /// Parses a document with the default depth limit; `None` if it is not well-formed XML
    /// with one root element, or nests deeper than `DEFAULT_BODY_DEPTH`.
    pub fn parse(bytes: &[u8]) -> Option<XmlNode> {
        Self::parse_bounded(bytes, DEFAULT_BODY_DEPTH).ok()
    }

    /// Parses a document whose elements nest at most `depth` levels (the root is level 1;
    /// `depth` is capped at `MAX_BODY_DEPTH`). Stops at the first element past the limit.
    pub fn parse_bounded(bytes: &[u8], depth: usize) -> Result<XmlNode, Unreadable> {
        let depth = depth.min(MAX_BODY_DEPTH);
        let mut reader = quick_xml::Reader::from_reader(bytes);
        reader.config_mut().trim_text(true);
        let mut stack: Vec<XmlNode> = Vec::new();
        let mut root = None;
        let mut buf = Vec::new();
        let bad = Unreadable::Malformed;
        loop {
            let event = reader.read_event_into(&mut buf).map_err(|_| bad)?;
            if matches!(event, Event::Start(_) | Event::Empty(_)) && stack.len() >= depth {
                return Err(Unreadable::TooDeep);
            }
            match event {
                Event::Start(e) => stack.push(Self::open(&e).ok_or(bad)?),
                Event::Empty(e) => {
                    let node = Self::open(&e).ok_or(bad)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root = Some(node),
                    }
                }
                Event::End(_) => {
                    let node = stack.pop().ok_or(bad)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root = Some(node),
                    }
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        let raw = String::from_utf8_lossy(t.as_ref()).into_owned();
                        let text = quick_xml::escape::unescape(&raw).map(Cow::into_owned).unwrap_or(raw);
                        top.text.push_str(&text);
                    }
                }
                Event::CData(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&String::from_utf8_lossy(t.as_ref()));
                    }
                }
                Event::GeneralRef(r) => {
                    if let Some(top) = stack.last_mut() {
                        let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                        let text = quick_xml::escape::unescape(&format!("&{name};"))
                            .map_err(|_| bad)?
                            .into_owned();
                        top.text.push_str(&text);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if !stack.is_empty() {
            return Err(bad);
        }
        root.ok_or(bad)
    }

    fn open(e: &quick_xml::events::BytesStart<'_>) -> Option<XmlNode> {
        let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.ok()?;
            let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
            if a.key.as_ref().starts_with(b"xmlns") {
                continue;
            }
            let value = a.unescape_value().ok()?.into_owned();
            attrs.push((key, value));
        }
        Some(XmlNode {
            name,
            attrs,
            ..XmlNode::default()
        })
    }

    pub fn lookup(&self, path: &XmlPath) -> Option<&str> {
        let (first, rest) = path.elements.split_first()?;
        if !(first == "*" || self.name.eq_ignore_ascii_case(first)) {
            return None;
        }
        let mut cur = self;
        for seg in rest {
            cur = cur
                .children
                .iter()
                .find(|c| seg == "*" || c.name.eq_ignore_ascii_case(seg))?;
        }
        match &path.attribute {
            Some(a) => cur
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(a))
                .map(|(_, v)| v.as_str()),
            None => Some(cur.text.as_str()),
        }
    }
}

/// Whether a JSON text nests arrays and objects deeper than `limit` (the outermost is level
/// 1). Brackets inside strings do not count. Linear, no allocation.
pub fn json_too_deep(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Reads JSON with nesting at most `depth` (capped at `MAX_BODY_DEPTH`); invalid UTF-8 is
/// decoded lossily. serde_json itself stops at 128 levels (below any stack limit), so the bytes
/// are parsed first and the depth checked on the value; the byte scan and the lossy decode run
/// only when the parse fails (the common path stays one pass).
pub fn parse_json_bounded(bytes: &[u8], depth: usize) -> Result<Value, Unreadable> {
    let limit = depth.min(MAX_BODY_DEPTH);
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if value_too_deep(&v, limit) => Err(Unreadable::TooDeep),
        Ok(v) => Ok(v),
        Err(_) if json_too_deep(bytes, limit) => Err(Unreadable::TooDeep),
        Err(_) if std::str::from_utf8(bytes).is_err() => {
            serde_json::from_str(&String::from_utf8_lossy(bytes)).map_err(|_| Unreadable::Malformed)
        }
        Err(_) => Err(Unreadable::Malformed),
    }
}

/// Whether a parsed value nests arrays and objects deeper than `limit` (the outermost is level
/// 1, as in `json_too_deep`). Iterative, and allocation-free for flat values (the common
/// error body is one object of scalars).
fn value_too_deep(v: &Value, limit: usize) -> bool {
    fn is_container(v: &Value) -> bool {
        matches!(v, Value::Array(_) | Value::Object(_))
    }
    if !is_container(v) {
        return false;
    }
    if limit == 0 {
        return true;
    }
    let mut stack: Vec<(&Value, usize)> = Vec::new();
    if visit(v, 1, limit, &mut stack) {
        return true;
    }
    while let Some((child, level)) = stack.pop() {
        if visit(child, level, limit, &mut stack) {
            return true;
        }
    }
    false
}

/// Queues `v`'s container children; true as soon as one would be deeper than `limit`.
fn visit<'v>(v: &'v Value, level: usize, limit: usize, stack: &mut Vec<(&'v Value, usize)>) -> bool {
    let children: &mut dyn Iterator<Item = &'v Value> = match v {
        Value::Array(a) => &mut a.iter(),
        Value::Object(o) => &mut o.values(),
        _ => return false,
    };
    for child in children {
        if matches!(child, Value::Array(_) | Value::Object(_)) {
            if level + 1 > limit {
                return true;
            }
            stack.push((child, level + 1));
        }
    }
    false
}

/// A body, with its JSON and XML readings computed on first use.
pub struct BodyDoc<'a> {
    bytes: &'a [u8],
    depth: usize,
    json: OnceCell<Result<Value, Unreadable>>,
    xml: OnceCell<Result<XmlNode, Unreadable>>,
}

impl<'a> BodyDoc<'a> {
    /// A body read with the default depth limit.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self::with_depth(bytes, DEFAULT_BODY_DEPTH)
    }

    pub fn with_depth(bytes: &'a [u8], depth: usize) -> Self {
        BodyDoc {
            bytes,
            depth,
            json: OnceCell::new(),
            xml: OnceCell::new(),
        }
    }

    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| parse_json_bounded(self.bytes, self.depth))
            .as_ref()
            .ok()
    }

    pub fn xml(&self) -> Option<&XmlNode> {
        self.xml
            .get_or_init(|| XmlNode::parse_bounded(self.bytes, self.depth))
            .as_ref()
            .ok()
    }

    /// `TooDeep` if a reader that was used stopped at the depth limit.
    pub fn skip(&self) -> Option<BodySkip> {
        let deep = |r: Option<Unreadable>| r == Some(Unreadable::TooDeep);
        (deep(self.json.get().and_then(|r| r.as_ref().err().copied()))
            || deep(self.xml.get().and_then(|r| r.as_ref().err().copied())))
        .then_some(BodySkip::TooDeep)
    }

    pub fn json_value(&self, path: &JsonPath) -> Option<&Value> {
        path.lookup(self.json()?)
    }

    /// The JSON value as text: strings as is, other scalars and structures as JSON.
    pub fn json_text(&self, path: &JsonPath) -> Option<Cow<'_, str>> {
        Some(match self.json_value(path)? {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_string()),
        })
    }

    pub fn xml_text(&self, path: &XmlPath) -> Option<&str> {
        self.xml()?.lookup(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let body = br#"{"error_code":"EndPoint.0022","Message":"m","n":null,"a":[{"b":3}]}"#;
        let doc = BodyDoc::new(body);
        let p = JsonPath::compile("/error_code").unwrap();
        assert_eq!(doc.json_text(&p).as_deref(), Some("EndPoint.0022"));
        assert_eq!(
            doc.json_text(&JsonPath::compile("message").unwrap()).as_deref(),
            Some("m")
        );
        assert_eq!(doc.json_text(&JsonPath::compile("n").unwrap()), None);
        assert_eq!(
            doc.json_text(&JsonPath::compile("a.0.b").unwrap()).as_deref(),
            Some("3")
        );
        assert!(JsonPath::compile("a..b").is_err());
        assert_eq!(BodyDoc::new(b"not json").json_text(&p), None);
    }

    #[test]
    fn xml_paths_ignore_namespaces_and_case() {
        let body = br#"<v:Error xmlns:v="http://www.veeam.com/ent/v1.0" Message="Object &amp; reference" StatusCode="500"><v:StackTrace>   at Veeam.Backup</v:StackTrace></v:Error>"#;
        let doc = BodyDoc::new(body);
        assert_eq!(
            doc.xml_text(&XmlPath::compile("Error/@Message").unwrap()),
            Some("Object & reference")
        );
        assert_eq!(
            doc.xml_text(&XmlPath::compile("error/@statuscode").unwrap()),
            Some("500")
        );
        assert_eq!(
            doc.xml_text(&XmlPath::compile("Error/StackTrace").unwrap()),
            Some("at Veeam.Backup")
        );
        assert_eq!(doc.xml_text(&XmlPath::compile("Task/@Href").unwrap()), None);
        assert!(XmlPath::compile("Error/@a/b").is_err());
        assert!(BodyDoc::new(b"<a><b></a>").xml().is_none());
    }

    #[test]
    fn xml_deeper_than_the_limit_is_too_deep_and_at_the_limit_is_read() {
        let doc = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(XmlNode::parse_bounded(doc(3).as_bytes(), 3).is_ok());
        assert_eq!(
            XmlNode::parse_bounded(doc(4).as_bytes(), 3).unwrap_err(),
            Unreadable::TooDeep
        );
        assert_eq!(
            XmlNode::parse_bounded(b"<a><a><a/></a></a>", 2).unwrap_err(),
            Unreadable::TooDeep,
            "an empty element is a level too"
        );
        let deep = doc(30_000);
        let body = BodyDoc::new(deep.as_bytes());
        assert!(body.xml().is_none());
        assert_eq!(body.skip(), Some(BodySkip::TooDeep));
    }

    #[test]
    fn json_depth_is_checked_outside_strings_only() {
        assert!(!json_too_deep(br#"{"a":"[[[[[[\"[[["}"#, 1));
        assert!(json_too_deep(br#"{"a":[[1]]}"#, 2));
        assert!(!json_too_deep(br#"{"a":[[1]]}"#, 3));
        let deep = "[".repeat(30_000);
        let body = BodyDoc::new(deep.as_bytes());
        assert!(body.json().is_none());
        assert_eq!(body.skip(), Some(BodySkip::TooDeep));
        let malformed = BodyDoc::new(b"{nope");
        assert!(malformed.json().is_none());
        assert_eq!(malformed.skip(), None, "malformed is not too deep");
    }

    #[test]
    fn invalid_utf8_in_json_is_read_lossily() {
        let doc = BodyDoc::new(b"{\"code\":\"E1\",\"msg\":\"a\xffb\"}");
        assert_eq!(
            doc.json_text(&JsonPath::compile("code").unwrap()).as_deref(),
            Some("E1")
        );
        assert_eq!(
            doc.json_text(&JsonPath::compile("msg").unwrap()).as_deref(),
            Some("a\u{fffd}b")
        );
    }
}
