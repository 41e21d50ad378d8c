//! Load, validate, compile: the whole configuration (main file, canonical profile, vendor
//! profiles) becomes one immutable `Snapshot`. Start-up, `statusgate check` and every reload
//! run exactly this code; only what happens to the result differs.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::config::tracing::TracingExport;
pub use crate::config::upstream_tls::UpstreamTls;
use serde_saphyr::Spanned;

use crate::config::listener_tls::{compile_listener_tls, ListenerCerts};
use crate::config::listeners::{check_distinct, Listener};
use crate::config::load::{parse_yaml, read_text, resolve, EMBEDDED_CANONICAL};
use crate::config::schema::{
    ByteSize, RawCanonical, RawConfig, RawHealthCheck, RawHttp2, RawProfile, RawResolver, RawRoute, RawUpstream,
};
use crate::config::units::parse_duration;
use crate::config::upstream_tls::compile_tls;
use crate::config::{ConfigProblem, ProblemKind, SourcePos};
use crate::dns::{DnsError, Resolution, ResolverSettings};
use crate::engine::body::DEFAULT_BODY_DEPTH;
use crate::engine::canonical::{CanonicalStatus, GatewayFailure};
use crate::engine::diagnostics::{HeaderError, HealthCheckError, PathError, PathKey, ResolverError, UpgradeError};
use crate::engine::examples;
use crate::engine::profile::{check_body_depth, EnsureHeaders, DEFAULT_BODY_BUFFER};
use crate::engine::redact::Redaction;
use crate::engine::{CanonicalProfile, CompiledProfile};

/// One entry of an upstream group's `addrs`: an IP literal (used as it is, no resolver
/// involved) or a host name resolved in the background (every A/AAAA record joins the rotation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfiguredAddr {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

impl ConfiguredAddr {
    /// `ip:port`, or `host:port` when `host` is a DNS name (lower-cased); `None` otherwise.
    pub fn parse(s: &str) -> Option<ConfiguredAddr> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Some(ConfiguredAddr::Ip(sa));
        }
        let (host, port) = s.rsplit_once(':')?;
        let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
        let host = host.strip_suffix('.').unwrap_or(host);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let is_name = host.len() <= 253
            && host.split('.').all(label_ok)
            // All-numeric labels would be a mistyped IP address, not a name.
            && !host.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()));
        is_name.then(|| ConfiguredAddr::Name {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The host name, for a named entry.
    pub fn name(&self) -> Option<&str> {
        match self {
            ConfiguredAddr::Ip(_) => None,
            ConfiguredAddr::Name { host, .. } => Some(host),
        }
    }
}

impl std::fmt::Display for ConfiguredAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfiguredAddr::Ip(sa) => write!(f, "{sa}"),
            ConfiguredAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// `GET` or `HEAD`, the methods a health probe may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMethod {
    Get,
    Head,
}

impl ProbeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMethod::Get => "GET",
            ProbeMethod::Head => "HEAD",
        }
    }
}

/// A group's compiled `health_check:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckDef {
    pub path: String,
    pub method: ProbeMethod,
    pub interval: Duration,
    pub timeout: Duration,
    /// Passing statuses; `None`: any 200-399.
    pub expect: Option<Vec<u16>>,
    pub rise: u32,
    pub fall: u32,
    /// The probe's Host header; `None`: the configured name, else `host_header`, else the address.
    pub host: Option<String>,
}

impl HealthCheckDef {
    pub fn passes(&self, status: u16) -> bool {
        match &self.expect {
            None => (200..400).contains(&status),
            Some(list) => list.contains(&status),
        }
    }
}

/// Concurrent streams per HTTP/2 upstream connection without `max_h2_streams`.
pub const DEFAULT_MAX_H2_STREAMS: usize = 100;

/// Everything that defines an upstream group, compiled. Groups with equal definitions (same
/// name too) keep their runtime state (resolved addresses, passive and active health,
/// connection count: the proxy's `balancer`) across a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamDef {
    pub addrs: Vec<ConfiguredAddr>,
    /// TLS to the upstream (`None`: plain text).
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    /// Inactivity while reading the response body.
    pub body_timeout: Duration,
    /// Inactivity while writing the request.
    pub write_timeout: Duration,
    /// Total time for buffering a body a rule needs.
    pub body_deadline: Duration,
    /// The cap on connections in use (`None`: unlimited).
    pub max_connections: Option<u32>,
    /// How long an address that refused or timed out a connection is skipped.
    pub fail_timeout: Duration,
    /// Host header sent upstream instead of the client's.
    pub host_header: Option<http::HeaderValue>,
    /// Active health checks (`None`: passive only).
    pub health_check: Option<HealthCheckDef>,
    /// The resolver settings, for a group with host names (a change restarts its resolution).
    pub resolver: Option<ResolverSettings>,
    /// Offer HTTP/2 (ALPN h2 with HTTP/1.1 fallback on TLS, h2c on plain text).
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    pub max_h2_streams: usize,
}

/// An upstream group as a snapshot holds it: immutable (its runtime state, the addresses
/// included, is the proxy's balancer).
#[derive(Debug)]
pub struct UpstreamGroup {
    pub name: String,
    /// Position in the snapshot's groups (sorted by name): the proxy's balancers index by it.
    pub index: usize,
    pub def: UpstreamDef,
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// Lower-case host without port; `None` matches any.
    pub host: Option<String>,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub upstream: Arc<UpstreamGroup>,
    pub profile: Arc<CompiledProfile>,
    /// `shadow_profile:`: evaluated on every response beside `profile`, never answering
    /// (`None`: the route has no shadow and pays nothing for the feature).
    pub shadow: Option<Arc<CompiledProfile>>,
    pub ensure: EnsureHeaders,
    /// Protocols whose upgrade requests this route forwards (`upgrades:`), lower-case; empty:
    /// none (the default: a tunnel bypasses every rule).
    pub upgrades: Vec<String>,
}

