//! Files in, raw config or positioned problems out.
//!
//! Every problem carries `file:line:col` so that `statusgate check`, a failed reload and a
//! failed start all print the same thing. Files may come from disk or from the embedded
//! defaults (`embedded:` paths), which is how the demo runs with no files at all.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::{Location, Spanned};

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
    #[error("invalid template: {0}")]
    Template(String),
    #[error("invalid path: {0}")]
    Path(String),
    #[error("invalid header `{0}`")]
    Header(String),
    #[error("status {0} is not in the canonical set ({1})")]
    NotCanonical(u16, String),
    #[error("invalid status: {0}")]
    Status(String),
    #[error("example `{0}` fails: {1}")]
    Example(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Warning(String),
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

/// The files shipped inside the binary, addressable as `embedded:rules/...`.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "embedded:rules/canonical.yaml",
        include_str!("../../rules/canonical.yaml"),
    ),
    (
        "embedded:deploy/statusgate.yaml",
        include_str!("../../deploy/statusgate.yaml"),
    ),
    ("embedded:deploy/demo.yaml", include_str!("../../deploy/demo.yaml")),
    ("embedded:rules/veeam.yaml", include_str!("../../rules/veeam.yaml")),
    (
        "embedded:rules/huawei-vpcep.yaml",
        include_str!("../../rules/huawei-vpcep.yaml"),
    ),
    (
        "embedded:rules/oracle-ords.yaml",
        include_str!("../../rules/oracle-ords.yaml"),
    ),
    (
        "embedded:rules/forgerock-crest.yaml",
        include_str!("../../rules/forgerock-crest.yaml"),
    ),
];

pub const EMBEDDED_CANONICAL: &str = "embedded:rules/canonical.yaml";

/// Reads a file's text; `embedded:` paths come from the binary.
pub fn read_text(path: &Path) -> Result<String, ConfigProblem> {
    let key = path.to_string_lossy();
    if key.starts_with("embedded:") {
        return EMBEDDED
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, text)| (*text).to_owned())
            .ok_or_else(|| {
                ConfigProblem::error(
                    SourcePos::file(path),
                    ProblemKind::Unreadable("no such embedded file".into()),
                )
            });
    }
    std::fs::read_to_string(path)
        .map_err(|e| ConfigProblem::error(SourcePos::file(path), ProblemKind::Unreadable(e.to_string())))
}

/// Largest config or rule file read, in bytes.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// The parser's budget: far above any real config (the shipped ones nest 8 levels and hold
/// under 2,000 nodes) and far below what could exhaust the stack or memory. A deep file, an
/// alias ("billion laughs") bomb or a flood of nodes stops the parse with a positioned problem.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 32;
    budget.flow_nesting_limit = 32;
    budget.max_documents = 1;
    budget.max_nodes = 100_000;
    budget.max_events = 250_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES;
    budget.max_merge_keys = 1_000;
    budget.max_inclusion_depth = 0;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 100_000;
    options.alias_limits.max_replay_stack_depth = 32;
    options.alias_limits.max_alias_expansions_per_anchor = 100;
    options
}

/// Parses YAML text into a raw type; a problem names the file, line and column.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigProblem> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ConfigProblem::error(
            SourcePos::file(path),
            ProblemKind::Yaml(format!(
                "file is {} bytes, larger than the {MAX_FILE_BYTES} bytes a config file may be",
                text.len()
            )),
        ));
    }
    serde_saphyr::from_str_with_options::<T>(text, yaml_options()).map_err(|e| {
        let at = match e.location() {
            Some(loc) => SourcePos::at(path, &loc),
            None => SourcePos::file(path),
        };
        ConfigProblem::error(at, ProblemKind::Yaml(yaml_message(&e)))
    })
}

