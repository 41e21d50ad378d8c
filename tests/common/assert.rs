//! Shared assertions on gateway responses: RFC 9457 problem bodies the gateway made itself or
//! from an upstream's answer, and that nothing internal (stack traces, exception names, vendor
//! internals) reaches a client.

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

/// A problem normalized from an upstream's answer: `status` with `X-Upstream-Status: upstream`.
pub fn upstream_problem(r: &Response, status: u16, upstream: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("x-upstream-status"), Some(upstream.to_string().as_str()));
    let p = r.json();
    assert_eq!(p["status"], status, "{}", r.text());
    p
}

/// Words that only an internal error leaks (stack frames, .NET/Java exception names).
pub const INTERNALS: &[&str] = &["StackTrace", "   at ", "Exception", "System.", "java.", "ORA-"];

/// No internal detail anywhere in the response's body.
pub fn no_internals(r: &Response) {
    let text = r.text();
    for word in INTERNALS {
        assert!(!text.contains(word), "`{word}` leaked: {text}");
    }
}
