//! Positioned configuration problems: where (file:line:col), how bad (error or warning) and
//! what, by kind. Every loader, compiler and the examples gate report through these types.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use crate::body::BodyPathError;
use crate::matcher::{GlobError, MatcherError, MediaError};
use crate::template::TemplateError;

/// Where a problem is: file and 1-based line and column (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
}

impl SourcePos {
    pub fn file(file: &Path) -> Self {
        SourcePos {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
        }
    }

    pub fn at(file: &Path, loc: &Location) -> Self {
        SourcePos {
            file: file.to_path_buf(),
            line: loc.line(),
            col: loc.column(),
        }
    }

    pub fn of<T>(file: &Path, s: &Spanned<T>) -> Self {
        Self::at(file, &s.referenced)
    }
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// What is wrong, by kind. The message texts are what operators read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    #[error("cannot read file: {0}")]
    Unreadable(String),
    #[error("{0}")]
    Yaml(String),
    #[error("invalid duration: {0}")]
    Duration(String),
    #[error("invalid address `{0}`: expected host:port")]
    Address(String),
    #[error("unknown upstream `{0}` (defined: {1})")]
    UnknownUpstream(String, String),
    #[error("upstream `{0}` has no addresses")]
    NoAddresses(String),
    #[error("duplicate name `{0}`")]
    Duplicate(String),
    #[error("invalid regex: {0}")]
    Regex(String),
    /// A value condition (`equals`, `one_of`, `regex`, `exists`) that does not compile.
    #[error("{0}")]
    Matcher(#[from] MatcherError),
    #[error("invalid template: {0}")]
    Template(#[from] TemplateError),
    /// A `path_prefix` (a route's or a rule's) that is not absolute.
    #[error("invalid path: {0}")]
    Path(#[from] PathError),
    /// A `json:` / `xml:` body path.
    #[error("invalid path: {0}")]
    BodyPath(#[from] BodyPathError),
    /// A rule's `path` glob.
    #[error("invalid path: {0}")]
    Glob(#[from] GlobError),
    /// A `content_type` pattern.
    #[error("{0}")]
    Media(#[from] MediaError),
    /// A header name or value the HTTP types reject.
    #[error("{0}")]
    Header(#[from] HeaderError),
    #[error("status {0} is not in the canonical set ({1})")]
    NotCanonical(u16, String),
    #[error("invalid status: {0}")]
    Status(String),
    #[error("example `{0}` fails: {1}")]
    Example(String, String),
    /// Two listeners (`listen`, `tls_listen`, `admin`) on one address.
    #[error("{0}")]
    ListenerOverlap(Box<ListenerOverlap>),
    /// A `body_depth` outside 1 to the readers' maximum.
    #[error("body_depth {depth} is outside 1-{max}")]
    BodyDepth { depth: usize, max: usize },
    /// A `log.format` other than `text` or `json`.
    #[error("log format `{0}`: use text or json")]
    LogFormat(String),
    /// A canonical `gateway:` entry naming no failure kind.
    #[error("unknown gateway failure `{name}` (known: {known})")]
    UnknownFailure { name: String, known: String },
    /// The `admin:` section's bearer token.
    #[error("{0}")]
    Admin(#[from] AdminError),
    /// A count that must be at least 1 (the key's name).
    #[error("{0} must be at least 1")]
    AtLeastOne(&'static str),
    /// A number outside what its key allows (the key's name and the bounds).
    #[error("{key}: {value} is outside {min}-{max}")]
    OutOfRange {
        key: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// An upstream group's `tls:` section.
    #[error("{0}")]
    UpstreamTls(Box<UpstreamTlsError>),
    /// A `tls_listen:` entry's certificates, keys or `min_version`.
    #[error("{0}")]
    ListenerTls(Box<ListenerTlsError>),
    /// The `resolver:` section.
    #[error("resolver: {0}")]
    Resolver(#[from] ResolverError),
    /// An upstream's `health_check:`.
    #[error("health_check: {0}")]
    HealthCheck(#[from] HealthCheckError),
    /// A route's `upgrades:` or `limits.upgrade_idle_timeout`.
    #[error("{0}")]
    Upgrade(#[from] UpgradeError),
    /// The `tracing:` section (OpenTelemetry traces).
    #[error("tracing: {0}")]
    Tracing(#[from] TracingError),
    /// The reload's compile task died (a panic): the last good snapshot keeps serving.
    #[error("reload task failed: {0}")]
    ReloadTask(String),
    #[error("{0}")]
    Warning(String),
}

impl ProblemKind {
    /// A stable snake_case name of the kind, for machines (the admin API).
    pub fn name(&self) -> &'static str {
        match self {
            ProblemKind::Unreadable(_) => "unreadable",
            ProblemKind::Yaml(_) => "yaml",
            ProblemKind::Duration(_) => "duration",
            ProblemKind::Address(_) => "address",
            ProblemKind::UnknownUpstream(..) => "unknown_upstream",
            ProblemKind::NoAddresses(_) => "no_addresses",
            ProblemKind::Duplicate(_) => "duplicate",
            ProblemKind::Regex(_) => "regex",
            ProblemKind::Matcher(MatcherError::NotExactlyOne) => "matcher_not_exactly_one",
            ProblemKind::Matcher(MatcherError::EmptyOneOf) => "matcher_empty_one_of",
            ProblemKind::Matcher(MatcherError::Regex(_)) => "regex",
            ProblemKind::Template(_) => "template",
            ProblemKind::Path(PathError::NotAbsolute { .. }) => "path_not_absolute",
            ProblemKind::BodyPath(_) => "body_path",
            ProblemKind::Glob(_) => "path_glob",
            ProblemKind::Media(_) => "media_type",
            ProblemKind::Header(HeaderError::Name(_)) => "header_name",
            ProblemKind::Header(HeaderError::Value { .. }) => "header_value",
            ProblemKind::NotCanonical(..) => "not_canonical",
            ProblemKind::Status(_) => "status",
            ProblemKind::Example(..) => "example",
            ProblemKind::BodyDepth { .. } => "body_depth",
            ProblemKind::LogFormat(_) => "log_format",
            ProblemKind::UnknownFailure { .. } => "unknown_failure",
            ProblemKind::Admin(AdminError::BothTokenSources) => "admin_both_token_sources",
            ProblemKind::Admin(AdminError::EmptyToken(_)) => "admin_token_empty",
            ProblemKind::Admin(AdminError::TokenNotVisibleAscii(_)) => "admin_token_not_visible_ascii",
            ProblemKind::Admin(AdminError::TokenUnreadable { .. }) => "admin_token_unreadable",
            ProblemKind::Admin(AdminError::EnvNotSet(_)) => "admin_token_env_not_set",
            ProblemKind::Admin(AdminError::EnvNotUnicode(_)) => "admin_token_env_not_unicode",
            ProblemKind::Admin(AdminError::ProtectWithoutToken(_)) => "admin_protect_without_token",
            ProblemKind::ReloadTask(_) => "reload_task",
            ProblemKind::AtLeastOne(_) => "at_least_one",
            ProblemKind::OutOfRange { .. } => "out_of_range",
            ProblemKind::UpstreamTls(_) => "upstream_tls",
            ProblemKind::ListenerTls(_) => "listener_tls",
            ProblemKind::Resolver(_) => "resolver",
            ProblemKind::HealthCheck(_) => "health_check",
            ProblemKind::Upgrade(_) => "upgrade",
            ProblemKind::Tracing(_) => "tracing",
            ProblemKind::ListenerOverlap(_) => "listener_overlap",
            ProblemKind::Warning(_) => "warning",
        }
    }
}

/// Which key a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKey {
    /// A route's `path_prefix` in the main file.
    RoutePrefix,
    /// A rule's `when: { path_prefix }` in a profile.
    RulePrefix,
}

impl fmt::Display for PathKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKey::RoutePrefix => "path_prefix",
            PathKey::RulePrefix => "when.path_prefix",
        })
    }
}

/// What is wrong with a configured path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{key} `{path}` must start with /")]
    NotAbsolute { key: PathKey, path: String },
}

/// What is wrong with a configured header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not a valid header name (RFC 9110 token).
    #[error("invalid header name `{0}`")]
    Name(String),
    /// A value with bytes a header cannot carry (control characters, newlines).
    #[error("invalid value for header `{name}`: `{value}`")]
    Value { name: String, value: String },
}

/// Where the admin bearer token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "token_file `{}`", p.display()),
            TokenSource::Env(name) => write!(f, "token_env `{name}`"),
        }
    }
}

/// Which admin switch needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminSwitch {
    ProtectMetrics,
    ProtectProbes,
}

impl fmt::Display for AdminSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminSwitch::ProtectMetrics => "protect_metrics",
            AdminSwitch::ProtectProbes => "protect_probes",
        })
    }
}

