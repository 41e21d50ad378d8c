//! ForgeRock / Ping Common REST end to end: client -> gateway (rules/forgerock-crest.yaml) -> the
//! CREST emulator and back, over loopback. Every row of the CREST status table (seed 004) and
//! every correction of the profile, triggered by real requests.

mod common;

use common::vendor::{vendor_gateway, EmulatorServer};
use common::{assert, request, Gateway, Response};
use serde_json::json;
use statusgate_emulators::crest::{self, Crest};

const ADMIN: [(&str, &str); 2] = [
    ("X-OpenIDM-Username", crest::ADMIN_USERNAME),
    ("X-OpenIDM-Password", crest::ADMIN_PASSWORD),
];
const READER: [(&str, &str); 2] = [
    ("X-OpenIDM-Username", crest::READER_USERNAME),
    ("X-OpenIDM-Password", crest::READER_PASSWORD),
];
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// The gateway in front of a fresh emulator (dropped first, then the emulator).
struct Env {
    gw: Gateway,
    emu: EmulatorServer,
}

impl Env {
    fn start(route: &str) -> Env {
        let emu = EmulatorServer::start(Crest::new());
        let gw = vendor_gateway(route, "crest", &emu, "forgerock-crest.yaml", "");
        Env { gw, emu }
    }

    /// A request as `auth`, plus `extra` headers; `path` is below `/openidm/`.
    fn call(&self, auth: &[(&str, &str)], method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Response {
        let mut headers = auth.to_vec();
        headers.extend_from_slice(extra);
        request(self.gw.port, method, &format!("/crest/openidm/{path}"), &headers, body)
    }

    fn admin(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Response {
        self.call(&ADMIN, method, path, extra, body)
    }
}

fn user_path(id: &str) -> String {
    format!("managed/user/{id}")
}

fn valid_user(name: &str) -> Vec<u8> {
    json!({"userName": name, "givenName": "Kirsten", "sn": "Vaughan",
           "mail": format!("{name}@example.com"), "password": "Secr3t-passw0rd"})
    .to_string()
    .into_bytes()
}

/// CREST's own error members and namespace: none may reach the client (Java internals are in
/// `assert::INTERNALS`).
const CREST: &[&str] = &["\"reason\"", "\"code\"", "org.forgerock", "\"cause\""];

/// `assert::upstream_problem` with this `detail`, and nothing of CREST's shape leaked.
fn crest_problem(r: &Response, status: u16, reason: &str, upstream: u16, detail: &str) -> serde_json::Value {
    let p = assert::upstream_problem(r, status, reason, upstream);
    assert_eq!(p["detail"], detail);
    assert::no_leak(&r.text(), CREST);
    p
}

/// `crest_problem` for a status CREST sent as is: type about:blank, the reason as title.
fn plain_crest_problem(r: &Response, status: u16, reason: &str, detail: &str) {
    let p = crest_problem(r, status, reason, status, detail);
    assert_eq!(p["type"], "about:blank");
    assert_eq!(p["title"], reason);
}

#[test]
fn create_201_then_read_200_then_304_with_the_etag() {
    let env = Env::start("crest-create-read");
    let r = env.admin("POST", "managed/user?_action=create", &[JSON], &valid_user("kvaughan"));
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"), "{}", r.text());
    assert_eq!(r.header("x-upstream-status"), Some("201"));
    let created = r.json();
    let id = created["_id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/openidm/managed/user/{id}").as_str())
    );
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(created["_rev"], "1");
    assert!(created.get("password").is_none());

    let r = env.admin("GET", &user_path(&id), &[], b"");
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.json()["userName"], "kvaughan");

    let r = env.admin("GET", &user_path(&id), &[("If-None-Match", "\"1\"")], b"");
    assert_eq!((r.status, r.reason.as_str()), (304, "Not Modified"));
    assert_eq!(r.header("etag"), Some("\"1\""), "304 keeps its ETag");
    assert_eq!(r.header("x-upstream-status"), Some("304"));
    assert!(
        r.body.is_empty() && r.header("content-type").is_none(),
        "304 has no body"
    );

    // A query is a 200 too.
    let r = env.admin("GET", "managed/user?_queryFilter=true", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["resultCount"], 3);

    // PUT of a new id with If-None-Match: * creates.
    let r = env.admin(
        "PUT",
        &user_path("new-by-put"),
        &[JSON, ("If-None-Match", "*")],
        &valid_user("put-user"),
    );
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"), "{}", r.text());
    assert_eq!(r.header("location"), Some("/openidm/managed/user/new-by-put"));
}

