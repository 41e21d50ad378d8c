//! Which requests are upgrade requests, and what their route does with them: forward the
//! protocols its `upgrades:` lists, refuse the others (403 `upgrade-refused`). Every request
//! pays one header lookup (`Upgrade`); the rest runs only for a request that has the field.
//!
//! An upgrade request is HTTP/1.1 with `Upgrade` and a `Connection` that names `upgrade` (RFC
//! 9110 section 7.8). `h2c` is never one to forward: it is dropped, and what remains of the
//! list decides (only `h2c`, as `curl --http2` sends on a plain URL: an ordinary request, served
//! over HTTP/1.1, which RFC 9110 allows a server to do by ignoring `Upgrade`). Without
//! `Connection: upgrade`, on HTTP/1.0 or from an HTTP/2 client (RFC 8441's extended CONNECT
//! is not supported) the field is hop-by-hop and simply dropped.

use http::header::{self, HeaderValue};
use pingora::http::RequestHeader;

/// What to do with a request's `Upgrade` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Not an upgrade request: served as an ordinary one, `Upgrade` dropped as hop-by-hop.
    Ordinary,
    /// The route forwards none of the protocols asked for: the client's `Upgrade` value (for
    /// the log and, when it is plain tokens, the problem detail: `refusal_detail`).
    Refuse(String),
    /// An upgrade request that declares a body: the gateway reads nothing behind the head
    /// before the upstream's 101, so it cannot be forwarded (400).
    WithBody,
    /// Forward with `Connection: upgrade` and this `Upgrade` (the protocols the route allows,
    /// in the client's order).
    Forward(HeaderValue),
}

/// The plan for `req` on a route that forwards `allowed` (lower-case protocol names).
pub fn plan(req: &RequestHeader, allowed: &[String]) -> Plan {
    // The one lookup every request pays.
    let Some(upgrade) = req.headers.get(header::UPGRADE) else {
        return Plan::Ordinary;
    };
    let asks = req.version == http::Version::HTTP_11
        && req
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return Plan::Ordinary;
    }
    let Ok(value) = upgrade.to_str() else {
        return Plan::Refuse(log_text(upgrade.as_bytes()));
    };
    let mut forwarded: Vec<&str> = Vec::new();
    let mut refused = false;
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let name = protocol_name(item);
        if name.eq_ignore_ascii_case("h2c") {
            continue;
        }
        if allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            forwarded.push(item);
        } else {
            refused = true;
        }
    }
    if forwarded.is_empty() {
        return if refused {
            Plan::Refuse(log_text(value.as_bytes()))
        } else {
            Plan::Ordinary
        };
    }
    if declares_body(req) {
        return Plan::WithBody;
    }
    match HeaderValue::from_str(&forwarded.join(", ")) {
        Ok(v) => Plan::Forward(v),
        Err(_) => Plan::Refuse(log_text(value.as_bytes())),
    }
}

/// Whether a 101's `Upgrade` names only protocols that were forwarded (`offered`). A 101
/// without `Upgrade` is taken as the switch to the one offered (some servers leave it out).
pub fn switched_to_offered(response_upgrade: Option<&HeaderValue>, offered: &HeaderValue) -> bool {
    let Some(answer) = response_upgrade else {
        return true;
    };
    let (Ok(answer), Ok(offered)) = (answer.to_str(), offered.to_str()) else {
        return false;
    };
    answer.split(',').map(str::trim).filter(|i| !i.is_empty()).all(|item| {
        offered
            .split(',')
            .any(|o| protocol_name(o.trim()).eq_ignore_ascii_case(protocol_name(item)))
    })
}

/// `websocket` of `websocket/13`.
fn protocol_name(item: &str) -> &str {
    item.split_once('/').map_or(item, |(name, _)| name).trim()
}

fn declares_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(header::TRANSFER_ENCODING)
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().iter().any(|b| *b != b'0' && *b != b' '))
}

