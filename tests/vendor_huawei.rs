//! Huawei VPCEP end to end: client -> gateway (shipped rules/huawei-vpcep.yaml) -> the stateful
//! emulator and back, over loopback. Every row of the vendor's status table and every correction
//! of the profile is triggered by a real request against the emulator's seeded state.

mod common;

use common::vendor::{vendor_gateway, EmulatorServer};
use common::{assert, request, Gateway, Response};
use serde_json::Value;
use statusgate_emulators::huawei::{
    self, Huawei, BROKEN_SERVICE_ID, BURST_LIMIT, DEMO_ENDPOINT_ID, DEMO_PROJECT_ID, DEMO_SUBNET_ID, DEMO_TOKEN,
    DEMO_VPC_ID, FAILED_SERVICE_ID, FULL_SUBNET_ID, GARBLED_SERVICE_ID, OTHER_TOKEN, OVERLOADED_SERVICE_ID, QUOTA,
    SERVICE_ID, UNREACHABLE_SERVICE_ID,
};

const AUTH: (&str, &str) = ("X-Auth-Token", DEMO_TOKEN);
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A fresh emulator (fresh state) behind a gateway whose one route is named `route`.
fn setup(route: &str) -> (Gateway, EmulatorServer) {
    let emu = EmulatorServer::start(Huawei::new());
    let gw = vendor_gateway(route, "huawei", &emu, "huawei-vpcep.yaml", "");
    (gw, emu)
}

fn endpoints() -> String {
    format!("/huawei/v1/{DEMO_PROJECT_ID}/vpc-endpoints")
}

fn endpoint(id: &str) -> String {
    format!("{}/{id}", endpoints())
}

fn create_body(service: &str, vpc: &str, subnet: &str) -> String {
    format!(r#"{{"endpoint_service_id":"{service}","vpc_id":"{vpc}","subnet_id":"{subnet}"}}"#)
}

fn create(gw: &Gateway, service: &str, subnet: &str) -> Response {
    let body = create_body(service, DEMO_VPC_ID, subnet);
    request(gw.port, "POST", &endpoints(), &[AUTH, JSON], body.as_bytes())
}

/// Asserts a canonical problem response and returns its body.
fn problem(r: &Response, status: u16, reason: &str, upstream: u16, vendor_code: &str) -> Value {
    let p = assert::upstream_problem(r, status, reason, upstream);
    assert_eq!(p["title"], reason);
    assert_eq!(p["vendor_code"], vendor_code);
    let vendor_id = r.header("x-vendor-request-id").expect("Huawei's X-Request-Id is kept");
    assert_eq!(p["vendor_request_id"], vendor_id);
    assert_ne!(Some(vendor_id), r.header("x-request-id"));
    assert::no_leak(&r.text(), &["error_code", "error_msg"]);
    p
}

#[test]
fn reads_pass_200_untouched() {
    let (gw, _emu) = setup("hw-200");
    let r = request(gw.port, "GET", &endpoints(), &[AUTH], b"");
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.header("x-upstream-status"), Some("200"));
    assert!(r.header("x-vendor-request-id").is_some_and(|v| v.len() == 32));
    let list = r.json();
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["endpoints"][0]["id"], DEMO_ENDPOINT_ID);

    let r = request(gw.port, "GET", &endpoint(DEMO_ENDPOINT_ID), &[AUTH], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "accepted");
    assert!(r.header("location").is_none());

    let r = request(
        gw.port,
        "GET",
        &format!("/huawei/v1/{DEMO_PROJECT_ID}/vpc-endpoint-services/{SERVICE_ID}"),
        &[AUTH],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "available");
}

