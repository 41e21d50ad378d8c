//! The binary's own documentation: `--version` (revision and build date from build.rs),
//! `completions bash|zsh|fish` (parsed by the real shells, bash's completion function run),
//! `man` (rendered by groff without a warning, the pages `--dir` writes), and `run --help`
//! naming the configuration `run` uses without `-c`. The shells and groff come from Debian's
//! packages (scripts/test installs zsh and fish).

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn statusgate(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_statusgate"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "statusgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(statusgate(args).stdout).unwrap()
}

/// Runs `program args` with `input` on stdin; its output, whatever the exit status.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup installs it)"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn version_names_the_git_revision_and_the_build_date() {
    let text = stdout(&["--version"]);
    let prefix = format!("statusgate {} (revision ", env!("CARGO_PKG_VERSION"));
    let rest = text
        .trim_end()
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`{text}` is not `{prefix}REV, built DATE)`"));
    let (revision, date) = rest.split_once(", built ").unwrap_or_else(|| panic!("{text}"));
    // This checkout's HEAD: build.rs reruns when HEAD moves.
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .unwrap();
    assert!(head.status.success(), "the tests run in a git checkout");
    assert_eq!(revision, String::from_utf8_lossy(&head.stdout).trim(), "{text}");
    let parts: Vec<u32> = date.split('-').map(|p| p.parse().unwrap()).collect();
    assert!(
        date.len() == 10 && parts.len() == 3 && parts[0] >= 2025 && (1..=12).contains(&parts[1]),
        "build date `{date}`"
    );
    assert_eq!(stdout(&["-V"]), text, "-V and --version say the same");
}

#[test]
fn bash_completions_parse_and_complete_the_commands() {
    let script = statusgate(&["completions", "bash"]).stdout;
    let out = pipe("bash", &["-n"], &script);
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What bash does on `statusgate ru<TAB>` and on `statusgate completions <TAB>`.
    let mut session = script.clone();
    session.extend_from_slice(
        br#"
complete_words() {
  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _statusgate statusgate "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  echo "${COMPREPLY[*]}"
}
complete_words statusgate ru
complete_words statusgate completions ''
"#,
    );
    let out = pipe("bash", &[], &session);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"run"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shells: Vec<&str> = lines.get(1).map_or(vec![], |l| l.split(' ').collect());
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell), "completions <TAB>: {text}");
    }
}

#[test]
fn zsh_and_fish_completions_parse() {
    for (shell, args) in [("zsh", &["-n"][..]), ("fish", &["--no-execute"][..])] {
        let script = statusgate(&["completions", shell]).stdout;
        let text = String::from_utf8_lossy(&script);
        for command in ["run", "check", "explain", "demo", "completions", "man"] {
            assert!(text.contains(command), "{shell}: no `{command}`");
        }
        let out = pipe(shell, args, &script);
        assert!(
            out.status.success(),
            "{shell} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_man_page_renders_without_warnings_and_documents_operations() {
    let page = statusgate(&["man"]).stdout;
    assert!(String::from_utf8_lossy(&page).contains("\n.TH statusgate 1 "), "roff");
    let text = render(&page);
    for needle in [
        "statusgate - A status-normalizing edge gateway on pingora",
        "SUBCOMMANDS",
        "completions",
        "FILES",
        "/etc/statusgate/statusgate.yaml",
        "/run/statusgate/upgrade.sock",
        "SIGNALS",
        "SIGHUP",
        "EXIT STATUS",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }

    let dir = tempfile::tempdir().unwrap();
    statusgate(&["man", "--dir", dir.path().to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "statusgate-check.1",
            "statusgate-completions.1",
            "statusgate-demo.1",
            "statusgate-explain.1",
            "statusgate-help.1",
            "statusgate-man.1",
            "statusgate-run.1",
            "statusgate-schema.1",
            "statusgate-suggest.1",
            "statusgate.1"
        ]
    );
    assert_eq!(std::fs::read(dir.path().join("statusgate.1")).unwrap(), page);
    let run = std::fs::read(dir.path().join("statusgate-run.1")).unwrap();
    assert!(render(&run).contains("--upgrade"));
}

/// The page as groff renders it (plain text: no SGR, bold or underline; no hyphenation), with
/// its whitespace runs made single spaces; a warning fails.
fn render(page: &[u8]) -> String {
    let out = pipe(
        "groff",
        &["-man", "-Tutf8", "-ww", "-P-cbou", "-rHY=0", "-rLL=200n"],
        page,
    );
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "groff: {warnings}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn run_help_names_the_embedded_default_configuration() {
    let help = stdout(&["run", "--help"]);
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("embedded:deploy/statusgate.yaml"), "{help}");
    assert!(
        !flat.contains("demo configuration"),
        "the default is not deploy/demo.yaml: {help}"
    );
    // The addresses the help names are the embedded file's.
    let embedded = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/statusgate.yaml")).unwrap();
    let value = |key: &str| {
        embedded
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("deploy/statusgate.yaml has no `{key}`"))
            .trim()
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned()
    };
    for addr in [value("listen:"), value("admin:"), value("addrs:")] {
        assert!(flat.contains(&addr), "`{addr}` not in: {help}");
    }
    // `-h` names it too, and `check` without -c loads exactly that file.
    assert!(stdout(&["run", "-h"]).contains("embedded:deploy/statusgate.yaml"));
    assert!(stdout(&["check"]).starts_with("embedded:deploy/statusgate.yaml: ok"));
}
