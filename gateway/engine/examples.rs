//! Profile examples: an upstream response and the canonical response expected. They run on
//! every load (start, `check`, reload) through the same engine and composition the proxy
//! uses, so a profile that no longer does what its examples say is rejected.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::profile::{CompiledProfile, EnsureHeaders};
use super::response::{compose, decode, CanonicalBody};
use super::{CanonicalProfile, ProblemFormat, RequestFacts, UpstreamBody, UpstreamHead};
use crate::diagnostics::{ConfigProblem, ProblemKind, SourcePos};
use crate::spec::RawExample;

fn header_map(raw: &std::collections::BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in raw {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name `{k}`"))?;
        let value = HeaderValue::from_str(v).map_err(|_| format!("bad header value `{v}`"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Runs one example; `Err` lists every way the response differs from the expectation.
pub fn run(profile: &CompiledProfile, canonical: &CanonicalProfile, ex: &RawExample) -> Result<(), Vec<String>> {
    let req_headers = header_map(&ex.request.headers).map_err(|e| vec![e])?;
    let up_headers = header_map(&ex.upstream.headers).map_err(|e| vec![e])?;
    let method = ex.request.method.as_deref().unwrap_or("GET");
    let path = ex.request.path.as_deref().unwrap_or("/");
    let request_id = "example";
    let facts = RequestFacts {
        method,
        path,
        headers: &req_headers,
        request_id,
    };
    let head = UpstreamHead {
        status: ex.upstream.status,
        headers: &up_headers,
    };
    let bodyless = method.eq_ignore_ascii_case("HEAD") || matches!(ex.upstream.status, 204 | 304);
    let raw = ex.upstream.body.as_bytes();
    let encoding = up_headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let decoded;
    let body = if bodyless || !profile.needs_body(&facts, &head) {
        UpstreamBody::NotRead
    } else {
        match decode(encoding, raw, profile.body_buffer) {
            Ok(d) => {
                decoded = d;
                UpstreamBody::Read(&decoded)
            }
            Err(s) => UpstreamBody::Skipped(s),
        }
    };
    let no_route_headers = EnsureHeaders::default();
    let decision = profile.evaluate(canonical, &no_route_headers, &facts, &head, body);
    let format = ProblemFormat::negotiate(req_headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()));
    let resp = compose(&decision, ex.upstream.status, &up_headers, request_id, format, bodyless);

    let e = &ex.expect;
    let mut diffs = Vec::new();
    let rule = decision.rule.unwrap_or("none");
    if resp.status != e.status {
        diffs.push(format!(
            "status {} expected, got {} (rule: {rule})",
            e.status, resp.status
        ));
    }
    if let Some(want) = &e.rule {
        if want != rule {
            diffs.push(format!("rule `{want}` expected, `{rule}` matched"));
        }
    }
    for (k, want) in &e.headers {
        match resp
            .headers
            .get(k.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        {
            Some(got) if &got == want => {}
            Some(got) => diffs.push(format!("header {k}: `{want}` expected, got `{got}`")),
            None => diffs.push(format!("header {k}: `{want}` expected, absent")),
        }
    }
    for k in &e.absent_headers {
        if resp.headers.contains_key(k.as_str()) {
            diffs.push(format!("header {k} must be absent"));
        }
    }
    let body_bytes: &[u8] = match &resp.body {
        CanonicalBody::Replace(b) => b,
        CanonicalBody::Upstream => raw,
        CanonicalBody::None => b"",
    };
    if !e.problem.is_empty() {
        match (&resp.body, serde_json::from_slice::<serde_json::Value>(body_bytes)) {
            (CanonicalBody::Replace(_), Ok(json)) => {
                for (k, want) in &e.problem {
                    let got = json.get(k).unwrap_or(&serde_json::Value::Null);
                    if !same(want, got) {
                        diffs.push(format!("problem.{k}: {want} expected, got {got}"));
                    }
                }
            }
            _ => diffs.push("a problem body expected, the upstream body passes".into()),
        }
    }
    if e.body_unchanged && resp.body != CanonicalBody::Upstream {
        diffs.push("the upstream body expected unchanged, it was replaced".into());
    }
    let text = String::from_utf8_lossy(body_bytes);
    for needle in &e.body_excludes {
        if text.contains(needle.as_str()) {
            diffs.push(format!("body must not contain `{needle}`"));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs)
    }
}

/// YAML scalars are loosely typed: `429` and `"429"` compare equal.
fn same(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (want, got) {
        (String(a), Number(b)) | (Number(b), String(a)) => a == &b.to_string(),
        _ => want == got,
    }
}

/// Runs every example of a profile, one problem per failing example.
pub fn check_all(
    file: &Path,
    profile: &CompiledProfile,
    canonical: &CanonicalProfile,
    examples: &[RawExample],
) -> Vec<ConfigProblem> {
    examples
        .iter()
        .filter_map(|ex| {
            run(profile, canonical, ex).err().map(|diffs| {
                ConfigProblem::error(
                    SourcePos::of(file, &ex.name),
                    ProblemKind::Example(ex.name.value.clone(), diffs.join("; ")),
                )
            })
        })
        .collect()
}
