//! OpenTelemetry traces (`tracing:`): a SERVER span per request and a CLIENT span, its child,
//! for the upstream exchange; W3C trace context (`traceparent`, `tracestate`) taken from the
//! client and written into the upstream request with the CLIENT span's id; spans exported in
//! batches over OTLP/HTTP (protobuf).
//!
//! Nothing here runs on a request while tracing is off: the proxy holds no `Traces` then, and
//! an `Outcome` carries no `RequestTrace`. While it is on, a request makes its spans in memory
//! and hands them, when they end, to a bounded queue (`Bounded`, `queue_size`): a full queue
//! drops the span and counts it (`statusgate_trace_spans_dropped_total`), it never waits. The
//! SDK's batch processor drains the queue on its own thread and exports with a blocking HTTP
//! client there, so an unreachable or slow collector costs requests nothing.
//!
//! Attribute names follow the OpenTelemetry semantic conventions for HTTP where one exists
//! (`http.request.method`, `http.response.status_code`, `url.path`, `http.route`,
//! `server.address`, `error.type`, ...); statusgate's own facts are `statusgate.*`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Link, Span as _, SpanKind, Status, TraceContextExt, TraceId, Tracer as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider,
    ShouldSample, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

use super::metrics::Metrics;
use super::outcome::Outcome;
use crate::config::tracing::TracingExport;
use crate::engine::{GatewayFailure, Origin};

/// How long shutting down waits for the last batch to be exported.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The running exporter and the tracer that makes the spans (one per process, made at start).
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// `tracing.sample_ratio` (f64 bits), shared with the sampler; the serving snapshot's value.
    ratio: Arc<AtomicU64>,
    propagator: TraceContextPropagator,
}

impl fmt::Debug for Traces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traces").finish_non_exhaustive()
    }
}

/// Why the exporter could not be made.
#[derive(Debug, thiserror::Error)]
#[error("tracing: cannot start the OTLP exporter: {0}")]
pub struct TracesError(String);

impl Traces {
    /// Builds the exporter, its batch processor (its own thread) and the tracer.
    pub fn start(export: &TracingExport, sample_ratio: f64, metrics: &Metrics) -> Result<Traces, TracesError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(export.endpoint.as_str())
            .with_timeout(export.export_timeout)
            .build()
            .map_err(|e| TracesError(e.to_string()))?;
        let pending = Arc::new(AtomicUsize::new(0));
        let counted = Counted {
            inner: exporter,
            endpoint: export.endpoint.clone(),
            pending: pending.clone(),
            exported: metrics.trace_spans_exported.clone(),
            failed: metrics.trace_spans_export_failed.clone(),
            failing: AtomicBool::new(false),
            warned: Throttle::default(),
        };
        // Set after `default()`, which reads the OTEL_BSP_* variables: the file decides.
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(export.queue_size)
            .with_max_export_batch_size(export.batch_size)
            .with_scheduled_delay(export.batch_delay)
            .build();
        let processor = Bounded {
            inner: BatchSpanProcessor::builder(counted).with_batch_config(batch).build(),
            pending,
            capacity: export.queue_size,
            dropped: metrics.trace_spans_dropped.clone(),
            warned: Throttle::default(),
        };
        let ratio = Arc::new(AtomicU64::new(sample_ratio.to_bits()));
        let resource = Resource::builder_empty()
            .with_service_name(export.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(RatioSampler(ratio.clone()))
            .with_resource(resource)
            .build();
        let scope = InstrumentationScope::builder("statusgate")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer_with_scope(&provider, scope);
        Ok(Traces {
            provider,
            tracer,
            ratio,
            propagator: TraceContextPropagator::new(),
        })
    }

