//! The documentation's examples, run as written: README's `statusgate explain` command (from the
//! repository's root, as a reader would paste it) and docs/configuration.md's vendor-profile
//! example, which `statusgate check` must accept with its own `examples:` passing.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_statusgate")).parent().unwrap()
}

/// The shell command of `doc` that starts with `start`, its `\` continuation lines joined.
fn command_in(doc: &str, start: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join(doc)).unwrap();
    let mut lines = text.lines().skip_while(|l| !l.starts_with(start));
    let mut command = String::new();
    for line in lines.by_ref() {
        match line.strip_suffix('\\') {
            Some(head) => command.push_str(head),
            None => {
                command.push_str(line);
                break;
            }
        }
    }
    assert!(!command.is_empty(), "{doc} has no `{start}` command");
    command
}

#[test]
fn readme_explain_example_works_as_written() {
    let command = command_in("README.md", "statusgate explain ");
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-c", &command])
        .current_dir(ROOT)
        .env("PATH", path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{command}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The example shows Huawei's throttling 400 becoming a 429.
    assert!(text.contains("HTTP/1.1 429 Too Many Requests"), "{command}\n{text}");
    assert!(!text.contains("# rule: (none"), "a rule matches: {text}");
}

#[test]
fn configuration_profile_example_passes_check_as_written() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md")).unwrap();
    let section = &doc[doc.find("## Vendor profiles").expect("the section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let profile = &section[start..start + section[start..].find("```").unwrap()];
    assert!(
        profile.contains("examples:") && profile.contains("description:"),
        "{profile}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile.yaml"), profile).unwrap();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(
        &cfg,
        "listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\nupstreams:\n  huawei:\n    addrs: [127.0.0.1:3]\n\
         routes:\n  - name: huawei\n    upstream: huawei\n    profile: profile.yaml\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_statusgate"))
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the example profile fails check:\n{}\n{profile}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 routes, 1 upstreams, 1 rules"));
}
