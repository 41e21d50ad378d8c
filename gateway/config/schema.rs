//! The YAML schema as operators write it: serde types only, every struct rejects unknown keys.
//!
//! These are the "raw" half of the two-types-per-config-thing split: nothing here is validated
//! beyond its YAML shape. `crate::snapshot` turns them into the compiled, runtime types and
//! reports every semantic problem with its file:line:col (hence the `Spanned` leaves).
//! They derive `JsonSchema` too (`statusgate schema config`): a `Spanned<T>` field is described
//! as its `T`, a duration as `spec_schema::Duration` (a string with the parser's pattern).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// The main file, e.g. `statusgate.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// One address or a list, plain HTTP.
    #[schemars(with = "OneOrMany<String>")]
    pub listen: Spanned<OneOrMany<String>>,
    /// TLS listeners (rustls).
    #[serde(default)]
    pub tls_listen: Vec<RawTlsListener>,
    /// Admin listener: an address (127.0.0.1:9090 when absent) or a map with `addr` and a
    /// bearer token (`token_file` / `token_env`).
    #[schemars(with = "Option<RawAdmin>")]
    pub admin: Option<Spanned<RawAdmin>>,
    /// The canonical profile file; the embedded `rules/canonical.yaml` when absent.
    #[schemars(with = "Option<String>")]
    pub canonical: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub server: RawServer,
    #[schemars(with = "BTreeMap<String, RawUpstream>")]
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    #[schemars(with = "Vec<RawRoute>")]
    pub routes: Vec<Spanned<RawRoute>>,
    /// How upstream host names are resolved (default: the system's resolv.conf).
    #[schemars(with = "Option<RawResolver>")]
    pub resolver: Option<Spanned<RawResolver>>,
    /// HTTP/2 from clients: h2c on plain listeners and the limits of every HTTP/2 connection.
    #[serde(default)]
    pub http2: RawHttp2,
    /// OpenTelemetry traces exported over OTLP/HTTP (protobuf); off when absent.
    #[schemars(with = "Option<RawTracing>")]
    pub tracing: Option<Spanned<RawTracing>>,
}

/// `tracing:`: a span per request (and a child span per upstream exchange), W3C trace context
/// taken from clients and passed upstream, exported in batches over OTLP/HTTP with protobuf.
/// Every key but `sample_ratio` needs a restart.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces` (plain
    /// http: send to a collector or agent near the gateway).
    #[schemars(with = "String")]
    pub endpoint: Spanned<String>,
    /// `service.name` of the spans' resource (default `statusgate`).
    #[schemars(with = "Option<String>")]
    pub service_name: Option<Spanned<String>>,
    /// Share of new traces recorded, 0.0-1.0 (default 1.0); a client's `traceparent` sampled
    /// flag decides for its trace. Reloadable.
    #[schemars(with = "Option<f64>")]
    pub sample_ratio: Option<Spanned<f64>>,
    /// Ended spans waiting for export (default 2048); past it new spans are dropped and counted
    /// in `statusgate_trace_spans_dropped_total`.
    #[schemars(with = "Option<u64>")]
    pub queue_size: Option<Spanned<u64>>,
    /// Spans per export request (default 512, at most `queue_size`).
    #[schemars(with = "Option<u64>")]
    pub batch_size: Option<Spanned<u64>>,
    /// Longest wait before a partial batch is sent (default 1s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub batch_delay: Option<Spanned<String>>,
    /// Bound on one export request, connect to response (default 10s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub export_timeout: Option<Spanned<String>>,
}

