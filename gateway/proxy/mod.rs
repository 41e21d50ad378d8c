//! The pingora glue: `GatewayApp` is a pingora `HttpServerApp` that reads each request (an
//! HTTP/1.x request or one HTTP/2 stream), takes the serving snapshot once, hands the work to
//! `exchange::Exchange`, and hands the request's `Outcome` to the metrics and the access log.
//! `admission` admits connections in front of it, `rescue` is the one failure table; `upgrade`
//! decides what a route does with an upgrade request (WebSocket) and `tunnel` relays an
//! upgraded connection after the upstream's 101.

pub mod admission;
pub mod body_buffer;
pub mod connections;
pub mod exchange;
pub mod request_id;
pub mod rescue;
pub mod respond;
pub mod target;
pub mod tunnel;
pub mod upgrade;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use http::header;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::connectors::http::Connector;
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;

use crate::engine::ProblemFormat;
use crate::reload::{Serving, SnapshotHandle};
use crate::telemetry::access_log;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::outcome::Outcome;
use crate::telemetry::traces::Traces;
use exchange::{Ending, Exchange};
use rescue::Trouble;

pub struct GatewayApp {
    snapshots: Arc<SnapshotHandle>,
    connector: Connector,
    metrics: Arc<Metrics>,
    /// h2c and the HTTP/2 idle timeout: fixed at start (pingora reads them per connection by
    /// reference).
    server_options: HttpServerOptions,
    /// The span exporter while `tracing:` is on (made at start); `None`: requests make no span
    /// and read no trace context.
    traces: Option<Arc<Traces>>,
}

impl GatewayApp {
    pub fn new(snapshots: Arc<SnapshotHandle>, metrics: Arc<Metrics>, traces: Option<Arc<Traces>>) -> Self {
        let snap = snapshots.current();
        let mut server_options = HttpServerOptions::default();
        server_options.h2c = snap.boot.h2c;
        // An idle HTTP/2 connection (no stream open) is closed like an idle HTTP/1.1 one.
        server_options.h2_idle_timeout = Some(snap.limits.client_keepalive_timeout);
        GatewayApp {
            snapshots,
            connector: Connector::new(None),
            metrics,
            server_options,
            traces,
        }
    }

    /// Answers the first request of a connection over `limits.client_connections` with the
    /// canonical 503, then closes it.
    async fn refuse_connection(&self, mut session: ServerSession, shutdown: &ShutdownWatch) {
        let started = Instant::now();
        let snap = self.snapshots.current();
        let read = tokio::select! {
            biased;
            r = fast_timeout(snap.limits.client_header_timeout, session.read_request()) => r,
            _ = wait_shutdown(shutdown) => return,
        };
        if let Ok(Ok(true)) = read {
            self.refuse(&mut session, &snap, started, Trouble::ClientConnectionLimit)
                .await;
        }
    }

    fn finish(&self, serving: &Serving, log: &mut Outcome, req: Option<&pingora::http::RequestHeader>) {
        if let Some(trace) = log.trace.take() {
            let route = log.route.and_then(|i| serving.routes.get(i));
            trace.finish(log, route.map(|r| (&*r.name, r.path_prefix.as_str())));
        }
        serving.series.record(log);
        access_log::emit(log, serving.route_name(log.route), req);
    }

    /// Answers a request that is refused before any routing (its header may be unreadable), and
    /// closes the connection.
    async fn refuse(&self, session: &mut ServerSession, snap: &Serving, started: Instant, trouble: Trouble<'_>) {
        let mut log = Outcome::new(started, request_id::generate());
        let mut ex = Exchange {
            session,
            snap,
            connector: &self.connector,
            log: &mut log,
            format: ProblemFormat::Json,
            head_request: false,
            http10: false,
            expects_continue: false,
            // Only a connection over the limit is refused after its header was read.
            header_read: matches!(trouble, Trouble::ClientConnectionLimit),
        };
        ex.rescue(trouble).await;
        self.finish(snap, &mut log, None);
    }
}

/// Total size of the request's header fields, as the client sent them.
fn header_bytes(req: &pingora::http::RequestHeader) -> usize {
    req.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + req.uri.authority().map_or(0, |a| a.as_str().len())
        + req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
}

/// What the request header alone says about how to answer.
struct Intake {
    request_id: String,
    format: ProblemFormat,
    head_request: bool,
    http10: bool,
    /// The client waits for `100 Continue` before it sends its body.
    expects_continue: bool,
    /// A refusal decided from the header alone.
    refused: Option<Trouble<'static>>,
}