impl Route {
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(h)) => {
                let h = h
                    .rsplit_once(':')
                    .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(h, |(h, _)| h);
                want.eq_ignore_ascii_case(h)
            }
            (Some(_), None) => false,
        };
        host_ok && path.starts_with(&self.path_prefix)
    }

    /// The path sent upstream.
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        if !self.strip_prefix {
            return path.into();
        }
        let rest = &path[self.path_prefix.len().min(path.len())..];
        if rest.starts_with('/') {
            rest.into()
        } else {
            format!("/{rest}").into()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub body_buffer: usize,
    pub request_header: usize,
    pub request_body: u64,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub client_keepalive_timeout: Duration,
    pub client_connections: Option<u32>,
    /// The limits of each HTTP/2 client connection (read when a connection starts).
    pub http2: Http2Limits,
    /// An upgraded connection carrying no byte either way for this long is closed.
    pub upgrade_idle_timeout: Duration,
}

/// `http2:`'s limits, applied to every new HTTP/2 client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
    pub stream_window: u32,
    pub connection_window: u32,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            stream_window: 64 * 1024,
            connection_window: 1024 * 1024,
        }
    }
}

/// The largest flow-control window HTTP/2 allows (RFC 9113 section 6.9.1).
const H2_MAX_WINDOW: u64 = (1 << 31) - 1;

/// A TLS listener's boot-only part: its address and what it offers by ALPN. Its certificates,
/// SNI table and minimum version are reloadable (`Snapshot::listener_certs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub addr: String,
    /// Offer HTTP/2 by ALPN (h2, then http/1.1); false: http/1.1 only.
    pub http2: bool,
}

/// A TLS listener's reloadable part: what it serves, by listener address.
#[derive(Debug, Clone)]
pub struct TlsListenerCerts {
    pub addr: String,
    pub certs: ListenerCerts,
}

/// The settings that take effect only at start (a reload cannot change them in a running
/// process): one comparable value, so a reload can say which of them it could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSettings {
    pub listen: Vec<String>,
    pub tls_listen: Vec<TlsListener>,
    /// The admin listener's address.
    pub admin: String,
    pub log_format: String,
    pub log_filter: String,
    pub threads: usize,
    pub grace_period: Duration,
    pub watch_config: bool,
    pub work_stealing: bool,
    pub upgrade_sock: PathBuf,
    /// Plain-text listeners accept HTTP/2 with prior knowledge (`http2.h2c`).
    pub h2c: bool,
    /// Where and how spans are exported (`tracing:`; `None`: tracing off).
    pub tracing: Option<TracingExport>,
}

impl BootSettings {
    /// The settings that differ from `running`, by their names in the configuration file.
    pub fn changed_from(&self, running: &BootSettings) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |differs: bool, name: &str| {
            if differs {
                out.push(name.to_owned());
            }
        };
        check(self.listen != running.listen, "listen");
        let addrs = |b: &BootSettings| b.tls_listen.iter().map(|t| t.addr.clone()).collect::<Vec<_>>();
        check(addrs(self) != addrs(running), "tls_listen addresses");
        for t in &self.tls_listen {
            if let Some(r) = running.tls_listen.iter().find(|r| r.addr == t.addr) {
                let name = format!("tls_listen `{}` http2 (ALPN)", t.addr);
                check(t.http2 != r.http2, &name);
            }
        }
        check(self.admin != running.admin, "admin address");
        check(self.log_format != running.log_format, "log.format");
        check(self.log_filter != running.log_filter, "log.filter");
        check(self.threads != running.threads, "server.threads");
        check(self.grace_period != running.grace_period, "server.grace_period");
        check(self.watch_config != running.watch_config, "server.watch_config");
        check(self.work_stealing != running.work_stealing, "server.work_stealing");
        check(self.upgrade_sock != running.upgrade_sock, "server.upgrade_sock");
        check(self.h2c != running.h2c, "http2.h2c");
        match (&self.tracing, &running.tracing) {
            (Some(next), Some(run)) => out.extend(next.changed_keys(run).into_iter().map(str::to_owned)),
            (None, None) => {}
            (Some(_), None) => out.push("tracing (turned on)".to_owned()),
            (None, Some(_)) => out.push("tracing (turned off)".to_owned()),
        }
        out
    }
}

/// One immutable, fully compiled configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Hash of every source file's content.
    pub version: String,
    pub loaded_at: SystemTime,
    pub files: Vec<PathBuf>,
    /// Listeners, logging and server lifecycle: read at start only.
    pub boot: BootSettings,
    /// What each TLS listener serves (certificates by SNI, minimum version): reloadable.
    pub listener_certs: Vec<TlsListenerCerts>,
    /// The admin listener's bearer token and what it protects.
    pub admin_auth: crate::config::admin::AdminAuth,
    pub canonical: CanonicalProfile,
    pub upstreams: HashMap<String, Arc<UpstreamGroup>>,
    pub routes: Vec<Route>,
    pub limits: Limits,
    pub warnings: Vec<ConfigProblem>,
    /// The resolver of upstream host names.
    pub resolver: ResolverSettings,
    /// What each upstream host name resolved to at load (the first addresses of a new group).
    pub resolved: HashMap<String, Result<Resolution, DnsError>>,
    /// `tracing.sample_ratio`: the share of new traces recorded (reloadable; read per request
    /// while tracing is on).
    pub trace_sample_ratio: f64,
}

