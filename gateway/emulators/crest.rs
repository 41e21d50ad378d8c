//! ForgeRock / Ping Common REST (CREST) as served by IDM at `/openidm/`: a small stateful
//! emulator of `managed/user` with revisions (`_rev` / ETag), header authentication
//! (`X-OpenIDM-Username` / `X-OpenIDM-Password`), `Accept-API-Version` checks, password and mail
//! policies, and maintenance mode. Errors are `{"code":404,"reason":"Not Found","message":".."}`
//! with an optional `detail` (failedPolicyRequirements for a policy failure, a `cause` for a
//! repository failure). Standard reason phrases.
//!
//! Every status of the CREST table (seed 004), from real requests (`{..}` are the `pub const`s):
//!
//! | Status | Trigger |
//! |---|---|
//! | 200 | `GET /openidm/managed/user/{USER_ID}` (ETag), `GET /openidm/managed/user?_queryFilter=true`, `PUT` with the current `If-Match`, `DELETE` with the current `If-Match` (the deleted resource) |
//! | 201 | `POST /openidm/managed/user?_action=create` with a valid user (Location, ETag); `PUT` of a new id with `If-None-Match: *` |
//! | 204 | `POST /openidm/managed/user/{id}?_action=triggerSyncCheck` |
//! | 304 | `GET /openidm/managed/user/{id}` with `If-None-Match` equal to its revision (ETag kept, no body) |
//! | 400 | a create/PUT body that is not a JSON object; POST on the collection without `_action`; a malformed `Accept-API-Version` |
//! | 401 | no `X-OpenIDM-Username`/`X-OpenIDM-Password`, or wrong ones |
//! | 403 | a write by `{READER_USERNAME}` (plain, no detail); a policy failure: password shorter than 8, `mail` or `userName` missing (`detail.failedPolicyRequirements`) |
//! | 404 | an unknown id (`Resource 'managed/user/jdoe' not found`); a PUT with `If-Match` to an unknown id |
//! | 405 | `PUT`/`PATCH`/`DELETE` on the collection; a method outside CREST (e.g. `TRACE`, `OPTIONS`) |
//! | 406 | `Accept-API-Version` asking for a protocol other than 1.0/2.0/2.1 or a resource version other than 1.x |
//! | 409 | create or rename to a `userName` another user has |
//! | 410 | any operation on `{EXPIRED_USER_ID}` (an expired resource) |
//! | 412 | `PUT`/`DELETE` with a stale `If-Match` |
//! | 415 | create/PUT with a `Content-Type` other than `application/json` |
//! | 428 | `PUT`/`DELETE` of an existing user without `If-Match` |
//! | 500 | `GET /openidm/managed/user/{CORRUPT_USER_ID}` (its repository row cannot be read) |
//! | 501 | an unsupported action (`?_action=frobnicate`) on the collection or an instance; `PATCH` of an instance (not supported by this provider) |
//! | 503 | every `managed/` request while maintenance mode is on: `POST /openidm/maintenance?_action=enable` (admin), `?_action=disable` ends it |
//!
//! Beyond the table, codes a CREST `ResourceException` may carry (the HTTP adapter sends the
//! exception's code as the status):
//!
//! | Status | Trigger |
//! |---|---|
//! | 408 `Request Time-out` (`RetryableException`) | `GET /openidm/system/{UNREACHABLE_SYSTEM}/account/{any}`: the connector's remote system does not answer in time |
//! | 550 `Resource Exception` (`UncategorizedException`) | `GET /openidm/endpoint/{FAILING_ENDPOINT}`: the custom endpoint's script throws `{code: 550}` |

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{json, Map, Value};

use super::{EmuRequest, EmuResponse, Emulator};