#[test]
fn revisions_200_412_428_and_delete() {
    let env = Env::start("crest-revisions");
    let path = user_path(crest::USER_ID);
    let change = br#"{"givenName":"Babs"}"#;
    // PUT of an existing user without If-Match: 428.
    let r = env.admin("PUT", &path, &[JSON], change);
    plain_crest_problem(
        &r,
        428,
        "Precondition Required",
        &format!(
            "The resource managed/user/{} requires a version (If-Match), but none was supplied",
            crest::USER_ID
        ),
    );
    // With the current revision: 200 and a new ETag.
    let r = env.admin("PUT", &path, &[JSON, ("If-Match", "\"1\"")], change);
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"), "{}", r.text());
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(r.json()["givenName"], "Babs");
    // With the old one: 412.
    let r = env.admin("PUT", &path, &[JSON, ("If-Match", "\"1\"")], change);
    plain_crest_problem(
        &r,
        412,
        "Precondition Failed",
        "Update rejected as current Object revision 2 is different than expected by caller (1)",
    );
    assert!(r.header("cache-control").is_some(), "non-representation headers pass");
    // DELETE: 428 without If-Match, 412 stale, 200 with the deleted resource, then 404.
    let r = env.admin("DELETE", &path, &[], b"");
    assert_eq!((r.status, r.reason.as_str()), (428, "Precondition Required"));
    let r = env.admin("DELETE", &path, &[("If-Match", "\"1\"")], b"");
    assert_eq!((r.status, r.reason.as_str()), (412, "Precondition Failed"));
    let r = env.admin("DELETE", &path, &[("If-Match", "\"2\"")], b"");
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.json()["_id"], crest::USER_ID);
    let r = env.admin("GET", &path, &[], b"");
    plain_crest_problem(
        &r,
        404,
        "Not Found",
        &format!("Resource 'managed/user/{}' not found", crest::USER_ID),
    );
}

#[test]
fn action_without_content_is_204() {
    let env = Env::start("crest-204");
    let r = env.admin(
        "POST",
        &format!("{}?_action=triggerSyncCheck", user_path(crest::USER_ID)),
        &[JSON],
        b"{}",
    );
    assert_eq!((r.status, r.reason.as_str(), r.body.len()), (204, "No Content", 0));
    assert_eq!(r.header("x-upstream-status"), Some("204"));
}

#[test]
fn malformed_json_is_400() {
    let env = Env::start("crest-400");
    let detail = "The request could not be processed because the provided content is not valid JSON";
    let r = env.admin("POST", "managed/user?_action=create", &[JSON], b"{\"userName\": ");
    plain_crest_problem(&r, 400, "Bad Request", detail);
    let r = env.admin("POST", "managed/user?_action=create", &[JSON], b"[1, 2]");
    plain_crest_problem(&r, 400, "Bad Request", detail);
    let r = env.admin("GET", &user_path(crest::USER_ID), &[("Accept-API-Version", "v2")], b"");
    plain_crest_problem(&r, 400, "Bad Request", "Malformed Accept-API-Version header: 'v2'");
}