impl Snapshot {
    /// The first route that matches, with its index in `routes`.
    pub fn route_for(&self, host: Option<&str>, path: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, r)| r.matches(host, path))
    }
}

struct Loader {
    files: Vec<PathBuf>,
    hasher: DefaultHasher,
    problems: Vec<ConfigProblem>,
    warnings: Vec<ConfigProblem>,
}

impl Loader {
    fn read<T: serde::de::DeserializeOwned>(&mut self, path: &Path) -> Option<T> {
        let text = match read_text(path) {
            Ok(t) => t,
            Err(p) => {
                self.problems.push(p);
                return None;
            }
        };
        self.files.push(path.to_path_buf());
        path.hash(&mut self.hasher);
        text.hash(&mut self.hasher);
        parse_yaml(path, &text).map_err(|p| self.problems.push(p)).ok()
    }

    /// A file read as text that is part of the configuration (hashed, watched), e.g. a token.
    fn read_text_file(&mut self, path: &Path) -> Result<String, ConfigProblem> {
        let text = read_text(path)?;
        self.files.push(path.to_path_buf());
        path.hash(&mut self.hasher);
        text.hash(&mut self.hasher);
        Ok(text)
    }

    fn duration(&mut self, file: &Path, raw: &Option<Spanned<String>>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(s) => parse_duration(&s.value).unwrap_or_else(|e| {
                self.problems
                    .push(ConfigProblem::error(SourcePos::of(file, s), ProblemKind::Duration(e)));
                default
            }),
        }
    }

    fn error(&mut self, at: SourcePos, kind: ProblemKind) {
        self.problems.push(ConfigProblem::error(at, kind));
    }
}

/// `http2:`'s limits, each checked against what HTTP/2 allows.
fn compile_http2(main: &Path, raw: &RawHttp2, l: &mut Loader) -> Http2Limits {
    let default = Http2Limits::default();
    let mut bounded = |key: &'static str, value: Option<(u64, SourcePos)>, min: u64, max: u64, default: u32| match value
    {
        None => default,
        Some((value, _)) if (min..=max).contains(&value) => value as u32,
        Some((value, at)) => {
            l.error(at, ProblemKind::OutOfRange { key, value, min, max });
            default
        }
    };
    let size = |v: &Option<Spanned<ByteSize>>| v.as_ref().map(|s| (s.value.0, SourcePos::of(main, s)));
    Http2Limits {
        max_concurrent_streams: bounded(
            "http2.max_concurrent_streams",
            raw.max_concurrent_streams
                .as_ref()
                .map(|s| (u64::from(s.value), SourcePos::of(main, s))),
            1,
            u64::from(u32::MAX),
            default.max_concurrent_streams,
        ),
        max_header_list_size: bounded(
            "http2.max_header_list_size",
            size(&raw.max_header_list_size),
            1024,
            u64::from(u32::MAX),
            default.max_header_list_size,
        ),
        stream_window: bounded(
            "http2.stream_window",
            size(&raw.stream_window),
            1,
            H2_MAX_WINDOW,
            default.stream_window,
        ),
        connection_window: bounded(
            "http2.connection_window",
            size(&raw.connection_window),
            1,
            H2_MAX_WINDOW,
            default.connection_window,
        ),
    }
}

