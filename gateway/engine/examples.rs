//! Profile examples: an upstream response and the canonical response expected. The loader runs
//! them after compiling a profile, on every load (start, `check`, reload), through
//! `pipeline::normalize`, the path the proxy serves with, so a profile that no longer does
//! what its examples say is rejected.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::pipeline::{self, Normalized, RawBody};
use super::profile::{CompiledProfile, EnsureHeaders};
use super::response::CanonicalBody;
use super::trace::RuleTrace;
use super::{CanonicalProfile, RequestFacts, UpstreamHead};
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

/// The raw bytes of an example's upstream body: `body` as written, or compressed with the
/// example's `encoding` (stored blocks, so the raw size is the body plus the format's framing).
fn raw_body(ex: &RawExample) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let body = ex.upstream.body.as_bytes();
    let none = flate2::Compression::none();
    let written = match ex.upstream.encoding.as_deref() {
        None => return Ok(body.to_vec()),
        Some("gzip") => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), none);
            w.write_all(body).and_then(|()| w.finish())
        }
        Some("deflate") => {
            let mut w = flate2::write::ZlibEncoder::new(Vec::new(), none);
            w.write_all(body).and_then(|()| w.finish())
        }
        Some(other) => return Err(format!("unknown encoding `{other}` (gzip, deflate)")),
    };
    written.map_err(|e| format!("cannot encode the body: {e}"))
}

/// Runs one example through the live pipeline; `Err` lists every way the response differs
/// from the expectation, then the rule trace (`trace: rule a: ... | ... | decision: ...`).
pub fn run(profile: &CompiledProfile, canonical: &CanonicalProfile, ex: &RawExample) -> Result<(), Vec<String>> {
    let req_headers = header_map(&ex.request.headers).map_err(|e| vec![e])?;
    let mut up_headers = header_map(&ex.upstream.headers).map_err(|e| vec![e])?;
    let raw = raw_body(ex).map_err(|e| vec![e])?;
    if let Some(enc) = &ex.upstream.encoding {
        if !up_headers.contains_key(http::header::CONTENT_ENCODING) {
            let value = HeaderValue::from_str(enc).map_err(|_| vec![format!("bad encoding `{enc}`")])?;
            up_headers.insert(http::header::CONTENT_ENCODING, value);
        }
    }
    let method = ex.request.method.as_deref().unwrap_or("GET");
    let path = ex.request.path.as_deref().unwrap_or("/");
    let facts = RequestFacts {
        method,
        path,
        headers: &req_headers,
        request_id: "example",
    };
    let head = UpstreamHead {
        status: ex.upstream.status,
        headers: &up_headers,
    };
    // Examples are route-agnostic: no route's ensure_headers apply.
    let no_route_headers = EnsureHeaders::default();
    let body = RawBody::buffered(pipeline::body_need(profile, &facts, &head), &raw);
    let mut trace = RuleTrace::default();
    let Normalized {
        decision,
        response: resp,
    } = pipeline::normalize_traced(
        profile,
        canonical,
        &no_route_headers,
        &facts,
        &head,
        body,
        pipeline::format_for(&facts),
        Some(&mut trace),
    );
    let raw = raw.as_slice();

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
        // One problem is one line (ConfigProblem folds lines): the trace's lines go on it.
        diffs.push(format!("trace: {}", trace.lines().join(" | ")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{canonical, compile};

    const RULES: &str = "rules:\n  - name: throttled\n    when: { status: 400, json: { /code: slow } }\n    then:\n      status: 429\n      headers: { set: { Retry-After: \"1\" } }\n      problem: { detail: \"${json:/msg}\" }\n";

    fn failures(examples: &str) -> Vec<String> {
        let (raw, p) = compile(&format!("{RULES}examples:\n{examples}"));
        check_all(Path::new("p.yaml"), &p, &canonical(), &raw.examples)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_matching_example_passes_with_its_headers_and_problem_members() {
        let ok = failures(
            "  - name: ok\n    upstream: { status: 400, body: '{\"code\":\"slow\",\"msg\":\"wait\"}' }\n    expect:\n      status: 429\n      rule: throttled\n      headers: { Retry-After: \"1\" }\n      problem: { status: 429, detail: wait, instance: null }\n      body_excludes: [code]\n",
        );
        assert_eq!(ok, Vec::<String>::new());
    }

    #[test]
    fn a_failing_example_lists_every_difference_at_its_name() {
        let bad = failures(
            "  - name: bad\n    upstream: { status: 400, body: '{\"code\":\"slow\",\"msg\":\"wait\"}' }\n    expect:\n      status: 400\n      headers: { Retry-After: \"2\" }\n      absent_headers: [Retry-After]\n      problem: { detail: other }\n      body_excludes: [wait]\n",
        );
        assert_eq!(
            bad,
            ["p.yaml:9:11: example `bad` fails: status 400 expected, got 429 (rule: throttled); header Retry-After: `2` expected, got `1`; header Retry-After must be absent; problem.detail: \"other\" expected, got \"wait\"; body must not contain `wait`; trace: rule throttled: matched | decision: rule throttled -> 429 Too Many Requests"]
        );
    }

    #[test]
    fn an_unknown_example_encoding_fails_the_example() {
        let bad = failures(
            "  - name: br\n    upstream: { status: 400, body: x, encoding: br }\n    expect: { status: 400 }\n",
        );
        assert_eq!(
            bad,
            ["p.yaml:9:11: example `br` fails: unknown encoding `br` (gzip, deflate)"]
        );
    }

    #[test]
    fn a_passing_success_body_is_unchanged() {
        let ok = failures("  - name: fine\n    upstream: { status: 200, body: '{}' }\n    expect: { status: 200, rule: none, body_unchanged: true }\n");
        assert_eq!(ok, Vec::<String>::new());
    }
}
