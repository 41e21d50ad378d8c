//! The emulators' own small XML reader: a request body parsed into a tree, and the text of the
//! element at a `/`-separated path of local names (namespaces ignored, names case-insensitive).
//! It is bounded (`MAX_DEPTH`) and independent of the gateway's engine on purpose: the
//! emulators stand for the vendors and must not share the code they are used to test.

use quick_xml::events::{BytesStart, Event};

/// Deepest element nesting a document may have (the root is level 1).
pub const MAX_DEPTH: usize = 64;

/// A parsed XML element: its local name, concatenated text and child elements.
#[derive(Debug, Default)]
pub struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    /// Parses a document with one root element; `None` if it is not well-formed or nests
    /// deeper than `MAX_DEPTH`.
    pub fn parse(bytes: &[u8]) -> Option<Element> {
        let mut reader = quick_xml::Reader::from_reader(bytes);
        reader.config_mut().trim_text(true);
        let mut stack: Vec<Element> = Vec::new();
        let mut root = None;
        let mut buf = Vec::new();
        loop {
            let event = reader.read_event_into(&mut buf).ok()?;
            if matches!(event, Event::Start(_) | Event::Empty(_)) && stack.len() >= MAX_DEPTH {
                return None;
            }
            match event {
                Event::Start(e) => stack.push(Self::open(&e)),
                Event::Empty(e) => Self::close(&mut stack, &mut root, Self::open(&e)),
                Event::End(_) => {
                    let node = stack.pop()?;
                    Self::close(&mut stack, &mut root, node);
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        let raw = String::from_utf8_lossy(t.as_ref()).into_owned();
                        match quick_xml::escape::unescape(&raw) {
                            Ok(text) => top.text.push_str(&text),
                            Err(_) => top.text.push_str(&raw),
                        }
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
                        top.text
                            .push_str(&quick_xml::escape::unescape(&format!("&{name};")).ok()?);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if stack.is_empty() {
            root
        } else {
            None
        }
    }

    fn open(e: &BytesStart<'_>) -> Element {
        Element {
            name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
            ..Element::default()
        }
    }

    fn close(stack: &mut [Element], root: &mut Option<Element>, node: Element) {
        match stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None => *root = Some(node),
        }
    }

    /// The text of the element at `path` (`Root/Child/Grandchild`), starting at this element.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        let mut segments = path.split('/');
        if !self.name.eq_ignore_ascii_case(segments.next()?) {
            return None;
        }
        let mut cur = self;
        for seg in segments {
            cur = cur.children.iter().find(|c| c.name.eq_ignore_ascii_case(seg))?;
        }
        Some(&cur.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_of_local_names_finds_unescaped_text() {
        let doc = Element::parse(br#"<v:Spec xmlns:v="urn:x"><v:Name>R&amp;D</v:Name><Other/></v:Spec>"#).unwrap();
        assert_eq!(doc.text_at("Spec/Name"), Some("R&D"));
        assert_eq!(doc.text_at("spec/other"), Some(""));
        assert_eq!(doc.text_at("Spec/Missing"), None);
        assert_eq!(doc.text_at("Other"), None);
    }

    #[test]
    fn malformed_or_too_deep_documents_are_not_parsed() {
        assert!(Element::parse(b"<a><b></a>").is_none());
        assert!(Element::parse(b"").is_none());
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        assert!(Element::parse(deep.as_bytes()).is_none());
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(Element::parse(ok.as_bytes()).is_some());
    }
}
