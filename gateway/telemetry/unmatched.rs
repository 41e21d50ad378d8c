//! Unmatched-response discovery: for one route of the serving snapshot, the upstream error
//! responses (>= 400) that no rule matched, kept distinct by upstream status, media type and
//! vendor code (`engine::vendor_code`), each with a count, first and last seen, the canonical
//! status the defaults answered and one example body (decoded, redacted by the canonical
//! profile's filter, at most `EXAMPLE_BYTES`, marked `truncated` when cut). Listed at the
//! admin's `GET /-/unmatched`, read by `statusgate suggest`. Bounded whatever the traffic:
//! `MAX_ENTRIES` kinds per route; once full, new kinds are only counted in `dropped`. It lives
//! as long as the snapshot it was made for: a reload starts a new one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::engine::body::{parse_json_bounded, DEFAULT_BODY_DEPTH};
use crate::engine::redact::Redaction;
use crate::engine::response::decode;
use crate::engine::vendor_code::{self, Field};

/// Distinct kinds kept per route.
pub const MAX_ENTRIES: usize = 256;
/// Bytes of an example body kept (UTF-8, cut on a character boundary).
pub const EXAMPLE_BYTES: usize = 2048;
/// Bytes of an upstream body read for a sample (the rest is drained unread, as before).
pub const CAPTURE_BYTES: usize = 16 * 1024;
/// Longest media type kept (longer ones are cut).
const MAX_MEDIA_TYPE: usize = 100;

/// One unmatched response as the proxy saw it.
pub struct Sample<'a> {
    pub upstream_status: u16,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    /// The raw body as read, at most `CAPTURE_BYTES` (more was not read or not kept).
    pub body: &'a [u8],
    /// `body` is the whole body.
    pub complete: bool,
    /// What the canonical defaults answered.
    pub canonical_status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    status: u16,
    media_type: String,
    code: Option<Field>,
}

#[derive(Debug)]
struct Entry {
    count: u64,
    first_seen: SystemTime,
    last_seen: SystemTime,
    canonical_status: u16,
    example: String,
    truncated: bool,
    redacted: bool,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Responses of a new kind that found the store full.
    dropped: u64,
}

/// One route's unmatched responses.
#[derive(Debug)]
pub struct UnmatchedStore {
    since: SystemTime,
    inner: Mutex<Inner>,
}

impl Default for UnmatchedStore {
    fn default() -> Self {
        UnmatchedStore {
            since: SystemTime::now(),
            inner: Mutex::new(Inner::default()),
        }
    }
}

/// The media type without parameters, lower-case (`application/json`).
fn media_type(content_type: Option<&str>) -> String {
    let mt = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
    let mut mt = mt.to_ascii_lowercase();
    if mt.len() > MAX_MEDIA_TYPE {
        let mut cut = MAX_MEDIA_TYPE;
        while !mt.is_char_boundary(cut) {
            cut -= 1;
        }
        mt.truncate(cut);
    }
    mt
}

/// The example body: decoded text, redacted (a whole JSON document string by string, anything
/// else as text), at most `EXAMPLE_BYTES`; (text, truncated, redacted).
fn example(body: &[u8], complete: bool, redaction: &Redaction) -> (String, bool, bool) {
    let json = complete
        .then(|| parse_json_bounded(body, DEFAULT_BODY_DEPTH).ok())
        .flatten()
        .filter(|v| v.is_object() || v.is_array());
    let (mut out, redacted) = match json {
        Some(mut v) => {
            let redacted = redaction.value(&mut v);
            (v.to_string(), redacted)
        }
        None => {
            let text = String::from_utf8_lossy(body);
            let (filtered, redacted) = redaction.filter(&text);
            (filtered.into_owned(), redacted)
        }
    };
    let mut truncated = !complete;
    if out.len() > EXAMPLE_BYTES {
        let mut cut = EXAMPLE_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        truncated = true;
    }
    (out, truncated, redacted)
}

impl UnmatchedStore {
    /// Records one unmatched response: counted on its kind's entry, or a new entry while there
    /// is room, or counted as dropped.
    pub fn record(&self, s: &Sample<'_>, redaction: &Redaction) {
        // Decoded (gzip, deflate) under the capture cap; undecodable bodies are kept raw.
        let decoded = decode(s.content_encoding, s.body, CAPTURE_BYTES);
        let (body, complete) = match &decoded {
            Ok(b) => (&b[..], s.complete),
            Err(_) => (s.body, false),
        };
        let code = if complete {
            vendor_code::vendor_code(s.content_type, body)
        } else {
            None
        };
        let key = Key {
            status: s.upstream_status,
            media_type: media_type(s.content_type),
            code,
        };
        let now = SystemTime::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = inner.entries.get_mut(&key) {
            e.count += 1;
            e.last_seen = now;
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.dropped += 1;
            return;
        }
        let (example, truncated, redacted) = example(body, complete, redaction);
        inner.entries.insert(
            key,
            Entry {
                count: 1,
                first_seen: now,
                last_seen: now,
                canonical_status: s.canonical_status,
                example,
                truncated,
                redacted,
            },
        );
    }

