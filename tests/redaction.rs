//! The redaction guarantee end to end: vendor messages carrying .NET and Java stack traces,
//! or control characters, through the shipped profiles and a real gateway.

mod common;

use common::assert;
use common::config::{Config, Route, Upstream as Up};
use common::vendor::profile;
use common::{request, Gateway, Reply, Upstream};

const DOTNET: &str = "System.NullReferenceException: Object reference not set to an instance of an object.\r\n   at Veeam.Backup.EnterpriseService.CTenantManager.Edit(Guid id, String name) in C:\\build\\Veeam\\CTenantManager.cs:line 212\r\n   at Veeam.Backup.EnterpriseService.RestApi.CRestHandler.Process()\r\n--- End of inner exception stack trace ---\r\n   at System.Web.Http.ApiController.Invoke()";

const JAVA: &str = "java.lang.IllegalStateException: Managed object is locked\n\tat org.forgerock.openidm.managed.ManagedObjectSet.update(ManagedObjectSet.java:812)\n\tat org.forgerock.json.resource.Router.handleUpdate(Router.java:301)\nCaused by: java.util.ConcurrentModificationException: busy\n\tat java.base/java.util.HashMap.forEach(HashMap.java:1337)\n\t... 42 more";

fn xml_attr(s: &str) -> String {
    quick_xml::escape::escape(s)
        .replace('\r', "&#13;")
        .replace('\n', "&#10;")
        .replace('\t', "&#9;")
}

fn gateway(up: &Upstream, prefix: &str) -> Gateway {
    let route = |vendor: &str, file: &str| {
        Route::new(&format!("{prefix}-{vendor}"), "up")
            .prefix(&format!("/{vendor}/"))
            .strip_prefix()
            .profile(&profile(file))
    };
    let cfg = Config::new()
        .upstream("up", Up::addr(&up.addr()))
        .route(route("veeam", "veeam.yaml"))
        .route(route("crest", "forgerock-crest.yaml"))
        .build();
    Gateway::start(&cfg, &[])
}

/// A frame's ` at ` and a Java trace's `... 42 more`, on top of `assert::INTERNALS`.
const TRACE: &[&str] = &[" at ", "more"];

#[test]
fn stack_traces_in_veeam_and_crest_messages_never_reach_the_problem_detail() {
    let up = Upstream::start(|req| match req.path.as_str() {
        "/api/xml" => Reply::xml(
            500,
            "InternalServerError",
            &format!(
                r#"<Error Message="{}" StatusCode="500" xmlns="http://www.veeam.com/ent/v1.0"><StackTrace>   at Veeam.Backup.X()</StackTrace></Error>"#,
                xml_attr(DOTNET)
            ),
        ),
        "/api/json" => Reply::json(
            500,
            "InternalServerError",
            &serde_json::json!({"Message": DOTNET, "StatusCode": 500}).to_string(),
        ),
        _ => Reply::json(
            409,
            "Conflict",
            &serde_json::json!({"code": 409, "reason": "Conflict", "message": JAVA}).to_string(),
        ),
    });
    let gw = gateway(&up, "trace");
    for path in ["/veeam/api/xml", "/veeam/api/json"] {
        let r = request(gw.port, "GET", path, &[], b"");
        assert_eq!(r.status, 500);
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            detail, "Object reference not set to an instance of an object.",
            "{path}"
        );
        assert::no_leak(&detail, TRACE);
    }
    let r = request(gw.port, "PUT", "/crest/openidm/managed/user/1", &[], b"{}");
    assert_eq!(r.status, 409);
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert_eq!(detail, "Managed object is locked");
    assert::no_leak(&detail, TRACE);
    gw.expect_metric(
        "statusgate_redactions_total",
        &[("route", "trace-veeam")],
        2.0,
        "two Veeam details",
    );
    gw.expect_metric(
        "statusgate_redactions_total",
        &[("route", "trace-crest")],
        1.0,
        "one CREST detail",
    );
}