/// Loads and compiles everything reachable from the main config file. Collects all problems.
/// Pure definitions: no metric is registered and no runtime state is made here (both happen
/// when the live handle accepts the snapshot).
pub fn load(main: &Path) -> Result<Snapshot, Vec<ConfigProblem>> {
    let mut l = Loader {
        files: Vec::new(),
        hasher: DefaultHasher::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let Some(raw) = l.read::<RawConfig>(main) else {
        return Err(l.problems);
    };

    // The canonical profile first: rules are checked against it.
    let canonical_path = match &raw.canonical {
        Some(c) => resolve(main, &c.value),
        None => PathBuf::from(EMBEDDED_CANONICAL),
    };
    let canonical = l
        .read::<RawCanonical>(&canonical_path)
        .and_then(|c| compile_canonical(&canonical_path, &c, &mut l));

    let body_buffer = raw
        .limits
        .body_buffer
        .as_ref()
        .map_or(DEFAULT_BODY_BUFFER, |b| b.value.0 as usize);
    let body_depth = raw
        .limits
        .body_depth
        .as_ref()
        .map_or(DEFAULT_BODY_DEPTH, |d| check_body_depth(main, d, &mut l.problems));
    let limits = Limits {
        body_buffer,
        request_header: raw
            .limits
            .request_header
            .as_ref()
            .map_or(32 * 1024, |b| b.value.0 as usize),
        request_body: raw.limits.request_body.as_ref().map_or(10 * 1024 * 1024, |b| b.value.0),
        client_header_timeout: l.duration(main, &raw.limits.client_header_timeout, Duration::from_secs(10)),
        client_body_timeout: l.duration(main, &raw.limits.client_body_timeout, Duration::from_secs(30)),
        client_keepalive_timeout: l.duration(main, &raw.limits.client_keepalive_timeout, Duration::from_secs(60)),
        client_connections: raw.limits.client_connections.as_ref().map(|c| c.value),
        http2: compile_http2(main, &raw.http2, &mut l),
        upgrade_idle_timeout: l.duration(main, &raw.limits.upgrade_idle_timeout, Duration::from_secs(300)),
    };
    if let (Some(raw_idle), true) = (&raw.limits.upgrade_idle_timeout, limits.upgrade_idle_timeout.is_zero()) {
        l.error(SourcePos::of(main, raw_idle), UpgradeError::ZeroIdleTimeout.into());
    }

    let resolver = compile_resolver(main, raw.resolver.as_ref(), &mut l);
    let mut upstreams = HashMap::new();
    let mut named = Vec::new();
    for (index, (name, up)) in raw.upstreams.iter().enumerate() {
        let group = compile_upstream(main, name, index, up, &resolver, &mut named, &mut l);
        upstreams.insert(name.clone(), Arc::new(group));
    }

    let mut profiles: HashMap<PathBuf, Option<Arc<CompiledProfile>>> = HashMap::new();
    let empty = Arc::new(CompiledProfile::empty(body_buffer));
    let mut routes = Vec::new();
    let mut names = std::collections::HashSet::new();
    for r in &raw.routes {
        let rv = &r.value;
        if !names.insert(rv.name.value.clone()) {
            l.error(
                SourcePos::of(main, &rv.name),
                ProblemKind::Duplicate(rv.name.value.clone()),
            );
        }
        let upstream = upstreams.get(&rv.upstream.value).cloned();
        if upstream.is_none() {
            let mut defined: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            defined.sort_unstable();
            l.error(
                SourcePos::of(main, &rv.upstream),
                ProblemKind::UnknownUpstream(rv.upstream.value.clone(), defined.join(", ")),
            );
        }
        let prefix = rv.path_prefix.as_ref().map_or("/".to_owned(), |p| p.value.clone());
        if !prefix.starts_with('/') {
            let at = rv
                .path_prefix
                .as_ref()
                .map_or(SourcePos::of(main, r), |p| SourcePos::of(main, p));
            l.error(
                at,
                PathError::NotAbsolute {
                    key: PathKey::RoutePrefix,
                    path: prefix.clone(),
                }
                .into(),
            );
        }
        let mut profile_at = |file: &Spanned<String>, l: &mut Loader| {
            let path = resolve(main, &file.value);
            if !profiles.contains_key(&path) {
                let compiled = l.read::<RawProfile>(&path).and_then(|raw_profile| {
                    let canonical = canonical.as_ref()?;
                    let profile = CompiledProfile::compile(&path, &raw_profile, canonical, body_buffer, body_depth)
                        .map_err(|ps| l.problems.extend(ps))
                        .ok()?;
                    // The reload gate: a profile whose examples fail is rejected.
                    let failures = examples::check_all(&path, &profile, canonical, &raw_profile.examples);
                    if !failures.is_empty() {
                        l.problems.extend(failures);
                        return None;
                    }
                    Some(Arc::new(profile))
                });
                profiles.insert(path.clone(), compiled);
            }
            profiles[&path].clone()
        };
        let profile = match &rv.profile {
            None => Some(empty.clone()),
            Some(p) => profile_at(p, &mut l),
        };
        // A shadow profile is loaded exactly like the active one: a bad one rejects the load.
        let shadow = rv.shadow_profile.as_ref().map(|p| profile_at(p, &mut l));
        let ensure = EnsureHeaders::compile(main, &rv.ensure_headers, &mut l.problems);
        let upgrades = compile_upgrades(main, rv, upstream.as_deref(), &mut l);
        if let (Some(upstream), Some(profile), Some(shadow)) =
            (upstream, profile, shadow.map_or(Some(None), |s| s.map(Some)))
        {
            routes.push(Route {
                name: Arc::from(rv.name.value.as_str()),
                host: rv.host.as_ref().map(|h| h.value.to_ascii_lowercase()),
                path_prefix: prefix,
                strip_prefix: rv.strip_prefix,
                upstream,
                profile,
                shadow,
                ensure,
                upgrades,
            });
        }
    }

    let (mut admin_problems, mut admin_warnings) = (Vec::new(), Vec::new());
    let admin = crate::config::admin::compile_admin(
        main,
        raw.admin.as_ref(),
        &mut |path| l.read_text_file(path),
        &mut admin_problems,
        &mut admin_warnings,
    );
    l.problems.extend(admin_problems);
    for addr in &raw.listen.value.0 {
        if addr.to_socket_addrs().is_err() {
            l.error(SourcePos::of(main, &raw.listen), ProblemKind::Address(addr.clone()));
        }
    }
    let mut tls_listen = Vec::new();
    let mut listener_certs = Vec::new();
    for t in &raw.tls_listen {
        check_addr(main, &t.addr, &mut l);
        tls_listen.push(TlsListener {
            addr: t.addr.value.clone(),
            http2: t.http2.as_ref().is_none_or(|h| h.value),
        });
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let certs = compile_listener_tls(main, t, &mut |p| l.read_text_file(p), &mut problems, &mut warnings);
        l.problems.extend(problems);
        l.warnings.extend(warnings);
        if let Some(certs) = certs {
            listener_certs.push(TlsListenerCerts {
                addr: t.addr.value.clone(),
                certs,
            });
        }
    }
    let listeners: Vec<Listener> = (raw.listen.value.0.iter())
        .map(|addr| Listener {
            role: "listen",
            addr,
            at: Some(SourcePos::of(main, &raw.listen)),
        })
        .chain(raw.tls_listen.iter().map(|t| Listener {
            role: "tls_listen",
            addr: &t.addr.value,
            at: Some(SourcePos::of(main, &t.addr)),
        }))
        .chain(std::iter::once(Listener {
            role: "admin",
            addr: &admin.addr,
            at: admin.addr_at.clone(),
        }))
        .collect();
    l.problems.extend(check_distinct(&listeners));
    let log_format = raw.log.format.as_ref().map_or("text".to_owned(), |f| f.value.clone());
    if let Some(f) = &raw.log.format {
        if f.value != "text" && f.value != "json" {
            l.error(SourcePos::of(main, f), ProblemKind::LogFormat(f.value.clone()));
        }
    }
    let grace_period = l.duration(main, &raw.server.grace_period, Duration::from_secs(5));
    let tracing = crate::config::tracing::compile_tracing(main, raw.tracing.as_ref(), &mut l.problems, &mut l.warnings);

    let (Some(canonical), true) = (canonical, l.problems.is_empty()) else {
        return Err(l.problems);
    };
    let mut warnings = challenge_warnings(&routes);
    warnings.extend(admin_warnings);
    let resolved = resolve_at_load(&resolver, &named, &mut warnings);
    warnings.append(&mut l.warnings);
    Ok(Snapshot {
        version: format!("{:016x}", l.hasher.finish()),
        loaded_at: SystemTime::now(),
        files: l.files,
        boot: BootSettings {
            listen: raw.listen.value.0.clone(),
            tls_listen,
            admin: admin.addr,
            log_format,
            log_filter: raw.log.filter.as_ref().map_or("info".to_owned(), |f| f.value.clone()),
            threads: raw.server.threads.as_ref().map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                |t| t.value.max(1),
            ),
            grace_period,
            watch_config: raw.server.watch_config.unwrap_or(true),
            work_stealing: raw.server.work_stealing.unwrap_or(true),
            upgrade_sock: raw.server.upgrade_sock.as_ref().map_or_else(
                || PathBuf::from("/tmp/statusgate_upgrade.sock"),
                |s| resolve(main, &s.value),
            ),
            h2c: raw.http2.h2c.unwrap_or(false),
            tracing: tracing.as_ref().map(|t| t.export.clone()),
        },
        listener_certs,
        admin_auth: admin.auth,
        canonical,
        upstreams,
        routes,
        limits,
        warnings,
        resolver,
        resolved,
        trace_sample_ratio: tracing.map_or(1.0, |t| t.sample_ratio),
    })
}