/// What is wrong with the `admin:` section's token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("set token_file or token_env, not both")]
    BothTokenSources,
    #[error("{0} is empty")]
    EmptyToken(TokenSource),
    #[error("{0}: the token must be visible ASCII without spaces (it is sent as `Authorization: Bearer <token>`)")]
    TokenNotVisibleAscii(TokenSource),
    #[error("{token}: cannot read file: {reason}")]
    TokenUnreadable { token: TokenSource, reason: String },
    #[error("{0}: the environment variable is not set")]
    EnvNotSet(TokenSource),
    #[error("{0}: the value is not valid UTF-8")]
    EnvNotUnicode(TokenSource),
    #[error("{0} needs a token: set token_file or token_env")]
    ProtectWithoutToken(AdminSwitch),
}

impl From<UpstreamTlsError> for ProblemKind {
    fn from(e: UpstreamTlsError) -> Self {
        ProblemKind::UpstreamTls(Box::new(e))
    }
}

/// What is wrong with an upstream group's `tls:` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("tls.sni `{0}` is not a DNS name or IP address")]
    Sni(String),
    #[error("tls.min_version `{0}`: use \"1.2\" or \"1.3\"")]
    MinVersion(String),
    #[error("tls.ca names no file (leave it out to trust the system roots)")]
    EmptyCa,
    #[error("tls.system_roots: false without `ca` leaves nothing to trust")]
    NothingToTrust,
    #[error("tls.system_roots: cannot load the system roots: {0}")]
    SystemRoots(String),
    #[error("tls.cert without tls.key: a client certificate needs its key")]
    CertWithoutKey,
    #[error("tls.key without tls.cert: a client key needs its certificate")]
    KeyWithoutCert,
    /// A file named by `key` (tls.ca, tls.cert, tls.key) that is missing or unusable.
    #[error("{key} {path}: {reason}")]
    File { key: String, path: String, reason: String },
    #[error("tls.key {key} does not fit tls.cert {cert}: {reason}")]
    KeyMismatch { key: String, cert: String, reason: String },
}

