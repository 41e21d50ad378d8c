//! `statusgate suggest --from URL-or-file`: turns an unmatched-response listing (a running
//! gateway's admin `GET /-/unmatched`, fetched over plain HTTP, or a saved copy of it) into rule
//! skeletons with `examples:`, one YAML document per route, ready to paste into that route's
//! profile. Each suggestion matches on the upstream status, media type and the vendor code the
//! gateway found (`engine::vendor_code`), keeps the status the canonical defaults answered (the
//! operator sets the one the code means, in the rule and its example), and is checked before it
//! is printed: the document is compiled against the canonical profile and its examples run, as
//! `statusgate check` does; one that fails is left out, with the reason on stderr.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::config::schema::RawProfile;
use crate::engine::body::DEFAULT_BODY_DEPTH;
use crate::engine::profile::DEFAULT_BODY_BUFFER;
use crate::engine::vendor_code::{self, BodyKind};
use crate::engine::yaml::parse_yaml;
use crate::engine::{examples, CanonicalProfile, CompiledProfile};

/// Largest listing read from a gateway.
const MAX_LISTING: usize = 64 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SuggestError {
    #[error("{0}: only plain http:// URLs (a gateway's admin listener) or files")]
    Scheme(String),
    #[error("{url}: {error}")]
    Fetch { url: String, error: String },
    #[error("{url}: the admin listener answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: not an unmatched-response listing ({1})")]
    Listing(String, String),
    #[error("no route `{0}` in the listing")]
    NoRoute(String),
}

/// Reads a listing from `from`: an `http://host:port[/path]` URL (path default
/// `/-/unmatched`), with an optional bearer token, or a file.
pub fn read_listing(from: &str, token: Option<&str>) -> Result<Value, SuggestError> {
    let text = if let Some(rest) = from.strip_prefix("http://") {
        fetch(from, rest, token)?
    } else if from.contains("://") {
        return Err(SuggestError::Scheme(from.to_owned()));
    } else {
        std::fs::read(from).map_err(|e| SuggestError::Read(from.to_owned(), e))?
    };
    let listing: Value =
        serde_json::from_slice(&text).map_err(|e| SuggestError::Listing(from.to_owned(), e.to_string()))?;
    if !listing["routes"].is_array() {
        return Err(SuggestError::Listing(from.to_owned(), "no `routes` array".into()));
    }
    Ok(listing)
}

/// One GET over HTTP/1.1 (`Connection: close`), the body as sent (Content-Length, chunked or
/// until the close).
fn fetch(url: &str, rest: &str, token: Option<&str>) -> Result<Vec<u8>, SuggestError> {
    let err = |error: String| SuggestError::Fetch {
        url: url.to_owned(),
        error,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) if &rest[i..] != "/" => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], "/-/unmatched"),
        None => (rest, "/-/unmatched"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| err(e.to_string()))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| err(e.to_string()))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n{auth}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| err(e.to_string()))?;
    let mut raw = Vec::new();
    s.take(MAX_LISTING as u64 + 64 * 1024)
        .read_to_end(&mut raw)
        .map_err(|e| err(e.to_string()))?;
    let end = memchr::memmem::find(&raw, b"\r\n\r\n").ok_or_else(|| err("no complete response header".into()))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let body = &raw[end + 4..];
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(format!("not an HTTP response: {}", head.lines().next().unwrap_or(""))))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| err("malformed chunked body".into()))?
    } else {
        body.to_vec()
    };
    if status != 200 {
        return Err(SuggestError::Status {
            url: url.to_owned(),
            status,
            body: String::from_utf8_lossy(&body).trim().to_owned(),
        });
    }
    Ok(body)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = memchr::memmem::find(b, b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// A quoted YAML scalar (JSON's string syntax is YAML's double-quoted one).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Lower-case letters, digits and dashes, at most `max` long.
fn slug(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= max {
            break;
        }
    }
    out.trim_matches('-').to_owned()
}

/// A minimal body holding `value` at `path` (a JSON pointer or `*/...` XML path).
fn synthesized(kind: BodyKind, path: &str, value: &str) -> String {
    match kind {
        BodyKind::Json => {
            let mut v = Value::String(value.to_owned());
            for seg in path.trim_start_matches('/').split('/').rev() {
                v = match seg.parse::<usize>() {
                    Ok(0) => Value::Array(vec![v]),
                    _ => {
                        let mut m = serde_json::Map::new();
                        m.insert(seg.to_owned(), v);
                        Value::Object(m)
                    }
                };
            }
            v.to_string()
        }
        BodyKind::Xml => {
            let esc = value
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;");
            let leaf = path.trim_start_matches("*/");
            match leaf.strip_prefix('@') {
                Some(attr) => format!("<Error {attr}=\"{esc}\"/>"),
                None => format!("<Error><{leaf}>{esc}</{leaf}></Error>"),
            }
        }
    }
}

/// One entry of the listing, read.
struct Entry<'a> {
    status: u16,
    media_type: &'a str,
    code: Option<(BodyKind, &'a str, &'a str)>,
    count: u64,
    canonical_status: u16,
    example: &'a str,
    truncated: bool,
}