/// `http2:`: HTTP/2 from clients (TLS listeners offer it by ALPN; see `tls_listen`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    /// Plain-text listeners also accept HTTP/2 with prior knowledge (h2c); default false.
    pub h2c: Option<bool>,
    /// Streams a client may have open at once on one connection (default 100).
    #[schemars(with = "Option<u32>")]
    pub max_concurrent_streams: Option<Spanned<u32>>,
    /// Largest decoded header list of a request (default 64KiB); `limits.request_header`
    /// still answers 431 for anything larger than it.
    #[schemars(with = "Option<ByteSize>")]
    pub max_header_list_size: Option<Spanned<ByteSize>>,
    /// Flow-control window of each stream: request body bytes a client may send before the
    /// gateway reads them (default 64KiB).
    #[schemars(with = "Option<ByteSize>")]
    pub stream_window: Option<Spanned<ByteSize>>,
    /// Flow-control window of the whole connection (default 1MiB).
    #[schemars(with = "Option<ByteSize>")]
    pub connection_window: Option<Spanned<ByteSize>>,
}

/// `resolver:`: the DNS resolver of upstream host names.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    /// `ip:port` of each nameserver (UDP, TCP on truncation); default: resolv.conf's.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub nameservers: Vec<Spanned<String>>,
    /// Floor on a record's TTL before it is resolved again (default 5s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub min_ttl: Option<Spanned<String>>,
    /// Ceiling on a record's TTL (default 5m).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub max_ttl: Option<Spanned<String>>,
    /// How long the last good addresses keep serving once resolution fails (default 1h).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub stale_for: Option<Spanned<String>>,
    /// Bound on one resolution (default 5s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub timeout: Option<Spanned<String>>,
}

/// `health_check:` of an upstream group: an active HTTP probe of every address.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Request path (default `/`).
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// `GET` (default) or `HEAD`.
    #[schemars(with = "Option<String>")]
    pub method: Option<Spanned<String>>,
    /// Time between two probes of an address (default 5s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub interval: Option<Spanned<String>>,
    /// Bound on one probe, connect to response header (default 2s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub timeout: Option<Spanned<String>>,
    /// Statuses that pass (default: any 200-399).
    #[schemars(with = "Option<Vec<u16>>")]
    pub expect: Option<Spanned<Vec<Spanned<u16>>>>,
    /// Consecutive passes that bring a failed address back (default 2).
    #[schemars(with = "Option<u32>")]
    pub rise: Option<Spanned<u32>>,
    /// Consecutive failures that take an address out (default 3).
    #[schemars(with = "Option<u32>")]
    pub fall: Option<Spanned<u32>>,
    /// Host header of the probe (default: the configured host name, else `host_header`, else
    /// the address).
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
}