impl From<ListenerTlsError> for ProblemKind {
    fn from(e: ListenerTlsError) -> Self {
        ProblemKind::ListenerTls(Box::new(e))
    }
}

/// What is wrong with a `tls_listen:` entry (`key` names the setting: `tls_listen.cert`,
/// `tls_listen.certs[2].key`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenerTlsError {
    /// A certificate or key file that is missing, unreadable or not what it should be.
    #[error("{key} {path}: {reason}")]
    File { key: String, path: String, reason: String },
    #[error("{key} {path} does not fit its certificate {cert}: {reason}")]
    KeyMismatch {
        key: String,
        path: String,
        cert: String,
        reason: String,
    },
    /// A `certs:` entry whose certificate names no DNS name: SNI could never select it.
    #[error("{key} {path}: the certificate has no DNS name in its subjectAltName, so no SNI can select it")]
    NoDnsName { key: String, path: String },
    /// Two `certs:` entries of one listener whose certificates claim one name.
    #[error("{key} {path}: `{name}` is already claimed by {other} ({other_at}) on this listener")]
    DuplicateName {
        key: String,
        path: String,
        name: String,
        other: String,
        other_at: String,
    },
    #[error("tls_listen.min_version `{0}`: use \"1.2\" or \"1.3\"")]
    MinVersion(String),
}

/// What is wrong with the `resolver:` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolverError {
    #[error("nameserver `{0}`: expected ip:port, e.g. 10.0.0.2:53")]
    Nameserver(String),
    #[error("min_ttl is larger than max_ttl")]
    MinTtlAboveMax,
    #[error("timeout must be above 0")]
    ZeroTimeout,
}

/// What is wrong with an upstream's `health_check:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthCheckError {
    #[error("path `{0}` must be an origin-form path starting with /")]
    Path(String),
    #[error("method `{0}`: use GET or HEAD")]
    Method(String),
    /// `interval` or `timeout` of zero.
    #[error("{0} must be above 0")]
    ZeroDuration(&'static str),
    /// `rise` or `fall` of zero.
    #[error("{0} must be at least 1")]
    ZeroCount(&'static str),
}

/// What is wrong with a route's `upgrades:` (or `limits.upgrade_idle_timeout`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("upgrades: `{0}` is not a protocol name (a token such as websocket, without a version)")]
    Token(String),
    #[error("upgrades: h2c is never forwarded (an `Upgrade: h2c` request is served over HTTP/1.1)")]
    H2c,
    #[error("upgrades: route `{route}` goes to upstream `{upstream}`, which has http2: true; a tunnel needs HTTP/1.1 to the upstream")]
    Http2Upstream { route: String, upstream: String },
    #[error("limits.upgrade_idle_timeout must be above 0")]
    ZeroIdleTimeout,
}

