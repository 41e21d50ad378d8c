//! Rule traces (issue 14, part 4) through the real binary and the real reload: `statusgate
//! explain --trace` on a profile of five rules where the fourth matches, and the trace a failing
//! profile example prints at `statusgate check` and in a rejected reload's problems.

mod common;

use std::process::Command;

use common::config::{Config, Route, Upstream as Up};
use common::docs::{fenced, shell_command};
use common::{request, Gateway, Reply, Upstream};

/// Five rules for a vendor 400; the fourth, `bad-endpoint`, matches a GET or POST whose body
/// says `EndPoint.0023`.
const FIVE_RULES: &str = "rules:
  - name: not-found
    when: { status: 404 }
    then: { status: 404 }
  - name: quota-header
    when: { status: 400, headers: { X-Quota: exceeded } }
    then: { status: 429 }
  - name: throttled
    when:
      status: 400
      json: { /error_code: { equals: EndPoint.0022, ignore_case: true } }
    then: { status: 429 }
  - name: bad-endpoint
    when:
      status: 400
      method: [GET, POST]
      json: { /error_code: EndPoint.0023 }
    then: { status: 422 }
  - name: any-4xx
    when: { status: 4xx }
    then: { status: 400 }
";

/// An example that expects `throttled` for the body only `bad-endpoint` matches.
const WRONG_EXAMPLE: &str = "examples:
  - name: wrong-code
    upstream:
      status: 400
      headers: { Content-Type: application/json }
      body: '{\"error_code\":\"EndPoint.0023\"}'
    expect: { status: 429, rule: throttled }
";

/// The line of the profile (rules, then the example) where the example's name is.
fn example_line() -> usize {
    let profile = format!("{FIVE_RULES}{WRONG_EXAMPLE}");
    profile.lines().position(|l| l == "  - name: wrong-code").unwrap() + 1
}

fn config(dir: &std::path::Path, profile: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/p.yaml"), profile).unwrap();
    let cfg = Config::new()
        .listen_addr("127.0.0.1:1")
        .no_admin()
        .upstream("up", Up::addr("127.0.0.1:2"))
        .route(Route::new("vendor", "up").prefix("/").profile("rules/p.yaml"))
        .build();
    let path = dir.join("gw.yaml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn explain(cfg: &std::path::Path, method: &str, body: &str, trace: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_statusgate"));
    cmd.args(["explain", "-c"])
        .arg(cfg)
        .args(["--route", "vendor", "--status", "400", "--method", method])
        .args(["--header", "Content-Type: application/json", "--body", body]);
    if trace {
        cmd.arg("--trace");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The lines after `# trace:`, up to the status line.
fn trace_lines(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|l| *l != "# trace:")
        .skip(1)
        .take_while(|l| l.starts_with("#   "))
        .collect()
}

#[test]
fn explain_trace_names_each_rules_first_failed_condition_and_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), FIVE_RULES);
    let text = explain(&cfg, "POST", r#"{"error_code":"EndPoint.0023"}"#, true);
    assert_eq!(
        trace_lines(&text),
        [
            "#   rule not-found: not a candidate for status 400 (when.status: 404)",
            "#   rule quota-header: header x-quota = (absent), wanted exceeded",
            r#"#   rule throttled: json /error_code = "EndPoint.0023", wanted EndPoint.0022 (ignore_case)"#,
            "#   rule bad-endpoint: matched",
            "#   rule any-4xx: not evaluated (rule bad-endpoint matched first)",
            "#   decision: rule bad-endpoint -> 422 Unprocessable Content",
        ],
        "{text}"
    );
    // The trace describes the answer printed below it.
    assert!(text.contains("# rule: bad-endpoint\n"), "{text}");
    assert!(text.contains("\nHTTP/1.1 422 Unprocessable Content\n"), "{text}");

    // Another method: the fourth rule fails on it, the fifth decides.
    let text = explain(&cfg, "DELETE", r#"{"error_code":"EndPoint.0023"}"#, true);
    assert_eq!(
        trace_lines(&text)[3..],
        [
            r#"#   rule bad-endpoint: method = "DELETE", wanted GET, POST"#,
            "#   rule any-4xx: matched",
            "#   decision: rule any-4xx -> 400 Bad Request",
        ],
        "{text}"
    );

    // Without --trace, no trace.
    let text = explain(&cfg, "POST", r#"{"error_code":"EndPoint.0023"}"#, false);
    assert!(!text.contains("# trace:"), "{text}");
    assert!(text.contains("# rule: bad-endpoint\n"), "{text}");
}

const EXAMPLE_TRACE: &str = r#"example `wrong-code` fails: status 429 expected, got 422 (rule: bad-endpoint); rule `throttled` expected, `bad-endpoint` matched; trace: rule not-found: not a candidate for status 400 (when.status: 404) | rule quota-header: header x-quota = (absent), wanted exceeded | rule throttled: json /error_code = "EndPoint.0023", wanted EndPoint.0022 (ignore_case) | rule bad-endpoint: matched | rule any-4xx: not evaluated (rule bad-endpoint matched first) | decision: rule bad-endpoint -> 422 Unprocessable Content"#;

#[test]
fn a_failing_example_prints_its_trace_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &format!("{FIVE_RULES}{WRONG_EXAMPLE}"));
    let out = Command::new(env!("CARGO_BIN_EXE_statusgate"))
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("rules/p.yaml:{}:11: {EXAMPLE_TRACE}", example_line());
    assert!(
        err.lines().any(|l| l.ends_with(&want)),
        "expected a line ending in\n{want}\ngot\n{err}"
    );
}

#[test]
fn a_rejected_reload_names_the_failing_examples_trace() {
    let up = Upstream::start(|_| Reply::json(400, "Bad Request", r#"{"error_code":"EndPoint.0023"}"#));
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(Route::new("trace-reload", "up").prefix("/").profile("rules/p.yaml"))
        .build();
    let gw = Gateway::start(&cfg, &[("rules/p.yaml", FIVE_RULES)]);
    std::fs::write(gw.path("rules/p.yaml"), format!("{FIVE_RULES}{WRONG_EXAMPLE}")).unwrap();
    let r = request(gw.admin, "POST", "/-/reload", &[], b"");
    let body = r.json();
    assert_eq!(body["outcome"], "rejected", "{body}");
    let problems: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.ends_with(&format!("rules/p.yaml:{}:11: {EXAMPLE_TRACE}", example_line()))),
        "{problems:?}"
    );
    // The old rules keep serving.
    assert_eq!(request(gw.port, "POST", "/", &[], b"{}").status, 422);
}

/// Runs a documented shell command from the repository's top directory with the built binary
/// first in PATH; its standard output.
fn run_documented(cmd: &str) -> String {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_statusgate")).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// docs/configuration.md's `explain --trace` worked example (the Huawei profile) prints the
/// lines the document shows after `<!-- trace-example -->`.
#[test]
fn the_documented_trace_example_is_what_explain_prints() {
    let doc = std::fs::read_to_string(format!("{}/docs/configuration.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let section = &doc[doc.find("### Why a rule did (not) match").unwrap()..];
    let cmd = shell_command(section, "statusgate explain");
    assert!(cmd.ends_with("--trace"), "{cmd}");
    let block = &section[section.find("<!-- trace-example -->").unwrap()..];
    let want = fenced(block, "text");
    let text = run_documented(&cmd);
    assert!(text.starts_with(want), "documented:\n{want}\nprinted:\n{text}");
}
