//! An OTLP/HTTP traces receiver on loopback: it serves `POST /v1/traces` over HTTP/1.1
//! (keep-alive, Content-Length or chunked bodies) and decodes each body as the official
//! protobuf message `ExportTraceServiceRequest` (the `opentelemetry-proto` crate's prost
//! types), answering 200 with an empty `ExportTraceServiceResponse` as the OpenTelemetry
//! Collector does. A body that does not decode is recorded as a failure, and `spans` fails the
//! test. `Blackhole` accepts connections and never answers (a collector that hangs).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One span as received, with its resource's `service.name` and its scope's name.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service_name: String,
    pub service_version: String,
    pub scope: String,
    pub span: Span,
}

impl ReceivedSpan {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Empty for a root span.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    pub fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    /// A string attribute (`None` when absent or not a string).
    pub fn str(&self, key: &str) -> Option<&str> {
        match attribute(&self.span.attributes, key)? {
            Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    /// An integer attribute (`None` when absent or not an integer).
    pub fn int(&self, key: &str) -> Option<i64> {
        match attribute(&self.span.attributes, key)? {
            Value::IntValue(i) => Some(*i),
            _ => None,
        }
    }

    /// The attribute keys, for messages.
    pub fn keys(&self) -> Vec<&str> {
        self.span.attributes.iter().map(|kv| kv.key.as_str()).collect()
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    /// Each export request's Content-Type.
    content_types: Vec<String>,
    /// Requests that were not a decodable OTLP traces export.
    failures: Vec<String>,
}

pub struct Receiver {
    pub port: u16,
    received: Arc<Mutex<Received>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback port");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Received::default()));
        let rec = received.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let rec = rec.clone();
                thread::spawn(move || serve(conn, &rec));
            }
        });
        Receiver { port, received }
    }

    /// The OTLP/HTTP traces URL to configure as `tracing.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// Every span received so far (panics on a request that was not a valid export).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let r = self.received.lock().unwrap();
        assert!(r.failures.is_empty(), "the receiver got bad exports: {:?}", r.failures);
        r.spans.clone()
    }

    pub fn content_types(&self) -> Vec<String> {
        self.received.lock().unwrap().content_types.clone()
    }

    /// The spans of `trace_id` once there are at least `count` of them (polled, at most 15s:
    /// the exporter sends a batch every `tracing.batch_delay`).
    pub fn wait_for_trace(&self, trace_id: &str, count: usize) -> Vec<ReceivedSpan> {
        let t = Instant::now();
        loop {
            let spans: Vec<ReceivedSpan> = self.spans().into_iter().filter(|s| s.trace_id() == trace_id).collect();
            if spans.len() >= count {
                return spans;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "trace {trace_id}: {} of {count} spans arrived: {spans:?}",
                spans.len()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads requests off one connection until it closes.
fn serve(conn: TcpStream, rec: &Mutex<Received>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request_line = line.trim_end().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let body = if headers
            .get("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            match read_chunked(&mut reader) {
                Some(b) => b,
                None => return,
            }
        } else {
            let len = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0usize);
            let mut b = vec![0u8; len];
            if reader.read_exact(&mut b).is_err() {
                return;
            }
            b
        };
        let content_type = headers.get("content-type").cloned().unwrap_or_default();
        {
            let mut r = rec.lock().unwrap();
            r.content_types.push(content_type);
            if request_line != "POST /v1/traces HTTP/1.1" {
                r.failures.push(format!("unexpected request `{request_line}`"));
            } else {
                match ExportTraceServiceRequest::decode(&body[..]) {
                    Ok(export) => r.spans.extend(flatten(export)),
                    Err(e) => r
                        .failures
                        .push(format!("body of {} bytes does not decode: {e}", body.len())),
                }
            }
        }
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    for _ in 0..100_000 {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
    None
}

fn flatten(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in export.resource_spans {
        let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
        let text = |key| match attribute(&resource, key) {
            Some(Value::StringValue(s)) => s.clone(),
            _ => String::new(),
        };
        let (service_name, service_version) = (text("service.name"), text("service.version"));
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for span in ss.spans {
                out.push(ReceivedSpan {
                    service_name: service_name.clone(),
                    service_version: service_version.clone(),
                    scope: scope.clone(),
                    span,
                });
            }
        }
    }
    out
}

/// A "collector" that accepts connections and reads, but never answers.
pub struct Blackhole {
    pub port: u16,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback port");
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        Blackhole { port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }
}