/// A route's `upgrades:`: protocol names (RFC 9110 tokens, no `/version`), lower-cased and
/// deduplicated. `h2c` is never an upgrade to forward, and a tunnel needs HTTP/1.1 upstream.
fn compile_upgrades(file: &Path, rv: &RawRoute, upstream: Option<&UpstreamGroup>, l: &mut Loader) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in &rv.upgrades {
        let name = token.value.trim().to_ascii_lowercase();
        let is_token = !name.is_empty() && name.bytes().all(http_token_char);
        if !is_token {
            l.error(
                SourcePos::of(file, token),
                UpgradeError::Token(token.value.clone()).into(),
            );
        } else if name == "h2c" {
            l.error(SourcePos::of(file, token), UpgradeError::H2c.into());
        } else if !out.contains(&name) {
            out.push(name);
        }
    }
    if let (Some(group), false) = (upstream, out.is_empty()) {
        if group.def.http2 {
            let at = rv
                .upgrades
                .first()
                .map_or(SourcePos::of(file, &rv.name), |u| SourcePos::of(file, u));
            l.error(
                at,
                UpgradeError::Http2Upstream {
                    route: rv.name.value.clone(),
                    upstream: group.name.clone(),
                }
                .into(),
            );
        }
    }
    out
}

/// An RFC 9110 `tchar`.
pub fn http_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Resolves every upstream host name once (concurrently, bounded by `resolver.timeout`): a
/// name that does not resolve is a warning, not a rejection.
fn resolve_at_load(
    resolver: &ResolverSettings,
    named: &[(String, String, SourcePos)],
    warnings: &mut Vec<ConfigProblem>,
) -> HashMap<String, Result<Resolution, DnsError>> {
    let mut hosts: Vec<String> = named.iter().map(|(_, h, _)| h.clone()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let results = crate::dns::resolve_blocking(resolver, &hosts);
    let resolved: HashMap<String, Result<Resolution, DnsError>> = hosts.into_iter().zip(results).collect();
    for (group, host, at) in named {
        if let Some(Err(e)) = resolved.get(host) {
            warnings.push(ConfigProblem::warning(
                at.clone(),
                format!(
                    "upstream `{group}`: `{host}` does not resolve ({e}); resolution keeps trying in the background, and while the group has no address its requests get 503 no-upstream-address"
                ),
            ));
        }
    }
    resolved
}

fn compile_resolver(file: &Path, raw: Option<&Spanned<RawResolver>>, l: &mut Loader) -> ResolverSettings {
    let d = ResolverSettings::default();
    let Some(raw) = raw else {
        return d;
    };
    let r = &raw.value;
    let mut nameservers = Vec::new();
    for ns in &r.nameservers {
        match ns.value.parse::<SocketAddr>() {
            Ok(sa) => nameservers.push(sa),
            Err(_) => l.error(
                SourcePos::of(file, ns),
                ResolverError::Nameserver(ns.value.clone()).into(),
            ),
        }
    }
    let settings = ResolverSettings {
        nameservers,
        min_ttl: l.duration(file, &r.min_ttl, d.min_ttl),
        max_ttl: l.duration(file, &r.max_ttl, d.max_ttl),
        stale_for: l.duration(file, &r.stale_for, d.stale_for),
        timeout: l.duration(file, &r.timeout, d.timeout),
    };
    if settings.min_ttl > settings.max_ttl {
        let at = r
            .min_ttl
            .as_ref()
            .map_or(SourcePos::of(file, raw), |m| SourcePos::of(file, m));
        l.error(at, ResolverError::MinTtlAboveMax.into());
    }
    if settings.timeout.is_zero() {
        let at = r
            .timeout
            .as_ref()
            .map_or(SourcePos::of(file, raw), |m| SourcePos::of(file, m));
        l.error(at, ResolverError::ZeroTimeout.into());
    }
    settings
}

fn compile_health_check(file: &Path, raw: &Spanned<RawHealthCheck>, l: &mut Loader) -> HealthCheckDef {
    let h = &raw.value;
    let path = h.path.as_ref().map_or("/".to_owned(), |p| p.value.clone());
    if let Some(p) = &h.path {
        let valid = p.value.starts_with('/') && http::uri::PathAndQuery::try_from(p.value.as_str()).is_ok();
        if !valid {
            l.error(SourcePos::of(file, p), HealthCheckError::Path(p.value.clone()).into());
        }
    }
    let method = match h.method.as_ref().map(|m| (m, m.value.to_ascii_uppercase())) {
        None => ProbeMethod::Get,
        Some((_, m)) if m == "GET" => ProbeMethod::Get,
        Some((_, m)) if m == "HEAD" => ProbeMethod::Head,
        Some((m, _)) => {
            l.error(SourcePos::of(file, m), HealthCheckError::Method(m.value.clone()).into());
            ProbeMethod::Get
        }
    };
    let interval = l.duration(file, &h.interval, Duration::from_secs(5));
    let timeout = l.duration(file, &h.timeout, Duration::from_secs(2));
    for (d, raw_d, what) in [(interval, &h.interval, "interval"), (timeout, &h.timeout, "timeout")] {
        if d.is_zero() {
            let at = raw_d
                .as_ref()
                .map_or(SourcePos::of(file, raw), |x| SourcePos::of(file, x));
            l.error(at, HealthCheckError::ZeroDuration(what).into());
        }
    }
    let expect = h.expect.as_ref().map(|list| {
        if list.value.is_empty() {
            l.error(
                SourcePos::of(file, list),
                ProblemKind::Status("health_check expect lists no status".to_owned()),
            );
        }
        list.value
            .iter()
            .map(|s| {
                if !(100..=599).contains(&s.value) {
                    l.error(
                        SourcePos::of(file, s),
                        ProblemKind::Status(format!("{} is outside 100-599", s.value)),
                    );
                }
                s.value
            })
            .collect()
    });
    let mut count = |raw_n: &Option<Spanned<u32>>, default: u32, what: &'static str| match raw_n {
        None => default,
        Some(n) if n.value == 0 => {
            l.error(SourcePos::of(file, n), HealthCheckError::ZeroCount(what).into());
            default
        }
        Some(n) => n.value,
    };
    let rise = count(&h.rise, 2, "rise");
    let fall = count(&h.fall, 3, "fall");
    let host = h.host.as_ref().and_then(|x| {
        http::HeaderValue::from_str(&x.value)
            .map(|_| x.value.clone())
            .map_err(|_| {
                l.error(
                    SourcePos::of(file, x),
                    ProblemKind::Header(HeaderError::Value {
                        name: "Host".to_owned(),
                        value: x.value.clone(),
                    }),
                )
            })
            .ok()
    });
    HealthCheckDef {
        path,
        method,
        interval,
        timeout,
        expect,
        rise,
        fall,
        host,
    }
}

