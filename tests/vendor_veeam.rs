//! Veeam Backup Enterprise Manager end to end: client -> gateway (rules/veeam.yaml) -> the Veeam
//! emulator and back, over loopback. Every row of Veeam's status tables (seeds 000/001) and every
//! correction of the profile, triggered by real requests after a real logon.

mod common;

use common::vendor::{vendor_gateway, EmulatorServer};
use common::{assert, request, Gateway, Response};
use statusgate::engine::body::{BodyDoc, JsonPath, XmlPath};
use statusgate_emulators::veeam::{self, Veeam};

const CHALLENGE: &str = r#"Basic realm="Veeam Backup Enterprise Manager""#;
const XML_SPEC: &str = r#"<CloudTenantSpec xmlns="http://www.veeam.com/ent/v1.0"><Name>acme-renamed</Name><Description>renamed</Description></CloudTenantSpec>"#;

/// The gateway in front of a fresh emulator (dropped first, then the emulator).
struct Env {
    gw: Gateway,
    emu: EmulatorServer,
}

impl Env {
    fn start(route: &str) -> Env {
        let emu = EmulatorServer::start(Veeam::new());
        let gw = vendor_gateway(route, "veeam", &emu, "veeam.yaml", "");
        Env { gw, emu }
    }

    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(self.gw.port, method, &format!("/veeam{path}"), headers, body)
    }

    fn logon_response(&self, user: &str, password: &str) -> Response {
        let auth = veeam::basic_authorization(user, password);
        self.call("POST", "/api/sessionMngr/?v=latest", &[("Authorization", &auth)], b"")
    }

    /// Logs on and returns the session id.
    fn logon(&self, user: &str, password: &str) -> String {
        let r = self.logon_response(user, password);
        assert_eq!(r.status, 201, "logon: {}", r.text());
        r.header(veeam::SESSION_HEADER).expect("session header").to_owned()
    }

    fn admin(&self) -> String {
        self.logon(veeam::ADMIN_USER, veeam::ADMIN_PASSWORD)
    }

    /// A call with the session header (and more headers).
    fn with(&self, session: &str, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Response {
        let mut headers = vec![(veeam::SESSION_HEADER, session)];
        headers.extend_from_slice(extra);
        self.call(method, path, &headers, body)
    }
}

fn xml(r: &Response, path: &str) -> Option<String> {
    BodyDoc::new(&r.body)
        .xml_text(&XmlPath::compile(path).unwrap())
        .map(str::to_owned)
}

fn json(r: &Response, path: &str) -> Option<String> {
    BodyDoc::new(&r.body)
        .json_text(&JsonPath::compile(path).unwrap())
        .map(|c| c.into_owned())
}

/// Veeam's own frames and exception members: none may reach the client (RFC 9457 section 5;
/// stack traces and exception names in general are in `assert::INTERNALS`).
const VEEAM: &[&str] = &[
    "at Veeam",
    "Veeam.Backup.",
    "FirstChanceExceptionMessage",
    "firstChanceExceptionMessage",
    "NullReferenceException",
];

/// `assert::upstream_problem` with type about:blank, the reason as title, this `detail`, and
/// nothing of the .NET exception leaked.
fn veeam_problem(r: &Response, status: u16, reason: &str, upstream: u16, detail: &str) {
    let p = assert::upstream_problem(r, status, reason, upstream);
    assert_eq!(p["title"], reason);
    assert_eq!(p["type"], "about:blank");
    assert_eq!(p["detail"], detail);
    assert::no_leak(&r.text(), VEEAM);
}

#[test]
fn logon_201_created_gets_location_and_keeps_session_header_and_cookie() {
    let env = Env::start("veeam-201");
    let r = env.logon_response(veeam::ADMIN_USER, veeam::ADMIN_PASSWORD);
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
    assert_eq!(r.header("x-upstream-status"), Some("201"));
    let session = r.header(veeam::SESSION_HEADER).expect("session header passes");
    let cookie = r.header("set-cookie").expect("cookie passes");
    assert!(cookie.starts_with(&format!("{}={session}", veeam::SESSION_HEADER)));
    let href = xml(&r, "LogonSession/@Href").expect("LogonSession body passes unchanged");
    assert_eq!(r.header("location"), Some(href.as_str()), "Location from the Href");
    assert!(href.ends_with(&format!("/api/logonSessions/{session}")));
    assert_eq!(xml(&r, "LogonSession/SessionId").as_deref(), Some(session));

    // JSON on Accept: the JSON Href gives the Location.
    let auth = veeam::basic_authorization(veeam::READONLY_USER, veeam::READONLY_PASSWORD);
    let r = env.call(
        "POST",
        "/api/sessionMngr/?v=latest",
        &[("Authorization", &auth), ("Accept", "application/json")],
        b"",
    );
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(r.header("location"), json(&r, "/Href").as_deref());
    assert_eq!(json(&r, "/UserName").as_deref(), Some(veeam::READONLY_USER));
}