#[test]
fn an_ordinary_vendor_message_is_not_redacted() {
    let up = Upstream::start(|_| {
        Reply::xml(
            400,
            "BadRequest",
            r#"<Error Message="There is an error in XML document (1, 1)." StatusCode="400"/>"#,
        )
    });
    let gw = gateway(&up, "plain");
    let r = request(gw.port, "GET", "/veeam/api/x", &[], b"");
    assert_eq!(r.json()["detail"], "There is an error in XML document (1, 1).");
    gw.expect_metric(
        "statusgate_redactions_total",
        &[("route", "plain-veeam")],
        0.0,
        "nothing removed",
    );
}

#[test]
fn control_characters_in_a_vendor_message_leave_problem_xml_well_formed() {
    let up = Upstream::start(|_| {
        Reply::json(
            500,
            "InternalServerError",
            r#"{"Message":"bell\u0001 and \u001b[31mred\u007f, tab\tkept","StatusCode":500}"#,
        )
    });
    let gw = gateway(&up, "ctl");
    let r = request(gw.port, "GET", "/veeam/api/x", &[("Accept", "application/xml")], b"");
    assert_eq!(r.header("content-type"), Some("application/problem+xml"));
    let text = r.text();
    // XML 1.0 section 2.2: no C0 control but tab, LF and CR, escaped or not.
    assert!(
        !text
            .chars()
            .any(|c| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}'),
        "{text:?}"
    );
    assert!(!text.contains("&#1;") && !text.contains("&#x1;"), "{text:?}");
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut detail = None;
    let mut in_detail = false;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(e)) => in_detail = e.local_name().as_ref() == b"detail",
            Ok(quick_xml::events::Event::Text(t)) if in_detail => {
                detail = Some(t.xml_content().unwrap().into_owned());
            }
            Ok(_) => {}
            Err(e) => panic!("not well-formed: {e}: {text}"),
        }
    }
    assert_eq!(detail.as_deref(), Some("bell and [31mred, tab\tkept"));
}

#[test]
fn operator_patterns_in_the_canonical_profile_replace_matches_in_every_upstream_member() {
    let up = Upstream::start(|_| {
        Reply::json(
            409,
            "Conflict",
            r#"{"code":409,"reason":"Conflict","message":"token tok-0123456789abcdef leaked"}"#,
        )
    });
    let canonical = std::fs::read_to_string(format!("{}/rules/canonical.yaml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace("  patterns: []", "  patterns: ['tok-[0-9a-f]{16}']")
        .replace("  replacement: \"[redacted]\"", "  replacement: \"<token>\"");
    let cfg = Config::new()
        .canonical("canonical.yaml")
        .upstream("up", Up::addr(&up.addr()))
        .route(
            Route::new("custom-crest", "up")
                .prefix("/")
                .profile(&profile("forgerock-crest.yaml")),
        )
        .build();
    let gw = Gateway::start(&cfg, &[("canonical.yaml", &canonical)]);
    let r = request(gw.port, "PUT", "/openidm/managed/user/1", &[], b"{}");
    assert_eq!(r.json()["detail"], "token <token> leaked");
    gw.expect_metric("statusgate_redactions_total", &[("route", "custom-crest")], 1.0, "");
}

#[test]
fn a_redaction_pattern_that_does_not_compile_is_a_positioned_problem() {
    let dir = tempfile::tempdir().unwrap();
    let canonical = std::fs::read_to_string(format!("{}/rules/canonical.yaml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace("  patterns: []", "  patterns:\n    - ok\n    - '(unclosed'");
    std::fs::write(dir.path().join("canonical.yaml"), &canonical).unwrap();
    let main = dir.path().join("statusgate.yaml");
    let text = Config::new()
        .listen_addr("127.0.0.1:1")
        .no_admin()
        .canonical("canonical.yaml")
        .upstream("u", Up::addr("127.0.0.1:2"))
        .route(Route::new("r", "u"))
        .build();
    std::fs::write(&main, text).unwrap();
    let problems = statusgate::snapshot::load(&main).map(|_| ()).unwrap_err();
    let line = canonical.lines().position(|l| l.contains("(unclosed")).unwrap() + 1;
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    assert!(
        text.contains(&format!("canonical.yaml:{line}:7: invalid regex:")),
        "{text}"
    );
}