/// `admin: 127.0.0.1:9090`, or `admin: {addr: 0.0.0.0:9090, token_file: admin-token}`.
#[derive(Debug)]
pub enum RawAdmin {
    Addr(String),
    Listener(Box<RawAdminListener>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdminListener {
    /// Default 127.0.0.1:9090.
    #[schemars(with = "Option<String>")]
    pub addr: Option<Spanned<String>>,
    /// A file holding the bearer token (surrounding whitespace ignored); relative to this file.
    #[schemars(with = "Option<String>")]
    pub token_file: Option<Spanned<String>>,
    /// An environment variable holding the bearer token.
    #[schemars(with = "Option<String>")]
    pub token_env: Option<Spanned<String>>,
    /// Require the token for `/metrics` too (default false).
    #[schemars(with = "Option<bool>")]
    pub protect_metrics: Option<Spanned<bool>>,
    /// Require the token for `/healthz` and `/readyz` too (default false).
    #[schemars(with = "Option<bool>")]
    pub protect_probes: Option<Spanned<bool>>,
}

impl<'de> Deserialize<'de> for RawAdmin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAdmin;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address like 127.0.0.1:9090, or a map with addr, token_file / token_env, protect_metrics, protect_probes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAdmin, E> {
                Ok(RawAdmin::Addr(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAdmin, A::Error> {
                RawAdminListener::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|l| RawAdmin::Listener(Box::new(l)))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for RawAdmin {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RawAdmin".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let listener = generator.subschema_for::<RawAdminListener>();
        schemars::json_schema!({
            "description": "The admin listener: an address like 127.0.0.1:9090, or a map with addr, token_file / token_env, protect_metrics, protect_probes.",
            "anyOf": [{ "type": "string" }, listener],
        })
    }
}

/// One `tls_listen:` entry: an address, its default certificate and key, more certificates
/// chosen by SNI, the lowest TLS version and HTTP/2 by ALPN.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTlsListener {
    #[schemars(with = "String")]
    pub addr: Spanned<String>,
    /// The default certificate chain (PEM, leaf first): served without SNI or when no `certs`
    /// entry names the requested server; relative to this file.
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    /// The default certificate's private key (PEM).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// More certificates, each chosen when the client's SNI is one of its DNS names.
    #[serde(default)]
    #[schemars(with = "Vec<RawCertPair>")]
    pub certs: Vec<Spanned<RawCertPair>>,
    /// Lowest TLS version accepted: "1.2" (default) or "1.3".
    #[schemars(with = "Option<String>")]
    pub min_version: Option<Spanned<String>>,
    /// Offer HTTP/2 by ALPN (h2, then http/1.1; default true). Changing it needs a restart.
    #[schemars(with = "Option<bool>")]
    pub http2: Option<Spanned<bool>>,
}

/// One entry of a listener's `certs:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    #[schemars(with = "String")]
    pub key: Spanned<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest upstream body buffered for matching (default 64KiB).
    #[schemars(with = "Option<ByteSize>")]
    pub body_buffer: Option<Spanned<ByteSize>>,
    /// Deepest nesting of a buffered JSON/XML body the readers parse (default 64, at most 100).
    #[schemars(with = "Option<usize>")]
    pub body_depth: Option<Spanned<usize>>,
    /// Largest request header block accepted from a client (default 32KiB) before a 431.
    #[schemars(with = "Option<ByteSize>")]
    pub request_header: Option<Spanned<ByteSize>>,
    /// Largest request body accepted from a client (default 10MiB) before a 413.
    #[schemars(with = "Option<ByteSize>")]
    pub request_body: Option<Spanned<ByteSize>>,
    /// Time a client has for its whole request header, from the first byte (default 10s) before
    /// a 408; a new connection's first request counts from the accept.
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub client_header_timeout: Option<Spanned<String>>,
    /// Longest pause between two reads of a request body (default 30s) before a 408.
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub client_body_timeout: Option<Spanned<String>>,
    /// How long an idle keep-alive client connection waits for its next request (default 60s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub client_keepalive_timeout: Option<Spanned<String>>,
    /// Most client connections open at once on each listener (default: no limit); past it a new
    /// connection gets a 503 and is closed.
    #[schemars(with = "Option<u32>")]
    pub client_connections: Option<Spanned<u32>>,
    /// How long an upgraded connection (a WebSocket tunnel) may carry no byte either way
    /// before both sides are closed (default 5m).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub upgrade_idle_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json`.
    #[schemars(with = "Option<String>")]
    pub format: Option<Spanned<String>>,
    /// RUST_LOG-style directives; `RUST_LOG` in the environment wins.
    #[schemars(with = "Option<String>")]
    pub filter: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Worker threads (default: number of cores).
    #[schemars(with = "Option<usize>")]
    pub threads: Option<Spanned<usize>>,
    /// How long SIGTERM waits for in-flight requests (default 5s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub grace_period: Option<Spanned<String>>,
    /// Reload when a loaded file changes (default true); SIGHUP and POST /-/reload always work.
    pub watch_config: Option<bool>,
    /// Let idle worker threads steal tasks from busy ones (pingora's default: true).
    pub work_stealing: Option<bool>,
    /// Unix socket the listening sockets are handed over on in a graceful upgrade
    /// (default /tmp/statusgate_upgrade.sock); relative to the config file.
    #[schemars(with = "Option<String>")]
    pub upgrade_sock: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[schemars(with = "Vec<String>")]
    pub addrs: Vec<Spanned<String>>,
    #[schemars(with = "Option<RawUpstreamTls>")]
    pub tls: Option<Spanned<RawUpstreamTls>>,
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub connect_timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub response_timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub idle_timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub body_timeout: Option<Spanned<String>>,
    /// Longest pause while the upstream accepts no request bytes (default 30s) before a 504.
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub write_timeout: Option<Spanned<String>>,
    /// Total time for reading a response body a rule needs (default 10s) before a 504.
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub body_deadline: Option<Spanned<String>>,
    /// Most connections in use to this group at once (default: no limit); past it a 503.
    #[schemars(with = "Option<u32>")]
    pub max_connections: Option<Spanned<u32>>,
    /// How long an address that refused or timed out a connection is skipped (default 5s).
    #[schemars(with = "Option<statusgate_engine::spec_schema::Duration>")]
    pub fail_timeout: Option<Spanned<String>>,
    /// Host header sent upstream instead of the client's (e.g. the vendor's own name).
    #[schemars(with = "Option<String>")]
    pub host_header: Option<Spanned<String>>,
    /// Active health checks of every address (default: passive only).
    #[schemars(with = "Option<RawHealthCheck>")]
    pub health_check: Option<Spanned<RawHealthCheck>>,
    /// Offer HTTP/2: by ALPN (h2, falling back to HTTP/1.1) on TLS groups, h2c with prior
    /// knowledge on plain-text groups (default false).
    #[schemars(with = "Option<bool>")]
    pub http2: Option<Spanned<bool>>,
    /// Concurrent HTTP/2 streams per upstream connection (default 100).
    #[schemars(with = "Option<usize>")]
    pub max_h2_streams: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// Server name sent in SNI and checked in the certificate (default: the address's host
    /// name; for a literal IP address, the IP, which the certificate must then name).
    #[schemars(with = "Option<String>")]
    pub sni: Option<Spanned<String>>,
    /// Verify the upstream certificate (default true; false is warned about at every load).
    #[schemars(with = "Option<bool>")]
    pub verify: Option<Spanned<bool>>,
    /// Check that the certificate names the server (default: `verify`).
    #[schemars(with = "Option<bool>")]
    pub verify_hostname: Option<Spanned<bool>>,
    /// PEM file(s) of the CA certificates to trust; relative to this file.
    #[schemars(with = "Option<OneOrMany<String>>")]
    pub ca: Option<Spanned<OneOrMany<String>>>,
    /// With `ca`: trust the system roots too (default false: `ca` replaces them).
    #[schemars(with = "Option<bool>")]
    pub system_roots: Option<Spanned<bool>>,
    /// Client certificate chain (PEM) for mTLS; needs `key`.
    #[schemars(with = "Option<String>")]
    pub cert: Option<Spanned<String>>,
    /// The client certificate's private key (PEM); needs `cert`.
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    /// Lowest TLS version accepted: "1.2" (default) or "1.3".
    #[schemars(with = "Option<String>")]
    pub min_version: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub path_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub strip_prefix: bool,
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub profile: Option<Spanned<String>>,
    /// A second profile every upstream response of this route is also evaluated by, without
    /// effect on the client's answer: its divergences from `profile` are counted
    /// (`statusgate_shadow_divergences_total`) and listed at the admin's `GET /-/shadow`.
    /// Loaded, validated and example-checked like `profile`; promoting it is a config edit.
    #[schemars(with = "Option<String>")]
    pub shadow_profile: Option<Spanned<String>>,
    /// Headers added to responses of this route when the final status is the key and the
    /// header is missing (e.g. `401: {WWW-Authenticate: 'Bearer realm="api"'}`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<u16, BTreeMap<String, String>>")]
    pub ensure_headers: BTreeMap<u16, BTreeMap<String, Spanned<String>>>,
    /// Protocols whose `Connection: upgrade` requests this route forwards (e.g. `[websocket]`;
    /// case-insensitive). Default none: an upgrade request is refused with 403.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub upgrades: Vec<Spanned<String>>,
}

pub use statusgate_engine::spec::*;