pub const ADMIN_USERNAME: &str = "openidm-admin";
pub const ADMIN_PASSWORD: &str = "openidm-admin";
/// A principal that may read managed users but not write them.
pub const READER_USERNAME: &str = "auditor";
pub const READER_PASSWORD: &str = "auditor-pw";
pub const USER_ID: &str = "3f1c2b4a-0001-4d6e-8f70-a1b2c3d4e5f6";
pub const USER_NAME: &str = "bjensen";
/// Another user (for 409 on rename).
pub const OTHER_USER_ID: &str = "3f1c2b4a-0002-4d6e-8f70-a1b2c3d4e5f6";
pub const OTHER_USER_NAME: &str = "scarter";
/// A user whose account has expired: 410.
pub const EXPIRED_USER_ID: &str = "3f1c2b4a-0003-4d6e-8f70-a1b2c3d4e5f6";
/// A user whose repository row is unreadable: 500.
pub const CORRUPT_USER_ID: &str = "3f1c2b4a-0004-4d6e-8f70-a1b2c3d4e5f6";
pub const MIN_PASSWORD_LENGTH: usize = 8;
/// A connector whose remote system never answers: reads through it are 408 (CREST's
/// `RetryableException`).
pub const UNREACHABLE_SYSTEM: &str = "hrdb";
/// A custom endpoint whose script fails with a code CREST has no class for (550).
pub const FAILING_ENDPOINT: &str = "payrollExport";
/// The code the failing endpoint's script throws.
pub const UNCATEGORIZED_CODE: u16 = 550;

const COLLECTION: &str = "managed/user";

#[derive(Debug, Clone)]
struct User {
    rev: u64,
    /// The stored object, without `_id`/`_rev`; `password` is never returned.
    fields: Map<String, Value>,
    expired: bool,
    corrupt: bool,
}