#[test]
fn create_answered_200_becomes_201_with_a_location_that_resolves() {
    let (gw, _emu) = setup("hw-201");
    let r = create(&gw, SERVICE_ID, DEMO_SUBNET_ID);
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"), "{}", r.text());
    assert_eq!(r.header("x-upstream-status"), Some("200"));
    let created = r.json();
    let id = created["id"].as_str().expect("created endpoint id").to_owned();
    assert_eq!(created["status"], "creating", "the body passes unchanged");
    let location = r.header("location").expect("Location");
    assert_eq!(location, format!("vpc-endpoints/{id}"));

    // The reference is relative to the request URI: it resolves under the route's prefix.
    let resolved = format!("{}/{location}", endpoints().rsplit_once('/').unwrap().0);
    assert_eq!(resolved, endpoint(&id));
    let r = request(gw.port, "GET", &resolved, &[AUTH], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id.as_str());
    assert_eq!(r.json()["status"], "creating");
    let r = request(gw.port, "GET", &resolved, &[AUTH], b"");
    assert_eq!(r.json()["status"], "accepted", "the poll completed provisioning");
}

#[test]
fn put_answers_200_and_delete_204() {
    let (gw, _emu) = setup("hw-204");
    let r = request(
        gw.port,
        "PUT",
        &endpoint(DEMO_ENDPOINT_ID),
        &[AUTH, JSON],
        br#"{"enable_whitelist":true,"whitelist":["10.0.0.0/8"]}"#,
    );
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"), "{}", r.text());
    assert_eq!(r.json()["whitelist"][0], "10.0.0.0/8");
    assert!(r.header("location").is_none(), "only creations get a Location");

    let r = request(gw.port, "DELETE", &endpoint(DEMO_ENDPOINT_ID), &[AUTH], b"");
    assert_eq!((r.status, r.reason.as_str()), (204, "No Content"));
    assert_eq!(r.header("x-upstream-status"), Some("204"));
    assert!(r.body.is_empty());

    let r = request(gw.port, "GET", &endpoint(DEMO_ENDPOINT_ID), &[AUTH], b"");
    let p = problem(&r, 404, "Not Found", 404, "EndPoint.0005");
    assert_eq!(p["detail"], "The requested resource does not exist.");
}

#[test]
fn changing_an_endpoint_still_creating_is_409() {
    let (gw, _emu) = setup("hw-409");
    let id = create(&gw, SERVICE_ID, DEMO_SUBNET_ID).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = request(gw.port, "DELETE", &endpoint(&id), &[AUTH], b"");
    let p = problem(&r, 409, "Conflict", 409, "EndPoint.2050");
    assert!(p["detail"].as_str().unwrap().contains("being created"));
    let r = request(
        gw.port,
        "PUT",
        &endpoint(&id),
        &[AUTH, JSON],
        br#"{"enable_whitelist":false}"#,
    );
    problem(&r, 409, "Conflict", 409, "EndPoint.2050");
    // Once polled, it can go.
    assert_eq!(request(gw.port, "GET", &endpoint(&id), &[AUTH], b"").status, 200);
    assert_eq!(request(gw.port, "DELETE", &endpoint(&id), &[AUTH], b"").status, 204);
}

#[test]
fn client_mistakes_answered_504_become_400() {
    let (gw, _emu) = setup("hw-504-client");
    // No body (EndPoint.0011).
    let r = request(gw.port, "POST", &endpoints(), &[AUTH, JSON], b"");
    let p = problem(&r, 400, "Bad Request", 504, "EndPoint.0011");
    assert_eq!(p["detail"], "request body is null");
    // A body but no Content-Type (EndPoint.0012), on create and on update.
    let body = create_body(SERVICE_ID, DEMO_VPC_ID, DEMO_SUBNET_ID);
    let r = request(gw.port, "POST", &endpoints(), &[AUTH], body.as_bytes());
    let p = problem(&r, 400, "Bad Request", 504, "EndPoint.0012");
    assert_eq!(p["detail"], "request header is null");
    let r = request(
        gw.port,
        "PUT",
        &endpoint(DEMO_ENDPOINT_ID),
        &[AUTH],
        br#"{"enable_whitelist":true}"#,
    );
    problem(&r, 400, "Bad Request", 504, "EndPoint.0012");
}

