//! One client request, forwarded: route it, send it upstream, read the upstream's header (under
//! a real deadline), read the body only when a rule may need it, let the engine decide, and
//! write the canonical response. Everything that can fail ends in a `GatewayFailure` answered
//! with a problem body, or, once the header is out, in a closed connection. An upgrade request
//! that its route forwards (`upgrade`) is sent without reading anything behind its head; on the
//! upstream's 101 the connection becomes a `tunnel`, and whatever the answer, it closes after.
//!
//! Why not pingora's `ProxyHttp`: in pingora 0.9 the response header is written before any body
//! arrives (cloudflare/pingora#978), so a status that depends on the body (Huawei's 400 whose
//! `error_code` says "throttled") cannot be set there, and its read timeout is per read, not a
//! deadline. The exchange below uses pingora's own server session, connector and pool.

use std::io::Write;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession as UpstreamSession;
use pingora::protocols::http::ServerSession;
use pingora::Error;

use super::body_buffer::BodyBuffer;
use super::connections::acquire_upstream;
use super::rescue::{rescue, Rescue, Trouble};
use super::respond::{to_pingora, X_REQUEST_ID};
use super::target::normalize_path;
use super::tunnel;
use super::upgrade::{self, Plan};
use crate::balancer::NoPeer;
use crate::engine::pipeline::{self, BodyNeed, Normalized, RawBody};
use crate::engine::profile::ProblemDetail;
use crate::engine::response::{compose_gateway, compose_switch, CanonicalBody, HOP_BY_HOP};
use crate::engine::{CompiledProfile, Decision, GatewayFailure, Origin, ProblemFormat, RequestFacts, UpstreamHead};
use crate::reload::Serving;
use crate::snapshot::{Route, UpstreamGroup};
use crate::telemetry::outcome::{Outcome, Upgrade, UpgradeResult};
use crate::telemetry::traces::UpstreamContext;
use crate::telemetry::{shadow, unmatched};
use crate::upstream_peer::below_min_version;

/// How a request ended, for connection reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Response complete; the client connection may be reused.
    Complete,
    /// The client connection must close (body left unread, failure mid-response, client gone).
    Close,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");
static EMPTY: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);
/// How long the trailers of an HTTP/2 response are waited for once its body is through.
const H2_TRAILER_WAIT: Duration = Duration::from_millis(100);

/// Where sending the request or reading the response header stopped, with pingora's error: not a
/// failure kind (the failure table, `rescue`, decides that).
enum SendStop {
    Upstream(Box<Error>),
    Deadline,
    TooLarge,
    ClientBody(Box<Error>),
}

pub struct Exchange<'a> {
    pub session: &'a mut ServerSession,
    pub snap: &'a Serving,
    pub connector: &'a Connector,
    pub log: &'a mut Outcome,
    pub format: ProblemFormat,
    pub head_request: bool,
    /// The client speaks HTTP/1.0: no chunked responses.
    pub http10: bool,
    /// The client sent `Expect: 100-continue`: it gets `100 Continue` when forwarding starts.
    pub expects_continue: bool,
    /// The request header was read (`session.req_header()` may be called): its method decides
    /// whether a gateway-made problem is `retryable`.
    pub header_read: bool,
}

