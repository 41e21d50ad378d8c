//! Oracle ORDS end to end: client -> gateway (shipped rules/oracle-ords.yaml) -> the stateful
//! emulator and back, over loopback. Every row of the vendor's status table, the HTML error
//! pages and the Oracle Cloud REST variant are triggered by real requests.

mod common;

use common::vendor::{vendor_gateway, EmulatorServer};
use common::{assert, request, Gateway, Response};
use serde_json::Value;
use statusgate_emulators::oracle::{
    Oracle, ADMIN_TOKEN, BROKEN_JOB, CLERK_TOKEN, DEPARTMENT_ID, EMPLOYEE_ID, EMPTY_DEPARTMENT_ID, WORKER_ID,
};

const ADMIN: (&str, &str) = ("Authorization", "Bearer ords-7Qm2xHr0AdminToken");
const CLERK: (&str, &str) = ("Authorization", "Bearer ords-Kp41vNc9ClerkToken");
const JSON: (&str, &str) = ("Content-Type", "application/json");
/// Prefers HTML (so ORDS answers with its error page) and takes JSON problems.
const HTML_FIRST: (&str, &str) = ("Accept", "text/html, */*;q=0.5");
/// A browser's Accept: HTML first, then XML (so the problem comes back as problem+xml).
const BROWSER: (&str, &str) = (
    "Accept",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
);
const ECID: &str = "tag:oracle.com,2020:ecid/";

/// A fresh emulator (fresh state) behind a gateway whose one route is named `route`.
fn setup(route: &str) -> (Gateway, EmulatorServer) {
    let emu = EmulatorServer::start(Oracle::new());
    let gw = vendor_gateway(route, "oracle", &emu, "oracle-ords.yaml", "");
    (gw, emu)
}

fn hr(rest: &str) -> String {
    format!("/oracle/ords/hr/{rest}")
}

/// Asserts a canonical problem response and returns its body.
fn problem(r: &Response, status: u16, reason: &str, vendor_code: &str) -> Value {
    let p = assert::upstream_problem(r, status, reason, status);
    assert_eq!(p["type"], "about:blank");
    assert_eq!(p["title"], reason);
    assert_eq!(p["vendor_code"], vendor_code);
    p
}

/// An ORDS-made error: its ECID is the problem's instance, its tag: type does not cross.
fn ords_problem(r: &Response, status: u16, reason: &str, vendor_code: &str) -> Value {
    let p = problem(r, status, reason, vendor_code);
    let instance = p["instance"].as_str().expect("instance");
    assert!(
        instance.starts_with(ECID) && instance.len() == ECID.len() + 22,
        "{instance}"
    );
    assert::no_leak(
        &r.text(),
        &["tag:oracle.com,2020:error/", "\"code\"", "\"message\"", "<html", "ORA-"],
    );
    p
}

#[test]
fn reads_pass_200_untouched() {
    let (gw, _emu) = setup("ords-200");
    let r = request(gw.port, "GET", &hr("employees/"), &[], b"");
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.header("x-upstream-status"), Some("200"));
    let list = r.json();
    assert_eq!(list["count"], 4);
    assert_eq!(list["items"][0]["employee_id"], EMPLOYEE_ID);
    let r = request(gw.port, "GET", &hr(&format!("employees/{EMPLOYEE_ID}")), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["last_name"], "King");
    let r = request(
        gw.port,
        "GET",
        &hr(&format!("departments/{DEPARTMENT_ID}/salary_stats")),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["employees"], 3);
}

