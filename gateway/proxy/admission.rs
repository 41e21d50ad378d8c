//! The connection layer: each accepted client connection takes its place on its listener
//! (`limits.client_connections`) before pingora chooses HTTP/1.x or HTTP/2 for it, and keeps
//! that place until the connection closes, however many requests or HTTP/2 streams it carries.
//!
//! pingora's `HttpServerApp` is called per request (per stream on HTTP/2) and sees no
//! connection, so admission wraps it as a `ServerApp`: the place is taken here, then the
//! connection goes to pingora's own HTTP/1.x / HTTP/2 dispatch (`ServerApp` for every
//! `HttpServerApp`), which calls `GatewayApp::process_new_http` per request.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use super::connections::{AtCapacity, ListenerCounts};
use super::GatewayApp;

/// The gateway's listening service: admission, then the HTTP application.
pub struct Admission {
    app: Arc<GatewayApp>,
    listeners: ListenerCounts,
}

impl Admission {
    pub fn new(app: GatewayApp) -> Self {
        Admission {
            listeners: ListenerCounts::new(app.metrics.clone()),
            app: Arc::new(app),
        }
    }
}

#[async_trait]
impl ServerApp for Admission {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let cap = self.app.snapshots.current().limits.client_connections;
        let local = stream.get_socket_digest().and_then(|d| d.local_addr().cloned());
        match self.listeners.admit(local.as_ref(), cap) {
            Ok(_place) => ServerApp::process_new(&self.app, stream, shutdown).await,
            // An HTTP/2 client (chosen by ALPN) cannot read an HTTP/1.1 answer: it is closed
            // (and counted as refused). HTTP/1.x clients get their canonical 503.
            Err(AtCapacity) if stream.selected_alpn_proto() == Some(ALPN::H2) => None,
            // Boxed: the refusal's state is allocated only on this rare path, not in every
            // connection's future.
            Err(AtCapacity) => {
                Box::pin(self.app.refuse_connection(ServerSession::new_http1(stream), shutdown)).await;
                None
            }
        }
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.app).await;
    }
}