fn entry(e: &Value) -> Option<Entry<'_>> {
    let code = e["vendor_code"].as_object().and_then(|c| {
        let kind = match c.get("kind")?.as_str()? {
            "json" => BodyKind::Json,
            "xml" => BodyKind::Xml,
            _ => return None,
        };
        Some((kind, c.get("path")?.as_str()?, c.get("value")?.as_str()?))
    });
    Some(Entry {
        status: u16::try_from(e["upstream_status"].as_u64()?).ok()?,
        media_type: e["content_type"].as_str().unwrap_or(""),
        code,
        count: e["count"].as_u64().unwrap_or(0),
        canonical_status: u16::try_from(e["canonical_status"].as_u64()?).ok()?,
        example: e["example"].as_str().unwrap_or(""),
        truncated: e["truncated"].as_bool().unwrap_or(true),
    })
}

/// The rule and the example of one suggestion (YAML list items, indented for `rules:` and
/// `examples:`).
fn suggestion(name: &str, e: &Entry<'_>, body: &str) -> (String, String) {
    let mut when = format!("status: {}", e.status);
    if !e.media_type.is_empty() {
        when.push_str(&format!(", content_type: {}", q(e.media_type)));
    }
    let mut problem = Vec::new();
    if let Some((kind, path, value)) = e.code {
        when.push_str(&format!(
            ", {}: {{ {}: {{ equals: {} }} }}",
            kind.as_str(),
            q(path),
            q(value)
        ));
        let ct = (!e.media_type.is_empty()).then_some(e.media_type);
        if let Some(m) = vendor_code::message(ct, body.as_bytes()) {
            problem.push(format!(
                "detail: {}",
                q(&format!("${{{}:{}}}", m.kind.as_str(), m.path))
            ));
        }
        problem.push(format!("vendor_code: {}", q(&format!("${{{}:{path}}}", kind.as_str()))));
    }
    let code_text = e.code.map_or_else(
        || "no vendor code found".to_owned(),
        |(_, p, v)| format!("{p} = {}", q(v)),
    );
    let mut rule = format!(
        "  # {} response(s): upstream {} {}, {}.\n  # The canonical defaults answer {}: set the status this means here and in the example.\n  - name: {name}\n    when: {{ {when} }}\n    then:\n      status: {}\n",
        e.count,
        e.status,
        if e.media_type.is_empty() { "(no content type)" } else { e.media_type },
        code_text,
        e.canonical_status,
        e.canonical_status,
    );
    if !problem.is_empty() {
        rule.push_str(&format!("      problem: {{ {} }}\n", problem.join(", ")));
    }
    let headers = if e.media_type.is_empty() {
        String::new()
    } else {
        format!(", headers: {{ Content-Type: {} }}", q(e.media_type))
    };
    let example = format!(
        "  - name: {name}\n    upstream: {{ status: {}{headers}, body: {} }}\n    expect: {{ status: {}, rule: {name} }}\n",
        e.status,
        q(body),
        e.canonical_status,
    );
    (rule, example)
}

/// Whether a profile made of this rule and example passes what `statusgate check` runs: the
/// compile and the examples gate, against `canonical`.
fn verify(rule: &str, example: &str, canonical: &CanonicalProfile) -> Result<(), String> {
    let text = format!("rules:\n{rule}examples:\n{example}");
    let path = Path::new("suggestion.yaml");
    let raw: RawProfile = parse_yaml(path, &text).map_err(|p| p.to_string())?;
    let profile = CompiledProfile::compile(path, &raw, canonical, DEFAULT_BODY_BUFFER, DEFAULT_BODY_DEPTH)
        .map_err(|ps| ps.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    let problems = examples::check_all(path, &profile, canonical, &raw.examples);
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
    }
}

