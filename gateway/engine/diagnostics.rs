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
    #[error("invalid path: {0}")]
    Path(String),
    /// A `json:` / `xml:` body path.
    #[error("invalid path: {0}")]
    BodyPath(#[from] BodyPathError),
    /// A rule's `path` glob.
    #[error("invalid path: {0}")]
    Glob(#[from] GlobError),
    /// A `content_type` pattern.
    #[error("{0}")]
    Media(#[from] MediaError),
    #[error("invalid header `{0}`")]
    Header(String),
    #[error("status {0} is not in the canonical set ({1})")]
    NotCanonical(u16, String),
    #[error("invalid status: {0}")]
    Status(String),
    #[error("example `{0}` fails: {1}")]
    Example(String, String),
    /// Two listeners (`listen`, `tls_listen`, `admin`) on one address.
    #[error("{0}")]
    ListenerOverlap(Box<ListenerOverlap>),
    #[error("{0}")]
    Invalid(String),
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
            ProblemKind::Path(_) => "path",
            ProblemKind::BodyPath(_) => "body_path",
            ProblemKind::Glob(_) => "path_glob",
            ProblemKind::Media(_) => "media_type",
            ProblemKind::Header(_) => "header",
            ProblemKind::NotCanonical(..) => "not_canonical",
            ProblemKind::Status(_) => "status",
            ProblemKind::Example(..) => "example",
            ProblemKind::ListenerOverlap(_) => "listener_overlap",
            ProblemKind::Invalid(_) => "invalid",
            ProblemKind::Warning(_) => "warning",
        }
    }
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