#[test]
fn create_is_201_with_location_then_put_and_delete_are_200() {
    let (gw, _emu) = setup("ords-201");
    let r = request(
        gw.port,
        "POST",
        &hr("employees/"),
        &[JSON],
        br#"{"first_name":"Bruce","last_name":"Ernst","email":"BERNST","job_id":"IT_PROG","salary":6000}"#,
    );
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"), "{}", r.text());
    assert_eq!(r.header("x-upstream-status"), Some("201"));
    let location = r.header("location").expect("Location").to_owned();
    assert!(location.ends_with("/ords/hr/employees/207"), "{location}");
    assert_eq!(r.json()["employee_id"], 207);

    let r = request(gw.port, "GET", &hr("employees/207"), &[], b"");
    assert_eq!(r.json()["email"], "BERNST");
    let r = request(gw.port, "PUT", &hr("employees/207"), &[JSON], br#"{"salary":6500}"#);
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"), "{}", r.text());
    assert_eq!(r.json()["salary"], 6500.0);
    let r = request(gw.port, "DELETE", &hr("employees/207"), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["rowsDeleted"], 1);
    let r = request(gw.port, "GET", &hr("employees/207"), &[], b"");
    ords_problem(&r, 404, "Not Found", "NotFound");
}

#[test]
fn export_is_202_with_a_job_to_poll() {
    let (gw, _emu) = setup("ords-202");
    let r = request(
        gw.port,
        "POST",
        &hr("_/db-api/stable/database/datapump/export"),
        &[ADMIN, JSON],
        br#"{"datapump_job_mode":"SCHEMA","filter":"HR"}"#,
    );
    assert_eq!((r.status, r.reason.as_str()), (202, "Accepted"), "{}", r.text());
    let location = r.header("location").expect("Location of the job").to_owned();
    let job = location.split("/ords/").nth(1).expect("an ORDS URI");
    assert!(job.ends_with("/datapump/jobs/DATAPUMP_REST_EXPORT_1"), "{location}");
    let poll = format!("/oracle/ords/{job}");
    let mut states = Vec::new();
    for _ in 0..5 {
        let r = request(gw.port, "GET", &poll, &[ADMIN], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let state = r.json()["state"].as_str().unwrap_or_default().to_owned();
        states.push(state.clone());
        if state == "COMPLETED" {
            break;
        }
    }
    assert_eq!(states, ["EXECUTING", "COMPLETED"]);
}

#[test]
fn bad_bodies_are_400() {
    let (gw, _emu) = setup("ords-400");
    let r = request(gw.port, "POST", &hr("employees/"), &[JSON], b"{not json");
    let p = ords_problem(&r, 400, "Bad Request", "BadRequest");
    assert_eq!(p["detail"], "The request body is not a valid JSON object.");
    let r = request(
        gw.port,
        "POST",
        &hr("employees/"),
        &[JSON],
        br#"{"last_name":"Ernst","job_id":"IT_PROG"}"#,
    );
    let p = ords_problem(&r, 400, "Bad Request", "BadRequest");
    assert_eq!(p["detail"], "The request body lacks the required property email.");
}

#[test]
fn a_protected_module_without_a_token_is_401_with_a_challenge() {
    let (gw, emu) = setup("ords-401");
    let direct = request(emu.port, "GET", "/ords/hr/secure/salaries/", &[], b"");
    assert_eq!(direct.status, 401);
    assert!(direct.header("www-authenticate").is_none(), "the gateway adds it");
    for headers in [&[][..], &[("Authorization", "Bearer stolen")][..]] {
        let r = request(gw.port, "GET", &hr("secure/salaries/"), headers, b"");
        ords_problem(&r, 401, "Unauthorized", "Unauthorized");
        assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="ords""#));
    }
    let r = request(gw.port, "GET", &hr("secure/salaries/"), &[ADMIN], b"");
    assert_eq!(r.status, 200);
    assert_eq!(ADMIN.1, format!("Bearer {ADMIN_TOKEN}"));
}

#[test]
fn a_user_without_the_role_is_403() {
    let (gw, _emu) = setup("ords-403");
    assert_eq!(CLERK.1, format!("Bearer {CLERK_TOKEN}"));
    let r = request(gw.port, "GET", &hr("secure/salaries/"), &[CLERK], b"");
    ords_problem(&r, 403, "Forbidden", "Forbidden");
    let r = request(
        gw.port,
        "POST",
        &hr("_/db-api/stable/database/datapump/export"),
        &[CLERK, JSON],
        b"{}",
    );
    ords_problem(&r, 403, "Forbidden", "Forbidden");
}

#[test]
fn unknown_rows_jobs_resources_and_schemas_are_404() {
    let (gw, _emu) = setup("ords-404");
    let r = request(gw.port, "GET", &hr("employees/999"), &[], b"");
    let first = ords_problem(&r, 404, "Not Found", "NotFound");
    assert_eq!(first["detail"], "Not Found");
    let r = request(
        gw.port,
        "GET",
        &hr("_/db-api/stable/database/datapump/jobs/NOPE"),
        &[ADMIN],
        b"",
    );
    let second = ords_problem(&r, 404, "Not Found", "NotFound");
    assert_ne!(first["instance"], second["instance"], "each error has its own ECID");
    let r = request(gw.port, "GET", &hr("employees"), &[], b"");
    ords_problem(&r, 404, "Not Found", "NotFound");
    let r = request(gw.port, "GET", "/oracle/ords/scott/emp/", &[], b"");
    let p = ords_problem(&r, 404, "Not Found", "NotFound");
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .starts_with("The request could not be mapped to any database"));
}

#[test]
fn unsupported_methods_are_405_with_allow() {
    let (gw, emu) = setup("ords-405");
    let direct = request(emu.port, "DELETE", "/ords/hr/employees/", &[], b"");
    assert_eq!(direct.status, 405);
    assert!(direct.header("allow").is_none(), "the gateway adds it");
    for (method, path, allow) in [
        ("DELETE", hr("employees/"), "GET, HEAD, POST"),
        (
            "POST",
            hr(&format!("employees/{EMPLOYEE_ID}")),
            "GET, HEAD, PUT, DELETE",
        ),
        ("GET", hr("_/db-api/stable/database/datapump/export"), "POST"),
        ("PUT", hr("secure/salaries/"), "GET, HEAD"),
    ] {
        let r = request(gw.port, method, &path, &[JSON], b"{}");
        ords_problem(&r, 405, "Method Not Allowed", "MethodNotAllowed");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    // The same from the HTML page.
    let r = request(gw.port, "DELETE", &hr("employees/"), &[HTML_FIRST], b"");
    ords_problem(&r, 405, "Method Not Allowed", "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
}

#[test]
fn an_accept_it_cannot_produce_is_406() {
    let (gw, _emu) = setup("ords-406");
    let r = request(gw.port, "GET", &hr("employees/"), &[("Accept", "text/csv")], b"");
    ords_problem(&r, 406, "Not Acceptable", "NotAcceptable");
    let r = request(gw.port, "GET", &hr("employees/"), &[("Accept", "application/xml")], b"");
    assert_eq!(r.status, 406);
    assert_eq!(r.header("content-type"), Some("application/problem+xml"));
    let text = r.text();
    assert!(text.contains("<vendor_code>NotAcceptable</vendor_code>"), "{text}");
    assert!(text.contains(&format!("<instance>{ECID}")), "{text}");
}

#[test]
fn a_wrong_content_type_is_415_unsupported_media_type() {
    let (gw, emu) = setup("ords-415");
    // ORDS's table (and so the emulator's status line) calls it "Not Acceptable".
    let direct = request(
        emu.port,
        "POST",
        "/ords/hr/employees/",
        &[("Content-Type", "text/plain")],
        b"King",
    );
    assert_eq!((direct.status, direct.reason.as_str()), (415, "Not Acceptable"));
    for method_path in [("POST", hr("employees/")), ("PUT", hr("employees/101"))] {
        let (method, path) = method_path;
        let r = request(gw.port, method, &path, &[("Content-Type", "text/plain")], b"King");
        let p = ords_problem(&r, 415, "Unsupported Media Type", "UnsupportedMediaType");
        assert_eq!(
            p["detail"],
            "The media type \"text/plain\" is not supported; send application/json."
        );
    }
}

#[test]
fn an_ords_fault_is_500_without_the_ora_trace() {
    let (gw, _emu) = setup("ords-500");
    let path = hr(&format!("_/db-api/stable/database/datapump/jobs/{BROKEN_JOB}"));
    let r = request(gw.port, "GET", &path, &[ADMIN], b"");
    let p = ords_problem(&r, 500, "Internal Server Error", "InternalServerError");
    assert_eq!(p["detail"], "Internal Server Error");
    // The HTML page prints the ORA trace; the problem made from it does not.
    let r = request(gw.port, "GET", &path, &[ADMIN, ("Accept", "text/html")], b"");
    let p = ords_problem(&r, 500, "Internal Server Error", "InternalServerError");
    assert_eq!(p["detail"], "Internal Server Error");
    assert::no_leak(&r.text(), &["DBMS_DATAPUMP"]);
}

/// A 555 turned into a canonical 500: the evidence (555, ORDS's codes, the ECID) is kept, the
/// handler's ORA trace (`cause`) and ORDS's `action` are not.
fn user_defined_problem(r: &Response) -> Value {
    let p = assert::upstream_problem(r, 500, "Internal Server Error", 555);
    assert_eq!(p["type"], "about:blank");
    assert_eq!(p["title"], "Internal Server Error");
    assert_eq!(p["vendor_code"], "UserDefinedResourceError");
    assert_eq!(
        p["detail"],
        "The request could not be processed due to an error in a user defined resource"
    );
    assert!(p["instance"].as_str().is_some_and(|i| i.starts_with(ECID)), "{p}");
    let ords = [
        "ORA-",
        "SALARY_STATS_PKG",
        "SQL Error Code",
        "resource author",
        "tag:oracle.com,2020:error/",
    ];
    assert::no_leak(&r.text(), &ords);
    p
}

#[test]
fn a_user_defined_handler_failure_555_is_500_with_the_vendor_code_not_502() {
    let (gw, emu) = setup("ords-555");
    let path = format!("departments/{EMPTY_DEPARTMENT_ID}/salary_stats");
    let direct = request(emu.port, "GET", &format!("/ords/hr/{path}"), &[], b"");
    assert_eq!(
        (direct.status, direct.reason.as_str()),
        (555, "User Defined Resource Error")
    );
    assert_eq!(direct.json()["o:errorCode"], "ORDS-25001");
    let r = request(gw.port, "GET", &hr(&path), &[], b"");
    let p = user_defined_problem(&r);
    assert_eq!(p["ords_error_code"], "ORDS-25001");
    // The same failure rendered as ORDS's HTML page (with the ORA trace) maps the same way.
    let r = request(gw.port, "GET", &hr(&path), &[HTML_FIRST], b"");
    let p = user_defined_problem(&r);
    assert!(
        p.get("ords_error_code").is_none(),
        "the page carries no ORDS-nnnnn code"
    );
}

#[test]
fn a_stopped_rest_application_is_503_with_retry_after() {
    let (gw, emu) = setup("ords-503");
    let direct = request(emu.port, "GET", "/ords/sales/orders/", &[], b"");
    assert_eq!(direct.status, 503);
    assert!(direct.header("retry-after").is_none(), "the gateway adds it");
    let r = request(gw.port, "GET", "/oracle/ords/sales/orders/", &[], b"");
    let p = ords_problem(&r, 503, "Service Unavailable", "ServiceUnavailable");
    assert_eq!(r.header("retry-after"), Some("120"));
    assert_eq!(p["detail"], "The REST application for schema sales is not running.");
}

#[test]
fn html_error_pages_become_problems() {
    let (gw, _emu) = setup("ords-html");
    let r = request(gw.port, "GET", &hr("employees/999"), &[HTML_FIRST], b"");
    let p = ords_problem(&r, 404, "Not Found", "NotFound");
    assert_eq!(p["detail"], "Not Found");
    let r = request(gw.port, "GET", &hr("secure/salaries/"), &[HTML_FIRST], b"");
    ords_problem(&r, 401, "Unauthorized", "Unauthorized");
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="ords""#));
    let r = request(gw.port, "GET", "/oracle/ords/sales/orders/", &[HTML_FIRST], b"");
    ords_problem(&r, 503, "Service Unavailable", "ServiceUnavailable");
    assert_eq!(r.header("retry-after"), Some("120"));
    // A browser ranks XML above JSON: the same problem, as problem+xml.
    let r = request(gw.port, "GET", &hr("employees/999"), &[BROWSER], b"");
    assert_eq!((r.status, r.reason.as_str()), (404, "Not Found"));
    assert_eq!(r.header("content-type"), Some("application/problem+xml"));
    let text = r.text();
    assert!(text.contains("<status>404</status>"), "{text}");
    assert!(text.contains("<vendor_code>NotFound</vendor_code>"), "{text}");
    assert!(text.contains(&format!("<instance>{ECID}")), "{text}");
    assert!(!text.contains("<html"), "{text}");
}

#[test]
fn cloud_standard_errors_map_too() {
    let (gw, _emu) = setup("ords-cloud");
    let r = request(gw.port, "GET", &hr(&format!("hcm/v1/workers/{WORKER_ID}")), &[], b"");
    assert_eq!(r.status, 200);
    let r = request(gw.port, "GET", &hr("hcm/v1/workers/qqqwww"), &[], b"");
    let p = problem(&r, 404, "Not Found", "urn:oracle:cloud:client:error:not-found");
    assert_eq!(p["detail"], "Entity with ID qqqwww not found");
    assert_eq!(p["error_path"], "/qqqwww");
    assert!(p.get("instance").is_none());
    let r = request(gw.port, "GET", &hr("hcm/v1/workers?limit=abc"), &[], b"");
    let p = problem(
        &r,
        400,
        "Bad Request",
        "urn:oracle:cloud:client:error:invalid-parameter",
    );
    assert_eq!(p["detail"], "Invalid value abc for query parameter limit.");
    assert::no_leak(
        &r.text(),
        &["NotFoundException", "BadRequestException", "rfc2616", "o:errorCode"],
    );
}
