//! Property tests of the engine through the library API: the config/rule load path, templates,
//! body decoders, matchers, the depth-bounded body readers, the redaction filter and the problem
//! writers never panic on any input, and what they produce is well-formed.
//!
//! 256 cases per property by default (the whole set runs in seconds in debug); `scripts/fuzz`
//! runs them in release with `PROPTEST_CASES` (default 1,000,000).

mod common;

use std::sync::OnceLock;

use common::config::{Config, Route, Upstream as Up};
use http::HeaderMap;
use proptest::prelude::*;
use serde_json::Value;
use statusgate::config::schema::RawProfile;
use statusgate::engine::body::{
    json_too_deep, parse_json_bounded, BodyDoc, JsonPath, Unreadable, XmlNode, XmlPath, MAX_BODY_DEPTH,
};
use statusgate::engine::matcher::{MediaPattern, PathGlob};
use statusgate::engine::redact::Redaction;
use statusgate::engine::response::decode;
use statusgate::engine::response::{compose, CanonicalBody};
use statusgate::engine::template::{Scope, Template};
use statusgate::engine::{
    CanonicalProfile, CompiledProfile, Origin, ProblemBody, ProblemFormat, RequestFacts, UpstreamBody, UpstreamHead,
};

fn canonical() -> &'static CanonicalProfile {
    static C: OnceLock<CanonicalProfile> = OnceLock::new();
    C.get_or_init(|| {
        // The embedded canonical profile, through the loader (a config with no profile).
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("statusgate.yaml");
        std::fs::write(
            &main,
            Config::new()
                .listen_addr("127.0.0.1:1")
                .no_admin()
                .upstream("u", Up::addr("127.0.0.1:2"))
                .route(Route::new("c", "u"))
                .build(),
        )
        .unwrap();
        statusgate::snapshot::load(&main).expect("embedded canonical").canonical
    })
}

/// The shipped vendor profiles, compiled once.
fn shipped() -> &'static Vec<CompiledProfile> {
    static P: OnceLock<Vec<CompiledProfile>> = OnceLock::new();
    P.get_or_init(|| {
        ["veeam", "huawei-vpcep", "oracle-ords", "forgerock-crest"]
            .iter()
            .map(|name| {
                let path = std::path::PathBuf::from(format!("embedded:rules/{name}.yaml"));
                let raw: RawProfile = statusgate::config::load::load_file(&path).expect("shipped profile parses");
                CompiledProfile::compile(&path, &raw, canonical(), 64 * 1024, 64).expect("shipped profile compiles")
            })
            .collect()
    })
}

/// Loads a main config whose one route uses `profile` (written to disk), through the very
/// path start-up and reload take; returns the problems.
fn load_with_profile(profile: &str) -> Vec<statusgate::config::ConfigProblem> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile.yaml"), profile).unwrap();
    let main = dir.path().join("statusgate.yaml");
    std::fs::write(
        &main,
        Config::new()
            .listen_addr("127.0.0.1:1")
            .no_admin()
            .upstream("u", Up::addr("127.0.0.1:2"))
            .route(Route::new("prop", "u").profile("profile.yaml"))
            .build(),
    )
    .unwrap();
    match statusgate::snapshot::load(&main) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

