//! RFC 9457 problem details: the body every canonical error carries, as JSON or XML; and the
//! default of its `retryable` member (RFC 9110 section 9.2.2 idempotency, RFC 6585 429).

use serde_json::Value;

/// Who produced the status: the upstream (possibly rewritten) or the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Upstream,
    Gateway,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Upstream => "upstream",
            Origin::Gateway => "gateway",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProblemBody {
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: Option<String>,
    pub instance: Option<String>,
    pub upstream_status: Option<u16>,
    pub vendor_code: Option<String>,
    pub request_id: String,
    pub vendor_request_id: Option<String>,
    pub origin: Origin,
    /// Whether the client may send the request again (`retryable`, see [`retryable`]).
    pub retryable: bool,
    pub extensions: Vec<(String, Value)>,
}

/// RFC 9110 section 9.2.2: the idempotent methods (PUT, DELETE and the safe ones). Methods are
/// case-sensitive (section 9.1): `get` is not GET.
pub fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

/// The default `retryable` member for a problem with final status `status` answering a request
/// with `method`: 429 and 503 say the request was not acted on, so any method may retry; a 504
/// (the request may have been acted on) and a gateway-made connect failure (`connect_failure`)
/// only for an idempotent method; everything else is false. A rule's `retryable:` overrides it.
pub fn retryable(status: u16, method: &str, connect_failure: bool) -> bool {
    match status {
        429 | 503 => true,
        504 => is_idempotent(method),
        _ => connect_failure && is_idempotent(method),
    }
}

/// The media type of a problem body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemFormat {
    Json,
    Xml,
}

impl ProblemFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ProblemFormat::Json => "application/problem+json",
            ProblemFormat::Xml => "application/problem+xml",
        }
    }

    /// XML when the client's Accept ranks an XML type strictly above every JSON type.
    pub fn negotiate(accept: Option<&str>) -> ProblemFormat {
        let Some(accept) = accept else {
            return ProblemFormat::Json;
        };
        let (mut xml_q, mut json_q) = (0.0f32, 0.0f32);
        for item in accept.split(',') {
            let mut parts = item.split(';');
            // Media types compare without regard to case (RFC 9110 section 8.3.1); no copy.
            let media = parts.next().unwrap_or("").trim();
            let any = |names: &[&str]| names.iter().any(|n| media.eq_ignore_ascii_case(n));
            let q = || {
                parts
                    .filter_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok()))
                    .next()
                    .unwrap_or(1.0)
            };
            if any(&["application/problem+xml", "application/xml", "text/xml"]) {
                xml_q = xml_q.max(q());
            } else if any(&["application/problem+json", "application/json", "*/*", "application/*"]) {
                json_q = json_q.max(q());
            }
        }
        if xml_q > json_q {
            ProblemFormat::Xml
        } else {
            ProblemFormat::Json
        }
    }
}