#[test]
fn unauthenticated_401_gets_a_challenge() {
    let env = Env::start("crest-401");
    let r = env.call(&[], "GET", &user_path(crest::USER_ID), &[], b"");
    assert_eq!(r.header("www-authenticate"), Some(r#"Basic realm="openidm""#));
    plain_crest_problem(&r, 401, "Unauthorized", "Access Denied");
    let wrong = [
        ("X-OpenIDM-Username", crest::ADMIN_USERNAME),
        ("X-OpenIDM-Password", "nope"),
    ];
    let r = env.call(&wrong, "GET", &user_path(crest::USER_ID), &[], b"");
    assert_eq!(r.header("www-authenticate"), Some(r#"Basic realm="openidm""#));
    plain_crest_problem(&r, 401, "Unauthorized", "Access Denied");
}

#[test]
fn permission_failure_stays_403_without_policy_members() {
    let env = Env::start("crest-403");
    let r = env.call(
        &READER,
        "POST",
        "managed/user?_action=create",
        &[JSON],
        &valid_user("x1"),
    );
    plain_crest_problem(&r, 403, "Forbidden", "Access denied");
    assert!(r.json().get("failed_policy_requirements").is_none());
    let r = env.call(
        &READER,
        "DELETE",
        &user_path(crest::USER_ID),
        &[("If-Match", "\"1\"")],
        b"",
    );
    plain_crest_problem(&r, 403, "Forbidden", "Access denied");
    // The reader may read.
    let r = env.call(&READER, "GET", &user_path(crest::USER_ID), &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn policy_failure_403_becomes_422_with_the_failed_requirements() {
    let env = Env::start("crest-422");
    let short = json!({"userName": "shorty", "mail": "s@example.com", "password": "abc"}).to_string();
    let r = env.admin("POST", "managed/user?_action=create", &[JSON], short.as_bytes());
    let p = plain_crest_problem_422(&r);
    assert_eq!(
        p["failed_policy_requirements"],
        json!([{"property": "password", "policyRequirements": [
            {"policyRequirement": "MIN_LENGTH", "params": {"minLength": 8}}
        ]}])
    );
    // Missing mail and a short password: both kept, in order.
    let r = env.admin(
        "POST",
        "managed/user?_action=create",
        &[JSON],
        br#"{"userName":"nomail","password":"abc"}"#,
    );
    let p = plain_crest_problem_422(&r);
    let props: Vec<&str> = p["failed_policy_requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["property"].as_str().unwrap())
        .collect();
    assert_eq!(props, ["mail", "password"]);
    assert_eq!(
        p["failed_policy_requirements"][0]["policyRequirements"][0]["policyRequirement"],
        "REQUIRED"
    );
}

fn plain_crest_problem_422(r: &Response) -> serde_json::Value {
    let p = crest_problem(r, 422, "Unprocessable Content", 403, "Policy validation failed");
    assert_eq!(p["type"], "about:blank");
    assert_eq!(p["title"], "Unprocessable Content");
    p
}

#[test]
fn unknown_id_is_404() {
    let env = Env::start("crest-404");
    let r = env.admin("GET", "managed/user/jdoe", &[], b"");
    plain_crest_problem(&r, 404, "Not Found", "Resource 'managed/user/jdoe' not found");
    let r = env.admin(
        "PUT",
        "managed/user/jdoe",
        &[JSON, ("If-Match", "\"1\"")],
        &valid_user("jdoe"),
    );
    plain_crest_problem(&r, 404, "Not Found", "Resource 'managed/user/jdoe' not found");
}

#[test]
fn method_not_allowed_405_gets_allow() {
    let env = Env::start("crest-405");
    let r = env.admin("DELETE", "managed/user", &[], b"");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    plain_crest_problem(
        &r,
        405,
        "Method Not Allowed",
        "Method DELETE not allowed on collection managed/user",
    );
}

#[test]
fn unsupported_api_version_stays_406_and_says_so() {
    let env = Env::start("crest-406");
    for (header, message) in [
        (
            "protocol=3.0",
            "Unsupported protocol version: 3.0; supported versions are 1.0, 2.0, 2.1",
        ),
        (
            "protocol=2.1,resource=2.0",
            "Requested version \"2.0\" does not match any routes",
        ),
    ] {
        let r = env.admin(
            "GET",
            &user_path(crest::USER_ID),
            &[("Accept-API-Version", header)],
            b"",
        );
        let p = crest_problem(
            &r,
            406,
            "Not Acceptable",
            406,
            &format!("The requested Accept-API-Version is not supported: {message}"),
        );
        assert_eq!(p["type"], "urn:statusgate:problem:unsupported-api-version");
        assert_eq!(p["title"], "Unsupported API Version");
    }
    let r = env.admin(
        "GET",
        &user_path(crest::USER_ID),
        &[("Accept-API-Version", "protocol=2.1,resource=1.0")],
        b"",
    );
    assert_eq!(r.status, 200, "supported versions pass");
}

#[test]
fn duplicate_user_name_is_409() {
    let env = Env::start("crest-409");
    let r = env.admin(
        "POST",
        "managed/user?_action=create",
        &[JSON],
        &valid_user(crest::USER_NAME),
    );
    plain_crest_problem(
        &r,
        409,
        "Conflict",
        &format!(
            "Unable to create or update managed/user: userName '{}' already exists",
            crest::USER_NAME
        ),
    );
}

#[test]
fn expired_resource_is_410() {
    let env = Env::start("crest-410");
    let r = env.admin("GET", &user_path(crest::EXPIRED_USER_ID), &[], b"");
    plain_crest_problem(
        &r,
        410,
        "Gone",
        &format!("Resource 'managed/user/{}' has expired", crest::EXPIRED_USER_ID),
    );
}

#[test]
fn wrong_content_type_is_415() {
    let env = Env::start("crest-415");
    let r = env.admin(
        "POST",
        "managed/user?_action=create",
        &[("Content-Type", "text/plain")],
        b"userName=x",
    );
    plain_crest_problem(
        &r,
        415,
        "Unsupported Media Type",
        "Unsupported media type: text/plain; expected application/json",
    );
}

#[test]
fn repository_failure_is_500_without_the_java_cause() {
    let env = Env::start("crest-500");
    let r = env.admin("GET", &user_path(crest::CORRUPT_USER_ID), &[], b"");
    plain_crest_problem(
        &r,
        500,
        "Internal Server Error",
        &format!(
            "Unable to read object managed/user/{} from the repository",
            crest::CORRUPT_USER_ID
        ),
    );
    assert::no_leak(&r.text(), &["SQLException", "GenericTableHandler"]);
}

#[test]
fn unsupported_action_is_501() {
    let env = Env::start("crest-501");
    let r = env.admin("POST", "managed/user?_action=frobnicate", &[JSON], b"{}");
    plain_crest_problem(&r, 501, "Not Implemented", "Action 'frobnicate' not supported");
    let r = env.admin("PATCH", &user_path(crest::USER_ID), &[JSON], b"[]");
    plain_crest_problem(
        &r,
        501,
        "Not Implemented",
        "Patch operations are not supported by managed/user",
    );
}

#[test]
fn maintenance_mode_is_503_until_disabled() {
    let env = Env::start("crest-503");
    let r = env.admin("POST", "maintenance?_action=enable", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["maintenanceEnabled"], true);
    let r = env.admin("GET", &user_path(crest::USER_ID), &[], b"");
    plain_crest_problem(
        &r,
        503,
        "Service Unavailable",
        &format!(
            "Unable to process request to managed/user/{}: IDM is in maintenance mode.",
            crest::USER_ID
        ),
    );
    let r = env.admin("POST", "maintenance?_action=disable", &[], b"");
    assert_eq!(r.json()["maintenanceEnabled"], false);
    let r = env.admin("GET", &user_path(crest::USER_ID), &[], b"");
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
}

#[test]
fn a_request_timeout_behind_crest_408_is_504_with_the_vendor_code() {
    let env = Env::start("crest-408");
    let path = format!("system/{}/account/a1", crest::UNREACHABLE_SYSTEM);
    let direct = request(env.emu.port, "GET", &format!("/openidm/{path}"), &ADMIN, b"");
    assert_eq!((direct.status, direct.reason.as_str()), (408, "Request Time-out"));
    let r = env.admin("GET", &path, &[], b"");
    let p = crest_problem(
        &r,
        504,
        "Gateway Timeout",
        408,
        "Read operation on system/hrdb/account timed out after 10000 ms",
    );
    assert_eq!(p["title"], "Gateway Timeout");
    assert_eq!(p["vendor_code"], "408");
}

#[test]
fn an_uncategorized_server_code_is_500_with_the_vendor_code_not_502() {
    let env = Env::start("crest-550");
    let path = format!("endpoint/{}", crest::FAILING_ENDPOINT);
    let direct = request(env.emu.port, "GET", &format!("/openidm/{path}"), &ADMIN, b"");
    assert_eq!(direct.status, crest::UNCATEGORIZED_CODE);
    assert_eq!(direct.json()["reason"], "Resource Exception");
    let r = env.admin("GET", &path, &[], b"");
    let p = crest_problem(
        &r,
        500,
        "Internal Server Error",
        crest::UNCATEGORIZED_CODE,
        "Unable to export the payroll: the ledger rejected batch 2026-11",
    );
    assert_eq!(p["type"], "about:blank");
    assert_eq!(p["title"], "Internal Server Error");
    assert_eq!(p["vendor_code"], crest::UNCATEGORIZED_CODE.to_string());
    assert::no_leak(&r.text(), &["payrollExport.js"]);
}

#[test]
fn without_the_gateway_the_emulator_speaks_raw_crest() {
    let env = Env::start("crest-raw");
    let port = env.emu.port;
    let mut headers = ADMIN.to_vec();
    headers.push(JSON);
    let r = request(
        port,
        "POST",
        "/openidm/managed/user?_action=create",
        &headers,
        br#"{"userName":"shorty","mail":"s@example.com","password":"abc"}"#,
    );
    assert_eq!((r.status, r.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        r.text(),
        r#"{"code":403,"reason":"Forbidden","message":"Policy validation failed","detail":{"result":false,"failedPolicyRequirements":[{"property":"password","policyRequirements":[{"policyRequirement":"MIN_LENGTH","params":{"minLength":8}}]}]}}"#
    );
    let r = request(port, "GET", "/openidm/managed/user/jdoe", &ADMIN, b"");
    assert_eq!(
        r.text(),
        r#"{"code":404,"reason":"Not Found","message":"Resource 'managed/user/jdoe' not found"}"#
    );
    let r = request(port, "DELETE", "/openidm/managed/user", &ADMIN, b"");
    assert_eq!((r.status, r.header("allow")), (405, None));
    let r = request(port, "GET", "/openidm/managed/user/jdoe", &[], b"");
    assert_eq!((r.status, r.header("www-authenticate")), (401, None));
}