/// Text made of YAML's structural characters and a few words, so that random text is often
/// almost YAML (the interesting case), plus any characters at all.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just("- ".to_owned()),
        Just(": ".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(", ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("<<: ".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("#".to_owned()),
        Just("!tag ".to_owned()),
        Just("rules".to_owned()),
        Just("name".to_owned()),
        Just("when".to_owned()),
        Just("then".to_owned()),
        Just("status".to_owned()),
        Just("json".to_owned()),
        Just("xml".to_owned()),
        Just("examples".to_owned()),
        Just("body_depth".to_owned()),
        Just("404".to_owned()),
        Just("5xx".to_owned()),
        "\\PC{0,8}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

/// A JSON string literal, which YAML reads as a double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn rule_file() -> impl Strategy<Value = String> {
    let status = prop_oneof![
        (100u16..700).prop_map(|s| s.to_string()),
        Just("4xx".to_owned()),
        Just("[4xx, 5xx]".to_owned()),
        "\\PC{0,6}".prop_map(|s| q(&s)),
    ];
    let rule = (
        "\\PC{0,10}",
        status,
        prop::option::of("[/a-zA-Z_.*@:]{0,12}"),
        prop::option::of("\\PC{0,12}"),
        prop::option::of("\\PC{0,20}"),
        prop::option::of(100u16..600),
        prop::option::of("[a-zA-Z/*+.-]{0,16}"),
        any::<bool>(),
    );
    (prop::collection::vec(rule, 0..4), prop::option::of(0usize..200)).prop_map(|(rules, depth)| {
        let mut y = String::from("vendor: prop\n");
        if let Some(d) = depth {
            y.push_str(&format!("body_depth: {d}\n"));
        }
        y.push_str("rules:\n");
        for (name, status, path, regex, template, to, ct, xml) in rules {
            y.push_str(&format!("  - name: {}\n    when:\n      status: {status}\n", q(&name)));
            if let Some(ct) = ct {
                y.push_str(&format!("      content_type: {}\n", q(&ct)));
            }
            if let Some(p) = path {
                let kind = if xml { "xml" } else { "json" };
                match regex {
                    Some(r) => y.push_str(&format!("      {kind}: {{ {}: {{ regex: {} }} }}\n", q(&p), q(&r))),
                    None => y.push_str(&format!("      {kind}: {{ {}: {{ exists: true }} }}\n", q(&p))),
                }
            }
            y.push_str("    then:\n");
            if let Some(s) = to {
                y.push_str(&format!("      status: {s}\n"));
            }
            if let Some(t) = template {
                y.push_str(&format!("      problem: {{ detail: {} }}\n", q(&t)));
            }
            if to.is_none() && y.ends_with("then:\n") {
                y.push_str("      keep_body: true\n");
            }
        }
        y
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,6}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A random element tree, serialized; names from a small set so paths hit.
fn xml_doc() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["Error", "Task", "a", "v:Error", "Ref"]);
    let leaf = (name.clone(), "\\PC{0,10}", "\\PC{0,10}").prop_map(|(n, attr, text)| {
        format!(
            "<{n} Message=\"{}\">{}</{n}>",
            quick_xml::escape::escape(attr.as_str()),
            quick_xml::escape::escape(text.as_str())
        )
    });
    leaf.prop_recursive(5, 32, 4, move |inner| {
        (name.clone(), prop::collection::vec(inner, 0..4))
            .prop_map(|(n, kids)| format!("<{n} xmlns:v=\"urn:x\">{}</{n}>", kids.concat()))
    })
}

fn problem() -> impl Strategy<Value = ProblemBody> {
    let s = || any::<String>();
    (
        (s(), s(), 100u16..1000, prop::option::of(s()), prop::option::of(s())),
        (
            prop::option::of(any::<u16>()),
            prop::option::of(s()),
            s(),
            prop::option::of(s()),
            any::<bool>(),
        ),
        prop::collection::vec((s(), json_value()), 0..4),
    )
        .prop_map(
            |(
                (type_uri, title, status, detail, instance),
                (up, vendor_code, request_id, vendor_rid, gw),
                extensions,
            )| {
                ProblemBody {
                    type_uri,
                    title,
                    status,
                    detail,
                    instance,
                    upstream_status: up,
                    vendor_code,
                    request_id,
                    vendor_request_id: vendor_rid,
                    origin: if gw { Origin::Gateway } else { Origin::Upstream },
                    retryable: gw,
                    extensions,
                }
            },
        )
}

/// Reads an XML document to the end with quick-xml; the error, if it is not well-formed.
fn xml_well_formed(text: &str) -> Result<(), String> {
    let forbidden = |c: char| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}');
    if let Some(c) = text.chars().find(|&c| forbidden(c)) {
        return Err(format!("forbidden character {c:?}"));
    }
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0i64;
    let mut roots = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_)) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
            }
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Text(t)) => {
                t.xml_content().map_err(|e| e.to_string())?;
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if depth != 0 || roots != 1 {
        return Err(format!("depth {depth}, {roots} roots"));
    }
    Ok(())
}

fn deep(open: &str, close: &str, n: usize) -> String {
    format!("{}{}", open.repeat(n), close.repeat(n))
}