#[test]
fn a_backend_that_never_answers_stays_504() {
    let (gw, _emu) = setup("hw-504-timeout");
    let r = create(&gw, UNREACHABLE_SERVICE_ID, DEMO_SUBNET_ID);
    let p = problem(&r, 504, "Gateway Timeout", 504, "EndPoint.0013");
    assert_eq!(p["detail"], "timed out");
}

#[test]
fn a_burst_of_creates_becomes_429_with_retry_after() {
    let (gw, _emu) = setup("hw-429");
    // More than BURST_LIMIT creates within one second; on a slow machine the window slides,
    // so keep sending (bounded) until one lands over the limit.
    let mut throttled = None;
    for _ in 0..(BURST_LIMIT * 8) {
        let r = create(&gw, SERVICE_ID, DEMO_SUBNET_ID);
        if r.status == 429 {
            throttled = Some(r);
            break;
        }
    }
    let r = throttled.expect("a burst of creates is throttled");
    assert_eq!(r.header("retry-after"), Some("1"));
    let p = problem(&r, 429, "Too Many Requests", 400, "EndPoint.0022");
    assert_eq!(
        p["detail"],
        "The number of requests exceeded the limit. Please try later."
    );
}

#[test]
fn quota_exceeded_becomes_403() {
    let (gw, _emu) = setup("hw-403-quota");
    // The seeded endpoint counts: QUOTA - 1 creates fit, the next one does not. QUOTA
    // requests stay within the burst limit.
    for i in 1..QUOTA {
        let r = create(&gw, SERVICE_ID, DEMO_SUBNET_ID);
        assert_eq!(r.status, 201, "create {i}: {}", r.text());
    }
    let r = create(&gw, SERVICE_ID, DEMO_SUBNET_ID);
    let p = problem(&r, 403, "Forbidden", 400, "Endpoint.1018");
    assert_eq!(p["detail"], "The number of endpoints exceeds the quota.");
}

#[test]
fn missing_referenced_resources_become_422() {
    let (gw, _emu) = setup("hw-422");
    let body = create_body(SERVICE_ID, "00000000-0000-4000-8000-000000000000", DEMO_SUBNET_ID);
    let r = request(gw.port, "POST", &endpoints(), &[AUTH, JSON], body.as_bytes());
    let p = problem(&r, 422, "Unprocessable Content", 400, "EndPoint.2001");
    assert_eq!(p["detail"], "VPC does not exist.");
    let r = create(&gw, "00000000-0000-4000-8000-0000000000ff", DEMO_SUBNET_ID);
    problem(&r, 422, "Unprocessable Content", 400, "EndPoint.2003");
}

#[test]
fn an_empty_marker_answered_404_becomes_400() {
    let (gw, _emu) = setup("hw-400-marker");
    let r = request(
        gw.port,
        "GET",
        &format!("{}?limit=5&marker=", endpoints()),
        &[AUTH],
        b"",
    );
    let p = problem(&r, 400, "Bad Request", 404, "EndPoint.2030");
    assert_eq!(p["detail"], "markerId is empty");
    // A real marker pages on; an unknown one is the vendor's own 400.
    let id = create(&gw, SERVICE_ID, DEMO_SUBNET_ID).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = request(
        gw.port,
        "GET",
        &format!("{}?limit=1&marker={DEMO_ENDPOINT_ID}", endpoints()),
        &[AUTH],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["endpoints"][0]["id"], id.as_str());
    let r = request(gw.port, "GET", &format!("{}?marker=nope", endpoints()), &[AUTH], b"");
    problem(&r, 400, "Bad Request", 400, "EndPoint.0021");
}