impl ProblemBody {
    /// The members as a JSON map, the way `to_xml` once made them: the reference its writer is
    /// tested against.
    #[cfg(test)]
    fn members(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), self.type_uri.clone().into());
        m.insert("title".into(), self.title.clone().into());
        m.insert("status".into(), self.status.into());
        if let Some(d) = &self.detail {
            m.insert("detail".into(), d.clone().into());
        }
        if let Some(i) = &self.instance {
            m.insert("instance".into(), i.clone().into());
        }
        if let Some(u) = self.upstream_status {
            m.insert("upstream_status".into(), u.into());
        }
        if let Some(c) = &self.vendor_code {
            m.insert("vendor_code".into(), c.clone().into());
        }
        m.insert("request_id".into(), self.request_id.clone().into());
        if let Some(v) = &self.vendor_request_id {
            m.insert("vendor_request_id".into(), v.clone().into());
        }
        m.insert("origin".into(), self.origin.as_str().into());
        m.insert("retryable".into(), self.retryable.into());
        for (k, v) in &self.extensions {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        m
    }

    pub fn render(&self, format: ProblemFormat) -> Vec<u8> {
        match format {
            ProblemFormat::Json => self.to_json(),
            ProblemFormat::Xml => self.to_xml(),
        }
    }

    /// The JSON body: the bytes `serde_json::to_vec(self)` gives (the same member order and
    /// escaping; a test holds the two equal), written straight into one buffer sized for the
    /// members (exact when no string needs escaping and there are no extensions, so the body
    /// moves into the response without a copy or a second allocation).
    pub fn to_json(&self) -> Vec<u8> {
        let members = self.standard_members();
        // `{` or `,`, two quotes and `:` around each name.
        let size: usize = members
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + 4 + v.len())
            .sum::<usize>()
            + 1;
        let mut out = Vec::with_capacity(size);
        for (i, (name, value)) in members.iter().flatten().enumerate() {
            out.push(if i == 0 { b'{' } else { b',' });
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            value.write(&mut out);
        }
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in &self.extensions {
            if !STANDARD.contains(&k.as_str()) && !seen.contains(&k.as_str()) {
                seen.push(k);
                out.push(b',');
                json_string(&mut out, k);
                out.push(b':');
                if serde_json::to_writer(&mut out, v).is_err() {
                    return Vec::new();
                }
            }
        }
        out.push(b'}');
        out
    }

    /// The standard members in RFC 9457 order, absent optional ones `None`. An array: no
    /// allocation.
    fn standard_members(&self) -> [Option<(&'static str, Scalar<'_>)>; 11] {
        use Scalar::{Bool, Num, Str};
        [
            Some(("type", Str(&self.type_uri))),
            Some(("title", Str(&self.title))),
            Some(("status", Num(self.status))),
            self.detail.as_deref().map(|d| ("detail", Str(d))),
            self.instance.as_deref().map(|i| ("instance", Str(i))),
            self.upstream_status.map(|u| ("upstream_status", Num(u))),
            self.vendor_code.as_deref().map(|c| ("vendor_code", Str(c))),
            Some(("request_id", Str(&self.request_id))),
            self.vendor_request_id.as_deref().map(|v| ("vendor_request_id", Str(v))),
            Some(("origin", Str(self.origin.as_str()))),
            Some(("retryable", Bool(self.retryable))),
        ]
    }

    /// RFC 9457 appendix B: `<problem xmlns="urn:ietf:rfc:7807">`, arrays as `<i>` items.
    /// Written from the fields: the standard members present, then each extension whose name
    /// no earlier member took (an absent optional member's name may be an extension's).
    pub fn to_xml(&self) -> Vec<u8> {
        const OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><problem xmlns="urn:ietf:rfc:7807">"#;
        let members = self.standard_members();
        let size: usize = members
            .iter()
            .flatten()
            .map(|(k, v)| 2 * k.len() + 5 + v.len())
            .sum::<usize>();
        let mut out = String::with_capacity(OPEN.len() + size + "</problem>".len());
        out.push_str(OPEN);
        for (name, value) in members.iter().flatten() {
            out.push('<');
            out.push_str(name);
            out.push('>');
            match value {
                Scalar::Str(s) => out.push_str(&quick_xml::escape::escape(&*xml_chars(s))),
                Scalar::Num(n) => out.push_str(itoa::Buffer::new().format(*n)),
                Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        let mut taken: Vec<&str> = members.iter().flatten().map(|(k, _)| *k).collect();
        for (k, v) in &self.extensions {
            if !taken.contains(&k.as_str()) {
                taken.push(k);
                write_xml_member(&mut out, k, v);
            }
        }
        out.push_str("</problem>");
        out.into_bytes()
    }
}

fn write_xml_member(out: &mut String, name: &str, v: &Value) {
    // Element names must be XML names; keep letters, digits, '_', '-', '.'.
    let mut tag: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !tag.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        tag.insert(0, '_');
    }
    out.push('<');
    out.push_str(&tag);
    out.push('>');
    match v {
        Value::String(s) => out.push_str(&quick_xml::escape::escape(&*xml_chars(s))),
        Value::Array(items) => {
            for i in items {
                write_xml_member(out, "i", i);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                write_xml_member(out, k, v);
            }
        }
        Value::Null => {}
        other => out.push_str(&other.to_string()),
    }
    out.push_str("</");
    out.push_str(&tag);
    out.push('>');
}