/// What is wrong with the `tracing:` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TracingError {
    /// An `endpoint` that is not an `http://host:port/path` URL.
    #[error("endpoint `{endpoint}`: {reason}")]
    Endpoint { endpoint: String, reason: &'static str },
    #[error("service_name must not be empty")]
    EmptyServiceName,
    /// A `sample_ratio` outside 0.0-1.0 (as written).
    #[error("sample_ratio {0} is outside 0.0-1.0")]
    SampleRatio(String),
    #[error("batch_size {batch} is larger than queue_size {queue}: a batch is taken from the queue")]
    BatchOverQueue { batch: u64, queue: u64 },
    /// `batch_delay` or `export_timeout` of zero.
    #[error("{0} must be above 0")]
    ZeroDuration(&'static str),
}

/// A listener whose address an earlier listener already takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("listener `{addr}` ({role}) takes the address of `{other}` ({other_role}, {other_at}): each listener needs an address of its own")]
pub struct ListenerOverlap {
    pub addr: String,
    /// `listen`, `tls_listen` or `admin`.
    pub role: &'static str,
    pub other: String,
    pub other_role: &'static str,
    /// Where the other listener is set (`the default` for the built-in admin address).
    pub other_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub at: SourcePos,
    pub severity: Severity,
    pub kind: ProblemKind,
}

impl ConfigProblem {
    pub fn error(at: SourcePos, kind: ProblemKind) -> Self {
        ConfigProblem {
            at,
            severity: Severity::Error,
            kind,
        }
    }

    pub fn warning(at: SourcePos, message: String) -> Self {
        ConfigProblem {
            at,
            severity: Severity::Warning,
            kind: ProblemKind::Warning(message),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One problem, one line: multi-line messages (regex errors) are folded.
        let msg = self.kind.to_string();
        let msg = msg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        match self.severity {
            Severity::Error => write!(f, "{}: {msg}", self.at),
            Severity::Warning => write!(f, "{}: warning: {msg}", self.at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_kinds_read_as_the_operator_needs_them_and_have_their_own_names() {
        let token = TokenSource::File(PathBuf::from("/etc/sg/token"));
        let cases = [
            (
                ProblemKind::from(PathError::NotAbsolute {
                    key: PathKey::RoutePrefix,
                    path: "api".into(),
                }),
                "path_not_absolute",
                "invalid path: path_prefix `api` must start with /",
            ),
            (
                HeaderError::Name("a b".into()).into(),
                "header_name",
                "invalid header name `a b`",
            ),
            (
                HeaderError::Value {
                    name: "Host".into(),
                    value: "a\nb".into(),
                }
                .into(),
                "header_value",
                "invalid value for header `Host`: `a\nb`",
            ),
            (
                ProblemKind::BodyDepth { depth: 0, max: 100 },
                "body_depth",
                "body_depth 0 is outside 1-100",
            ),
            (
                ProblemKind::LogFormat("xml".into()),
                "log_format",
                "log format `xml`: use text or json",
            ),
            (
                ProblemKind::UnknownFailure {
                    name: "oops".into(),
                    known: "a, b".into(),
                },
                "unknown_failure",
                "unknown gateway failure `oops` (known: a, b)",
            ),
            (
                AdminError::EmptyToken(token.clone()).into(),
                "admin_token_empty",
                "token_file `/etc/sg/token` is empty",
            ),
            (
                AdminError::TokenUnreadable {
                    token,
                    reason: "denied".into(),
                }
                .into(),
                "admin_token_unreadable",
                "token_file `/etc/sg/token`: cannot read file: denied",
            ),
            (
                AdminError::EnvNotSet(TokenSource::Env("SG_TOKEN".into())).into(),
                "admin_token_env_not_set",
                "token_env `SG_TOKEN`: the environment variable is not set",
            ),
            (
                AdminError::ProtectWithoutToken(AdminSwitch::ProtectProbes).into(),
                "admin_protect_without_token",
                "protect_probes needs a token: set token_file or token_env",
            ),
            (
                ListenerTlsError::DuplicateName {
                    key: "tls_listen.certs[1].cert".into(),
                    path: "b.crt".into(),
                    name: "api.example.com".into(),
                    other: "tls_listen.certs[0].cert a.crt".into(),
                    other_at: "gw.yaml:7:16".into(),
                }
                .into(),
                "listener_tls",
                "tls_listen.certs[1].cert b.crt: `api.example.com` is already claimed by tls_listen.certs[0].cert a.crt (gw.yaml:7:16) on this listener",
            ),
        ];
        for (kind, name, text) in cases {
            assert_eq!((kind.name(), kind.to_string().as_str()), (name, text));
        }
    }
}
