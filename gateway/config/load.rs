//! Files in, raw config or positioned problems out.
//!
//! Every problem carries `file:line:col` so that `statusgate check`, a failed reload and a
//! failed start all print the same thing. Files may come from disk or from the embedded
//! defaults (`embedded:` paths), which is how the demo runs with no files at all.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use statusgate_engine::diagnostics::{ConfigProblem, ProblemKind, Severity, SourcePos};
pub use statusgate_engine::yaml::{parse_yaml, MAX_FILE_BYTES};

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
        assert_eq!(err.to_string(), "gw.yaml:4:1: unknown field `bogus`, expected one of listen, tls_listen, admin, canonical, limits, log, server, upstreams, routes, resolver, http2, tracing");
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
