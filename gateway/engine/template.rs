//! `${source:arg}` templates, compiled once and rendered per response.
//!
//! Sources: `json:/path`, `xml:Error/@Message`, `header:Name` (upstream response),
//! `req_header:Name`, `status` (upstream), `method`, `path`, `request_id`. `$$` is a literal `$`.
//! Rendering yields `None` when any referenced value is absent, so a rule never emits half a value.

use std::borrow::Cow;

use http::HeaderName;
use serde_json::Value;

use super::body::{BodyDoc, BodyPathError, JsonPath, XmlPath};
use super::{RequestFacts, UpstreamHead};

#[derive(Debug, Clone)]
pub enum Source {
    Json(JsonPath),
    Xml(XmlPath),
    Header(HeaderName),
    ReqHeader(HeaderName),
    Status,
    Method,
    Path,
    RequestId,
}

impl Source {
    fn uses_body(&self) -> bool {
        matches!(self, Source::Json(_) | Source::Xml(_))
    }
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Var(Source),
}

#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// What a template can read from.
pub struct Scope<'a, 'b> {
    pub req: &'a RequestFacts<'a>,
    pub head: &'a UpstreamHead<'a>,
    pub body: Option<&'a BodyDoc<'b>>,
}

/// Why a template does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `${{` in `{0}`")]
    Unclosed(String),
    #[error("`{0}` needs a header name: ${{{0}:Name}}")]
    NeedsHeaderName(String),
    #[error("`{0}` is not a header name")]
    BadHeaderName(String),
    #[error(
        "unknown source `{0}`: use json:PATH, xml:PATH, header:NAME, req_header:NAME, status, method, path, request_id"
    )]
    UnknownSource(String),
    #[error(transparent)]
    Path(#[from] BodyPathError),
}

impl Template {
    pub fn compile(s: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(r) = rest.strip_prefix("$$") {
                lit.push('$');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("${") {
                let end = r.find('}').ok_or_else(|| TemplateError::Unclosed(s.to_owned()))?;
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Var(parse_source(r[..end].trim())?));
                rest = &r[end + 1..];
            } else {
                lit.push('$');
                rest = &rest[1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template { pieces })
    }

    /// The text of a template without variables (`$$` already made `$`).
    pub fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Lit(l)] => Some(l),
            _ => None,
        }
    }

    pub fn uses_body(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(s) if s.uses_body()))
    }

    pub fn render(&self, scope: &Scope<'_, '_>) -> Option<String> {
        // No variable, or one alone (the common `${json:/msg}`): its text as is, no growing buffer.
        if let Some(l) = self.literal() {
            return Some(l.to_owned());
        }
        if let [Piece::Var(src)] = self.pieces.as_slice() {
            return read(src, scope).map(Cow::into_owned);
        }
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.push_str(l),
                Piece::Var(src) => out.push_str(&read(src, scope)?),
            }
        }
        Some(out)
    }

    /// A template that is exactly one `${json:...}` yields the JSON value itself (objects and
    /// arrays included); anything else renders to a string.
    pub fn render_value(&self, scope: &Scope<'_, '_>) -> Option<Value> {
        if let [Piece::Var(Source::Json(path))] = self.pieces.as_slice() {
            return scope.body?.json_value(path).cloned();
        }
        self.render(scope).map(Value::String)
    }
}

fn parse_source(s: &str) -> Result<Source, TemplateError> {
    let (kind, arg) = match s.split_once(':') {
        Some((k, a)) => (k.trim(), Some(a.trim())),
        None => (s, None),
    };
    let header = |a: Option<&str>| -> Result<HeaderName, TemplateError> {
        let a = a.ok_or_else(|| TemplateError::NeedsHeaderName(kind.to_owned()))?;
        HeaderName::from_bytes(a.as_bytes()).map_err(|_| TemplateError::BadHeaderName(a.to_owned()))
    };
    Ok(match (kind, arg) {
        ("json", Some(a)) => Source::Json(JsonPath::compile(a)?),
        ("xml", Some(a)) => Source::Xml(XmlPath::compile(a)?),
        ("header", a) => Source::Header(header(a)?),
        ("req_header", a) => Source::ReqHeader(header(a)?),
        ("status", None) => Source::Status,
        ("method", None) => Source::Method,
        ("path", None) => Source::Path,
        ("request_id", None) => Source::RequestId,
        _ => return Err(TemplateError::UnknownSource(s.to_owned())),
    })
}

fn read<'s>(src: &Source, scope: &'s Scope<'_, '_>) -> Option<Cow<'s, str>> {
    match src {
        Source::Json(p) => scope.body?.json_text(p),
        Source::Xml(p) => scope.body?.xml_text(p).map(Cow::Borrowed),
        Source::Header(h) => scope.head.headers.get(h)?.to_str().ok().map(Cow::Borrowed),
        Source::ReqHeader(h) => scope.req.headers.get(h)?.to_str().ok().map(Cow::Borrowed),
        Source::Status => Some(Cow::Owned(scope.head.status.to_string())),
        Source::Method => Some(Cow::Borrowed(scope.req.method)),
        Source::Path => Some(Cow::Borrowed(scope.req.path)),
        Source::RequestId => Some(Cow::Borrowed(scope.req.request_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn renders_and_reports_missing() {
        let mut h = HeaderMap::new();
        h.insert("x-vendor", "v1".parse().unwrap());
        let rh = HeaderMap::new();
        let req = RequestFacts {
            method: "POST",
            path: "/v1/p/vpc-endpoints",
            headers: &rh,
            request_id: "rid",
        };
        let head = UpstreamHead {
            status: 200,
            headers: &h,
        };
        let doc = BodyDoc::new(br#"{"id":"e-1","x":{"y":[1]}}"#);
        let scope = Scope {
            req: &req,
            head: &head,
            body: Some(&doc),
        };
        let t = Template::compile("${path}/${json:/id} $$5 (${header:X-Vendor})").unwrap();
        assert!(t.uses_body());
        assert_eq!(t.render(&scope).as_deref(), Some("/v1/p/vpc-endpoints/e-1 $5 (v1)"));
        assert_eq!(Template::compile("${json:/nope}").unwrap().render(&scope), None);
        let v = Template::compile("${json:/x}").unwrap().render_value(&scope).unwrap();
        assert_eq!(v, serde_json::json!({"y":[1]}));
        assert!(Template::compile("${bogus}").is_err());
        assert_eq!(Template::compile("2").unwrap().literal(), Some("2"));
        assert_eq!(Template::compile("a$$b").unwrap().literal(), Some("a$b"));
        assert_eq!(Template::compile("").unwrap().literal(), Some(""));
        assert_eq!(Template::compile("x${status}").unwrap().literal(), None);
        assert!(Template::compile("${json:/a").is_err());
    }
}