/// RFC 9110: a 401 must carry WWW-Authenticate (15.5.2) and a 405 Allow (15.5.6). Warns for
/// each rule that maps to one of them when neither the rule, its profile nor the route supplies
/// the header.
fn challenge_warnings(routes: &[Route]) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    for (status, header) in [(401u16, http::header::WWW_AUTHENTICATE), (405, http::header::ALLOW)] {
        for route in routes {
            let supplied = route
                .profile
                .ensure
                .for_status(status)
                .chain(route.ensure.for_status(status))
                .any(|(n, _)| *n == header);
            if supplied {
                continue;
            }
            for (rule, at) in route.profile.rules_mapping_to_without(status, &header) {
                out.push(ConfigProblem::warning(
                    at.clone(),
                    format!(
                        "rule `{rule}` maps to {status} but route `{}` supplies no {header} (RFC 9110); set it in the rule or in ensure_headers",
                        route.name
                    ),
                ));
            }
        }
    }
    out
}

fn check_addr(file: &Path, a: &Spanned<String>, l: &mut Loader) {
    if a.value.to_socket_addrs().is_err() {
        l.error(SourcePos::of(file, a), ProblemKind::Address(a.value.clone()));
    }
}

fn compile_upstream(
    file: &Path,
    name: &str,
    index: usize,
    up: &Spanned<RawUpstream>,
    resolver: &ResolverSettings,
    named: &mut Vec<(String, String, SourcePos)>,
    l: &mut Loader,
) -> UpstreamGroup {
    let u = &up.value;
    let mut addrs = Vec::new();
    for a in &u.addrs {
        match ConfiguredAddr::parse(a.value.trim()) {
            Some(ca) => {
                if let Some(host) = ca.name() {
                    named.push((name.to_owned(), host.to_owned(), SourcePos::of(file, a)));
                }
                addrs.push(ca);
            }
            None => l.error(SourcePos::of(file, a), ProblemKind::Address(a.value.clone())),
        }
    }
    if u.addrs.is_empty() {
        l.error(SourcePos::of(file, up), ProblemKind::NoAddresses(name.to_owned()));
    }
    let tls = u.tls.as_ref().and_then(|t| {
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let compiled = compile_tls(
            file,
            name,
            t,
            &mut |p| l.read_text_file(p),
            &mut problems,
            &mut warnings,
        );
        l.problems.extend(problems);
        l.warnings.extend(warnings);
        compiled
    });
    let http2 = u.http2.as_ref().is_some_and(|h| h.value);
    let max_h2_streams = match &u.max_h2_streams {
        None => DEFAULT_MAX_H2_STREAMS,
        Some(m) if m.value == 0 => {
            l.error(SourcePos::of(file, m), ProblemKind::AtLeastOne("max_h2_streams"));
            DEFAULT_MAX_H2_STREAMS
        }
        Some(m) => m.value,
    };
    let connect_timeout = l.duration(file, &u.connect_timeout, Duration::from_secs(2));
    let response_timeout = l.duration(file, &u.response_timeout, Duration::from_secs(30));
    let idle_timeout = l.duration(file, &u.idle_timeout, Duration::from_secs(60));
    let body_timeout = l.duration(file, &u.body_timeout, Duration::from_secs(30));
    let fail_timeout = l.duration(file, &u.fail_timeout, Duration::from_secs(5));
    let write_timeout = l.duration(file, &u.write_timeout, Duration::from_secs(30));
    let body_deadline = l.duration(file, &u.body_deadline, Duration::from_secs(10));
    let max_connections = u.max_connections.as_ref().map(|m| m.value);
    let host_header = u.host_header.as_ref().and_then(|h| {
        http::HeaderValue::from_str(&h.value)
            .map_err(|_| {
                let e = HeaderError::Value {
                    name: "Host".to_owned(),
                    value: h.value.clone(),
                };
                l.error(SourcePos::of(file, h), e.into())
            })
            .ok()
    });
    let health_check = u.health_check.as_ref().map(|h| compile_health_check(file, h, l));
    let has_names = addrs.iter().any(|a| a.name().is_some());
    UpstreamGroup {
        name: name.to_owned(),
        index,
        def: UpstreamDef {
            addrs,
            tls,
            connect_timeout,
            response_timeout,
            idle_timeout,
            body_timeout,
            write_timeout,
            body_deadline,
            max_connections,
            fail_timeout,
            host_header,
            health_check,
            resolver: has_names.then(|| resolver.clone()),
            http2,
            max_h2_streams,
        },
    }
}