/// The client's `Upgrade` value as the outcome keeps it: at most 64 bytes, lossy UTF-8.
fn log_text(value: &[u8]) -> String {
    String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned()
}

/// The 403's detail naming the refused protocols, when the client's value is plain protocol
/// tokens: otherwise `None` (the kind's fixed detail), so a client cannot write into the
/// gateway's answer.
pub fn refusal_detail(protocol: &str) -> Option<String> {
    let plain = !protocol.is_empty()
        && protocol
            .bytes()
            .all(|b| crate::snapshot::http_token_char(b) || b"/, ".contains(&b));
    plain.then(|| format!("This route does not forward `Upgrade: {protocol}`."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: http::Version, fields: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/ws", None).unwrap();
        r.set_version(version);
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn ws() -> Vec<String> {
        vec!["websocket".to_owned()]
    }

    const H11: http::Version = http::Version::HTTP_11;

    #[test]
    fn a_websocket_request_on_a_route_that_allows_it_is_forwarded() {
        let r = req(H11, &[("Connection", "keep-alive, Upgrade"), ("Upgrade", "WebSocket")]);
        assert_eq!(plan(&r, &ws()), Plan::Forward(HeaderValue::from_static("WebSocket")));
        assert_eq!(plan(&r, &[]), Plan::Refuse("WebSocket".to_owned()));
    }

    #[test]
    fn h2c_is_never_forwarded_and_alone_is_an_ordinary_request() {
        let r = req(H11, &[("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c")]);
        assert_eq!(plan(&r, &ws()), Plan::Ordinary);
        assert_eq!(plan(&r, &[]), Plan::Ordinary);
        let r = req(H11, &[("Connection", "upgrade"), ("Upgrade", "h2c, websocket/13")]);
        assert_eq!(plan(&r, &ws()), Plan::Forward(HeaderValue::from_static("websocket/13")));
    }

    #[test]
    fn without_connection_upgrade_or_on_http10_the_field_is_only_hop_by_hop() {
        assert_eq!(plan(&req(H11, &[("Upgrade", "websocket")]), &[]), Plan::Ordinary);
        let r = req(
            http::Version::HTTP_10,
            &[("Connection", "upgrade"), ("Upgrade", "websocket")],
        );
        assert_eq!(plan(&r, &[]), Plan::Ordinary);
        assert_eq!(plan(&req(H11, &[("Connection", "upgrade")]), &[]), Plan::Ordinary);
    }

    #[test]
    fn a_body_or_a_hostile_value_is_not_forwarded() {
        let r = req(
            H11,
            &[
                ("Connection", "upgrade"),
                ("Upgrade", "websocket"),
                ("Content-Length", "5"),
            ],
        );
        assert_eq!(plan(&r, &ws()), Plan::WithBody);
        let r = req(
            H11,
            &[
                ("Connection", "upgrade"),
                ("Upgrade", "websocket"),
                ("Content-Length", "0"),
            ],
        );
        assert!(matches!(plan(&r, &ws()), Plan::Forward(_)));
        let r = req(H11, &[("Connection", "upgrade"), ("Upgrade", "<script>")]);
        assert_eq!(plan(&r, &ws()), Plan::Refuse("<script>".to_owned()));
        assert_eq!(refusal_detail("<script>"), None);
        assert_eq!(
            refusal_detail("websocket, foo/2").as_deref(),
            Some("This route does not forward `Upgrade: websocket, foo/2`.")
        );
    }

    #[test]
    fn a_101_must_switch_to_a_protocol_that_was_offered() {
        let offered = HeaderValue::from_static("websocket");
        assert!(switched_to_offered(
            Some(&HeaderValue::from_static("WebSocket")),
            &offered
        ));
        assert!(switched_to_offered(None, &offered));
        assert!(!switched_to_offered(Some(&HeaderValue::from_static("h2c")), &offered));
    }
}