proptest! {
    #[test]
    fn any_text_as_a_rule_file_is_loaded_or_refused_with_positions(text in yamlish()) {
        for p in load_with_profile(&text) {
            prop_assert!(p.at.file.ends_with("profile.yaml") || p.at.file.ends_with("statusgate.yaml"), "{p}");
            prop_assert!(!p.to_string().contains('\n'), "one line per problem: {p:?}");
            prop_assert!(p.at.line >= 1, "no line: {p}\n{text:?}");
        }
    }

    #[test]
    fn structured_rule_files_compile_or_name_the_line_of_each_problem(file in rule_file()) {
        for p in load_with_profile(&file) {
            prop_assert!(p.at.file.ends_with("profile.yaml"), "{p}\n{file}");
            prop_assert!(p.at.line >= 1, "no line: {p}\n{file}");
        }
    }

    #[test]
    fn templates_compile_or_refuse_and_render_without_panic(t in "\\PC{0,40}", body in any::<Vec<u8>>(), json in json_value()) {
        let json_text = json.to_string();
        if let Ok(tpl) = Template::compile(&t) {
            let headers = HeaderMap::new();
            let req = RequestFacts { method: "GET", path: "/p", headers: &headers, request_id: "r" };
            let head = UpstreamHead { status: 500, headers: &headers };
            for bytes in [body.as_slice(), json_text.as_bytes()] {
                let doc = BodyDoc::new(bytes);
                let scope = Scope { req: &req, head: &head, body: Some(&doc) };
                let _ = tpl.render(&scope);
                let _ = tpl.render_value(&scope);
            }
        }
    }

    #[test]
    fn decoding_random_bytes_never_exceeds_the_cap(
        body in any::<Vec<u8>>(),
        enc in prop::option::of(prop_oneof![
            Just("gzip".to_owned()), Just("x-gzip".to_owned()), Just("deflate".to_owned()),
            Just("identity".to_owned()), Just(" GZIP ".to_owned()), "\\PC{0,8}",
        ]),
        cap in 0usize..4096,
    ) {
        if let Ok(out) = decode(enc.as_deref(), &body, cap) {
            prop_assert!(out.len() <= cap);
        }
    }

    #[test]
    fn gzip_and_deflate_round_trip_under_the_cap(body in any::<Vec<u8>>()) {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        prop_assert_eq!(&*decode(Some("gzip"), &gz, body.len()).unwrap(), body.as_slice());
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&body).unwrap();
        let z = z.finish().unwrap();
        prop_assert_eq!(&*decode(Some("deflate"), &z, body.len()).unwrap(), body.as_slice());
        if !body.is_empty() {
            prop_assert!(decode(Some("gzip"), &gz, body.len() - 1).is_err());
        }
    }

    #[test]
    fn json_paths_compile_or_refuse_and_look_up_any_document(path in "[/.~01a-zA-Z0-9]{0,16}", doc in json_value()) {
        if let Ok(p) = JsonPath::compile(&path) {
            let _ = p.lookup(&doc);
            let text = doc.to_string();
            let body = BodyDoc::new(text.as_bytes());
            let _ = body.json_text(&p);
        }
    }

    #[test]
    fn xml_paths_look_up_random_documents_and_random_bytes(
        path in "[/@*:a-zA-Z]{0,16}",
        doc in xml_doc(),
        junk in any::<Vec<u8>>(),
    ) {
        prop_assert!(XmlNode::parse(doc.as_bytes()).is_some(), "generated XML parses: {}", doc);
        if let Ok(p) = XmlPath::compile(&path) {
            let _ = BodyDoc::new(doc.as_bytes()).xml_text(&p);
            let _ = BodyDoc::new(&junk).xml_text(&p);
        }
        for p in ["Error/@Message", "*/a/@Message", "Error/Task"] {
            let _ = BodyDoc::new(doc.as_bytes()).xml_text(&XmlPath::compile(p).unwrap());
        }
    }

    #[test]
    fn media_patterns_and_path_globs_compile_or_refuse_and_match_anything(
        pattern in "\\PC{0,16}",
        ct in "\\PC{0,24}",
        glob in "[/*a-z.{}()\\[\\]+?^$|\\\\]{0,16}",
        path in "\\PC{0,24}",
    ) {
        if let Ok(m) = MediaPattern::compile(&pattern) {
            let _ = m.matches(&ct);
        }
        if let Ok(g) = PathGlob::compile(&glob) {
            let _ = g.matches(&path);
        }
    }

    #[test]
    fn the_body_readers_stop_at_any_depth_limit(n in 0usize..20_000, limit in 1usize..=MAX_BODY_DEPTH) {
        let xml = deep("<a>", "</a>", n);
        match XmlNode::parse_bounded(xml.as_bytes(), limit) {
            Ok(_) => prop_assert!(n >= 1 && n <= limit),
            Err(Unreadable::TooDeep) => prop_assert!(n > limit),
            Err(Unreadable::Malformed) => prop_assert_eq!(n, 0),
        }
        let json = deep("[", "]", n);
        prop_assert_eq!(json_too_deep(json.as_bytes(), limit), n > limit);
        match parse_json_bounded(json.as_bytes(), limit) {
            Ok(_) => prop_assert!(n >= 1 && n <= limit),
            Err(Unreadable::TooDeep) => prop_assert!(n > limit),
            Err(Unreadable::Malformed) => prop_assert_eq!(n, 0),
        }
    }

    #[test]
    fn the_body_readers_take_any_bytes(bytes in any::<Vec<u8>>(), limit in 0usize..200) {
        let _ = XmlNode::parse_bounded(&bytes, limit);
        let _ = parse_json_bounded(&bytes, limit);
        let doc = BodyDoc::with_depth(&bytes, limit);
        let _ = doc.json();
        let _ = doc.xml();
        let _ = doc.skip();
    }

    #[test]
    fn redaction_takes_any_text_and_leaves_no_control_characters(
        s in prop::collection::vec(prop_oneof![
            Just("\n   at Veeam.Backup.Foo.Bar(String x) in C:\\x\\y.cs:line 12".to_owned()),
            Just("\n\tat com.x.Y.z(Y.java:12)".to_owned()),
            Just("java.lang.NullPointerException: ".to_owned()),
            Just("Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n    f()\n".to_owned()),
            Just("goroutine 1 [running]:\nmain.main()\n\t/x/main.go:12 +0x1d\n".to_owned()),
            Just("--- End of inner exception stack trace ---".to_owned()),
            Just("Caused by: x".to_owned()),
            Just("\t... 12 more".to_owned()),
            any::<String>(),
        ], 0..8).prop_map(|v| v.concat()),
    ) {
        let (out, _) = Redaction::default().filter(&s);
        prop_assert!(!out.chars().any(|c| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}'), "{:?}", out);
    }

    #[test]
    fn the_shipped_profiles_answer_any_upstream_response_with_a_well_formed_body(
        which in 0usize..4,
        status in 100u16..600,
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD"]),
        ct in prop::sample::select(vec!["application/json", "application/xml", "text/plain", ""]),
        body in prop_oneof![any::<Vec<u8>>(), json_value().prop_map(|v| v.to_string().into_bytes()), xml_doc().prop_map(String::into_bytes)],
        xml in any::<bool>(),
    ) {
        let profile = &shipped()[which];
        let mut req_headers = HeaderMap::new();
        req_headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        let mut up_headers = HeaderMap::new();
        if !ct.is_empty() {
            up_headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
        }
        let req = RequestFacts { method, path: "/api/x", headers: &req_headers, request_id: "r" };
        let head = UpstreamHead { status, headers: &up_headers };
        let ub = if profile.needs_body(&req, &head) { UpstreamBody::Read(&body) } else { UpstreamBody::NotRead };
        let no_route_headers = Default::default();
        let decision = profile.evaluate(canonical(), &no_route_headers, &req, &head, ub);
        let format = if xml { ProblemFormat::Xml } else { ProblemFormat::Json };
        let resp = compose(&decision, status, &up_headers, "r", format, method == "HEAD");
        if let CanonicalBody::Replace(b) = resp.body {
            let text = String::from_utf8(b).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if xml {
                xml_well_formed(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            } else {
                serde_json::from_str::<Value>(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
    }

    #[test]
    fn problem_bodies_of_any_strings_are_well_formed_json_and_xml(mut p in problem(), redact in any::<bool>()) {
        if redact {
            Redaction::default().problem(&mut p);
        }
        let json: Value = serde_json::from_slice(&p.to_json()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&json["title"], &Value::String(p.title.clone()));
        prop_assert_eq!(&json["status"], &Value::from(p.status));
        if let Some(d) = &p.detail {
            prop_assert_eq!(&json["detail"], &Value::String(d.clone()));
        }
        let xml = String::from_utf8(p.to_xml()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Err(e) = xml_well_formed(&xml) {
            return Err(TestCaseError::fail(format!("{e}: {xml}")));
        }
    }
}