#[derive(Debug)]
struct State {
    users: BTreeMap<String, User>,
    created: u64,
    maintenance: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Principal {
    Admin,
    Reader,
}

/// The emulator; see the module comment for what triggers each status.
pub struct Crest {
    state: Mutex<State>,
}

impl Default for Crest {
    fn default() -> Self {
        Self::new()
    }
}

impl Crest {
    pub fn new() -> Self {
        let user = |name: &str, given: &str, sn: &str, expired: bool, corrupt: bool| User {
            rev: 1,
            fields: match json!({"userName": name, "givenName": given, "sn": sn,
                                 "mail": format!("{name}@example.com"), "accountStatus": "active"})
            {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            expired,
            corrupt,
        };
        let users = BTreeMap::from([
            (USER_ID.to_owned(), user(USER_NAME, "Barbara", "Jensen", false, false)),
            (
                OTHER_USER_ID.to_owned(),
                user(OTHER_USER_NAME, "Sam", "Carter", false, false),
            ),
            (
                EXPIRED_USER_ID.to_owned(),
                user("tmpcontractor", "Tim", "Porary", true, false),
            ),
            (
                CORRUPT_USER_ID.to_owned(),
                user("mangled", "Mal", "Formed", false, true),
            ),
        ]);
        Crest {
            state: Mutex::new(State {
                users,
                created: 0,
                maintenance: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(&self, req: &EmuRequest) -> Result<EmuResponse, Fault> {
        let Some(resource) = req.path.strip_prefix("/openidm/") else {
            return Err(not_found(req.path.trim_start_matches('/')));
        };
        let resource = resource.trim_end_matches('/');
        let principal = authenticate(req)?;
        check_api_version(req)?;
        let segments: Vec<&str> = resource.split('/').collect();
        let mut st = self.lock();
        if segments.first() == Some(&"maintenance") {
            return st.maintenance(req, principal);
        }
        if st.maintenance {
            return Err(Fault::new(
                503,
                format!("Unable to process request to {resource}: IDM is in maintenance mode."),
            ));
        }
        let method = req.method.as_str();
        match (method, segments.as_slice()) {
            ("GET" | "HEAD", ["managed", "user"]) => Ok(st.query(req)),
            ("POST", ["managed", "user"]) => match req.query_param("_action") {
                Some("create") => {
                    writable(principal)?;
                    let fields = json_body(req)?;
                    st.create(None, fields)
                }
                Some(a) => Err(not_supported(a)),
                None => Err(Fault::new(
                    400,
                    "The _action parameter is required for a POST to a collection.",
                )),
            },
            ("PUT" | "PATCH" | "DELETE", ["managed", "user"]) => Err(Fault::new(
                405,
                format!("Method {method} not allowed on collection {COLLECTION}"),
            )),
            (_, ["managed", "user", id]) => st.instance(req, principal, id),
            ("GET" | "HEAD", ["system", UNREACHABLE_SYSTEM, object, _id]) => Err(Fault::new(
                408,
                format!("Read operation on system/{UNREACHABLE_SYSTEM}/{object} timed out after 10000 ms"),
            )),
            (_, ["endpoint", FAILING_ENDPOINT]) => Err(Fault {
                // A script's `throw { code: 550, message: .., detail: .. }`.
                detail: Some(json!({ "script": "script/payrollExport.js", "line": 42 })),
                ..Fault::new(
                    UNCATEGORIZED_CODE,
                    "Unable to export the payroll: the ledger rejected batch 2026-11",
                )
            }),
            _ => Err(not_found(resource)),
        }
    }
}

impl Emulator for Crest {
    fn handle(&self, req: &EmuRequest) -> EmuResponse {
        self.route(req).unwrap_or_else(|f| f.render())
    }
}

impl State {
    /// `POST /openidm/maintenance?_action=enable|disable|status`.
    fn maintenance(&mut self, req: &EmuRequest, principal: Principal) -> Result<EmuResponse, Fault> {
        if req.method != "POST" {
            return Err(Fault::new(
                405,
                format!("Method {} not allowed on maintenance", req.method),
            ));
        }
        match req.query_param("_action") {
            Some("status") => {}
            Some("enable" | "disable") if principal == Principal::Reader => return Err(forbidden()),
            Some("enable") => self.maintenance = true,
            Some("disable") => self.maintenance = false,
            Some(a) => return Err(not_supported(a)),
            None => return Err(Fault::new(400, "The _action parameter is required.")),
        }
        Ok(ok_json(200, &json!({ "maintenanceEnabled": self.maintenance })))
    }

    fn query(&self, req: &EmuRequest) -> EmuResponse {
        let wanted = req.query_param("_queryFilter").unwrap_or("true");
        let result: Vec<Value> =
            self.users
                .iter()
                .filter(|(_, u)| !u.expired && !u.corrupt)
                .filter(|(_, u)| {
                    wanted == "true"
                        || u.fields.get("userName").and_then(Value::as_str).is_some_and(|n| {
                            wanted.contains(&format!("%22{n}%22")) || wanted.contains(&format!("\"{n}\""))
                        })
                })
                .map(|(id, u)| u.public(id))
                .collect();
        let count = result.len();
        ok_json(
            200,
            &json!({"result": result, "resultCount": count, "pagedResultsCookie": null,
                    "totalPagedResultsPolicy": "NONE", "totalPagedResults": -1, "remainingPagedResults": -1}),
        )
    }

    /// A request on `managed/user/{id}`.
    fn instance(&mut self, req: &EmuRequest, principal: Principal, id: &str) -> Result<EmuResponse, Fault> {
        let path = format!("{COLLECTION}/{id}");
        match req.method.as_str() {
            "GET" | "HEAD" => {
                let user = self.readable(id)?;
                if let Some(inm) = req.header("if-none-match") {
                    if revision_matches(inm, user.rev) {
                        return Ok(EmuResponse::new(304).header("ETag", etag(user.rev)));
                    }
                }
                Ok(user.response(200, id))
            }
            "PUT" => {
                writable(principal)?;
                let fields = json_body(req)?;
                match self.users.get(id) {
                    None if req.header("if-none-match").is_some_and(|v| v.trim() == "*") => {
                        self.create(Some(id.to_owned()), fields)
                    }
                    None => Err(not_found(&path)),
                    Some(_) => {
                        let current = self.preconditions(req, id)?;
                        check_policies(&fields, false)?;
                        self.ensure_unique(&fields, Some(id))?;
                        let mut merged = current.fields.clone();
                        merged.extend(fields);
                        let user = User {
                            rev: current.rev + 1,
                            fields: merged,
                            ..current
                        };
                        let resp = user.response(200, id);
                        self.users.insert(id.to_owned(), user);
                        Ok(resp)
                    }
                }
            }
            "DELETE" => {
                writable(principal)?;
                let current = self.preconditions(req, id)?;
                self.users.remove(id);
                Ok(current.response(200, id))
            }
            "POST" => {
                let action = req.query_param("_action");
                match action {
                    Some("triggerSyncCheck") => {
                        writable(principal)?;
                        self.readable(id)?;
                        Ok(EmuResponse::new(204))
                    }
                    Some(a) => Err(not_supported(a)),
                    None => Err(Fault::new(
                        400,
                        "The _action parameter is required for a POST to a resource.",
                    )),
                }
            }
            "PATCH" => Err(Fault::new(
                501,
                format!("Patch operations are not supported by {COLLECTION}"),
            )),
            other => Err(Fault::new(405, format!("Method {other} not allowed on {path}"))),
        }
    }

    /// The user, if it can be read: 404 unknown, 410 expired, 500 unreadable.
    fn readable(&self, id: &str) -> Result<&User, Fault> {
        let user = self
            .users
            .get(id)
            .ok_or_else(|| not_found(&format!("{COLLECTION}/{id}")))?;
        if user.expired {
            return Err(Fault::new(410, format!("Resource '{COLLECTION}/{id}' has expired")));
        }
        if user.corrupt {
            return Err(Fault {
                status: 500,
                message: format!("Unable to read object {COLLECTION}/{id} from the repository"),
                detail: Some(json!({
                    "cause": "java.sql.SQLException: Data truncation: Invalid JSON text in column 'fullobject' at org.forgerock.openidm.repo.jdbc.impl.GenericTableHandler.read(GenericTableHandler.java:302)"
                })),
            });
        }
        Ok(user)
    }

    /// Checks `If-Match` for an update or delete: 428 without it, 412 when stale.
    fn preconditions(&self, req: &EmuRequest, id: &str) -> Result<User, Fault> {
        let user = self.readable(id)?.clone();
        let Some(if_match) = req.header("if-match") else {
            return Err(Fault::new(
                428,
                format!("The resource {COLLECTION}/{id} requires a version (If-Match), but none was supplied"),
            ));
        };
        if !revision_matches(if_match, user.rev) {
            return Err(Fault::new(
                412,
                format!(
                    "Update rejected as current Object revision {} is different than expected by caller ({})",
                    user.rev,
                    if_match.trim().trim_matches('"')
                ),
            ));
        }
        Ok(user)
    }

    fn ensure_unique(&self, fields: &Map<String, Value>, except: Option<&str>) -> Result<(), Fault> {
        let Some(name) = fields.get("userName").and_then(Value::as_str) else {
            return Ok(());
        };
        let taken = self.users.iter().any(|(id, u)| {
            Some(id.as_str()) != except && u.fields.get("userName").and_then(Value::as_str) == Some(name)
        });
        if taken {
            return Err(Fault::new(
                409,
                format!("Unable to create or update {COLLECTION}: userName '{name}' already exists"),
            ));
        }
        Ok(())
    }

    fn create(&mut self, id: Option<String>, fields: Map<String, Value>) -> Result<EmuResponse, Fault> {
        check_policies(&fields, true)?;
        self.ensure_unique(&fields, None)?;
        self.created += 1;
        let id = id.unwrap_or_else(|| format!("a11ce000-{:04x}-4000-8000-{:012x}", self.created, self.created));
        let user = User {
            rev: 1,
            fields,
            expired: false,
            corrupt: false,
        };
        let resp = user
            .response(201, &id)
            .header("Location", format!("/openidm/{COLLECTION}/{id}"));
        self.users.insert(id, user);
        Ok(resp)
    }
}

impl User {
    fn public(&self, id: &str) -> Value {
        let mut m = Map::new();
        m.insert("_id".into(), id.into());
        m.insert("_rev".into(), self.rev.to_string().into());
        for (k, v) in &self.fields {
            if k != "password" {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m)
    }

    fn response(&self, status: u16, id: &str) -> EmuResponse {
        ok_json(status, &self.public(id)).header("ETag", etag(self.rev))
    }
}

fn etag(rev: u64) -> String {
    format!("\"{rev}\"")
}

/// `If-Match` / `If-None-Match`: `*`, or a list of (possibly weak, possibly unquoted) tags.
fn revision_matches(header: &str, rev: u64) -> bool {
    let rev = rev.to_string();
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == rev)
}

fn authenticate(req: &EmuRequest) -> Result<Principal, Fault> {
    match (req.header("x-openidm-username"), req.header("x-openidm-password")) {
        (Some(ADMIN_USERNAME), Some(ADMIN_PASSWORD)) => Ok(Principal::Admin),
        (Some(READER_USERNAME), Some(READER_PASSWORD)) => Ok(Principal::Reader),
        _ => Err(Fault::new(401, "Access Denied")),
    }
}

fn writable(p: Principal) -> Result<(), Fault> {
    match p {
        Principal::Admin => Ok(()),
        Principal::Reader => Err(forbidden()),
    }
}

/// `Accept-API-Version: protocol=2.1,resource=1.0`: 400 when malformed, 406 when unsupported.
fn check_api_version(req: &EmuRequest) -> Result<(), Fault> {
    let Some(v) = req.header("accept-api-version") else {
        return Ok(());
    };
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, ver) = part
            .split_once('=')
            .ok_or_else(|| Fault::new(400, format!("Malformed Accept-API-Version header: '{v}'")))?;
        let (major, minor) = ver.trim().split_once('.').unwrap_or((ver.trim(), "0"));
        let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
            return Err(Fault::new(400, format!("Malformed Accept-API-Version header: '{v}'")));
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "protocol" if matches!((major, minor), (1, 0) | (2, 0) | (2, 1)) => {}
            "protocol" => {
                return Err(Fault::new(
                    406,
                    format!("Unsupported protocol version: {major}.{minor}; supported versions are 1.0, 2.0, 2.1"),
                ))
            }
            "resource" if major == 1 => {}
            "resource" => {
                return Err(Fault::new(
                    406,
                    format!("Requested version \"{major}.{minor}\" does not match any routes"),
                ))
            }
            _ => return Err(Fault::new(400, format!("Malformed Accept-API-Version header: '{v}'"))),
        }
    }
    Ok(())
}

/// The request's JSON object: 415 for another media type, 400 for anything but an object.
fn json_body(req: &EmuRequest) -> Result<Map<String, Value>, Fault> {
    let ct = req.header("content-type").unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        let shown = if media.is_empty() { "(none)" } else { media };
        return Err(Fault::new(
            415,
            format!("Unsupported media type: {shown}; expected application/json"),
        ));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Fault::new(
            400,
            "The request could not be processed because the provided content is not valid JSON",
        )),
    }
}

/// IDM's policy service: `userName` and `mail` required, password at least 8 characters.
fn check_policies(fields: &Map<String, Value>, creating: bool) -> Result<(), Fault> {
    let mut failed = Vec::new();
    for property in ["userName", "mail"] {
        let missing = match fields.get(property) {
            None => creating,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => true,
        };
        if missing {
            failed.push(json!({"property": property, "policyRequirements": [{"policyRequirement": "REQUIRED"}]}));
        }
    }
    let short = match fields.get("password") {
        Some(Value::String(p)) => p.chars().count() < MIN_PASSWORD_LENGTH,
        Some(_) => true,
        None => creating,
    };
    if short {
        failed.push(json!({"property": "password", "policyRequirements": [
            {"policyRequirement": "MIN_LENGTH", "params": {"minLength": MIN_PASSWORD_LENGTH}}
        ]}));
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(Fault {
        status: 403,
        message: "Policy validation failed".into(),
        detail: Some(json!({"result": false, "failedPolicyRequirements": failed})),
    })
}

fn ok_json(status: u16, v: &Value) -> EmuResponse {
    EmuResponse::new(status).header("Cache-Control", "no-cache").body(
        "application/json;charset=utf-8",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn not_found(resource: &str) -> Fault {
    Fault::new(404, format!("Resource '{resource}' not found"))
}

fn forbidden() -> Fault {
    Fault::new(403, "Access denied")
}

fn not_supported(action: &str) -> Fault {
    Fault::new(501, format!("Action '{action}' not supported"))
}

/// A CREST error: `{code, reason, message, detail?}`.
#[derive(Debug)]
struct Fault {
    status: u16,
    message: String,
    detail: Option<Value>,
}

impl Fault {
    fn new(status: u16, message: impl Into<String>) -> Fault {
        Fault {
            status,
            message: message.into(),
            detail: None,
        }
    }

    fn render(&self) -> EmuResponse {
        // ResourceException's reason phrases: RFC 2616's, "Resource Exception" for codes it
        // has no phrase for.
        let reason = match self.status {
            408 => Some("Request Time-out"),
            s => http::StatusCode::from_u16(s).ok().and_then(|s| s.canonical_reason()),
        }
        .unwrap_or("Resource Exception");
        let mut body = json!({"code": self.status, "reason": reason, "message": self.message});
        if let (Value::Object(m), Some(d)) = (&mut body, &self.detail) {
            m.insert("detail".into(), d.clone());
        }
        ok_json(self.status, &body).reason(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_match_quoted_weak_and_star() {
        assert!(revision_matches("\"3\"", 3));
        assert!(revision_matches("W/\"3\", \"4\"", 4));
        assert!(revision_matches("*", 9));
        assert!(revision_matches("3", 3));
        assert!(!revision_matches("\"2\"", 3));
    }

    /// A request from the admin user.
    fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> EmuRequest {
        let mut all = vec![
            ("X-OpenIDM-Username", ADMIN_USERNAME),
            ("X-OpenIDM-Password", ADMIN_PASSWORD),
        ];
        all.extend_from_slice(headers);
        EmuRequest::new(method, path, &all, body)
    }

    #[test]
    fn malformed_requests_get_crest_errors() {
        let c = Crest::new();
        let json = ("Content-Type", "application/json");
        let user = format!("/openidm/managed/user/{USER_ID}");
        let cases: Vec<(EmuRequest, u16)> = vec![
            (req("GET", "/", &[], b""), 404),
            (req("GET", "/openidm/", &[], b""), 404),
            (req("GET", "/openidm/managed/user/a/b/c", &[], b""), 404),
            (
                req("POST", "/openidm/managed/user?_action=create", &[json], &[0xff, 0x00]),
                400,
            ),
            (
                req("POST", "/openidm/managed/user?_action=create", &[json], b"null"),
                400,
            ),
            (
                req(
                    "POST",
                    "/openidm/managed/user?_action=create",
                    &[json],
                    br#"{"userName":7,"mail":[],"password":1}"#,
                ),
                403,
            ),
            (req("POST", "/openidm/managed/user?_action=create", &[], b"{}"), 415),
            (req("POST", "/openidm/managed/user?_action", &[json], b"{}"), 501),
            (req("POST", "/openidm/managed/user", &[json], b"{}"), 400),
            (req("GET", &user, &[("Accept-API-Version", "protocol=x.y")], b""), 400),
            (req("GET", &user, &[("Accept-API-Version", "=,=")], b""), 400),
            (req("GET", &user, &[("Accept-API-Version", "resource=1.5")], b""), 200),
            (req("PUT", &user, &[json, ("If-Match", "W/\"1\"")], b"{}"), 200),
            (req("PUT", &user, &[json, ("If-Match", "garbage")], b"{}"), 412),
            (req("BREW", &user, &[], b""), 405),
            (req("POST", "/openidm/maintenance", &[], b""), 400),
        ];
        for (r, want) in cases {
            let got = c.handle(&r);
            assert_eq!(
                got.status,
                want,
                "{} {}: {}",
                r.method,
                r.path,
                String::from_utf8_lossy(&got.body)
            );
            if want >= 400 {
                let v: Value = serde_json::from_slice(&got.body).unwrap();
                assert_eq!(v["code"], want);
            }
        }
    }
}