impl Exchange<'_> {
    /// Answers what the failure table says about `trouble`, keeping pingora's error text (if
    /// any) for the log line.
    pub async fn rescue(&mut self, trouble: Trouble<'_>) -> Ending {
        let error = match trouble {
            Trouble::Connect(e)
            | Trouble::Send { error: e, .. }
            | Trouble::ClientBody(e)
            | Trouble::Body(e)
            | Trouble::UnreadableHeader(e) => Some(e),
            _ => None,
        };
        match rescue(trouble) {
            Rescue::HangUp => Ending::Close,
            Rescue::Answer { failure, reuse } => {
                if let Some(e) = error {
                    self.log.error = Some(e.to_string());
                }
                self.answer(failure, reuse).await
            }
        }
    }

    /// Answers a failure with the canonical problem body.
    async fn answer(&mut self, failure: GatewayFailure, reusable: bool) -> Ending {
        self.log.failure = Some(failure);
        self.log.origin = Origin::Gateway;
        self.log.status = failure.status();
        let canonical = &self.snap.canonical;
        let method = self.header_read.then(|| self.session.req_header().method.as_str());
        let mut problem = canonical.gateway_problem(failure, method, &self.log.request_id);
        if let (GatewayFailure::UpgradeRefused, Some(u)) = (failure, &self.log.upgrade) {
            if let Some(detail) = upgrade::refusal_detail(&u.protocol) {
                problem.detail = Some(detail);
            }
        }
        let resp = compose_gateway(
            &problem,
            canonical.reason(problem.status),
            canonical.gateway_retry_after(&problem),
            self.format,
            self.head_request,
        );
        let body = match resp.body {
            CanonicalBody::Replace(b) => Bytes::from(b),
            _ => Bytes::new(),
        };
        let Ok(header) = to_pingora(resp.status, resp.reason, resp.headers) else {
            return Ending::Close;
        };
        if !reusable {
            self.session.set_keepalive(None);
        }
        let written = self.session.write_response_header(Box::new(header)).await.is_ok()
            && if body.is_empty() {
                self.session.finish_body().await.is_ok()
            } else {
                self.session.write_response_body(body, true).await.is_ok()
            };
        if written && reusable {
            Ending::Complete
        } else {
            Ending::Close
        }
    }

    pub async fn run(&mut self) -> Ending {
        let snap = self.snap;
        // Route and build the upstream request while the client's header is borrowed.
        let planned = {
            let req = self.session.req_header();
            // Absolute-form: the target's authority is the host (pingora has checked that any
            // Host field agrees with it).
            let host = req
                .uri
                .host()
                .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()));
            // Route on the normalized path, and send that same path upstream.
            let path = match normalize_path(req.uri.path()) {
                Ok(p) => p,
                Err(refusal) => {
                    self.log.error = Some(refusal.as_str().to_owned());
                    return self.rescue(Trouble::BadTarget).await;
                }
            };
            let path = &*path;
            match snap.route_for(host, path) {
                None => Err((Trouble::NoRoute, None)),
                Some((index, route)) => {
                    // An upgrade request: one header lookup decides for every other request.
                    let upgrade = match upgrade::plan(req, &route.upgrades) {
                        Plan::Ordinary => Ok(None),
                        Plan::Forward(protocols) => Ok(Some(protocols)),
                        Plan::WithBody => Err(Trouble::UpgradeWithBody),
                        Plan::Refuse(protocol) => {
                            self.log.upgrade = Some(Upgrade {
                                protocol,
                                result: UpgradeResult::Refused,
                            });
                            Err(Trouble::UpgradeRefused)
                        }
                    };
                    let declared_len = content_length(&req.headers);
                    match upgrade {
                        Err(trouble) => Err((trouble, Some(index))),
                        Ok(_) if declared_len.is_some_and(|n| n > snap.limits.request_body) => {
                            Err((Trouble::DeclaredBodyTooLarge, Some(index)))
                        }
                        Ok(upgrade) => {
                            let upstream_path = route.upstream_path(path).into_owned();
                            self.upstream_request(req, &upstream_path, &route.upstream, upgrade.as_ref())
                                .map(|r| (index, route, upstream_path, r, upgrade))
                                .map_err(|_| (Trouble::UnbuildableRequest, Some(index)))
                        }
                    }
                }
            }
        };
        let (index, route, upstream_path, mut upstream_req, upgrade) = match planned {
            Ok(p) => p,
            Err((trouble, index)) => {
                self.log.route = index;
                return self.rescue(trouble).await;
            }
        };
        self.log.route = Some(index);
        if upgrade.is_some() {
            // Whatever answers a forwarded upgrade request (a 101, the upstream's refusal, a
            // gateway failure), the bytes behind its head are never read as a request.
            self.session.set_keepalive(None);
        }
        let group = &route.upstream;
        let Some(balancer) = snap.balancers.of(group) else {
            return self.rescue(Trouble::NoUpstream).await;
        };
        let Ok(_slot) = acquire_upstream(group, balancer, &crate::telemetry::metrics::global()) else {
            return self.rescue(Trouble::UpstreamConnectionLimit).await;
        };
        // Tracing on: the upstream exchange's span starts, and the upstream request names it
        // in its `traceparent` (tracing off: the client's trace fields pass as they came).
        let trace_context = match self.log.trace.as_mut() {
            None => None,
            Some(t) => {
                let scheme = if group.def.tls.is_some() { "https" } else { "http" };
                let method = self.session.req_header().method.as_str();
                let context = t.start_upstream(method, scheme, &upstream_path);
                if set_trace_context(&mut upstream_req, context.as_ref()).is_err() {
                    return self.rescue(Trouble::UnbuildableRequest).await;
                }
                context
            }
        };

        // Connect (skipping addresses that recently failed, trying each at most once) and send;
        // a pooled connection that turns out stale is retried once, fresh, when no request body
        // byte has left yet (the header is then rebuilt: the first was consumed).
        let mut connect_failures = 0;
        let mut retried = false;
        let mut next_req = Some(upstream_req);
        let (mut up, picked) = loop {
            let picked = match balancer.pick() {
                Ok(p) => p,
                Err(NoPeer::AllDown) => return self.rescue(Trouble::NoUpstream).await,
                Err(NoPeer::NoAddress) => return self.rescue(Trouble::NoAddress).await,
            };
            let peer = picked.address();
            self.log.upstream_addr = Some(peer.addr);
            // Every session, pooled ones too: a reused HTTP/2 stream rides on a connection
            // that may never have been checked (pingora pools it as soon as it is made).
            let session = match self.connector.get_http_session(&peer.peer).await {
                Ok((mut up, reused)) => match below_min_version(&up, &group.def) {
                    Some(e) => {
                        up.shutdown().await;
                        Err(e)
                    }
                    None => Ok((up, reused)),
                },
                Err(e) => Err(e),
            };
            let (mut up, reused) = match session {
                Ok(s) => s,
                Err(e) => {
                    // The gateway's own trouble blames no address: answered at once.
                    if rescue(Trouble::Connect(&e)).marks_down() {
                        balancer.mark_down(peer.addr);
                        connect_failures += 1;
                        if connect_failures < picked.set_len() {
                            continue;
                        }
                    }
                    return self.rescue(Trouble::Connect(&e)).await;
                }
            };
            let mut req = match next_req.take() {
                Some(r) => r,
                None => {
                    let rebuilt =
                        self.upstream_request(self.session.req_header(), &upstream_path, group, upgrade.as_ref());
                    match rebuilt.and_then(|mut r| set_trace_context(&mut r, trace_context.as_ref()).map(|()| r)) {
                        Ok(r) => r,
                        Err(_) => return self.rescue(Trouble::UnbuildableRequest).await,
                    }
                }
            };
            // A named address gets its configured name as Host unless `host_header` says.
            if let (None, Some(host)) = (&group.def.host_header, &peer.host) {
                if req.insert_header(header::HOST, host.clone()).is_err() {
                    return self.rescue(Trouble::UnbuildableRequest).await;
                }
            }
            let mut body_sent = false;
            match self.send(&mut up, req, group, upgrade.is_some(), &mut body_sent).await {
                Ok(()) => break (up, picked),
                Err(SendStop::Upstream(_)) if reused && !body_sent && !retried => retried = true,
                Err(SendStop::Upstream(e)) => return self.rescue(Trouble::Send { error: &e, body_sent }).await,
                Err(SendStop::Deadline) => return self.rescue(Trouble::ResponseDeadline { body_sent }).await,
                Err(SendStop::TooLarge) => return self.rescue(Trouble::RequestBodyTooLarge).await,
                Err(SendStop::ClientBody(e)) => return self.rescue(Trouble::ClientBody(&e)).await,
            }
        };
        self.log.upstream_header_after = Some(self.log.started.elapsed());
        let ending = self.respond(&mut up, &upstream_path, route, upgrade.as_ref()).await;
        let log = &mut *self.log;
        if let Some(t) = log.trace.as_mut() {
            t.end_upstream(log.upstream_addr, log.upstream_status, log.failure);
        }
        if let UpstreamSession::H2(h2) = &mut up {
            // An h2 response with trailers ends after them: read (and drop, as over HTTP/1.1)
            // them so that the stream counts as finished. Briefly: with body data still
            // unread (a replaced body) trailers never come, and the stream is reset instead.
            if !h2.response_finished() {
                let trailers = pingora::time::fast_timeout::fast_timeout(H2_TRAILER_WAIT, h2.read_trailers()).await;
                if !matches!(trailers, Ok(Ok(_))) || !h2.response_finished() {
                    h2.shutdown();
                }
            }
        }
        // An upgraded connection is never pooled (the tunnel shut it down).
        let upgraded = matches!(&up, UpstreamSession::H1(h1) if h1.was_upgraded());
        if !upgraded && up.response_done() {
            self.connector
                .release_http_session(up, &picked.address().peer, Some(group.def.idle_timeout))
                .await;
        }
        if upgrade.is_some() {
            // Declined or tunnelled: the bytes behind the upgrade request's head were never
            // read as a request, and never will be.
            return Ending::Close;
        }
        ending
    }

    /// The request as the upstream sees it: path rewritten, hop-by-hop headers dropped,
    /// request id and forwarding headers set; for a forwarded upgrade, `Connection: upgrade`
    /// and `Upgrade` with the protocols the route allows.
    fn upstream_request(
        &self,
        req: &RequestHeader,
        upstream_path: &str,
        group: &UpstreamGroup,
        upgrade: Option<&HeaderValue>,
    ) -> pingora::Result<RequestHeader> {
        let mut up = req.clone();
        // Upstreams always get HTTP/1.1 in origin-form.
        up.set_version(http::Version::HTTP_11);
        if let Some(authority) = req.uri.authority() {
            up.insert_header(header::HOST, authority.as_str())?;
        }
        // The target as the client wrote it (absolute-form included) vs the origin-form the
        // upstream must get: the normalized path and the query.
        let raw = req.raw_path();
        let query = req.uri.query();
        let origin_form = raw
            .strip_prefix(upstream_path.as_bytes())
            .is_some_and(|rest| match query {
                Some(q) => rest.len() == q.len() + 1 && rest[0] == b'?' && &rest[1..] == q.as_bytes(),
                None => rest.is_empty(),
            });
        if !origin_form {
            let pq = match req.uri.query() {
                Some(q) => format!("{upstream_path}?{q}"),
                None => upstream_path.to_owned(),
            };
            up.set_uri(
                http::Uri::try_from(pq)
                    .map_err(|e| Error::because(pingora::ErrorType::InvalidHTTPHeader, "path", e))?,
            );
        }
        // Fields named in Connection are hop-by-hop too (RFC 9110 7.6.1).
        if let Some(named) = req.headers.get(header::CONNECTION).and_then(|v| v.to_str().ok()) {
            for name in named.split(',') {
                up.remove_header(name.trim());
            }
        }
        for name in HOP_BY_HOP {
            up.remove_header(&name);
        }
        // The gateway meets `Expect: 100-continue` itself (see `send`).
        up.remove_header(&header::EXPECT);
        if req.version == http::Version::HTTP_2 {
            // HTTP/2 may split Cookie into several fields (RFC 9113 section 8.2.3); an HTTP/1.1
            // upstream gets them as one, joined by "; ".
            let mut cookies = req.headers.get_all(header::COOKIE).iter();
            if let (Some(first), Some(_)) = (cookies.next(), cookies.next()) {
                let mut joined = first.as_bytes().to_vec();
                for c in req.headers.get_all(header::COOKIE).iter().skip(1) {
                    joined.extend_from_slice(b"; ");
                    joined.extend_from_slice(c.as_bytes());
                }
                if let Ok(v) = HeaderValue::from_bytes(&joined) {
                    up.insert_header(header::COOKIE, v)?;
                }
            }
        }
        if let Some(protocols) = upgrade {
            up.insert_header(header::CONNECTION, "upgrade")?;
            up.insert_header(header::UPGRADE, protocols.clone())?;
        }
        up.insert_header(X_REQUEST_ID, self.log.request_id.as_str())?;
        if let Some(host) = &group.def.host_header {
            up.insert_header(header::HOST, host.clone())?;
        }
        let tls = self.session.digest().is_some_and(|d| d.ssl_digest.is_some());
        up.insert_header(X_FORWARDED_PROTO, if tls { HTTPS } else { HTTP })?;
        if let Some(client) = self.session.client_addr().and_then(|a| a.as_inet()) {
            // The client IP, appended to any X-Forwarded-For, without a heap detour.
            let mut buf = [0u8; 64];
            let mut w = &mut buf[..];
            let value = match req.headers.get(X_FORWARDED_FOR) {
                Some(prev) => {
                    let mut v = Vec::with_capacity(prev.len() + 48);
                    v.extend_from_slice(prev.as_bytes());
                    v.extend_from_slice(b", ");
                    let _ = write!(w, "{}", client.ip());
                    let n = 64 - w.len();
                    v.extend_from_slice(&buf[..n]);
                    HeaderValue::from_bytes(&v)
                }
                None => {
                    let _ = write!(w, "{}", client.ip());
                    let n = 64 - w.len();
                    HeaderValue::from_bytes(&buf[..n])
                }
            };
            if let Ok(v) = value {
                up.insert_header(X_FORWARDED_FOR, v)?;
            }
        }
        Ok(up)
    }

    async fn send(
        &mut self,
        up: &mut UpstreamSession,
        req: RequestHeader,
        group: &UpstreamGroup,
        upgrade: bool,
        body_sent: &mut bool,
    ) -> Result<(), SendStop> {
        // Per-read and per-write inactivity: pingora-proxy copies these from the peer; the
        // exchange drives the session itself, so it sets them.
        up.set_write_timeout(Some(group.def.write_timeout));
        up.set_read_timeout(None);
        let mut req = req;
        if up.as_http2().is_some() {
            for_h2(&mut req, group);
        }
        up.write_request_header(Box::new(req))
            .await
            .map_err(SendStop::Upstream)?;
        if self.expects_continue && !self.session.is_body_done() {
            // Forwarding has started: the client may send its body now (RFC 9110 section
            // 10.1.1). Only once per request: a stale pooled connection's retry sends no second.
            self.expects_continue = false;
            self.session
                .write_continue_response()
                .await
                .map_err(SendStop::ClientBody)?;
        }
        let limit = self.snap.limits.request_body;
        let mut total = 0u64;
        // An upgrade request has no body (`Plan::WithBody` refused those): nothing behind its
        // head is read before the upstream has answered, so no byte can reach the upstream
        // ahead of a 101 (CVE-2026-2833 was pingora forwarding them).
        let mut reading = !upgrade;
        while reading {
            match self.session.read_request_body().await {
                Ok(Some(chunk)) => {
                    total += chunk.len() as u64;
                    if total > limit {
                        return Err(SendStop::TooLarge);
                    }
                    *body_sent = true;
                    up.write_request_body(chunk, false).await.map_err(SendStop::Upstream)?;
                }
                Ok(None) => reading = false,
                Err(e) => return Err(SendStop::ClientBody(e)),
            }
        }
        up.finish_request_body().await.map_err(SendStop::Upstream)?;
        // The response deadline: the whole header, informational responses included. pingora's
        // timer wheel (10 ms resolution) instead of a tokio timer: no eventfd write per request.
        let read = async {
            loop {
                up.read_response_header().await?;
                match up.response_header().map(|h| h.status.as_u16()) {
                    Some(s) if (100..200).contains(&s) && s != 101 => continue,
                    _ => return Ok::<(), Box<Error>>(()),
                }
            }
        };
        let read = pingora::time::fast_timeout::fast_timeout(group.def.response_timeout, read).await;
        up.set_read_timeout(Some(group.def.body_timeout));
        match read {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendStop::Upstream(e)),
            Err(_) => Err(SendStop::Deadline),
        }
    }

    async fn respond(
        &mut self,
        up: &mut UpstreamSession,
        upstream_path: &str,
        route: &Route,
        upgrade: Option<&HeaderValue>,
    ) -> Ending {
        let Some(status) = up.response_header().map(|h| h.status.as_u16()) else {
            return self.rescue(Trouble::NoResponseHeader).await;
        };
        self.log.upstream_status = Some(status);
        if let Some(offered) = upgrade {
            let protocol = offered.to_str().unwrap_or("-").to_owned();
            if let (101, UpstreamSession::H1(h1)) = (status, &mut *up) {
                let named = h1.resp_header().and_then(|h| h.headers.get(header::UPGRADE));
                if h1.was_upgraded() && upgrade::switched_to_offered(named, offered) {
                    return self.switch(h1, protocol).await;
                }
            }
            // Declined (or a 101 for a protocol that was not offered: 502 below): answered like
            // any other response; the connection closes after it.
            self.log.upgrade = Some(Upgrade {
                protocol,
                result: UpgradeResult::Declined,
            });
        }
        if status == 101 {
            // No upgrade was forwarded (or the 101 names a protocol that was not offered): a 101
            // the client did not ask for; the upstream connection is not reused.
            self.log.error = Some("unsolicited 101 Switching Protocols".to_owned());
            up.shutdown().await;
            return self.rescue(Trouble::UnsolicitedSwitch).await;
        }
        let profile = &route.profile;
        // A route without a shadow pays one `Option` check for the feature (`shadow_need` is
        // `None`); with one, the shadow's need is asked of the same facts.
        let shadow = route.shadow.as_deref();
        let (need, shadow_need) = {
            let facts = request_facts(self.session.req_header(), upstream_path, &self.log.request_id);
            let head = UpstreamHead {
                status,
                headers: up.response_header().map_or(&*EMPTY, |h| &h.headers),
            };
            (
                pipeline::body_need(profile, &facts, &head),
                shadow.map(|s| pipeline::body_need(s, &facts, &head)),
            )
        };

        // Buffer only when a rule may need the body, and never past the cap on the raw bytes:
        // the active profile's need and cap decide; when only the shadow needs the body it is
        // buffered under the shadow's cap, and nothing about the read may change the client's
        // answer (a failed or late read is the shadow's loss, not the client's).
        let (read_cap, shadow_only) = match (need, shadow_need) {
            (BodyNeed::Buffer { cap }, _) => (Some(cap), false),
            (_, Some(BodyNeed::Buffer { cap })) => (Some(cap), true),
            _ => (None, false),
        };
        // Sized once from Content-Length, never past the cap (+ 1, the byte that proves "over").
        let mut buffered = BodyBuffer::new(read_cap.map_or(0, |cap| {
            up.response_header()
                .and_then(|h| content_length(&h.headers))
                .map_or(0, |len| {
                    usize::try_from(len).unwrap_or(usize::MAX).min(cap.saturating_add(1))
                })
        }));
        let mut complete = need == BodyNeed::Bodyless;
        let mut over_cap = false;
        // Only the shadow wanted the body and its read failed (the error) or ran out of time:
        // the client gets what it would have got without the shadow.
        let mut body_error = None;
        let mut shadow_unread = false;
        if let Some(cap) = read_cap {
            // Each read is bounded by `body_timeout` (the session's read timeout), the whole body
            // by `body_deadline`.
            let read = async {
                loop {
                    match up.read_response_body().await {
                        Ok(Some(chunk)) => {
                            buffered.push(chunk);
                            if buffered.len() > cap {
                                return Ok(false);
                            }
                        }
                        Ok(None) => return Ok(true),
                        Err(e) => return Err(e),
                    }
                }
            };
            match pingora::time::fast_timeout::fast_timeout(route.upstream.def.body_deadline, read).await {
                Ok(Ok(false)) => over_cap = true,
                Ok(Ok(true)) => complete = true,
                Ok(Err(e)) if shadow_only => {
                    body_error = Some(e);
                    shadow_unread = true;
                }
                // The rest of the body streams as it would have without the shadow.
                Err(_) if shadow_only => shadow_unread = true,
                Ok(Err(e)) => {
                    up.shutdown().await;
                    return self.rescue(Trouble::Body(&e)).await;
                }
                Err(_) => {
                    up.shutdown().await;
                    return self.rescue(Trouble::BodyDeadline).await;
                }
            }
        }

        // Decide and compose, with the client's and the upstream's headers borrowed.
        let composed = {
            let upstream_headers = up.response_header().map_or(&*EMPTY, |h| &h.headers);
            let facts = request_facts(self.session.req_header(), upstream_path, &self.log.request_id);
            let head = UpstreamHead {
                status,
                headers: upstream_headers,
            };
            let raw = match need {
                BodyNeed::Buffer { .. } if over_cap => RawBody::OverCap,
                BodyNeed::Buffer { .. } if complete => RawBody::Complete(buffered.as_bytes()),
                _ => RawBody::NotRead,
            };
            let Normalized {
                decision,
                response: resp,
            } = pipeline::normalize(
                profile,
                &self.snap.canonical,
                &route.ensure,
                &facts,
                &head,
                raw,
                self.format,
            );
            let skipped = decision.body_skip;
            self.log.redactions = decision.redactions;
            (
                to_pingora(resp.status, resp.reason, resp.headers),
                resp.body,
                decision.status,
                decision.rule.map(str::to_owned),
                decision.rule_index,
                skipped,
                // Kept for the shadow's comparison, only on a route that has one.
                shadow.map(|_| decision),
            )
        };
        let (header, body, final_status, rule, rule_index, skipped, active) = composed;
        let h2_upstream = up.as_http2().is_some();
        let header = header.map(|mut h| {
            if h2_upstream
                && matches!(body, CanonicalBody::Upstream)
                && !self.head_request
                && !h.headers.contains_key(header::CONTENT_LENGTH)
                && !matches!(h.status.as_u16(), 100..=199 | 204 | 304)
            {
                // HTTP/2 frames its body itself; towards an HTTP/1.1 client a body without a
                // length is chunked (closing the connection instead would end keep-alive).
                let _ = h.insert_header(header::TRANSFER_ENCODING, "chunked");
            }
            if self.http10 && h.headers.contains_key(header::TRANSFER_ENCODING) {
                // HTTP/1.0 has no chunked coding (RFC 9112 section 6.1): the body is delimited
                // by closing the connection instead.
                h.remove_header(&header::TRANSFER_ENCODING);
                self.session.set_keepalive(None);
            }
            h
        });
        self.log.body_skip = skipped;
        self.log.status = final_status;
        self.log.rule = rule;
        self.log.rule_index = rule_index;
        let Ok(header) = header else {
            return self.rescue(Trouble::UnwritableHeader).await;
        };
        if self.session.write_response_header(Box::new(header)).await.is_err() {
            return Ending::Close;
        }
        let buffered = buffered.freeze();
        // The shadow reads the same bytes after the client's response is out.
        let for_shadow = active.as_ref().map(|_| buffered.clone());
        // An upstream error the canonical defaults decided (no rule matched): sampled for
        // discovery once the client has its answer (its body replaced, or none at all).
        let unmatched = rule_index.is_none() && status >= 400;
        let mut sample = None;
        let ending = match body {
            CanonicalBody::None => {
                if unmatched {
                    sample = Some((buffered, complete));
                }
                ok(self.session.finish_body().await.is_ok())
            }
            CanonicalBody::Replace(b) => {
                let written = self.session.write_response_body(Bytes::from(b), true).await.is_ok();
                // Drain a small remainder so the upstream connection can be pooled; for an
                // unmatched response whose body was not read, keep its first bytes.
                let mut kept = (unmatched && buffered.is_empty()).then(BytesMut::new);
                let mut ended = complete;
                if !complete && body_error.is_none() {
                    ended = drain(up, profile.body_buffer, kept.as_mut()).await;
                }
                if unmatched {
                    sample = Some(match kept {
                        Some(k) => (k.freeze(), ended),
                        None => (buffered, complete),
                    });
                }
                ok(written)
            }
            CanonicalBody::Upstream => self.stream(up, buffered, complete, body_error).await,
        };
        if let Some((bytes, complete)) = sample {
            self.sample_unmatched(up, status, final_status, &bytes, complete);
        }
        if let (Some(shadow), Some(active), Some(bytes)) = (shadow, active, for_shadow) {
            let raw = match shadow_need {
                Some(BodyNeed::Buffer { .. }) if over_cap => RawBody::OverCap,
                Some(BodyNeed::Buffer { .. }) if complete => RawBody::Complete(&bytes),
                _ => RawBody::NotRead,
            };
            let raw = if shadow_unread { None } else { Some(raw) };
            self.compare_shadow(up, upstream_path, route, shadow, active, raw);
        }
        ending
    }

    /// Records an unmatched upstream error in its route's discovery store: `body` as read (or
    /// drained), `complete` when it is the whole body.
    fn sample_unmatched(&self, up: &UpstreamSession, status: u16, canonical_status: u16, body: &[u8], complete: bool) {
        let Some(store) = self.log.route.and_then(|i| self.snap.unmatched.get(i)) else {
            return;
        };
        let headers = up.response_header().map_or(&*EMPTY, |h| &h.headers);
        let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let cut = body.len() > unmatched::CAPTURE_BYTES;
        store.record(
            &unmatched::Sample {
                upstream_status: status,
                content_type: text(header::CONTENT_TYPE),
                content_encoding: text(header::CONTENT_ENCODING),
                body: &body[..body.len().min(unmatched::CAPTURE_BYTES)],
                complete: complete && !cut,
                canonical_status,
            },
            self.snap.canonical.redaction(),
        );
    }

    /// Runs the route's shadow profile on the response just answered (through the same
    /// pipeline, on the same facts and body) and records how its decision compares with the
    /// active one; `raw`: `None` when the body only the shadow needed could not be read.
    fn compare_shadow(
        &self,
        up: &UpstreamSession,
        upstream_path: &str,
        route: &Route,
        shadow: &CompiledProfile,
        active: Decision<'_>,
        raw: Option<RawBody<'_>>,
    ) {
        let Some(stats) = self
            .log
            .route
            .and_then(|i| self.snap.shadows.get(i))
            .and_then(Option::as_ref)
        else {
            return;
        };
        let Some(raw) = raw else {
            stats.not_compared();
            return;
        };
        let Some(upstream_head) = up.response_header() else {
            return;
        };
        let facts = request_facts(self.session.req_header(), upstream_path, &self.log.request_id);
        let head = UpstreamHead {
            status: upstream_head.status.as_u16(),
            headers: &upstream_head.headers,
        };
        let canonical = &self.snap.canonical;
        // Only what a comparison reads: no response is composed and no problem member rendered.
        let shadowed = pipeline::decide(
            shadow,
            canonical,
            &route.ensure,
            &facts,
            &head,
            raw,
            None,
            ProblemDetail::Outline,
        );
        let label = |code: u16| canonical.contains(code).then_some(code);
        let codes = (label(active.status), label(shadowed.status));
        // Kept for the sampled log line: the decisions themselves move into the record.
        let (active_status, active_rule) = (active.status, active.rule);
        let (shadow_status, shadow_rule) = (shadowed.status, shadowed.rule);
        let divergence = stats.compared(
            &self.log.request_id,
            head.status,
            (codes.0.unwrap_or(0), codes.1.unwrap_or(0)),
            active,
            shadowed,
        );
        self.snap
            .series
            .route(self.log.route)
            .shadow_compared(divergence.map(|_| codes));
        if divergence.is_some_and(|n| n % shadow::LOG_EVERY == 1) {
            tracing::info!(
                target: "statusgate::shadow",
                route = %route.name,
                request_id = %self.log.request_id,
                upstream_status = head.status,
                active_status,
                active_rule = active_rule.unwrap_or("-"),
                shadow_status,
                shadow_rule = shadow_rule.unwrap_or("-"),
                divergences = divergence.unwrap_or(0),
                "shadow profile diverges (1 in {} logged)",
                shadow::LOG_EVERY
            );
        }
    }

    /// The upstream switched protocols: the 101 goes to the client with the upstream's fields,
    /// then the tunnel relays bytes both ways until it ends. The client connection closes after.
    async fn switch(&mut self, up: &mut pingora::protocols::http::v1::client::HttpSession, protocol: String) -> Ending {
        let headers = up
            .resp_header()
            .map_or_else(HeaderMap::new, |h| compose_switch(&h.headers, &self.log.request_id));
        let protocol = up
            .resp_header()
            .and_then(|h| h.headers.get(header::UPGRADE))
            .and_then(|v| v.to_str().ok())
            .map_or(protocol, str::to_owned);
        self.log.status = 101;
        let written = match to_pingora(101, self.snap.canonical.reason(101), headers) {
            Ok(h) => self.session.write_response_header(Box::new(h)).await.is_ok(),
            Err(_) => false,
        };
        if !written || !self.session.was_upgraded() {
            up.shutdown().await;
            self.log.error = Some("the 101 could not be written to the client".to_owned());
            return Ending::Close;
        }
        let series = &self.snap.series.route(self.log.route).tunnel;
        let stats = tunnel::relay(self.session, up, self.snap.limits.upgrade_idle_timeout, series).await;
        self.log.upgrade = Some(Upgrade {
            protocol,
            result: UpgradeResult::Tunnel(stats),
        });
        Ending::Close
    }

    /// Streams the upstream body to the client, starting with what was already read; `failed`:
    /// the upstream body already failed after `first` (read for the shadow only), so the
    /// response ends there as a failure mid-body would.
    async fn stream(
        &mut self,
        up: &mut UpstreamSession,
        first: Bytes,
        mut complete: bool,
        failed: Option<Box<Error>>,
    ) -> Ending {
        if !first.is_empty() && self.session.write_response_body(first, false).await.is_err() {
            return Ending::Close;
        }
        if let Some(e) = failed {
            self.log.failed_after_header = true;
            self.log.error = Some(e.to_string());
            return Ending::Close;
        }
        while !complete {
            match up.read_response_body().await {
                Ok(Some(chunk)) => {
                    if self.session.write_response_body(chunk, false).await.is_err() {
                        return Ending::Close;
                    }
                }
                Ok(None) => complete = true,
                Err(e) => {
                    // The status is out: all that is left is to close and count it.
                    self.log.failed_after_header = true;
                    self.log.error = Some(e.to_string());
                    return Ending::Close;
                }
            }
        }
        ok(self.session.finish_body().await.is_ok())
    }
}

