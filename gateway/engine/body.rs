//! Reading fields out of an upstream body: JSON paths and XML paths, each parsed at most once
//! per response, on first use.
//!
//! JSON: a pointer (`/error/code`) or a dotted path (`error.code`); a key is looked up exactly
//! first, then without regard to ASCII case (vendors disagree on `Message` vs `message`).
//! `null` counts as absent. XML: `Error/@Message`, `Error/Message`, `*/Href`; namespaces and
//! prefixes are ignored and names compare without regard to ASCII case.

use std::borrow::Cow;
use std::cell::OnceCell;

use quick_xml::events::Event;
use serde_json::Value;

/// A compiled JSON path: the list of keys / indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    pub fn compile(s: &str) -> Result<JsonPath, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty JSON path".into());
        }
        let parts: Vec<String> = if let Some(p) = s.strip_prefix('/') {
            p.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
        } else {
            s.split('.').map(str::to_owned).collect()
        };
        if parts.iter().any(String::is_empty) {
            return Err(format!("`{s}` has an empty segment"));
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
    pub fn compile(s: &str) -> Result<XmlPath, String> {
        let s = s.trim().trim_start_matches('/');
        let mut elements: Vec<String> = Vec::new();
        let mut attribute = None;
        for (i, seg) in s.split('/').enumerate() {
            if seg.is_empty() {
                return Err(format!("`{s}` has an empty segment"));
            }
            if let Some(a) = seg.strip_prefix('@') {
                if i != s.split('/').count() - 1 || a.is_empty() {
                    return Err(format!("`{s}`: an @attribute may only end the path"));
                }
                attribute = Some(local(a).to_owned());
            } else {
                elements.push(local(seg).to_owned());
            }
        }
        if elements.is_empty() {
            return Err(format!("`{s}` names no element"));
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
    /// Parses a document; `None` if it is not well-formed XML with one root element.
    pub fn parse(bytes: &[u8]) -> Option<XmlNode> {
        let mut reader = quick_xml::Reader::from_reader(bytes);
        reader.config_mut().trim_text(true);
        let mut stack: Vec<XmlNode> = Vec::new();
        let mut root = None;
        let mut buf = Vec::new();
        loop {
            match reader.read_event_into(&mut buf).ok()? {
                Event::Start(e) => stack.push(Self::open(&e)?),
                Event::Empty(e) => {
                    let node = Self::open(&e)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root = Some(node),
                    }
                }
                Event::End(_) => {
                    let node = stack.pop()?;
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
                        let text = quick_xml::escape::unescape(&format!("&{name};")).ok()?.into_owned();
                        top.text.push_str(&text);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if !stack.is_empty() {
            return None;
        }
        root
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

/// A body, with its JSON and XML readings computed on first use.
pub struct BodyDoc<'a> {
    bytes: &'a [u8],
    json: OnceCell<Option<Value>>,
    xml: OnceCell<Option<XmlNode>>,
}

impl<'a> BodyDoc<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BodyDoc {
            bytes,
            json: OnceCell::new(),
            xml: OnceCell::new(),
        }
    }

    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.bytes).ok())
            .as_ref()
    }

    pub fn xml(&self) -> Option<&XmlNode> {
        self.xml.get_or_init(|| XmlNode::parse(self.bytes)).as_ref()
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
}