    /// The route's listing for `GET /-/unmatched`, most frequent first.
    pub fn to_json(&self, route: &str, profile: &str) -> Value {
        let secs = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<(&Key, &Entry)> = inner.entries.iter().collect();
        entries.sort_by(|a, b| (b.1.count, a.0.status, &a.0.media_type).cmp(&(a.1.count, b.0.status, &b.0.media_type)));
        json!({
            "route": route,
            "profile": profile,
            "since_unix": secs(self.since),
            "entries": entries.len(),
            "dropped": inner.dropped,
            "unmatched": entries.iter().map(|(k, e)| json!({
                "upstream_status": k.status,
                "content_type": k.media_type,
                "vendor_code": k.code.as_ref().map(|c| json!({
                    "kind": c.kind.as_str(),
                    "path": c.path,
                    "value": c.value,
                })),
                "count": e.count,
                "first_seen_unix": secs(e.first_seen),
                "last_seen_unix": secs(e.last_seen),
                "canonical_status": e.canonical_status,
                "example": e.example,
                "truncated": e.truncated,
                "redacted": e.redacted,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(status: u16, body: &'a [u8]) -> Sample<'a> {
        Sample {
            upstream_status: status,
            content_type: Some("application/json; charset=utf-8"),
            content_encoding: None,
            body,
            complete: true,
            canonical_status: status,
        }
    }

    #[test]
    fn kinds_are_distinct_by_status_media_type_and_code_and_counted() {
        let store = UnmatchedStore::default();
        let r = Redaction::default();
        for _ in 0..3 {
            store.record(&sample(400, br#"{"error_code":"A.1","error_msg":"a"}"#), &r);
        }
        store.record(&sample(400, br#"{"error_code":"A.2"}"#), &r);
        store.record(&sample(409, br#"{"error_code":"A.2"}"#), &r);
        let j = store.to_json("r", "p.yaml");
        assert_eq!(j["entries"], 3);
        let first = &j["unmatched"][0];
        assert_eq!(first["count"], 3);
        assert_eq!(first["content_type"], "application/json");
        assert_eq!(first["vendor_code"]["path"], "/error_code");
        assert_eq!(first["vendor_code"]["value"], "A.1");
        assert_eq!(first["example"], r#"{"error_code":"A.1","error_msg":"a"}"#);
        assert_eq!(first["truncated"], false);
    }

    #[test]
    fn the_store_stays_at_its_bound_and_counts_what_it_drops() {
        let store = UnmatchedStore::default();
        let r = Redaction::default();
        for i in 0..(MAX_ENTRIES + 100) {
            store.record(&sample(400, format!(r#"{{"code":"C{i}"}}"#).as_bytes()), &r);
        }
        // A kind already kept is still counted when the store is full.
        store.record(&sample(400, br#"{"code":"C0"}"#), &r);
        let j = store.to_json("r", "p.yaml");
        assert_eq!(j["entries"], MAX_ENTRIES);
        assert_eq!(j["unmatched"].as_array().unwrap().len(), MAX_ENTRIES);
        assert_eq!(j["dropped"], 100);
        assert_eq!(j["unmatched"][0]["count"], 2);
    }

    #[test]
    fn examples_are_redacted_and_truncated_and_say_so() {
        let store = UnmatchedStore::default();
        let r = Redaction::default();
        let trace = "{\"code\":\"E\",\"detail\":\"System.NullReferenceException: boom\\n   at Veeam.Backup.Foo.Bar() in C:\\\\src\\\\Foo.cs:line 12\"}";
        store.record(&sample(500, trace.as_bytes()), &r);
        let long = format!(r#"{{"code":"L","pad":"{}"}}"#, "é".repeat(EXAMPLE_BYTES));
        store.record(&sample(502, long.as_bytes()), &r);
        let j = store.to_json("r", "p.yaml");
        let by_status = |s: u64| {
            j["unmatched"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["upstream_status"] == s)
                .unwrap()
                .clone()
        };
        let redacted = by_status(500);
        let text = redacted["example"].as_str().unwrap();
        assert!(
            !text.contains("NullReferenceException") && !text.contains("Foo.cs"),
            "{text}"
        );
        assert_eq!(redacted["redacted"], true);
        let cut = by_status(502);
        assert_eq!(cut["truncated"], true);
        assert!(cut["example"].as_str().unwrap().len() <= EXAMPLE_BYTES);
        assert_eq!(cut["vendor_code"]["value"], "L", "the code is read from the whole body");
    }
}
