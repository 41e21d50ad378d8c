//! The JSON Schemas of docs/schema/ (`statusgate schema config|profile|canonical`):
//! - the shipped files are what the binary generates (regenerate with
//!   `cargo run -- schema config > docs/schema/statusgate.schema.json`, and so on);
//! - every shipped configuration and profile names its schema on its first line
//!   (`# yaml-language-server: $schema=...`, relative to the file) and validates against it with
//!   a real validator, `check-jsonschema` (PyPI; `scripts/setup --pip`, run by scripts/test);
//! - the schema accepts what the loader accepts: documents that differ in one key or value go
//!   through `statusgate check` and `check-jsonschema`, and both must agree on each, but for
//!   the pinned YAML 1.1 scalar differences (`yaml_1_1_cases`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const HINT: &str =
    "check-jsonschema runs as `python3 -m check_jsonschema`: `scripts/setup --pip check-jsonschema==0.39.0`";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn statusgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_statusgate"))
}

/// (schema kind as `statusgate schema` names it, file under docs/schema/)
const SCHEMAS: [(&str, &str); 3] = [
    ("config", "statusgate.schema.json"),
    ("profile", "profile.schema.json"),
    ("canonical", "canonical.schema.json"),
];

/// Every shipped YAML file that statusgate reads, with the schema file it must match.
fn shipped() -> Vec<(PathBuf, &'static str)> {
    let mut out = vec![(repo("deploy/kubernetes/base/statusgate.yaml"), "statusgate.schema.json")];
    for (dir, default) in [("deploy", "statusgate.schema.json"), ("rules", "profile.schema.json")] {
        for entry in std::fs::read_dir(repo(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            // rules/kustomization.yaml is kustomize's, not statusgate's.
            if !name.ends_with(".yaml") || name == "kustomization.yaml" {
                continue;
            }
            let schema = if name == "canonical.yaml" {
                "canonical.schema.json"
            } else {
                default
            };
            out.push((path, schema));
        }
    }
    // The packaged configurations (deploy/package/): installed as /etc/statusgate/statusgate.yaml,
    // where a repository-relative $schema path would name nothing, so they carry no such line.
    for name in ["statusgate.yaml", "statusgate.container.yaml"] {
        out.push((repo(&format!("deploy/package/{name}")), "statusgate.schema.json"));
    }
    out.sort();
    assert!(out.len() >= 10, "{out:?}");
    out
}

/// `check-jsonschema --schemafile <schema> <files>`: which files failed, with the messages.
fn check_jsonschema(schema: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    let out = Command::new("python3")
        .args(["-m", "check_jsonschema", "--output-format", "json", "--schemafile"])
        .arg(schema)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("could not run python3: {e} ({HINT})"));
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "check-jsonschema did not answer JSON ({HINT}):\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        report["parse_errors"].as_array().is_none_or(|e| e.is_empty()),
        "check-jsonschema could not read a file: {report}"
    );
    let mut failed: BTreeMap<PathBuf, String> = BTreeMap::new();
    for e in report["errors"].as_array().into_iter().flatten() {
        let file = PathBuf::from(e["filename"].as_str().unwrap());
        let line = format!(
            "{} {}\n",
            e["path"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        );
        failed.entry(file).or_default().push_str(&line);
    }
    assert_eq!(
        out.status.success(),
        failed.is_empty(),
        "check-jsonschema's exit status and its report disagree: {report}"
    );
    failed
}

#[test]
fn the_shipped_schemas_are_the_generated_ones() {
    for (kind, file) in SCHEMAS {
        let out = statusgate().args(["schema", kind]).output().unwrap();
        assert!(out.status.success(), "statusgate schema {kind}");
        let generated = String::from_utf8(out.stdout).unwrap();
        let shipped = std::fs::read_to_string(repo(&format!("docs/schema/{file}"))).unwrap_or_default();
        assert!(
            generated == shipped,
            "docs/schema/{file} is stale: cargo run -- schema {kind} > docs/schema/{file}"
        );
        let schema: Value = serde_json::from_str(&generated).unwrap();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["additionalProperties"], false, "{kind}: unknown keys are errors");
    }
    assert!(!statusgate().args(["schema", "nope"]).output().unwrap().status.success());
}