fn intake(req: &pingora::http::RequestHeader, snap: &Serving) -> Intake {
    let request_id = req
        .headers
        .get(respond::X_REQUEST_ID)
        .map(|v| v.as_bytes())
        .filter(|v| request_id::is_sane(v))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(request_id::generate);
    let format = ProblemFormat::negotiate(req.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // RFC 9110 section 10.1.1: 100-continue is the only expectation; an HTTP/1.0 request's
    // is ignored.
    let http10 = req.version == http::Version::HTTP_10;
    let expect = req.headers.get(header::EXPECT).filter(|_| !http10);
    let expects_continue = expect.is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    let refused = if header_bytes(req) > snap.limits.request_header {
        Some(Trouble::HeaderTooLarge)
    } else if req.version == http::Version::HTTP_11 && !req.headers.contains_key(header::HOST) {
        // RFC 9112 section 3.2: an HTTP/1.1 request without Host is answered 400.
        Some(Trouble::MissingHost)
    } else if req.method == http::Method::CONNECT || !req.uri.path().starts_with('/') {
        Some(Trouble::MethodRefused)
    } else if expect.is_some() && !expects_continue {
        Some(Trouble::UnmetExpectation)
    } else {
        None
    };
    Intake {
        request_id,
        format,
        head_request: req.method == http::Method::HEAD,
        http10,
        expects_continue,
        refused,
    }
}

/// A request answered on a connection that stays open: what the keep-alive wait needs.
struct Served {
    reusable: pingora::protocols::http::server::ReusableHttpStream,
    settings: HttpPersistentSettings,
    conn: Box<connections::ClientConnection>,
    idle: Duration,
}

#[async_trait]
impl HttpServerApp for GatewayApp {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // Boxed: the request's state (header read, exchange with its upstream session and body
        // buffers, finish) is allocated while the request runs and freed when it ends. Inline it
        // would size this future, which lives on through the keep-alive wait, for the largest
        // of them: about 14 KiB per idle connection instead of what the wait needs.
        let served = Box::pin(self.serve(session, shutdown)).await?;
        keep_alive(served, shutdown).await
    }

    /// The limits of a new HTTP/2 client connection, from the serving configuration.
    fn h2_options(&self) -> Option<H2Options> {
        let limits = self.snapshots.current().limits.http2;
        let mut options = default_h2_options();
        options
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(limits.max_header_list_size)
            .initial_window_size(limits.stream_window)
            .initial_connection_window_size(limits.connection_window);
        Some(options)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.server_options)
    }
}

impl GatewayApp {
    /// Reads one request (an HTTP/1.x request or one HTTP/2 stream) and answers it; `Some` when
    /// the HTTP/1.x connection stays open for the next one.
    async fn serve(self: &Arc<Self>, mut session: ServerSession, shutdown: &ShutdownWatch) -> Option<Served> {
        let started = Instant::now();
        let snap = self.snapshots.current();
        // The connection's place under `limits.client_connections`, carried from request to
        // request; `None` on a connection's first request.
        let conn = session
            .take_connection_user_context()
            .and_then(|c| c.downcast::<connections::ClientConnection>().ok());
        // The whole header within `client_header_timeout` (a per-read timeout would let a
        // client trickle one byte at a time forever). On a reused connection the next request's
        // first bytes are already here (see `keep_alive`), so the clock runs from them; when
        // they hold the whole header there is nothing to wait for and no timer to arm.
        let read = if conn.as_ref().is_some_and(|c| c.header_ready) {
            Ok(session.read_request().await)
        } else {
            tokio::select! {
                biased;
                r = fast_timeout(snap.limits.client_header_timeout, session.read_request()) => r,
                _ = wait_shutdown(shutdown) => return None,
            }
        };
        match read {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                // Not HTTP: answer a canonical 400 (431 when the header block is too large),
                // unless the client is simply gone.
                if rescue::rescue(Trouble::UnreadableHeader(&e)) != rescue::Rescue::HangUp {
                    self.refuse(&mut session, &snap, started, Trouble::UnreadableHeader(&e))
                        .await;
                }
                return None;
            }
            Err(_) => {
                self.refuse(&mut session, &snap, started, Trouble::ClientHeaderTimeout)
                    .await;
                return None;
            }
        }
        // Keep-alive as the request's version and Connection field say (RFC 9112 section 9.3:
        // HTTP/1.0 only with `keep-alive`; pingora also turns it off for CL + TE), never longer
        // than configured and never while shutting down.
        let h2 = session.is_http2();
        let keepalive = session.get_keepalive().is_some() && !*shutdown.borrow();
        session.set_keepalive(keepalive.then(|| snap.limits.client_keepalive_timeout.as_secs().max(1)));
        session.set_read_timeout(Some(snap.limits.client_body_timeout));
        // Pipelined requests are answered one after the other, in order (RFC 9112 section 9.3.2).
        session.set_pipelining_enabled(true);