/// Drops what XML 1.0 cannot carry even escaped (C0 controls but tab, LF, CR; U+FFFE, U+FFFF)
/// and DEL: whatever a member holds, the document stays well-formed.
fn xml_chars(s: &str) -> std::borrow::Cow<'_, str> {
    let bad =
        |c: char| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{7f}' | '\u{fffe}' | '\u{ffff}');
    if s.contains(bad) {
        std::borrow::Cow::Owned(s.chars().filter(|&c| !bad(c)).collect())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A standard member's value; `write` writes it as serde_json does.
enum Scalar<'a> {
    Str(&'a str),
    Num(u16),
    Bool(bool),
}

impl Scalar<'_> {
    /// Its length written (as JSON, or as XML text), when no character needs escaping.
    fn len(&self) -> usize {
        match self {
            Scalar::Str(s) => s.len() + 2,
            Scalar::Num(n) => match n {
                0..=9 => 1,
                10..=99 => 2,
                100..=999 => 3,
                1000..=9999 => 4,
                _ => 5,
            },
            Scalar::Bool(true) => 4,
            Scalar::Bool(false) => 5,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Scalar::Str(s) => json_string(out, s),
            Scalar::Num(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            Scalar::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
}

/// A JSON string as serde_json writes one. The common case, nothing to escape, is found without
/// a branch per byte (vectorized) and copied whole; a string that needs escaping is written by
/// serde_json itself.
fn json_string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if !b
        .iter()
        .fold(false, |any, &c| any | (c < 0x20) | (c == b'"') | (c == b'\\'))
    {
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// The members the body always defines; an extension may not override them.
const STANDARD: [&str; 11] = [
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "upstream_status",
    "vendor_code",
    "request_id",
    "vendor_request_id",
    "origin",
    "retryable",
];

/// Serializes straight from the fields (no intermediate map), for callers that embed a problem
/// in other JSON; the body itself is written by `to_json`, to the same bytes.
impl serde::Serialize for ProblemBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", &self.type_uri)?;
        m.serialize_entry("title", &self.title)?;
        m.serialize_entry("status", &self.status)?;
        if let Some(d) = &self.detail {
            m.serialize_entry("detail", d)?;
        }
        if let Some(i) = &self.instance {
            m.serialize_entry("instance", i)?;
        }
        if let Some(u) = self.upstream_status {
            m.serialize_entry("upstream_status", &u)?;
        }
        if let Some(c) = &self.vendor_code {
            m.serialize_entry("vendor_code", c)?;
        }
        m.serialize_entry("request_id", &self.request_id)?;
        if let Some(v) = &self.vendor_request_id {
            m.serialize_entry("vendor_request_id", v)?;
        }
        m.serialize_entry("origin", self.origin.as_str())?;
        m.serialize_entry("retryable", &self.retryable)?;
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in &self.extensions {
            if !STANDARD.contains(&k.as_str()) && !seen.contains(&k.as_str()) {
                seen.push(k);
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProblemBody {
        ProblemBody {
            type_uri: "about:blank".into(),
            title: "Too Many Requests".into(),
            status: 429,
            detail: Some("slow <down> & retry".into()),
            instance: None,
            upstream_status: Some(400),
            vendor_code: Some("EndPoint.0022".into()),
            request_id: "r1".into(),
            vendor_request_id: None,
            origin: Origin::Upstream,
            retryable: true,
            extensions: vec![("failed".into(), serde_json::json!([{"p": "x"}]))],
        }
    }

    #[test]
    fn extensions_cannot_override_standard_members() {
        let mut p = sample();
        p.extensions.push(("status".into(), serde_json::json!(200)));
        p.extensions.push(("failed".into(), serde_json::json!("second")));
        p.extensions.push(("retryable".into(), serde_json::json!(false)));
        let v: Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["retryable"], true, "an extension cannot override retryable either");
        assert_eq!(v["failed"][0]["p"], "x", "the first of a repeated extension wins");
        let text = String::from_utf8(p.to_json()).unwrap();
        assert_eq!(text.matches("\"status\"").count(), 1, "{text}");
    }

    /// `to_json` writes the body itself; it must stay byte for byte what serde_json makes of
    /// the `Serialize` impl: member order, escaping (quotes, backslashes, every C0 control,
    /// DEL and non-ASCII left as they are), numbers, booleans, extensions and their filtering.
    #[test]
    fn the_json_writer_gives_serde_jsons_bytes() {
        let mut tricky = String::from("q\"b\\s/ \u{7f} é \u{2028} 😀");
        tricky.extend((0u8..0x20).map(char::from));
        let mut cases = vec![sample()];
        let mut all = sample();
        all.detail = Some(tricky.clone());
        all.instance = Some("/tasks/1?a=\"b\"".into());
        all.vendor_code = Some(tricky.clone());
        all.vendor_request_id = Some("v\r\n1".into());
        all.title = tricky.clone();
        all.type_uri = "urn:x:\u{0}".into();
        all.origin = Origin::Gateway;
        all.retryable = false;
        all.extensions = vec![
            (
                tricky.clone(),
                serde_json::json!({"k\"": [1, 2.5, null, true, "\u{1}"]}),
            ),
            ("type".into(), serde_json::json!("nope")),
            ("n".into(), serde_json::json!(-3)),
            ("n".into(), serde_json::json!("second")),
        ];
        cases.push(all);
        for status in [0u16, 7, 10, 99, 100, 429, 999, 1000, 9999, 10000, 65535] {
            let mut bare = sample();
            bare.status = status;
            bare.upstream_status = Some(status);
            bare.detail = None;
            bare.vendor_code = None;
            bare.extensions.clear();
            cases.push(bare);
        }
        let mut empty = sample();
        empty.title.clear();
        empty.request_id.clear();
        empty.upstream_status = None;
        cases.push(empty);
        for p in &cases {
            let want = serde_json::to_vec(p).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&p.to_json()),
                String::from_utf8_lossy(&want),
                "{p:?}"
            );
        }
    }

    /// `to_xml` writes from the fields; it must stay byte for byte what it wrote from the
    /// member map, extensions included (one may take an absent optional member's name).
    #[test]
    fn the_xml_writer_gives_the_member_maps_bytes() {
        let reference = |p: &ProblemBody| {
            let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><problem xmlns="urn:ietf:rfc:7807">"#);
            for (k, v) in p.members() {
                write_xml_member(&mut out, &k, &v);
            }
            out.push_str("</problem>");
            out.into_bytes()
        };
        let mut all = sample();
        all.detail = None;
        all.instance = Some("/a?b=<c>&d='e'".into());
        all.vendor_request_id = Some("v\u{1}1".into());
        all.status = 7;
        all.extensions = vec![
            ("detail".into(), serde_json::json!("an absent member's name")),
            ("status".into(), serde_json::json!(200)),
            ("1 bad name".into(), serde_json::json!({"x": [1, "<", null, false]})),
            ("detail".into(), serde_json::json!("second")),
        ];
        for p in [sample(), all] {
            assert_eq!(
                String::from_utf8(p.to_xml()).unwrap(),
                String::from_utf8(reference(&p)).unwrap()
            );
        }
    }

    #[test]
    fn an_unescaped_body_without_extensions_fills_its_buffer_exactly() {
        let mut p = sample();
        p.extensions.clear();
        p.detail = Some("slow down".into());
        let body = p.to_json();
        assert_eq!(body.len(), body.capacity(), "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn json_members() {
        let v: Value = serde_json::from_slice(&sample().to_json()).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["upstream_status"], 400);
        assert_eq!(v["origin"], "upstream");
        assert_eq!(v["retryable"], true);
        assert_eq!(v["failed"][0]["p"], "x");
        assert!(v.get("instance").is_none());
    }

    #[test]
    fn xml_is_escaped_and_namespaced() {
        let x = String::from_utf8(sample().to_xml()).unwrap();
        assert!(x.contains(r#"<problem xmlns="urn:ietf:rfc:7807">"#));
        assert!(x.contains("<detail>slow &lt;down&gt; &amp; retry</detail>"));
        assert!(x.contains("<failed><i><p>x</p></i></failed>"));
        assert!(
            x.contains("<origin>upstream</origin><retryable>true</retryable>"),
            "{x}"
        );
        assert!(crate::body::XmlNode::parse(x.as_bytes()).is_some());
    }

    /// Each canonical status crossed with the two method classes of RFC 9110 section 9.2.2.
    #[test]
    fn retryable_by_status_and_method_class() {
        let idempotent = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
        let other = ["POST", "PATCH", "CONNECT", "get", "PROPFIND"];
        for m in idempotent {
            assert!(is_idempotent(m), "{m}");
        }
        for m in other {
            assert!(!is_idempotent(m), "{m}");
        }
        let statuses = [
            400u16, 401, 403, 404, 405, 406, 409, 410, 412, 413, 415, 417, 422, 428, 429, 431, 500, 501, 502, 503, 504,
        ];
        for s in statuses {
            for (class, methods) in [("idempotent", &idempotent[..]), ("other", &other[..])] {
                for m in methods {
                    let want = match s {
                        429 | 503 => true,
                        504 => class == "idempotent",
                        _ => false,
                    };
                    assert_eq!(retryable(s, m, false), want, "{s} {m}");
                    // A gateway-made connect failure (502 refused) retries only when idempotent.
                    let want_connect = want || class == "idempotent";
                    assert_eq!(retryable(s, m, true), want_connect, "{s} {m} connect failure");
                }
            }
        }
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(ProblemFormat::negotiate(None), ProblemFormat::Json);
        assert_eq!(ProblemFormat::negotiate(Some("application/xml")), ProblemFormat::Xml);
        assert_eq!(
            ProblemFormat::negotiate(Some("application/json, application/xml;q=0.5")),
            ProblemFormat::Json
        );
        assert_eq!(
            ProblemFormat::negotiate(Some("application/xml, */*;q=0.1")),
            ProblemFormat::Xml
        );
        assert_eq!(ProblemFormat::negotiate(Some("*/*")), ProblemFormat::Json);
        assert_eq!(
            ProblemFormat::negotiate(Some("Application/Problem+XML, Application/JSON;q=0.9")),
            ProblemFormat::Xml,
            "media types compare without regard to case"
        );
    }
}
