//! Shared assertions on gateway responses: RFC 9457 problem bodies the gateway made itself
//! (`gateway_problem`, `strict_gateway_problem`) or normalized from an upstream's answer
//! (`upstream_problem`), and that nothing internal (stack traces, exception names, a vendor's
//! own error shape) reaches a client (`no_leak`). Every test that checks a problem body or a
//! leak goes through these.

use super::Response;

/// A problem the gateway made (`origin: gateway`, `type: urn:statusgate:problem:<kind>`), with
/// `status` in the response and the body.
pub fn gateway_problem(r: &Response, status: u16, kind: &str) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    let p = r.json();
    assert_eq!(p["status"], status, "{}", r.text());
    assert_eq!(p["origin"], "gateway", "{}", r.text());
    assert_eq!(p["type"], format!("urn:statusgate:problem:{kind}"), "{}", r.text());
    p
}

/// `gateway_problem` plus the strict envelope: the problem media type, no `X-Upstream-Status`,
/// and the body's `request_id` equal to `X-Request-Id`.
pub fn strict_gateway_problem(r: &Response, status: u16, kind: &str) -> serde_json::Value {
    let p = gateway_problem(r, status, kind);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(
        r.header("x-upstream-status").is_none(),
        "gateway-made responses carry no upstream status"
    );
    assert_eq!(p["request_id"].as_str(), r.header("x-request-id"));
    p
}

/// A problem normalized from an upstream's answer: `status` and `reason` on the status line,
/// the problem media type, `X-Upstream-Status: upstream`, and in the body the same `status`,
/// `upstream_status: upstream`, `origin: upstream` and `request_id` equal to `X-Request-Id`.
/// Returns the body for the members a test checks on top (detail, title, type, vendor_code).
pub fn upstream_problem(r: &Response, status: u16, reason: &str, upstream: u16) -> serde_json::Value {
    assert_eq!((r.status, r.reason.as_str()), (status, reason), "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-upstream-status"), Some(upstream.to_string().as_str()));
    let p = r.json();
    assert_eq!(p["status"], status, "problem status equals the HTTP status: {p}");
    assert_eq!(p["upstream_status"], upstream, "{p}");
    assert_eq!(p["origin"], "upstream", "{p}");
    let id = r.header("x-request-id").expect("every response carries X-Request-Id");
    assert_eq!(p["request_id"], id, "{p}");
    p
}

/// Words that only an internal error leaks, whatever the vendor: stack frames and .NET/Java
/// exception and namespace names.
pub const INTERNALS: &[&str] = &[
    "StackTrace",
    "stackTrace",
    "Exception",
    "System.",
    "java.",
    ".cs:line",
    ".java:",
];

/// Neither an `INTERNALS` word nor any of `also` (a vendor's own error members or namespaces)
/// in `text` (a whole response's text, or one member of it).
pub fn no_leak(text: &str, also: &[&str]) {
    for word in INTERNALS.iter().chain(also) {
        assert!(!text.contains(word), "`{word}` leaked: {text}");
    }
}