    /// Exports what is queued and stops the batch processor (bounded by `SHUTDOWN_WAIT` plus
    /// one export). Blocking: call it off the request runtimes, e.g. after the server stopped.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_WAIT) {
            tracing::warn!(error = %e, "tracing: the last spans may not have been exported");
        }
    }

    /// Starts the span of one request: its parent is the client's `traceparent` (with its
    /// `tracestate`) when that is valid; otherwise it begins a new trace, recorded at the
    /// serving snapshot's `sample_ratio`. `started` is when the request began.
    pub fn request(&self, req: &pingora::http::RequestHeader, sample_ratio: f64, started: Instant) -> RequestTrace {
        let bits = sample_ratio.to_bits();
        if self.ratio.load(Ordering::Relaxed) != bits {
            self.ratio.store(bits, Ordering::Relaxed);
        }
        let parent = if req.headers.contains_key(TRACEPARENT) {
            self.propagator
                .extract_with_context(&Context::new(), &Headers(&req.headers))
        } else {
            Context::new()
        };
        let start = SystemTime::now()
            .checked_sub(started.elapsed())
            .unwrap_or_else(SystemTime::now);
        let (method, original) = method_name(req.method.as_str());
        let span_method = span_name(method);
        let mut server = self.tracer.build_with_context(
            self.tracer
                .span_builder(span_method)
                .with_kind(SpanKind::Server)
                .with_start_time(start),
            &parent,
        );
        if server.is_recording() {
            server.set_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.path", req.uri.path().to_owned()),
                KeyValue::new("network.protocol.version", protocol_version(req.version)),
            ]);
            if let Some(original) = original {
                server.set_attribute(KeyValue::new("http.request.method_original", original.to_owned()));
            }
        }
        RequestTrace {
            trace_id: server.span_context().trace_id(),
            tracer: self.tracer.clone(),
            propagator: self.propagator.clone(),
            server,
            span_method,
            upstream: None,
        }
    }
}

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The spans of one request in flight.
pub struct RequestTrace {
    trace_id: TraceId,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    server: Span,
    /// The method as span names show it (`HTTP` for one outside the known set).
    span_method: &'static str,
    /// The upstream exchange's span, from its start to its end.
    upstream: Option<Span>,
}

impl fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestTrace({})", self.trace_id)
    }
}

/// The trace context to send upstream, as header values.
#[derive(Debug, Clone)]
pub struct UpstreamContext {
    pub traceparent: HeaderValue,
    /// `None`: the upstream request carries no `tracestate`.
    pub tracestate: Option<HeaderValue>,
}

