//! The documentation's examples work as written:
//! - README.md's `statusgate explain` command, taken verbatim from the README (its `\`
//!   continuation lines joined) and run by `sh` from the repository's top directory with the
//!   built binary first in PATH, prints the response the README promises (429 by the rule
//!   `throttled`);
//! - docs/configuration.md's vendor profile example (the YAML block after
//!   `<!-- profile-example -->`) passes `statusgate check`, its own examples included, and
//!   documents `description` and the path glob semantics the matcher implements.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::docs::{doc_block, shell_command};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The shell command in README.md that starts with `statusgate explain`, continuation lines
/// joined as the shell joins them.
fn readme_explain() -> String {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let cmd = shell_command(&readme, "statusgate explain");
    assert!(!cmd.is_empty(), "no `statusgate explain` line in README.md");
    cmd
}

#[test]
fn the_readme_explain_example_runs_as_written() {
    let cmd = readme_explain();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_statusgate")).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .current_dir(repo(""))
        .env("PATH", path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{cmd}\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("# rule: throttled"), "{cmd}\n{text}");
    assert!(text.contains("HTTP/1.1 429 Too Many Requests"), "{cmd}\n{text}");
    assert!(text.contains("\"detail\":\"too many requests\""), "{cmd}\n{text}");
}

#[test]
fn the_documented_profile_example_passes_check() {
    let profile = doc_block("profile-example");
    assert!(profile.contains("\ndescription:"), "the example shows `description`");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile.yaml"), &profile).unwrap();
    let main = "listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\nupstreams:\n  huawei: {addrs: [127.0.0.1:3]}\nroutes:\n  - {name: huawei, upstream: huawei, profile: profile.yaml}\n";
    std::fs::write(dir.path().join("statusgate.yaml"), main).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_statusgate"))
        .args(["check", "-c"])
        .arg(dir.path().join("statusgate.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{profile}\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (1 routes, 1 upstreams, 2 rules"), "{stdout}");
}

#[test]
fn the_documented_glob_semantics_are_the_matchers() {
    use statusgate::engine::matcher::PathGlob;
    // The table in docs/configuration.md ("Path globs"): pattern, path, matches.
    let doc = std::fs::read_to_string(repo("docs/configuration.md")).unwrap();
    let at = doc
        .find("<!-- glob-table -->")
        .expect("a glob table in docs/configuration.md");
    let mut rows = 0;
    for line in doc[at..].lines().skip(3).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(|c| c.trim().trim_matches('`')).collect();
        let (pattern, path, want) = (cells[1], cells[2], cells[3]);
        let got = PathGlob::compile(pattern).unwrap().matches(path);
        assert_eq!(got, want == "yes", "{pattern} on {path}: the doc says {want}");
        rows += 1;
    }
    assert!(rows >= 8, "{rows} rows");
}