/// The YAML documents for `listing` (one per route with entries; `only`: that route), and the
/// suggestions left out with their reasons.
pub fn render(
    listing: &Value,
    only: Option<&str>,
    canonical: &CanonicalProfile,
) -> Result<(String, Vec<String>), SuggestError> {
    let routes = listing["routes"].as_array().map_or(&[][..], Vec::as_slice);
    if let Some(name) = only {
        if !routes.iter().any(|r| r["route"] == name) {
            return Err(SuggestError::NoRoute(name.to_owned()));
        }
    }
    let mut out = format!(
        "# statusgate suggest (configuration version {}): rule skeletons for upstream errors no rule\n# matched. Paste each route's `rules:` and `examples:` entries into its profile's lists.\n",
        listing["version"].as_str().unwrap_or("?")
    );
    let mut left_out = Vec::new();
    let mut printed = 0;
    for r in routes.iter().filter(|r| only.is_none_or(|n| r["route"] == n)) {
        let route = r["route"].as_str().unwrap_or("route");
        let entries = r["unmatched"].as_array().map_or(&[][..], Vec::as_slice);
        let mut names = HashSet::new();
        let (mut rules, mut examples) = (String::new(), String::new());
        for e in entries.iter().filter_map(entry) {
            let tail = match e.code {
                Some((_, _, v)) => slug(v, 40),
                None => slug(e.media_type.rsplit('/').next().unwrap_or(""), 20),
            };
            let base = format!(
                "{}-{}{}{tail}",
                slug(route, 30),
                e.status,
                if tail.is_empty() { "" } else { "-" }
            );
            let mut name = base.clone();
            let mut n = 2;
            while !names.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            // The example body as seen (redacted) when whole; else, or when that one does not
            // check, a minimal body with the vendor code.
            let mut bodies = Vec::new();
            if !e.truncated {
                bodies.push(e.example.to_owned());
            }
            if let Some((kind, path, value)) = e.code {
                bodies.push(synthesized(kind, path, value));
            } else if e.truncated {
                bodies.push(String::new());
            }
            let mut why = String::from("no example body");
            let mut done = false;
            for body in &bodies {
                let (rule, example) = suggestion(&name, &e, body);
                match verify(&rule, &example, canonical) {
                    Ok(()) => {
                        rules.push_str(&rule);
                        examples.push_str(&example);
                        done = true;
                        break;
                    }
                    Err(w) => why = w,
                }
            }
            if !done {
                left_out.push(format!("route `{route}`: `{name}` left out: {why}"));
            }
        }
        if rules.is_empty() {
            continue;
        }
        printed += 1;
        out.push_str(&format!(
            "---\n# route `{route}` (profile {}): {} kind(s) listed, {} response(s) of new kinds dropped by the full store\nrules:\n{rules}examples:\n{examples}",
            r["profile"].as_str().unwrap_or("?"),
            entries.len(),
            r["dropped"].as_u64().unwrap_or(0),
        ));
    }
    if printed == 0 {
        out.push_str("# no unmatched upstream errors listed: nothing to suggest\n");
    }
    Ok((out, left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical() -> CanonicalProfile {
        crate::snapshot::load(Path::new(crate::cli::EMBEDDED_CONFIG))
            .expect("the embedded configuration loads")
            .canonical
    }

    fn listing(entries: Value) -> Value {
        serde_json::json!({
            "version": "v",
            "routes": [{ "route": "huawei", "profile": "p.yaml", "dropped": 0, "unmatched": entries }],
        })
    }

    #[test]
    fn every_rendered_suggestion_checks_and_names_are_unique() {
        let l = listing(serde_json::json!([
            { "upstream_status": 400, "content_type": "application/json", "count": 3, "canonical_status": 400,
              "vendor_code": { "kind": "json", "path": "/error_code", "value": "EndPoint.0099" },
              "example": "{\"error_code\":\"EndPoint.0099\",\"error_msg\":\"quota\"}", "truncated": false },
            { "upstream_status": 400, "content_type": "text/plain", "count": 1, "canonical_status": 400,
              "vendor_code": { "kind": "json", "path": "/error_code", "value": "EndPoint.0099" },
              "example": "{\"error_code\":\"EndPoint.0099\"", "truncated": true },
            { "upstream_status": 500, "content_type": "application/xml", "count": 1, "canonical_status": 500,
              "vendor_code": { "kind": "xml", "path": "*/@StatusCode", "value": "Internal<Error>" },
              "example": "<Error StatusCode=\"Internal&lt;Error&gt;\"", "truncated": true },
            { "upstream_status": 503, "content_type": "text/html", "count": 1, "canonical_status": 503,
              "vendor_code": null, "example": "<html>down</html>", "truncated": false },
        ]));
        let (text, left_out) = render(&l, None, &canonical()).unwrap();
        assert!(left_out.is_empty(), "{left_out:?}");
        assert_eq!(
            text.matches("  - name: huawei-400-endpoint-0099\n").count(),
            2,
            "{text}"
        );
        assert_eq!(
            text.matches("  - name: huawei-400-endpoint-0099-2\n").count(),
            2,
            "{text}"
        );
        assert!(text.contains("detail: \"${json:/error_msg}\""), "{text}");
        assert!(
            text.contains("xml: { \"*/@StatusCode\": { equals: \"Internal<Error>\" } }"),
            "{text}"
        );
        assert!(text.contains("huawei-503-html"), "{text}");
        // The whole document is a profile that `statusgate check`'s path accepts.
        let doc = text.split("---\n").nth(1).unwrap();
        let raw: RawProfile = parse_yaml(Path::new("s.yaml"), doc).unwrap();
        let c = canonical();
        let p =
            CompiledProfile::compile(Path::new("s.yaml"), &raw, &c, DEFAULT_BODY_BUFFER, DEFAULT_BODY_DEPTH).unwrap();
        assert!(examples::check_all(Path::new("s.yaml"), &p, &c, &raw.examples).is_empty());
    }

    #[test]
    fn chunked_bodies_are_joined_and_bad_sources_are_named() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(dechunk(b"zz\r\n").is_none());
        assert!(matches!(
            read_listing("https://127.0.0.1:1/", None),
            Err(SuggestError::Scheme(_))
        ));
        let missing = read_listing("/nonexistent/listing.json", None).unwrap_err().to_string();
        assert!(missing.starts_with("/nonexistent/listing.json: "), "{missing}");
    }
}
