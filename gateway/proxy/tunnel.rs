//! The tunnel of an upgraded connection (a WebSocket, say): once the upstream has answered 101
//! and the 101 is out to the client, bytes are relayed both ways, unchanged, until either side
//! closes (the other side is then finished too), an I/O error, or no byte has moved either way
//! for `limits.upgrade_idle_timeout`. No rule applies to tunnel bytes. The upstream connection
//! is shut down at the end, never pooled.
//!
//! Both sessions are pingora's, in their upgraded state: the client's request body reader and
//! response body writer are close-delimited after the 101 (pingora's `prepare_response_header`),
//! the upstream's response body reader likewise after it read the 101, and its request body
//! writer once `maybe_upgrade_body_writer` has run. Bytes the client sent behind its request
//! head were held in the client session's buffer until the 101: they are the tunnel's first
//! bytes, never a request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::protocols::http::v1::client::HttpSession as Upstream1;
use pingora::protocols::http::ServerSession;
use tokio::time::Instant as TokioInstant;

use crate::telemetry::metrics::TunnelSeries;
use crate::telemetry::outcome::{TunnelEnd, TunnelStats};

/// Bound on finishing the client's side once the tunnel is over.
const FINISH_WAIT: Duration = Duration::from_secs(1);

/// What the select over both reads produced.
enum Step {
    FromClient(pingora::Result<Option<Bytes>>),
    FromUpstream(pingora::Result<Option<Bytes>>),
    Idle,
}

/// Relays bytes between `client` and `upstream` until the tunnel ends; counts them in
/// `series` as they pass and in the returned stats.
pub async fn relay(
    client: &mut ServerSession,
    upstream: &mut Upstream1,
    idle: Duration,
    series: &TunnelSeries,
) -> TunnelStats {
    let started = Instant::now();
    let _open = series.opened();
    // The idle timer governs both directions; per-read timeouts would end a quiet tunnel.
    client.set_read_timeout(None);
    upstream.read_timeout = None;
    upstream.maybe_upgrade_body_writer();
    let (mut to_upstream, mut to_client) = (0u64, 0u64);
    // One timer for the whole tunnel, pushed back whenever a byte moves (no timer per message).
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let end = loop {
        // Cancel safety: the branch that loses is dropped mid-read. Both reads are pingora's
        // close-delimited body reads (`BodyReader::do_read_body_until_closed`, behind
        // `read_body_bytes` on either session): their only await is `read_buf` on the stream,
        // which is cancel-safe (a dropped read has consumed nothing), and every state change
        // comes after it, synchronously, so a read dropped here loses no byte and leaves the
        // reader as it was. Writes are done after the select returns, never raced against a
        // read: only against the idle timer, and a write cut short by it ends the tunnel.
        let step = tokio::select! {
            r = client.read_request_body() => Step::FromClient(r),
            r = upstream.read_body_bytes() => Step::FromUpstream(r),
            () = &mut timer => Step::Idle,
        };
        match step {
            Step::FromClient(Ok(Some(bytes))) => {
                let n = bytes.len() as u64;
                let written = tokio::select! {
                    r = upstream.write_body(&bytes) => r.is_ok(),
                    () = &mut timer => break TunnelEnd::Idle,
                };
                if !written {
                    break TunnelEnd::UpstreamError;
                }
                to_upstream += n;
                series.to_upstream.inc_by(n);
            }
            Step::FromUpstream(Ok(Some(bytes))) => {
                let n = bytes.len() as u64;
                let written = tokio::select! {
                    r = client.write_response_body(bytes, false) => r.is_ok(),
                    () = &mut timer => break TunnelEnd::Idle,
                };
                if !written {
                    break TunnelEnd::ClientError;
                }
                to_client += n;
                series.to_client.inc_by(n);
            }
            Step::FromClient(Ok(None)) => break TunnelEnd::ClientClosed,
            Step::FromUpstream(Ok(None)) => break TunnelEnd::UpstreamClosed,
            Step::FromClient(Err(_)) => break TunnelEnd::ClientError,
            Step::FromUpstream(Err(_)) => break TunnelEnd::UpstreamError,
            Step::Idle => break TunnelEnd::Idle,
        }
        timer.as_mut().reset(TokioInstant::now() + idle);
    };
    // Finish the other side: the upstream gets its FIN (and is never pooled); the client's
    // close-delimited body is flushed, and its connection closes when the exchange ends.
    upstream.shutdown().await;
    if end != TunnelEnd::ClientError {
        // Every relayed chunk was flushed as it went: this only ends the body, so a client that
        // stopped reading does not hold the tunnel open again.
        let _ = tokio::time::timeout(FINISH_WAIT, client.finish_body()).await;
    }
    TunnelStats {
        duration: started.elapsed(),
        to_upstream,
        to_client,
        end,
    }
}