#[test]
fn every_shipped_file_names_its_schema() {
    for (path, schema) in shipped() {
        if path.starts_with(repo("deploy/package")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or("");
        let rel = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line is not a yaml-language-server $schema line",
                    path.display()
                )
            });
        let named = path.parent().unwrap().join(rel).canonicalize().unwrap_or_else(|e| {
            panic!("{}: $schema={rel}: {e}", path.display());
        });
        assert_eq!(
            named,
            repo(&format!("docs/schema/{schema}")).canonicalize().unwrap(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn every_shipped_file_validates_against_its_schema() {
    let files = shipped();
    for (_, schema) in SCHEMAS {
        let group: Vec<PathBuf> = files
            .iter()
            .filter(|(_, s)| *s == schema)
            .map(|(p, _)| p.clone())
            .collect();
        let failed = check_jsonschema(&repo(&format!("docs/schema/{schema}")), &group);
        assert!(failed.is_empty(), "{schema}: {failed:#?}");
    }
}

const MAIN: &str = "listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\nupstreams:\n  u: {addrs: [127.0.0.1:3]}\nroutes:\n  - {name: r, upstream: u, profile: p.yaml}\n";
const PROFILE: &str = "rules:\n  - {name: a, when: {status: 418}, then: {status: 400}}\n";

/// One key or value changed: (what, main file, profile, does the loader accept it?, does the
/// schema?). They differ only for the YAML 1.1 scalars of `yaml_1_1_cases`.
fn cases() -> Vec<(&'static str, String, String, bool, bool)> {
    let main = |extra: &str| format!("{MAIN}{extra}\n");
    let profile = |extra: &str| format!("{PROFILE}{extra}\n");
    let rule = |when: &str| format!("rules:\n  - name: a\n    when: {when}\n    then: {{status: 400}}\n");
    let m = |what, text: String, ok| (what, text, PROFILE.to_owned(), ok, ok);
    let p = |what, text: String, ok| (what, MAIN.to_owned(), text, ok, ok);
    let mut cases = vec![
        m("as shipped", main(""), true),
        m("duration", main("server: {grace_period: 5s}"), true),
        m("duration with a blank", main("server: {grace_period: 5 s}"), true),
        m("duration without a unit", main("server: {grace_period: 5}"), false),
        m("duration in days", main("server: {grace_period: 1d}"), false),
        m("size", main("limits: {body_buffer: 64KiB}"), true),
        m("size as a number", main("limits: {body_buffer: 65536}"), true),
        m("size in parsecs", main("limits: {body_buffer: 3 parsecs}"), false),
        m("negative size", main("limits: {body_buffer: -1}"), false),
        m("unknown key", main("no_such_key: 1"), false),
        m("unknown nested key", main("server: {thread: 2}"), false),
        m("threads not a number", main("server: {threads: two}"), false),
        m("negative count", main("limits: {client_connections: -5}"), false),
        m(
            "admin as a map",
            main("tls_listen: []\nhttp2: {h2c: true}").replace("admin: 127.0.0.1:2", "admin: {addr: 127.0.0.1:2}"),
            true,
        ),
        m(
            "admin map with a typo",
            MAIN.replace("admin: 127.0.0.1:2", "admin: {adr: 127.0.0.1:2}"),
            false,
        ),
        m(
            "listen as a list",
            MAIN.replace("listen: 127.0.0.1:1", "listen: [127.0.0.1:1, 127.0.0.1:4]"),
            true,
        ),
        m(
            "listen as a number",
            MAIN.replace("listen: 127.0.0.1:1", "listen: 8080"),
            false,
        ),
        m(
            "no routes",
            MAIN.replace("routes:\n  - {name: r, upstream: u, profile: p.yaml}\n", ""),
            false,
        ),
        p("as shipped", PROFILE.to_owned(), true),
        p(
            "description and vendor",
            profile("vendor: V\ndescription: what it is for"),
            true,
        ),
        p("unknown key", profile("whenn: 1"), false),
        p("profile body_buffer", profile("body_buffer: 1MB"), true),
        p("status class", rule("{status: 4xx}"), true),
        p("status class upper case", rule("{status: \"4XX\"}"), true),
        p("status list", rule("{status: [400, \"5xx\"]}"), true),
        p("status as text", rule("{status: \"404\"}"), true),
        p("status out of range", rule("{status: 700}"), false),
        p("no such class", rule("{status: 6xx}"), false),
        p("matcher scalar", rule("{status: 400, json: {/code: 5}}"), true),
        p("matcher boolean", rule("{status: 400, json: {/ok: true}}"), true),
        p(
            "matcher map",
            rule("{status: 400, json: {/code: {regex: \"^E\", ignore_case: true}}}"),
            true,
        ),
        p("matcher typo", rule("{status: 400, json: {/code: {regexp: x}}}"), false),
        p("matcher list", rule("{status: 400, json: {/code: [1, 2]}}"), false),
        p("method list", rule("{status: 400, method: [GET, POST]}"), true),
    ];
    cases.extend(yaml_1_1_cases());
    cases
}

/// The known differences (docs/configuration.md, "JSON Schema"): the loader (serde-saphyr) reads
/// plain scalars the YAML 1.1 way, the schema sees what a YAML 1.2 parser (editors,
/// check-jsonschema) reads. Pinned here so that a change to either side shows.
fn yaml_1_1_cases() -> Vec<(&'static str, String, String, bool, bool)> {
    let main = |extra: &str| format!("{MAIN}{extra}\n");
    let rule = |when: &str| format!("rules:\n  - name: a\n    when: {when}\n    then: {{status: 400}}\n");
    vec![
        // `yes` is a boolean to the loader, the text "yes" to YAML 1.2.
        (
            "yes as a boolean",
            main("http2: {h2c: yes}"),
            PROFILE.to_owned(),
            true,
            false,
        ),
        // An unquoted number where text is expected: the loader takes its text.
        (
            "a number as text",
            MAIN.replace("upstream: u,", "upstream: u, host: 1.5,"),
            PROFILE.to_owned(),
            true,
            false,
        ),
        // `on` in a one-or-many of text: a boolean to the loader, which wants text there.
        (
            "on as a method",
            MAIN.to_owned(),
            rule("{status: 400, method: on}"),
            false,
            true,
        ),
    ]
}

#[test]
fn the_schemas_accept_what_the_loader_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mains, mut profiles, mut expect) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (what, main, profile, ok, schema_ok)) in cases().into_iter().enumerate() {
        let case = dir.path().join(format!("case{i:02}"));
        std::fs::create_dir(&case).unwrap();
        std::fs::write(case.join("statusgate.yaml"), &main).unwrap();
        std::fs::write(case.join("p.yaml"), &profile).unwrap();
        let out = statusgate()
            .args(["check", "-c"])
            .arg(case.join("statusgate.yaml"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            ok,
            "{what}: the loader {} it:\n{main}---\n{profile}\n{}",
            if ok { "rejects" } else { "accepts" },
            String::from_utf8_lossy(&out.stderr)
        );
        mains.push(case.join("statusgate.yaml"));
        profiles.push(case.join("p.yaml"));
        expect.push((what, main, profile, schema_ok));
    }
    let bad_mains = check_jsonschema(&repo("docs/schema/statusgate.schema.json"), &mains);
    let bad_profiles = check_jsonschema(&repo("docs/schema/profile.schema.json"), &profiles);
    let mut disagree = Vec::new();
    for (i, (what, main, profile, ok)) in expect.into_iter().enumerate() {
        let errors: String = [bad_mains.get(&mains[i]), bad_profiles.get(&profiles[i])]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if errors.is_empty() != ok {
            disagree.push(format!(
                "{what}: the schema should {}, it {}\n{main}---\n{profile}{errors}",
                if ok { "accept" } else { "reject" },
                if errors.is_empty() { "accepts" } else { "rejects" }
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "schema and loader disagree:\n{}",
        disagree.join("\n")
    );
}