/// The request for an HTTP/2 upstream: `Host` becomes `:authority` (with the scheme the
/// connection has), and the connection-specific fields HTTP/2 forbids (RFC 9113 section 8.2.2)
/// go; the hop-by-hop ones are already gone.
fn for_h2(req: &mut RequestHeader, group: &UpstreamGroup) {
    req.remove_header(&header::TRANSFER_ENCODING);
    let authority = req
        .remove_header(&header::HOST)
        .and_then(|h| h.to_str().ok().map(str::to_owned))
        .or_else(|| group.def.addrs.first().map(ToString::to_string));
    let scheme = if group.def.tls.is_some() { "https" } else { "http" };
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if let Some(uri) = authority.and_then(|a| {
        http::Uri::builder()
            .scheme(scheme)
            .authority(a)
            .path_and_query(path)
            .build()
            .ok()
    }) {
        req.set_uri(uri);
    }
}

/// Writes the upstream exchange's trace context into its request, replacing the client's
/// `traceparent` and `tracestate` (`None`: tracing is off and the request keeps them).
fn set_trace_context(req: &mut RequestHeader, context: Option<&UpstreamContext>) -> pingora::Result<()> {
    let Some(context) = context else {
        return Ok(());
    };
    req.insert_header(TRACEPARENT, context.traceparent.clone())?;
    match &context.tracestate {
        Some(state) => req.insert_header(TRACESTATE, state.clone())?,
        None => {
            req.remove_header(&TRACESTATE);
        }
    }
    Ok(())
}

