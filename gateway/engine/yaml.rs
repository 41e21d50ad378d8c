//! YAML text to raw types through serde-saphyr, under an explicit parse budget: no file can
//! exhaust the stack or memory, and every failure names its file, line and column. Text in,
//! no file system.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::diagnostics::{ConfigProblem, ProblemKind, SourcePos};

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