fn compile_canonical(file: &Path, raw: &RawCanonical, l: &mut Loader) -> Option<CanonicalProfile> {
    let before = l.problems.len();
    let mut statuses = HashMap::new();
    for (code, s) in &raw.statuses {
        if !(100..=599).contains(code) {
            l.error(
                SourcePos::of(file, s),
                ProblemKind::Status(format!("{code} is outside 100-599")),
            );
        }
        let type_uri = s.value.type_uri.clone().unwrap_or_else(|| "about:blank".to_owned());
        let title = s.value.title.clone().unwrap_or_else(|| s.value.reason.clone());
        statuses.insert(
            *code,
            CanonicalStatus {
                reason: s.value.reason.clone(),
                type_uri,
                title,
            },
        );
    }
    for (fb, class) in [(&raw.fallback.client, 4), (&raw.fallback.server, 5)] {
        if fb.value / 100 != class || !statuses.contains_key(&fb.value) {
            l.error(
                SourcePos::of(file, fb),
                ProblemKind::Status(format!(
                    "fallback {} must be a {class}xx status of the canonical set",
                    fb.value
                )),
            );
        }
    }
    let mut gateway = HashMap::new();
    for (name, p) in &raw.gateway_problems {
        match GatewayFailure::from_name(name) {
            Some(f) => {
                gateway.insert(f, (p.value.type_uri.clone(), p.value.title.clone()));
            }
            None => l.error(
                SourcePos::of(file, p),
                ProblemKind::UnknownFailure {
                    name: name.clone(),
                    known: GatewayFailure::ALL.map(GatewayFailure::name).join(", "),
                },
            ),
        }
    }
    let retry_after = gateway_retry_after(file, raw, l);
    let r = &raw.redaction;
    let patterns: Vec<&str> = r.patterns.iter().map(|p| p.value.as_str()).collect();
    let redaction = Redaction::compile(r.builtin, &patterns, r.replacement.as_deref()).unwrap_or_else(|errors| {
        for e in errors {
            l.error(SourcePos::of(file, &r.patterns[e.index]), ProblemKind::Regex(e.message));
        }
        Redaction::default()
    });
    (l.problems.len() == before).then(|| {
        CanonicalProfile::new(statuses, raw.fallback.client.value, raw.fallback.server.value, gateway)
            .with_redaction(redaction)
            .with_gateway_retry_after(retry_after)
    })
}