        let conn = conn.unwrap_or_else(|| Box::new(connections::ClientConnection { header_ready: false }));

        let Intake {
            request_id,
            format,
            head_request,
            http10,
            expects_continue,
            refused,
        } = intake(session.req_header(), &snap);
        if expects_continue {
            // Answered before its body arrived (refused, no route, an upstream that does not
            // wait for it): the client may never send the body, so the connection closes
            // rather than waiting to drain it.
            session.set_close_on_response_before_downstream_finish(true);
        }
        let mut log = Outcome::new(started, request_id);
        if let Some(traces) = &self.traces {
            let trace = traces.request(session.req_header(), snap.trace_sample_ratio, started);
            log.trace_id = Some(trace.trace_id());
            log.trace = Some(Box::new(trace));
        }
        self.metrics.in_flight.inc();
        let ending = {
            let mut ex = Exchange {
                session: &mut session,
                snap: &snap,
                connector: &self.connector,
                log: &mut log,
                format,
                head_request,
                http10,
                expects_continue,
                header_read: true,
            };
            match refused {
                Some(t) => ex.rescue(t).await,
                None => ex.run().await,
            }
        };
        self.metrics.in_flight.dec();
        self.finish(&snap, &mut log, Some(session.req_header()));
        if ending == Ending::Close {
            // On HTTP/2 only this stream ends: reset when its response is unfinished, and the
            // connection's other streams go on.
            if h2 {
                session.shutdown().await;
            }
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        let reusable = session.finish().await.ok()??;
        Some(Served {
            reusable,
            settings,
            conn,
            idle: snap.limits.client_keepalive_timeout,
        })
    }
}

/// Waits (at most the keep-alive timeout) for the next request on an idle connection and
/// reads its first bytes, so that the next request's header deadline starts when the client
/// starts sending. Pipelined bytes already read count as that start. Nothing is allocated for
/// the connection while it waits: the first bytes are read into this worker thread's buffer
/// and copied out (`read_first`).
async fn keep_alive(served: Served, shutdown: &ShutdownWatch) -> Option<ReusedHttpStream> {
    let Served {
        reusable,
        mut settings,
        mut conn,
        idle,
    } = served;
    let (mut stream, prefix) = reusable.into_parts();
    let prefix = match prefix.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => {
            tokio::select! {
                biased;
                r = fast_timeout(idle, read_first(&mut stream)) => match r {
                    Ok(Ok(buf)) if !buf.is_empty() => buf,
                    _ => return None,
                },
                _ = wait_shutdown(shutdown) => return None,
            }
        }
    };
    conn.header_ready = header_complete(&prefix);
    settings.set_pipelined_prefix(prefix);
    settings.set_user_context(conn);
    Some(ReusedHttpStream::new(stream, Some(settings)))
}

/// Size of the per-thread buffer an idle connection's next bytes are read into: one read takes
/// up to this much (a large header block or a batch of pipelined requests).
const FIRST_READ: usize = 16 * 1024;
/// The least capacity of the buffer handed to pingora's header parser (its own initial size):
/// a header that is not complete yet is read on into it.
const HEADER_BUF: usize = 4096;

thread_local! {
    static FIRST_READ_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; FIRST_READ].into_boxed_slice());
}

/// Reads what a connection has to read once it is readable, without a buffer of its own while
/// it waits: each poll reads into the worker thread's buffer (borrowed for that poll only, so
/// nothing is held while pending, and a task moved to another thread finds that thread's), and
/// what arrived is copied into a new buffer of at least `HEADER_BUF`. Empty: the client closed.
async fn read_first(stream: &mut pingora::protocols::Stream) -> std::io::Result<BytesMut> {
    use std::task::Poll;
    use tokio::io::{AsyncRead, ReadBuf};
    std::future::poll_fn(|cx| {
        FIRST_READ_BUF.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(scratch);
            match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let got = read.filled();
                    let mut buf = BytesMut::with_capacity(got.len().max(HEADER_BUF));
                    buf.extend_from_slice(got);
                    Poll::Ready(Ok(buf))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

/// Whether `buf` holds a whole header block (its blank line). A bare-LF header is not
/// recognized here and simply gets the deadline.
fn header_complete(buf: &[u8]) -> bool {
    // A bodyless request ends with its blank line: checked first, in constant time.
    buf.ends_with(b"\r\n\r\n") || memchr::memmem::find(buf, b"\r\n\r\n").is_some()
}

async fn wait_shutdown(shutdown: &ShutdownWatch) {
    let mut s = shutdown.clone();
    while !*s.borrow() {
        if s.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