#[test]
fn reads_are_200_ok_xml_by_default_and_json_on_accept() {
    let env = Env::start("veeam-200");
    let s = env.admin();
    let r = env.with(&s, "GET", "/api/backups", &[], b"");
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.header("x-upstream-status"), Some("200"));
    assert!(r.header("content-type").unwrap().starts_with("application/xml"));
    assert!(r.text().contains(veeam::BACKUP_ID));
    assert!(r.header("location").is_none());

    let r = env.with(
        &s,
        "GET",
        &format!("/api/backups/{}", veeam::BACKUP_ID),
        &[("Accept", "application/json")],
        b"",
    );
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(json(&r, "/Name").as_deref(), Some(veeam::BACKUP_NAME));

    // The session also works as the cookie Veeam sets.
    let cookie = format!("{}={s}", veeam::SESSION_HEADER);
    let r = env.call(
        "GET",
        &format!("/api/cloud/tenants/{}", veeam::TENANT_ID),
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(xml(&r, "CloudTenant/@Name").as_deref(), Some(veeam::TENANT_NAME));
}

/// Polls a task through the gateway until it is Finished (at most 10 polls).
fn poll_until_finished(env: &Env, session: &str, task_id: &str, accept_json: bool) -> Response {
    let accept: &[(&str, &str)] = if accept_json {
        &[("Accept", "application/json")]
    } else {
        &[]
    };
    for _ in 0..10 {
        let r = env.with(session, "GET", &format!("/api/tasks/{task_id}"), accept, b"");
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"), "{}", r.text());
        let state = if accept_json {
            json(&r, "/State")
        } else {
            xml(&r, "Task/State")
        };
        if state.as_deref() == Some("Finished") {
            return r;
        }
        assert_eq!(state.as_deref(), Some("Running"));
    }
    panic!("task {task_id} did not finish in 10 polls");
}