/// `gateway_retry_after:`: statuses 503 and 504 only (the gateway's retryable answers), each a
/// whole number of seconds, as `Retry-After` carries it (RFC 9110 section 10.2.3).
fn gateway_retry_after(file: &Path, raw: &RawCanonical, l: &mut Loader) -> Vec<(u16, http::HeaderValue)> {
    let mut out = Vec::new();
    for (status, d) in &raw.gateway_retry_after {
        let at = SourcePos::of(file, d);
        if !matches!(status, 503 | 504) {
            l.error(
                at,
                ProblemKind::Status(format!(
                    "gateway_retry_after {status}: only 503 and 504 (the gateway's retryable answers)"
                )),
            );
            continue;
        }
        match parse_duration(&d.value) {
            Ok(t) if t.subsec_nanos() == 0 => out.push((*status, http::HeaderValue::from(t.as_secs()))),
            Ok(_) => l.error(
                at,
                ProblemKind::Duration(format!(
                    "gateway_retry_after {status}: `{}` is not a whole number of seconds (Retry-After counts seconds)",
                    d.value
                )),
            ),
            Err(e) => l.error(at, ProblemKind::Duration(format!("gateway_retry_after {status}: {e}"))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> BootSettings {
        BootSettings {
            listen: vec!["127.0.0.1:8080".to_owned()],
            tls_listen: Vec::new(),
            admin: "127.0.0.1:9090".to_owned(),
            log_format: "text".to_owned(),
            log_filter: "info".to_owned(),
            threads: 2,
            grace_period: Duration::from_secs(5),
            watch_config: true,
            work_stealing: true,
            upgrade_sock: PathBuf::from("/tmp/u.sock"),
            h2c: false,
            tracing: None,
        }
    }

    #[test]
    fn boot_settings_name_each_changed_setting_and_nothing_else() {
        let running = boot();
        assert!(boot().changed_from(&running).is_empty());
        let next = BootSettings {
            threads: 4,
            log_filter: "debug".to_owned(),
            grace_period: Duration::ZERO,
            work_stealing: false,
            upgrade_sock: PathBuf::from("/tmp/v.sock"),
            watch_config: false,
            h2c: true,
            ..boot()
        };
        assert_eq!(
            next.changed_from(&running),
            [
                "log.filter",
                "server.threads",
                "server.grace_period",
                "server.watch_config",
                "server.work_stealing",
                "server.upgrade_sock",
                "http2.h2c"
            ]
        );
    }

    #[test]
    fn tracing_needs_a_restart_to_turn_on_or_off_or_to_change_its_exporter() {
        let export = TracingExport {
            endpoint: "http://127.0.0.1:4318/v1/traces".to_owned(),
            service_name: "statusgate".to_owned(),
            queue_size: 2048,
            batch_size: 512,
            batch_delay: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
        };
        let off = boot();
        let on = BootSettings {
            tracing: Some(export.clone()),
            ..boot()
        };
        assert_eq!(on.changed_from(&off), ["tracing (turned on)"]);
        assert_eq!(off.changed_from(&on), ["tracing (turned off)"]);
        let renamed = BootSettings {
            tracing: Some(TracingExport {
                service_name: "edge".to_owned(),
                queue_size: 10,
                ..export
            }),
            ..boot()
        };
        assert_eq!(
            renamed.changed_from(&on),
            ["tracing.service_name", "tracing.queue_size"]
        );
    }

    #[test]
    fn tls_listeners_need_a_restart_for_their_addresses_and_alpn_only() {
        let tls = |addr: &str, http2| TlsListener {
            addr: addr.to_owned(),
            http2,
        };
        let running = BootSettings {
            tls_listen: vec![tls("127.0.0.1:8443", true), tls("127.0.0.1:9443", true)],
            ..boot()
        };
        let alpn = BootSettings {
            tls_listen: vec![tls("127.0.0.1:8443", true), tls("127.0.0.1:9443", false)],
            ..boot()
        };
        assert_eq!(
            alpn.changed_from(&running),
            ["tls_listen `127.0.0.1:9443` http2 (ALPN)"]
        );
        let moved = BootSettings {
            tls_listen: vec![tls("127.0.0.1:8443", true)],
            ..boot()
        };
        assert_eq!(moved.changed_from(&running), ["tls_listen addresses"]);
    }

    #[test]
    fn an_address_is_an_ip_literal_or_a_dns_name_with_a_port() {
        let ip = |s: &str| Some(ConfiguredAddr::Ip(s.parse().unwrap()));
        let name = |h: &str, port| {
            Some(ConfiguredAddr::Name {
                host: h.to_owned(),
                port,
            })
        };
        assert_eq!(ConfiguredAddr::parse("10.0.0.5:443"), ip("10.0.0.5:443"));
        assert_eq!(ConfiguredAddr::parse("[2001:db8::5]:443"), ip("[2001:db8::5]:443"));
        assert_eq!(
            ConfiguredAddr::parse("API.Vendor.example.com:8443"),
            name("api.vendor.example.com", 8443)
        );
        assert_eq!(ConfiguredAddr::parse("localhost:80"), name("localhost", 80));
        assert_eq!(ConfiguredAddr::parse("host.example.:80"), name("host.example", 80));
        for bad in [
            "api.example.com",
            "api.example.com:0",
            "api.example.com:70000",
            ":443",
            "10.0.0:443",
            "-bad.example:443",
            "a..b:443",
            "sp ace:443",
            "http://x:80",
        ] {
            assert_eq!(ConfiguredAddr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_shipped_canonical_profile_names_a_problem_type_for_every_failure_kind() {
        let path = Path::new(EMBEDDED_CANONICAL);
        let text = read_text(path).expect("embedded canonical");
        let raw: RawCanonical = parse_yaml(path, &text).expect("embedded canonical parses");
        for f in GatewayFailure::ALL {
            assert!(
                raw.gateway_problems.contains_key(f.name()),
                "{} has no gateway_problems entry",
                f.name()
            );
        }
    }
}