impl RequestTrace {
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// Starts the CLIENT span of the upstream exchange (a child of the request's span) and
    /// returns the `traceparent` (and `tracestate`) that name it, for the upstream request.
    /// `scheme` is the upstream group's (`http` or `https`), `path` the path sent upstream.
    pub fn start_upstream(&mut self, method: &str, scheme: &'static str, path: &str) -> Option<UpstreamContext> {
        let parent = Context::new().with_remote_span_context(self.server.span_context().clone());
        let (method, _) = method_name(method);
        let mut span = self.tracer.build_with_context(
            self.tracer.span_builder(span_name(method)).with_kind(SpanKind::Client),
            &parent,
        );
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.scheme", scheme),
                KeyValue::new("url.path", path.to_owned()),
            ]);
        }
        let mut headers = Injected::default();
        self.propagator.inject_context(
            &Context::new().with_remote_span_context(span.span_context().clone()),
            &mut headers,
        );
        self.upstream = Some(span);
        Some(UpstreamContext {
            traceparent: headers.traceparent.and_then(|v| HeaderValue::from_str(&v).ok())?,
            tracestate: headers.tracestate.and_then(|v| HeaderValue::from_str(&v).ok()),
        })
    }

    /// Ends the upstream exchange's span (if one is open) with what the exchange came to: the
    /// address it went to, the upstream's status, or the failure the gateway answered.
    pub fn end_upstream(&mut self, addr: Option<SocketAddr>, status: Option<u16>, failure: Option<GatewayFailure>) {
        let Some(mut span) = self.upstream.take() else {
            return;
        };
        if span.is_recording() {
            if let Some(addr) = addr {
                span.set_attributes(address_attributes(addr));
            }
            match status {
                Some(status) => {
                    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
                    if status >= 400 {
                        // Client spans: 4xx and 5xx are errors (HTTP semantic conventions).
                        span.set_attribute(KeyValue::new("error.type", status.to_string()));
                        span.set_status(Status::error(""));
                    }
                }
                None => {
                    if let Some(f) = failure {
                        span.set_attribute(KeyValue::new("error.type", f.name()));
                        span.set_status(Status::error(f.name()));
                    }
                }
            }
        }
        span.end();
    }

    /// Ends the request's spans with its outcome. `route`: the matched route's name and path
    /// prefix.
    pub fn finish(mut self, log: &Outcome, route: Option<(&str, &str)>) {
        self.end_upstream(log.upstream_addr, log.upstream_status, log.failure);
        let span = &mut self.server;
        if !span.is_recording() {
            return;
        }
        let mut attributes = Vec::with_capacity(12);
        attributes.push(KeyValue::new("http.response.status_code", i64::from(log.status)));
        attributes.push(KeyValue::new("statusgate.request_id", log.request_id.clone()));
        attributes.push(KeyValue::new(
            "statusgate.origin",
            match log.origin {
                Origin::Upstream => "upstream",
                Origin::Gateway => "gateway",
            },
        ));
        if let Some((name, prefix)) = route {
            attributes.push(KeyValue::new("statusgate.route", name.to_owned()));
            attributes.push(KeyValue::new("http.route", prefix.to_owned()));
            span.update_name(format!("{} {prefix}", self.span_method));
        }
        if let Some(addr) = log.upstream_addr {
            attributes.push(KeyValue::new("statusgate.upstream.address", addr.to_string()));
        }
        if let Some(status) = log.upstream_status {
            attributes.push(KeyValue::new("statusgate.upstream.status_code", i64::from(status)));
        }
        if let Some(rule) = &log.rule {
            attributes.push(KeyValue::new("statusgate.rule", rule.clone()));
        }
        // The gateway's failure kind, or `after_header`: the upstream failed mid-body.
        let failure = match (log.failure, log.failed_after_header) {
            (Some(f), _) => Some(f.name()),
            (None, true) => Some("after_header"),
            (None, false) => None,
        };
        if let Some(kind) = failure {
            attributes.push(KeyValue::new("statusgate.failure", kind));
        }
        // Server spans: only 5xx (and a response cut short) are errors (HTTP semantic
        // conventions); `error.type` is the failure kind, else the status code.
        if log.status >= 500 || log.failed_after_header {
            let kind = failure.map_or_else(|| log.status.to_string(), str::to_owned);
            attributes.push(KeyValue::new("error.type", kind));
            span.set_status(Status::error(""));
        }
        span.set_attributes(attributes);
        span.end();
    }
}

/// `server.address` / `server.port` and `network.peer.address` of an upstream address.
fn address_attributes(addr: SocketAddr) -> [KeyValue; 3] {
    let ip = addr.ip().to_string();
    [
        KeyValue::new("server.address", ip.clone()),
        KeyValue::new("server.port", i64::from(addr.port())),
        KeyValue::new("network.peer.address", ip),
    ]
}

/// The method as the semantic conventions name it: the nine of RFC 9110 and PATCH as they are,
/// any other as `_OTHER` (with the original beside it) and `HTTP` in span names.
fn method_name(method: &str) -> (&'static str, Option<&str>) {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    match KNOWN.iter().find(|m| **m == method) {
        Some(m) => (m, None),
        None => ("_OTHER", Some(method)),
    }
}