#[test]
fn the_vendors_own_backend_failures_become_500() {
    let (gw, _emu) = setup("hw-500-backend");
    let r = create(&gw, FAILED_SERVICE_ID, DEMO_SUBNET_ID);
    let p = problem(&r, 500, "Internal Server Error", 400, "EndPoint.2022");
    assert_eq!(p["detail"], "Failed to create an endpoint.");
    let r = create(&gw, SERVICE_ID, FULL_SUBNET_ID);
    let p = problem(&r, 500, "Internal Server Error", 400, "EndPoint.3001");
    assert_eq!(p["detail"], "Failed to create a port.");
}

#[test]
fn a_corrupt_record_is_500_system_error() {
    let (gw, _emu) = setup("hw-500");
    let r = create(&gw, BROKEN_SERVICE_ID, DEMO_SUBNET_ID);
    let p = problem(&r, 500, "Internal Server Error", 500, "EndPoint.0001");
    assert_eq!(p["detail"], "System error. Please retry.");
    let r = request(
        gw.port,
        "GET",
        &format!("/huawei/v1/{DEMO_PROJECT_ID}/vpc-endpoint-services/{BROKEN_SERVICE_ID}"),
        &[AUTH],
        b"",
    );
    problem(&r, 500, "Internal Server Error", 500, "EndPoint.0001");
}