/// serde-saphyr's Display is "error: line L column C: message" plus a snippet; we print our
/// own position, so keep only the message.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let msg = match first.strip_prefix("line ") {
        Some(rest) => match rest.find(": ") {
            Some(i) if rest[..i].contains("column") => &rest[i + 2..],
            _ => first,
        },
        None => first,
    };
    msg.to_owned()
}

/// Reads and parses one file.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigProblem> {
    let text = read_text(path)?;
    parse_yaml(path, &text)
}

/// Resolves `rel` against the directory of `base` (embedded files resolve among themselves).
pub fn resolve(base: &Path, rel: &str) -> PathBuf {
    let rel_path = Path::new(rel);
    if rel.starts_with("embedded:") || rel_path.is_absolute() {
        return rel_path.to_path_buf();
    }
    let base_str = base.to_string_lossy();
    if let Some(stripped) = base_str.strip_prefix("embedded:") {
        // Embedded files mirror the repository layout; fold `..` so `deploy/../rules/x` finds `rules/x`.
        let mut parts: Vec<&str> = stripped.split('/').collect();
        parts.pop();
        for seg in rel.split('/') {
            match seg {
                ".." => {
                    parts.pop();
                }
                "." | "" => {}
                s => parts.push(s),
            }
        }
        return PathBuf::from(format!("embedded:{}", parts.join("/")));
    }
    base.parent().unwrap_or(Path::new(".")).join(rel_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::{RawConfig, RawProfile};

    #[test]
    fn yaml_errors_name_line_and_column() {
        let p = Path::new("gw.yaml");
        let err = parse_yaml::<RawConfig>(p, "listen: 127.0.0.1:1\nupstreams: {}\nroutes: []\nbogus: 1\n").unwrap_err();
        assert_eq!(err.to_string(), "gw.yaml:4:1: unknown field `bogus`, expected one of listen, tls_listen, admin, canonical, limits, log, server, upstreams, routes");
    }

    #[test]
    fn a_deeply_nested_rule_file_is_a_positioned_problem_not_a_stack_overflow() {
        let p = Path::new("rules.yaml");
        let flow = format!("rules: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_yaml::<RawProfile>(p, &flow).unwrap_err();
        assert!(err.at.line >= 1, "{err}");
        let mut block = String::from("rules:\n");
        for i in 0..2_000 {
            block.push_str(&" ".repeat(i * 2 + 2));
            block.push_str("- a:\n");
        }
        let err = parse_yaml::<RawProfile>(p, &block).unwrap_err();
        assert!(err.at.line >= 1, "{err}");
    }

    #[test]
    fn an_alias_bomb_is_a_positioned_problem() {
        let p = Path::new("rules.yaml");
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        bomb.push_str("rules: *a9\n");
        // The schema refuses `a0` before any alias is replayed; a schema-less walk (every
        // event, every replay) shows the parser's own budget stops the expansion.
        let err = parse_yaml::<RawProfile>(p, &bomb).unwrap_err();
        assert_eq!(err.at.line, 1, "{err}");
        let started = std::time::Instant::now();
        let err = parse_yaml::<serde::de::IgnoredAny>(p, &bomb).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(err.at.line >= 1, "{err}");
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_before_parsing() {
        let text = format!("vendor: x\ndescription: \"{}\"\n", "y".repeat(MAX_FILE_BYTES));
        let err = parse_yaml::<RawProfile>(Path::new("big.yaml"), &text).unwrap_err();
        assert!(err.to_string().starts_with("big.yaml: file is"), "{err}");
    }

    #[test]
    fn resolve_relative_and_embedded() {
        assert_eq!(
            resolve(Path::new("/etc/sg/gw.yaml"), "rules/a.yaml"),
            PathBuf::from("/etc/sg/rules/a.yaml")
        );
        assert_eq!(
            resolve(Path::new("embedded:deploy/statusgate.yaml"), "../rules/canonical.yaml"),
            PathBuf::from("embedded:rules/canonical.yaml")
        );
    }
}