/// What the engine knows of the client's request (rules see the upstream path).
fn request_facts<'a>(req: &'a RequestHeader, upstream_path: &'a str, request_id: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        method: req.method.as_str(),
        path: upstream_path,
        headers: &req.headers,
        request_id,
    }
}

fn ok(written: bool) -> Ending {
    if written {
        Ending::Complete
    } else {
        Ending::Close
    }
}

/// Reads (briefly, at most `limit` bytes) what is left of a body the client does not get, so
/// that the upstream connection can be pooled; `keep`: the first bytes read are kept there (up
/// to one past `unmatched::CAPTURE_BYTES`, so that a longer body shows as cut). True when the
/// body ended.
async fn drain(up: &mut UpstreamSession, limit: usize, mut keep: Option<&mut BytesMut>) -> bool {
    let mut seen = 0usize;
    let deadline = tokio::time::sleep(Duration::from_millis(100));
    tokio::pin!(deadline);
    while seen <= limit {
        tokio::select! {
            r = up.read_response_body() => match r {
                Ok(Some(c)) => {
                    seen += c.len();
                    if let Some(k) = keep.as_deref_mut() {
                        let room = (unmatched::CAPTURE_BYTES + 1).saturating_sub(k.len());
                        k.extend_from_slice(&c[..c.len().min(room)]);
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            },
            _ = &mut deadline => return false,
        }
    }
    false
}

/// The Content-Length a header block declares, when it is one number.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}