#[test]
fn invalid_parameters_stay_400() {
    let (gw, _emu) = setup("hw-400");
    let r = request(gw.port, "POST", &endpoints(), &[AUTH, JSON], b"{not json");
    let p = problem(&r, 400, "Bad Request", 400, "EndPoint.0002");
    assert_eq!(p["detail"], "Parameter error.");
    let r = request(gw.port, "POST", &endpoints(), &[AUTH, JSON], br#"{"vpc_id":42}"#);
    problem(&r, 400, "Bad Request", 400, "EndPoint.0002");
    let r = request(gw.port, "GET", &format!("{}?limit=abc", endpoints()), &[AUTH], b"");
    problem(&r, 400, "Bad Request", 400, "EndPoint.0006");
}

#[test]
fn no_token_is_401_with_a_challenge() {
    let (gw, emu) = setup("hw-401");
    let direct = request(emu.port, "GET", &endpoints().replacen("/huawei", "", 1), &[], b"");
    assert_eq!(direct.status, 401);
    assert!(direct.header("www-authenticate").is_none(), "the gateway adds it");
    for headers in [&[][..], &[("X-Auth-Token", "MIIexpired")][..]] {
        let r = request(gw.port, "GET", &endpoints(), headers, b"");
        let p = problem(&r, 401, "Unauthorized", 401, "EndPoint.0003");
        assert_eq!(
            p["detail"],
            "Authentication failed or authentication information is invalid."
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Token realm="huaweicloud-iam", header="X-Auth-Token""#)
        );
    }
}

#[test]
fn another_projects_token_is_403() {
    let (gw, _emu) = setup("hw-403");
    let r = request(gw.port, "GET", &endpoints(), &[("X-Auth-Token", OTHER_TOKEN)], b"");
    problem(&r, 403, "Forbidden", 403, "EndPoint.0004");
}

#[test]
fn unknown_resources_are_404() {
    let (gw, _emu) = setup("hw-404");
    let r = request(
        gw.port,
        "GET",
        &endpoint("4f0a8e2c-0000-4000-8000-000000000000"),
        &[AUTH],
        b"",
    );
    problem(&r, 404, "Not Found", 404, "EndPoint.0005");
    // A path the API does not define: the API gateway answers, its request id from the body.
    let r = request(
        gw.port,
        "GET",
        &format!("/huawei/v1/{DEMO_PROJECT_ID}/vpcs"),
        &[AUTH],
        b"",
    );
    let p = problem(&r, 404, "Not Found", 404, "APIGW.0101");
    assert!(p["detail"].as_str().unwrap().contains("does not exist"));
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let (gw, emu) = setup("hw-405");
    let direct = request(
        emu.port,
        "PUT",
        &endpoints().replacen("/huawei", "", 1),
        &[AUTH, JSON],
        b"{}",
    );
    assert_eq!(direct.status, 405);
    assert!(direct.header("allow").is_none(), "the gateway adds it");
    let services = format!("/huawei/v1/{DEMO_PROJECT_ID}/vpc-endpoint-services");
    for (method, path, allow) in [
        ("PUT", endpoints(), "GET, HEAD, POST"),
        ("POST", endpoint(DEMO_ENDPOINT_ID), "GET, HEAD, PUT, DELETE"),
        ("DELETE", services, "GET, HEAD"),
    ] {
        let r = request(gw.port, method, &path, &[AUTH, JSON], b"{}");
        let p = problem(&r, 405, "Method Not Allowed", 405, "APIGW.0105");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(p["detail"], "Method not allowed.");
    }
}

#[test]
fn an_accept_without_json_is_406() {
    let (gw, _emu) = setup("hw-406");
    let r = request(gw.port, "GET", &endpoints(), &[AUTH, ("Accept", "text/csv")], b"");
    problem(&r, 406, "Not Acceptable", 406, "EndPoint.0024");
    // The problem itself follows the client's Accept where it can.
    let r = request(
        gw.port,
        "GET",
        &endpoints(),
        &[AUTH, ("Accept", "application/xml")],
        b"",
    );
    assert_eq!(r.status, 406);
    assert_eq!(r.header("content-type"), Some("application/problem+xml"));
    let text = r.text();
    assert!(text.contains("<status>406</status>"), "{text}");
    assert!(text.contains("<vendor_code>EndPoint.0024</vendor_code>"), "{text}");
}

#[test]
fn an_unauthenticated_proxy_hop_407_becomes_502() {
    let (gw, _emu) = setup("hw-407");
    // The gateway never forwards Proxy-Authorization (hop-by-hop), so a client's own does not help.
    for headers in [
        &[AUTH, ("Via", "1.1 squid.corp.example")][..],
        &[
            AUTH,
            ("Via", "1.1 squid"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ][..],
    ] {
        let r = request(gw.port, "GET", &endpoints(), headers, b"");
        let p = problem(&r, 502, "Bad Gateway", 407, "APIGW.0312");
        assert!(r.header("proxy-authenticate").is_none(), "hop-by-hop challenge dropped");
        assert!(p["detail"]
            .as_str()
            .unwrap()
            .starts_with("Proxy authentication required"));
    }
}

#[test]
fn a_stale_signature_date_408_becomes_504() {
    let (gw, _emu) = setup("hw-408");
    let stale = huawei::sdk_date(-3600);
    let r = request(gw.port, "GET", &endpoints(), &[AUTH, ("X-Sdk-Date", &stale)], b"");
    let p = problem(&r, 504, "Gateway Timeout", 408, "APIGW.0306");
    assert_eq!(p["detail"], "Request timed out: X-Sdk-Date is out of range.");
    let fresh = huawei::sdk_date(0);
    let r = request(gw.port, "GET", &endpoints(), &[AUTH, ("X-Sdk-Date", &fresh)], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn an_unknown_method_is_501() {
    let (gw, _emu) = setup("hw-501");
    let r = request(gw.port, "PROPFIND", &endpoints(), &[AUTH], b"");
    let p = problem(&r, 501, "Not Implemented", 501, "APIGW.0106");
    assert_eq!(p["detail"], "Method not implemented.");
}

#[test]
fn backend_garbage_is_502_and_load_shedding_503() {
    let (gw, _emu) = setup("hw-502-503");
    let r = create(&gw, GARBLED_SERVICE_ID, DEMO_SUBNET_ID);
    problem(&r, 502, "Bad Gateway", 502, "EndPoint.0025");
    let r = create(&gw, OVERLOADED_SERVICE_ID, DEMO_SUBNET_ID);
    let p = problem(&r, 503, "Service Unavailable", 503, "EndPoint.0027");
    assert_eq!(p["detail"], "The endpoint service is temporarily unavailable.");
}