#[test]
fn edit_202_accepted_gets_location_to_the_task_which_polls_to_finished() {
    let env = Env::start("veeam-202");
    let s = env.admin();
    let tenant = format!("/api/cloud/tenants/{}?action=edit", veeam::TENANT_ID);
    let r = env.with(
        &s,
        "POST",
        &tenant,
        &[("Content-Type", "application/xml")],
        XML_SPEC.as_bytes(),
    );
    assert_eq!((r.status, r.reason.as_str()), (202, "Accepted"), "{}", r.text());
    assert_eq!(r.header("x-upstream-status"), Some("202"));
    let href = xml(&r, "Task/@Href").expect("Task body passes unchanged");
    assert_eq!(
        r.header("location"),
        Some(href.as_str()),
        "202 points to the status monitor"
    );
    assert_eq!(xml(&r, "Task/State").as_deref(), Some("Running"));
    assert_eq!(xml(&r, "Task/Operation").as_deref(), Some("EditCloudTenant"));
    let task = xml(&r, "Task/TaskId").unwrap();
    assert!(href.ends_with(&format!("/api/tasks/{task}")));
    let done = poll_until_finished(&env, &s, &task, false);
    assert_eq!(xml(&done, "Task/Result/@Success").as_deref(), Some("true"));
    let r = env.with(&s, "GET", &format!("/api/cloud/tenants/{}", veeam::TENANT_ID), &[], b"");
    assert_eq!(xml(&r, "CloudTenant/@Name").as_deref(), Some("acme-renamed"));

    // A task that fails (the new name is taken) is still accepted, and its poll is still 200.
    let taken = format!(r#"{{"Name":"{}"}}"#, veeam::OTHER_TENANT_NAME);
    let r = env.with(
        &s,
        "POST",
        &tenant,
        &[("Content-Type", "application/json"), ("Accept", "application/json")],
        taken.as_bytes(),
    );
    assert_eq!((r.status, r.reason.as_str()), (202, "Accepted"), "{}", r.text());
    assert_eq!(r.header("location"), json(&r, "/Href").as_deref(), "JSON Task form");
    let task = json(&r, "/TaskId").unwrap();
    let done = poll_until_finished(&env, &s, &task, true);
    assert_eq!(json(&done, "/Result/Success").as_deref(), Some("false"));
    assert!(json(&done, "/Result/Message").unwrap().contains("already exists"));

    // DELETE is a long action too.
    let r = env.with(
        &s,
        "DELETE",
        &format!("/api/cloud/tenants/{}", veeam::OTHER_TENANT_ID),
        &[],
        b"",
    );
    assert_eq!((r.status, r.reason.as_str()), (202, "Accepted"));
    assert_eq!(xml(&r, "Task/Operation").as_deref(), Some("DeleteCloudTenant"));
    assert_eq!(r.header("location"), xml(&r, "Task/@Href").as_deref());
}

#[test]
fn logoff_204_no_content_and_the_session_is_gone() {
    let env = Env::start("veeam-204");
    let s = env.admin();
    let r = env.with(&s, "DELETE", &format!("/api/logonSessions/{s}"), &[], b"");
    assert_eq!((r.status, r.reason.as_str(), r.body.len()), (204, "No Content", 0));
    assert_eq!(r.header("x-upstream-status"), Some("204"));
    let r = env.with(&s, "GET", "/api/backups", &[], b"");
    veeam_problem(
        &r,
        401,
        "Unauthorized",
        401,
        "The logon session has expired or does not exist.",
    );
}

#[test]
fn malformed_payloads_are_400_bad_request_with_the_message() {
    let env = Env::start("veeam-400");
    let s = env.admin();
    let path = format!("/api/cloud/tenants/{}?action=edit", veeam::TENANT_ID);
    let xml_ct = [("Content-Type", "application/xml")];
    let r = env.with(&s, "POST", &path, &xml_ct, b"");
    veeam_problem(&r, 400, "Bad Request", 400, "Node [root] does not exist.");
    let r = env.with(
        &s,
        "POST",
        &path,
        &xml_ct,
        b"<CloudTenantSpec><Name>x</CloudTenantSpec>",
    );
    veeam_problem(&r, 400, "Bad Request", 400, "There is an error in XML document (1, 1).");
    let r = env.with(&s, "POST", &path, &xml_ct, b"<TenantSpec><Name>x</Name></TenantSpec>");
    veeam_problem(&r, 400, "Bad Request", 400, "Node [CloudTenantSpec] does not exist.");
    let r = env.with(
        &s,
        "POST",
        &path,
        &[("Content-Type", "application/json"), ("Accept", "application/json")],
        b"{\"Name\": ",
    );
    veeam_problem(
        &r,
        400,
        "Bad Request",
        400,
        "Unexpected character encountered while parsing value.",
    );
    let r = env.call("POST", "/api/sessionMngr/?v=v0_9", &[], b"");
    veeam_problem(&r, 400, "Bad Request", 400, "API version [v0_9] is not supported.");
}

#[test]
fn missing_node_500_null_reference_becomes_400_without_the_exception() {
    let env = Env::start("veeam-missing-node");
    let s = env.admin();
    let path = format!("/api/cloud/tenants/{}?action=edit", veeam::TENANT_ID);
    let detail = format!(
        "The request body lacks an element the server requires (the server failed reading it: {})",
        veeam::NULL_REFERENCE
    );
    // XML: the tenant family answers with a prefixed <v:Error>.
    let spec = br#"<CloudTenantSpec xmlns="http://www.veeam.com/ent/v1.0"><Description>no name</Description></CloudTenantSpec>"#;
    let r = env.with(&s, "POST", &path, &[("Content-Type", "application/xml")], spec);
    veeam_problem(&r, 400, "Bad Request", 500, &detail);
    // JSON: camelCase keys.
    let r = env.with(
        &s,
        "POST",
        &path,
        &[("Content-Type", "application/json"), ("Accept", "application/json")],
        br#"{"Description":"no name"}"#,
    );
    veeam_problem(&r, 400, "Bad Request", 500, &detail);
}

#[test]
fn null_reference_on_a_read_stays_500_without_the_stack_trace() {
    let env = Env::start("veeam-500");
    let s = env.admin();
    let path = format!("/api/backups/{}", veeam::ORPHANED_BACKUP_ID);
    let r = env.with(&s, "GET", &path, &[], b"");
    veeam_problem(&r, 500, "Internal Server Error", 500, veeam::NULL_REFERENCE);
    let r = env.with(&s, "GET", &path, &[("Accept", "application/json")], b"");
    veeam_problem(&r, 500, "Internal Server Error", 500, veeam::NULL_REFERENCE);
    // A client preferring XML gets problem+xml, equally clean.
    let r = env.with(&s, "GET", &path, &[("Accept", "application/xml")], b"");
    assert_eq!((r.status, r.reason.as_str()), (500, "Internal Server Error"));
    assert_eq!(r.header("content-type"), Some("application/problem+xml"));
    assert_eq!(xml(&r, "problem/status").as_deref(), Some("500"));
    assert_eq!(xml(&r, "problem/detail").as_deref(), Some(veeam::NULL_REFERENCE));
    assert::no_leak(&r.text(), VEEAM);
}

#[test]
fn unauthenticated_401_gets_a_challenge() {
    let env = Env::start("veeam-401");
    let r = env.call("GET", "/api/backups", &[], b"");
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    veeam_problem(
        &r,
        401,
        "Unauthorized",
        401,
        "Authentication required: the [X-RestSvcSessionId] header is missing. Log on at /api/sessionMngr/ first.",
    );
    let r = env.logon_response(veeam::ADMIN_USER, "wrong");
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    veeam_problem(
        &r,
        401,
        "Unauthorized",
        401,
        "Logon failed: the user name or password is incorrect.",
    );
    let r = env.call(
        "POST",
        "/api/sessionMngr/?v=latest",
        &[("Authorization", "Basic %%%")],
        b"",
    );
    veeam_problem(
        &r,
        401,
        "Unauthorized",
        401,
        "Authorization header is missing or malformed.",
    );
}

#[test]
fn read_only_user_write_is_403_forbidden() {
    let env = Env::start("veeam-403");
    let s = env.logon(veeam::READONLY_USER, veeam::READONLY_PASSWORD);
    let detail = "Access denied: user [auditor] does not have sufficient privileges to perform this operation.";
    let r = env.with(
        &s,
        "POST",
        &format!("/api/cloud/tenants/{}?action=edit", veeam::TENANT_ID),
        &[("Content-Type", "application/xml")],
        XML_SPEC.as_bytes(),
    );
    veeam_problem(&r, 403, "Forbidden", 403, detail);
    let r = env.with(
        &s,
        "DELETE",
        &format!("/api/cloud/tenants/{}", veeam::TENANT_ID),
        &[("Accept", "application/json")],
        b"",
    );
    veeam_problem(&r, 403, "Forbidden", 403, detail);
    // Reading is fine.
    let r = env.with(&s, "GET", "/api/backups", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn unknown_resources_are_404_not_found() {
    let env = Env::start("veeam-404");
    let s = env.admin();
    let r = env.with(&s, "GET", "/api/backups/no-such-backup", &[], b"");
    veeam_problem(
        &r,
        404,
        "Not Found",
        404,
        "Backup with id [no-such-backup] was not found.",
    );
    let r = env.with(&s, "GET", "/api/tasks/task-99", &[("Accept", "application/json")], b"");
    veeam_problem(
        &r,
        404,
        "Not Found",
        404,
        "Resource [/api/tasks/task-99] was not found.",
    );
    let r = env.with(&s, "GET", "/api/cloud/tenants/nope", &[], b"");
    veeam_problem(
        &r,
        404,
        "Not Found",
        404,
        "Resource [/api/cloud/tenants/nope] was not found.",
    );
}

#[test]
fn method_not_allowed_405_always_carries_allow() {
    let env = Env::start("veeam-405");
    let s = env.admin();
    // Veeam omits Allow: the profile supplies it.
    let path = format!("/api/backups/{}", veeam::BACKUP_ID);
    let r = env.with(&s, "PUT", &path, &[("Content-Type", "application/xml")], b"<Backup/>");
    assert_eq!(r.header("allow"), Some("GET"));
    veeam_problem(
        &r,
        405,
        "Method Not Allowed",
        405,
        &format!("The method [PUT] is not allowed for the resource [{path}]."),
    );
    // Veeam's own Allow is kept, not replaced.
    let r = env.with(
        &s,
        "PUT",
        &format!("/api/cloud/tenants/{}", veeam::TENANT_ID),
        &[("Content-Type", "application/xml")],
        XML_SPEC.as_bytes(),
    );
    assert_eq!(r.headers_named("allow"), vec!["GET, POST, DELETE"]);
    assert_eq!((r.status, r.reason.as_str()), (405, "Method Not Allowed"));
    assert::no_leak(&r.text(), VEEAM);
    let r = env.call("GET", "/api/sessionMngr/", &[], b"");
    assert_eq!(r.headers_named("allow"), vec!["POST"]);
    assert_eq!(r.status, 405);
}

#[test]
fn unimplemented_action_is_501_not_implemented() {
    let env = Env::start("veeam-501");
    let s = env.admin();
    let r = env.with(
        &s,
        "POST",
        &format!("/api/cloud/tenants/{}?action=migrate", veeam::TENANT_ID),
        &[("Content-Type", "application/xml")],
        XML_SPEC.as_bytes(),
    );
    veeam_problem(
        &r,
        501,
        "Not Implemented",
        501,
        "The action [migrate] is not implemented for cloud tenants.",
    );
}

#[test]
fn session_limit_is_503_until_a_session_is_logged_off() {
    let env = Env::start("veeam-503");
    let sessions: Vec<String> = (0..veeam::MAX_SESSIONS).map(|_| env.admin()).collect();
    let r = env.logon_response(veeam::ADMIN_USER, veeam::ADMIN_PASSWORD);
    veeam_problem(
        &r,
        503,
        "Service Unavailable",
        503,
        &format!(
            "The maximum number of concurrent sessions ({}) has been reached. Log off an existing session and try again.",
            veeam::MAX_SESSIONS
        ),
    );
    let r = env.with(
        &sessions[0],
        "DELETE",
        &format!("/api/logonSessions/{}", sessions[0]),
        &[],
        b"",
    );
    assert_eq!(r.status, 204);
    let r = env.logon_response(veeam::ADMIN_USER, veeam::ADMIN_PASSWORD);
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
}

#[test]
fn without_the_gateway_the_emulator_speaks_raw_veeam() {
    let env = Env::start("veeam-raw");
    let port = env.emu.port;
    let auth = veeam::basic_authorization(veeam::ADMIN_USER, veeam::ADMIN_PASSWORD);
    let r = request(
        port,
        "POST",
        "/api/sessionMngr/?v=latest",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
    assert!(r.header("location").is_none(), "Veeam sends no Location");
    let s = r.header(veeam::SESSION_HEADER).unwrap().to_owned();
    let spec = br#"<CloudTenantSpec><Description>no name</Description></CloudTenantSpec>"#;
    let r = request(
        port,
        "POST",
        &format!("/api/cloud/tenants/{}?action=edit", veeam::TENANT_ID),
        &[(veeam::SESSION_HEADER, &s), ("Content-Type", "application/xml")],
        spec,
    );
    assert_eq!((r.status, r.reason.as_str()), (500, "InternalServerError"));
    assert!(r
        .text()
        .starts_with(r#"<?xml version="1.0" encoding="utf-8"?><v:Error "#));
    assert!(r.text().contains("<v:StackTrace>   at Veeam.Backup."));
    assert!(r.text().contains("System.NullReferenceException"));
    let r = request(
        port,
        "PUT",
        &format!("/api/backups/{}", veeam::BACKUP_ID),
        &[(veeam::SESSION_HEADER, &s)],
        b"",
    );
    assert_eq!(
        (r.status, r.reason.as_str(), r.header("allow")),
        (405, "MethodNotAllowed", None)
    );
    let r = request(
        port,
        "GET",
        "/api/backups/x",
        &[(veeam::SESSION_HEADER, &s), ("Accept", "application/json")],
        b"",
    );
    assert_eq!((r.status, r.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        r.text(),
        r#"{"FirstChanceExceptionMessage":null,"Message":"Backup with id [x] was not found.","StackTrace":null,"Status":null,"StatusCode":404}"#
    );
    let r = request(port, "GET", "/api/backups", &[], b"");
    assert_eq!(
        (r.status, r.reason.as_str(), r.header("www-authenticate")),
        (401, "Unauthorized", None)
    );
}
