//! RFC 9457 problem details: the body every canonical error carries, as JSON or XML; and the
//! default of its `retryable` member (RFC 9110 section 9.2.2 idempotency, RFC 6585 429).

use serde_json::{Map, Value};

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
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0);
            match media.as_str() {
                "application/problem+xml" | "application/xml" | "text/xml" => xml_q = xml_q.max(q),
                "application/problem+json" | "application/json" | "*/*" | "application/*" => json_q = json_q.max(q),
                _ => {}
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
    fn members(&self) -> Map<String, Value> {
        let mut m = Map::new();
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
        let members = self.json_members();
        let size: usize = members.iter().flatten().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 1;
        let mut out = Vec::with_capacity(size);
        for (key, value) in members.iter().flatten() {
            out.extend_from_slice(key);
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

    /// The standard members in RFC 9457 order (absent optional ones `None`), each with the
    /// bytes that open it (`{` or `,`, the quoted name and `:`). An array: no allocation.
    fn json_members(&self) -> [Option<(&'static [u8], JsonScalar<'_>)>; 11] {
        use JsonScalar::{Bool, Num, Str};
        [
            Some((b"{\"type\":", Str(&self.type_uri))),
            Some((b",\"title\":", Str(&self.title))),
            Some((b",\"status\":", Num(self.status))),
            self.detail.as_deref().map(|d| (&b",\"detail\":"[..], Str(d))),
            self.instance.as_deref().map(|i| (&b",\"instance\":"[..], Str(i))),
            self.upstream_status.map(|u| (&b",\"upstream_status\":"[..], Num(u))),
            self.vendor_code.as_deref().map(|c| (&b",\"vendor_code\":"[..], Str(c))),
            Some((b",\"request_id\":", Str(&self.request_id))),
            self.vendor_request_id
                .as_deref()
                .map(|v| (&b",\"vendor_request_id\":"[..], Str(v))),
            Some((b",\"origin\":", Str(self.origin.as_str()))),
            Some((b",\"retryable\":", Bool(self.retryable))),
        ]
    }

    /// RFC 9457 appendix B: `<problem xmlns="urn:ietf:rfc:7807">`, arrays as `<i>` items.
    pub fn to_xml(&self) -> Vec<u8> {
        let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><problem xmlns="urn:ietf:rfc:7807">"#);
        for (k, v) in self.members() {
            write_xml_member(&mut out, &k, &v);
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

/// A standard member's value, written as serde_json writes it.
enum JsonScalar<'a> {
    Str(&'a str),
    Num(u16),
    Bool(bool),
}

impl JsonScalar<'_> {
    /// Its length written, when no character needs escaping.
    fn len(&self) -> usize {
        match self {
            JsonScalar::Str(s) => s.len() + 2,
            JsonScalar::Num(n) => match n {
                0..=9 => 1,
                10..=99 => 2,
                100..=999 => 3,
                1000..=9999 => 4,
                _ => 5,
            },
            JsonScalar::Bool(true) => 4,
            JsonScalar::Bool(false) => 5,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            JsonScalar::Str(s) => json_string(out, s),
            JsonScalar::Num(n) => {
                let mut digits = [0u8; 5];
                let mut i = digits.len();
                let mut n = *n;
                loop {
                    i -= 1;
                    digits[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                out.extend_from_slice(&digits[i..]);
            }
            JsonScalar::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
}

/// A JSON string as serde_json writes one: `"` and `\` escaped, the C0 controls as `\b`,
/// `\t`, `\n`, `\f`, `\r` or `\u00xx`; everything else (DEL, non-ASCII) as is.
fn json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if short == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
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
    }
}
