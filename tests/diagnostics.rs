//! Compile errors through the real load path (`statusgate::snapshot::load`): each kind has its
//! own message and its file:line:col. Before issue 10 every value-condition error read
//! "invalid regex: ...", even when no regex was involved.

mod common;

use std::path::Path;

use common::config::{Config, Route, Upstream as Up};
use statusgate::config::ConfigProblem;

/// Writes `profile` beside a main file whose one route uses it; loads; returns the problems
/// and the profile's path.
fn load_with_profile(profile: &str) -> (Vec<ConfigProblem>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile.yaml"), profile).unwrap();
    let main = dir.path().join("statusgate.yaml");
    std::fs::write(
        &main,
        Config::new()
            .listen_addr("127.0.0.1:1")
            .no_admin()
            .upstream("u", Up::addr("127.0.0.1:2"))
            .route(Route::new("d", "u").profile("profile.yaml"))
            .build(),
    )
    .unwrap();
    let problems = statusgate::snapshot::load(&main).err().unwrap_or_default();
    (problems, dir)
}

fn only_problem(profile: &str) -> (String, String) {
    let (problems, dir) = load_with_profile(profile);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    let file = dir.path().join("profile.yaml");
    assert_eq!(p.at.file, file);
    let text = p.to_string();
    let rest = text
        .strip_prefix(&format!("{}:", Path::new(&file).display()))
        .unwrap()
        .to_owned();
    (p.kind.name().to_owned(), rest)
}

#[test]
fn two_operators_in_one_condition_say_give_exactly_one_not_invalid_regex() {
    let (kind, text) = only_problem(
        "rules:\n  - name: r\n    when:\n      status: 400\n      json: { /code: { equals: a, regex: b } }\n    then: { status: 422 }\n",
    );
    assert_eq!(text, "5:22: give exactly one of equals, one_of, regex, exists");
    assert_eq!(kind, "matcher_not_exactly_one");
}

#[test]
fn a_condition_with_no_operator_says_give_exactly_one_not_invalid_regex() {
    let (kind, text) = only_problem(
        "rules:\n  - name: r\n    when:\n      status: 400\n      headers: { X-A: { ignore_case: true } }\n    then: { status: 422 }\n",
    );
    assert_eq!(text, "5:23: give exactly one of equals, one_of, regex, exists");
    assert_eq!(kind, "matcher_not_exactly_one");
}

#[test]
fn an_empty_one_of_says_it_needs_a_value_not_invalid_regex() {
    let (kind, text) = only_problem(
        "rules:\n  - name: r\n    when:\n      status: 400\n      json: { /code: { one_of: [] } }\n    then: { status: 422 }\n",
    );
    assert_eq!(text, "5:22: one_of needs at least one value");
    assert_eq!(kind, "matcher_empty_one_of");
}

#[test]
fn a_bad_regex_still_says_invalid_regex() {
    let (kind, text) = only_problem(
        "rules:\n  - name: r\n    when:\n      status: 400\n      json: { /code: { regex: \"(\" } }\n    then: { status: 422 }\n",
    );
    assert!(text.starts_with("5:22: invalid regex: regex parse error:"), "{text}");
    assert_eq!(kind, "regex");
}

#[test]
fn template_body_path_glob_and_media_errors_each_have_their_own_kind() {
    let (problems, _dir) = load_with_profile(
        "rules:\n  - name: r\n    when:\n      status: 400\n      path: v1/*\n      content_type: json\n      json: { a..b: { exists: true } }\n    then:\n      status: 422\n      problem: { detail: \"${bogus}\" }\n",
    );
    let got: Vec<(u64, &str, String)> = problems
        .iter()
        .map(|p| (p.at.line, p.kind.name(), p.kind.to_string()))
        .collect();
    let want = [
        (5, "path_glob", "invalid path: `v1/*` must start with /".to_owned()),
        (6, "media_type", "`json` is not a media type like application/json".to_owned()),
        (7, "body_path", "invalid path: `a..b` has an empty segment".to_owned()),
        (
            10,
            "template",
            "invalid template: unknown source `bogus`: use json:PATH, xml:PATH, header:NAME, req_header:NAME, status, method, path, request_id".to_owned(),
        ),
    ];
    for w in &want {
        assert!(got.contains(w), "{w:?} missing from {got:?}");
    }
    assert_eq!(got.len(), want.len(), "{got:?}");
}

#[test]
fn header_names_header_values_prefixes_and_body_depth_each_say_what_was_wrong() {
    let (problems, _dir) = load_with_profile(
        "body_depth: 0\nensure_headers:\n  401: { \"Bad Name\": x, X-Ok: \"a\\x01b\" }\nrules:\n  - name: r\n    when: { status: 400, path_prefix: v1 }\n    then: { status: 422 }\n",
    );
    let got: Vec<(u64, &str, String)> = problems
        .iter()
        .map(|p| (p.at.line, p.kind.name(), p.kind.to_string()))
        .collect();
    let want = [
        (1, "body_depth", "body_depth 0 is outside 1-100".to_owned()),
        (3, "header_name", "invalid header name `Bad Name`".to_owned()),
        (
            3,
            "header_value",
            "invalid value for header `X-Ok`: `a\u{1}b`".to_owned(),
        ),
        (
            6,
            "path_not_absolute",
            "invalid path: when.path_prefix `v1` must start with /".to_owned(),
        ),
    ];
    for w in &want {
        assert!(got.contains(w), "{w:?} missing from {got:?}");
    }
    assert_eq!(got.len(), want.len(), "{got:?}");
}