/// A span's name for `method` (as `method_name` gives it): `HTTP` stands for `_OTHER`.
fn span_name(method: &'static str) -> &'static str {
    if method == "_OTHER" {
        "HTTP"
    } else {
        method
    }
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The client's header map as the propagator reads it.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// What the propagator writes: the two W3C fields.
#[derive(Default)]
struct Injected {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Injected {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// Parent-based sampling with a ratio for new traces: a span with a valid parent (the client's
/// `traceparent`, or the request span for the upstream span) is recorded when its parent is
/// sampled; a new trace is recorded for `ratio` of trace ids (the SDK's `TraceIdRatioBased`).
/// The ratio is shared so that a reload changes it.
#[derive(Debug, Clone)]
struct RatioSampler(Arc<AtomicU64>);

impl ShouldSample for RatioSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        match parent {
            Some(sc) => SamplingResult {
                decision: if sc.is_sampled() {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::Drop
                },
                attributes: Vec::new(),
                trace_state: sc.trace_state().clone(),
            },
            None => {
                let ratio = f64::from_bits(self.0.load(Ordering::Relaxed));
                Sampler::TraceIdRatioBased(ratio).should_sample(None, trace_id, name, span_kind, attributes, links)
            }
        }
    }
}

/// The queue's bound, in front of the SDK's batch processor: at most `capacity` ended spans
/// wait for export (in its channel or its batch); past that a span is dropped and counted.
/// The batch processor's own channel has the same capacity, so it never drops one uncounted.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    /// Spans handed to `inner` and not yet given to the exporter.
    pending: Arc<AtomicUsize>,
    capacity: usize,
    dropped: IntCounter,
    warned: Throttle,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.dropped.inc();
            if self.warned.ready() {
                tracing::warn!(
                    queue_size = self.capacity,
                    "tracing: spans are being dropped: the export queue is full (the collector is slower than the traffic); counted in statusgate_trace_spans_dropped_total"
                );
            }
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting spans out of the queue and their export's result. Failures are
/// logged when they start (then at most once a minute) and when exports work again.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    endpoint: String,
    pending: Arc<AtomicUsize>,
    exported: IntCounter,
    failed: IntCounter,
    /// The last export failed.
    failing: AtomicBool,
    warned: Throttle,
}

/// Lets a log line through at most once a minute (the counters carry the rest).
#[derive(Debug, Default)]
struct Throttle(AtomicU64);

impl Throttle {
    fn ready(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.0.load(Ordering::Relaxed);
        (last == 0 || now >= last + 60)
            && self
                .0
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                self.exported.inc_by(n as u64);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.endpoint, "tracing: exporting spans works again");
                }
            }
            Err(e) => {
                self.failed.inc_by(n as u64);
                let started = !self.failing.swap(true, Ordering::Relaxed);
                if self.warned.ready() || started {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        spans = n,
                        error = %e,
                        "tracing: exporting spans failed; lost spans are counted in statusgate_trace_spans_export_failed_total"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceState;

    #[test]
    fn the_throttle_lets_one_line_through_a_minute() {
        let t = Throttle::default();
        assert!(t.ready());
        assert!(!t.ready());
        t.0.fetch_sub(61, Ordering::Relaxed);
        assert!(t.ready());
        assert!(!t.ready());
    }

    #[test]
    fn methods_outside_the_known_set_are_other() {
        assert_eq!(method_name("GET"), ("GET", None));
        assert_eq!(method_name("PATCH"), ("PATCH", None));
        assert_eq!(method_name("PROPFIND"), ("_OTHER", Some("PROPFIND")));
        assert_eq!(method_name("get"), ("_OTHER", Some("get")));
    }

    #[test]
    fn a_sampled_parent_decides_and_a_new_trace_follows_the_ratio() {
        let sampler = RatioSampler(Arc::new(AtomicU64::new(0.0f64.to_bits())));
        let decide = |parent: Option<&Context>, trace_id: u128| {
            sampler
                .should_sample(parent, TraceId::from(trace_id), "GET", &SpanKind::Server, &[], &[])
                .decision
        };
        assert_eq!(decide(None, 1), SamplingDecision::Drop, "ratio 0: no new trace");
        let sc = |flags| {
            opentelemetry::trace::SpanContext::new(
                TraceId::from(7u128),
                opentelemetry::trace::SpanId::from(9u64),
                flags,
                true,
                TraceState::default(),
            )
        };
        let sampled = Context::new().with_remote_span_context(sc(opentelemetry::trace::TraceFlags::SAMPLED));
        assert_eq!(decide(Some(&sampled), 7), SamplingDecision::RecordAndSample);
        let unsampled = Context::new().with_remote_span_context(sc(opentelemetry::trace::TraceFlags::default()));
        sampler.0.store(1.0f64.to_bits(), Ordering::Relaxed);
        assert_eq!(decide(Some(&unsampled), 7), SamplingDecision::Drop);
        assert_eq!(
            decide(None, 1),
            SamplingDecision::RecordAndSample,
            "ratio 1: every new trace"
        );
    }
}
