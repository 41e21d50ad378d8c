//! Veeam Backup Enterprise Manager REST (`/api/`, port 9398 in real life): a small stateful
//! emulator of logon sessions, backups, cloud tenants and the tasks long actions create. XML by
//! default, JSON with `Accept: application/json`; .NET reason phrases (`400 BadRequest`); errors
//! as `<Error Message=".." StatusCode=".."><FirstChanceExceptionMessage/><StackTrace/></Error>`
//! with a leaking stack trace. The cloud-tenant family answers errors with a prefixed
//! `<v:Error xmlns:v=..>` (camelCase keys in JSON) and its 405 carries `Allow` (WCF's dispatcher);
//! the other families omit `Allow`.
//!
//! Every status of Veeam's table (seeds 000/001), from real requests (`{..}` are the `pub const`s):
//!
//! | Status | Reason sent | Trigger |
//! |---|---|---|
//! | 200 | OK | `GET /api/backups`, `/api/backups/{BACKUP_ID}`, `/api/cloud/tenants/{TENANT_ID}`, `/api/tasks/{id}` (a finished, failed task too) |
//! | 201 | Created | `POST /api/sessionMngr/?v=latest` with `Authorization: Basic` of `{ADMIN_USER}`/`{READONLY_USER}`: `X-RestSvcSessionId` header, cookie, LogonSession body |
//! | 202 | Accepted | `POST /api/cloud/tenants/{id}?action=edit` with a valid `CloudTenantSpec`, or `DELETE /api/cloud/tenants/{id}`: Task body (Running); poll `/api/tasks/{id}` |
//! | 204 | NoContent | `DELETE /api/logonSessions/{session id}` (log off; the session is gone afterwards) |
//! | 400 | BadRequest | edit with an empty body (`Node [root] does not exist.`), malformed XML/JSON, another root element; logon with an unknown `?v=` |
//! | 401 | Unauthorized | any `/api/` call without (or with an ended) session; logon without or with wrong Basic credentials |
//! | 403 | Forbidden | a write (`?action=edit`, `DELETE`) by the read-only `{READONLY_USER}` |
//! | 404 | NotFound | an unknown backup, tenant, task, logon session or resource |
//! | 405 | MethodNotAllowed | `PUT /api/backups/{id}` (no `Allow`), `PUT /api/cloud/tenants/{id}` (`Allow: GET, POST, DELETE`), `GET /api/sessionMngr/` (`Allow: POST`) |
//! | 500 | InternalServerError | `GET /api/backups/{ORPHANED_BACKUP_ID}` (NullReference, server side); the quirk: edit whose spec lacks `<Name>` (a client mistake answered with 500 NullReference) |
//! | 501 | NotImplemented | `POST /api/cloud/tenants/{id}?action=` anything but `edit` (e.g. `migrate`) |
//! | 503 | ServiceUnavailable | logon while `{MAX_SESSIONS}` sessions are open (log one off to recover) |
//!
//! A task is `Running` on its first poll and `Finished` on the next; an edit renaming a tenant to
//! another tenant's name finishes with `<Result Success="false" Message=".."/>` (the poll is 200).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{json, Value};

use super::{EmuRequest, EmuResponse, Emulator};
use crate::xml::Element;

pub const ADMIN_USER: &str = "administrator";
pub const ADMIN_PASSWORD: &str = "Veeam123!";
/// A Portal user without write rights.
pub const READONLY_USER: &str = "auditor";
pub const READONLY_PASSWORD: &str = "Audit123!";
/// Concurrent logon sessions before logon answers 503.
pub const MAX_SESSIONS: usize = 4;
pub const BACKUP_ID: &str = "6a1f0b2c-3d4e-4f50-8a61-7b8c9d0e1f21";
pub const BACKUP_NAME: &str = "Daily VM Backup";
/// A backup whose job record is gone: reading it fails server-side with a NullReference (500).
pub const ORPHANED_BACKUP_ID: &str = "6a1f0b2c-3d4e-4f50-8a61-7b8c9d0e1f22";
pub const TENANT_ID: &str = "c0ffee00-1a2b-4c3d-8e9f-000000000001";
pub const TENANT_NAME: &str = "acme";
pub const OTHER_TENANT_ID: &str = "c0ffee00-1a2b-4c3d-8e9f-000000000002";
pub const OTHER_TENANT_NAME: &str = "globex";
/// The session header (also the cookie name).
pub const SESSION_HEADER: &str = "X-RestSvcSessionId";
pub const NAMESPACE: &str = "http://www.veeam.com/ent/v1.0";
/// What .NET says when the spec deserializer dereferences a node the client left out.
pub const NULL_REFERENCE: &str = "Object reference not set to an instance of an object.";

const NULL_REFERENCE_FIRST_CHANCE: &str =
    "System.NullReferenceException: Object reference not set to an instance of an object.";
const EDIT_STACK: &str = "   at Veeam.Backup.EnterpriseService.RestApi.CCloudTenantSpecMapper.ApplyName(CloudTenantSpec spec, CCloudTenant tenant)\n   at Veeam.Backup.EnterpriseService.RestApi.CRestCloudTenantsService.Edit(String id, CloudTenantSpec spec)\n   at Veeam.Backup.EnterpriseService.RestApi.CRestServiceBase.Invoke[T](Func`1 action)";
const ORPHAN_STACK: &str = "   at Veeam.Backup.Core.CBackup.get_JobName()\n   at Veeam.Backup.EnterpriseService.RestApi.CRestBackupsService.GetBackup(String id)\n   at Veeam.Backup.EnterpriseService.RestApi.CRestServiceBase.Invoke[T](Func`1 action)";
/// Polls a task answers `Running` before it finishes.
const RUNNING_POLLS: u8 = 1;

/// Builds an `Authorization: Basic ..` value (for tests and the demo).
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64_encode(format!("{user}:{password}").as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Administrator,
    ReadOnly,
}

#[derive(Debug)]
struct Session {
    user: &'static str,
    role: Role,
}

#[derive(Debug, Clone)]
struct Tenant {
    name: String,
    description: String,
}

#[derive(Debug, Clone)]
enum Operation {
    Edit {
        tenant: String,
        name: String,
        description: Option<String>,
    },
    Delete {
        tenant: String,
    },
}

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Operation::Edit { .. } => "EditCloudTenant",
            Operation::Delete { .. } => "DeleteCloudTenant",
        }
    }
}

#[derive(Debug)]
struct Task {
    operation: Operation,
    running_polls: u8,
    /// `(success, message)` once finished.
    result: Option<(bool, String)>,
}

#[derive(Debug)]
struct State {
    sessions: BTreeMap<String, Session>,
    sessions_created: u64,
    tenants: BTreeMap<String, Tenant>,
    tasks: BTreeMap<String, Task>,
    tasks_created: u64,
}

/// The emulator; see the module comment for what triggers each status.
pub struct Veeam {
    state: Mutex<State>,
}

impl Default for Veeam {
    fn default() -> Self {
        Self::new()
    }
}

impl Veeam {
    pub fn new() -> Self {
        let tenant = |name: &str, description: &str| Tenant {
            name: name.to_owned(),
            description: description.to_owned(),
        };
        let tenants = BTreeMap::from([
            (TENANT_ID.to_owned(), tenant(TENANT_NAME, "ACME Corp. offsite copies")),
            (OTHER_TENANT_ID.to_owned(), tenant(OTHER_TENANT_NAME, "Globex replicas")),
        ]);
        Veeam {
            state: Mutex::new(State {
                sessions: BTreeMap::new(),
                sessions_created: 0,
                tenants,
                tasks: BTreeMap::new(),
                tasks_created: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(&self, req: &EmuRequest, cx: &Cx) -> Result<EmuResponse, Fault> {
        let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        let rest = match segments.as_slice() {
            ["api", "sessionMngr"] => return self.logon(req, cx),
            ["api", rest @ ..] => rest,
            _ => return Err(not_found(&req.path)),
        };
        let mut st = self.lock();
        let session = st.session_of(req)?;
        let role = st.sessions.get(&session).map_or(Role::ReadOnly, |s| s.role);
        let method = req.method.as_str();
        match (method, rest) {
            ("GET", ["backups"]) => Ok(cx.ok(200, backups_list(cx))),
            ("GET", ["backups", id]) => backup(cx, id),
            (_, ["backups"]) | (_, ["backups", _]) => Err(Fault::new(
                405,
                format!("The method [{method}] is not allowed for the resource [{}].", req.path),
            )),
            ("GET", ["logonSessions", id]) => match st.sessions.get(*id) {
                Some(s) => Ok(cx.ok(200, logon_session(cx, id, s.user))),
                None => Err(not_found(&req.path)),
            },
            ("DELETE", ["logonSessions", id]) if *id == session => {
                st.sessions.remove(*id);
                Ok(EmuResponse::new(204).reason("NoContent"))
            }
            ("DELETE", ["logonSessions", _]) => Err(not_found(&req.path)),
            ("GET", ["tasks", id]) => st.poll(cx, id).ok_or_else(|| not_found(&req.path)),
            ("GET", ["cloud", "tenants"]) => Ok(cx.ok(200, tenants_list(cx, &st.tenants))),
            ("GET", ["cloud", "tenants", id]) => match st.tenants.get(*id) {
                Some(t) => Ok(cx.ok(200, tenant(cx, id, t))),
                None => Err(not_found(&req.path).prefixed()),
            },
            ("POST", ["cloud", "tenants", id]) => st.tenant_action(req, cx, id, role),
            ("DELETE", ["cloud", "tenants", id]) => {
                let id = st.existing_tenant(id, &req.path)?;
                if role == Role::ReadOnly {
                    return Err(forbidden(&st, &session).prefixed());
                }
                Ok(st.start_task(cx, Operation::Delete { tenant: id }))
            }
            (_, ["cloud", "tenants", ..]) => Err(Fault::new(
                405,
                format!("Method [{method}] is not allowed for [{}].", req.path),
            )
            .prefixed()
            .allow("GET, POST, DELETE")),
            _ => Err(not_found(&req.path)),
        }
    }

    /// `POST /api/sessionMngr/?v=latest` with Basic credentials.
    fn logon(&self, req: &EmuRequest, cx: &Cx) -> Result<EmuResponse, Fault> {
        if req.method != "POST" {
            return Err(Fault::new(
                405,
                format!(
                    "The method [{}] is not allowed for the resource [{}].",
                    req.method, req.path
                ),
            )
            .allow("POST"));
        }
        match req.query_param("v") {
            None | Some("latest") => {}
            Some(v) if v.starts_with("v1_") => {}
            Some(v) => return Err(Fault::new(400, format!("API version [{v}] is not supported."))),
        }
        let (user, password) =
            basic_credentials(req).ok_or_else(|| Fault::new(401, "Authorization header is missing or malformed."))?;
        let (user, role) = match (user.as_str(), password.as_str()) {
            (ADMIN_USER, ADMIN_PASSWORD) => (ADMIN_USER, Role::Administrator),
            (READONLY_USER, READONLY_PASSWORD) => (READONLY_USER, Role::ReadOnly),
            _ => return Err(Fault::new(401, "Logon failed: the user name or password is incorrect.")),
        };
        let mut st = self.lock();
        if st.sessions.len() >= MAX_SESSIONS {
            return Err(Fault::new(
                503,
                format!("The maximum number of concurrent sessions ({MAX_SESSIONS}) has been reached. Log off an existing session and try again."),
            ));
        }
        st.sessions_created += 1;
        let n = st.sessions_created;
        let id = format!("{n:08x}-5e55-40a1-9d0e-{:012x}", n * 7919);
        st.sessions.insert(id.clone(), Session { user, role });
        Ok(cx
            .ok(201, logon_session(cx, &id, user))
            .header(SESSION_HEADER, id.clone())
            .header("Set-Cookie", format!("{SESSION_HEADER}={id}; path=/; HttpOnly")))
    }
}

impl Emulator for Veeam {
    fn handle(&self, req: &EmuRequest) -> EmuResponse {
        let cx = Cx::of(req);
        self.route(req, &cx).unwrap_or_else(|f| f.render(&cx))
    }
}

impl State {
    /// The caller's session id, from the header or the cookie.
    fn session_of(&self, req: &EmuRequest) -> Result<String, Fault> {
        let from_cookie = || {
            req.headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    k.eq_ignore_ascii_case(SESSION_HEADER).then_some(v.trim())
                })
        };
        let Some(id) = req.header(SESSION_HEADER).or_else(from_cookie) else {
            return Err(Fault::new(
                401,
                format!("Authentication required: the [{SESSION_HEADER}] header is missing. Log on at /api/sessionMngr/ first."),
            ));
        };
        if self.sessions.contains_key(id) {
            Ok(id.to_owned())
        } else {
            Err(Fault::new(401, "The logon session has expired or does not exist."))
        }
    }

    fn existing_tenant(&self, id: &str, path: &str) -> Result<String, Fault> {
        if self.tenants.contains_key(id) {
            Ok(id.to_owned())
        } else {
            Err(not_found(path).prefixed())
        }
    }

    /// `POST /api/cloud/tenants/{id}?action=..`.
    fn tenant_action(&mut self, req: &EmuRequest, cx: &Cx, id: &str, role: Role) -> Result<EmuResponse, Fault> {
        let id = self.existing_tenant(id, &req.path)?;
        match req.query_param("action") {
            Some("edit") => {}
            Some(other) => {
                return Err(Fault::new(
                    501,
                    format!("The action [{other}] is not implemented for cloud tenants."),
                )
                .prefixed())
            }
            None => return Err(Fault::new(400, "The [action] query parameter is required.").prefixed()),
        }
        if role == Role::ReadOnly {
            let session = self.session_of(req)?;
            return Err(forbidden(self, &session).prefixed());
        }
        let spec = TenantSpec::parse(req).map_err(Fault::prefixed)?;
        // The quirk: the mapper dereferences <Name> without checking it was sent.
        let Some(name) = spec.name else {
            return Err(Fault::new(500, NULL_REFERENCE)
                .exception(NULL_REFERENCE_FIRST_CHANCE, EDIT_STACK)
                .prefixed());
        };
        Ok(self.start_task(
            cx,
            Operation::Edit {
                tenant: id,
                name,
                description: spec.description,
            },
        ))
    }

    fn start_task(&mut self, cx: &Cx, operation: Operation) -> EmuResponse {
        self.tasks_created += 1;
        let id = format!("task-{}", self.tasks_created);
        let task = Task {
            operation,
            running_polls: RUNNING_POLLS,
            result: None,
        };
        let resp = cx.ok(202, task_body(cx, &id, &task));
        self.tasks.insert(id, task);
        resp
    }

    /// `GET /api/tasks/{id}`: Running for the first poll(s), then Finished (with its result).
    fn poll(&mut self, cx: &Cx, id: &str) -> Option<EmuResponse> {
        let mut task = self.tasks.remove(id)?;
        if task.result.is_none() {
            if task.running_polls > 0 {
                task.running_polls -= 1;
            } else {
                task.result = Some(self.finish(&task.operation));
            }
        }
        let resp = cx.ok(200, task_body(cx, id, &task));
        self.tasks.insert(id.to_owned(), task);
        Some(resp)
    }

    fn finish(&mut self, op: &Operation) -> (bool, String) {
        match op {
            Operation::Edit {
                tenant,
                name,
                description,
            } => {
                let taken = self
                    .tenants
                    .iter()
                    .any(|(id, t)| id != tenant && t.name.eq_ignore_ascii_case(name));
                if taken {
                    return (false, format!("Cloud tenant with name [{name}] already exists."));
                }
                match self.tenants.get_mut(tenant) {
                    Some(t) => {
                        t.name.clone_from(name);
                        if let Some(d) = description {
                            t.description.clone_from(d);
                        }
                        (true, format!("Cloud tenant [{name}] has been updated."))
                    }
                    None => (false, format!("Cloud tenant [{tenant}] was not found.")),
                }
            }
            Operation::Delete { tenant } => match self.tenants.remove(tenant) {
                Some(t) => (true, format!("Cloud tenant [{}] has been deleted.", t.name)),
                None => (false, format!("Cloud tenant [{tenant}] was not found.")),
            },
        }
    }
}

/// The fields of a `CloudTenantSpec` the emulator reads.
struct TenantSpec {
    name: Option<String>,
    description: Option<String>,
}

impl TenantSpec {
    /// XML unless the request says JSON; a broken body is a 400, a missing node is not noticed.
    fn parse(req: &EmuRequest) -> Result<TenantSpec, Fault> {
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(Fault::new(400, "Node [root] does not exist."));
        }
        let json = req
            .header("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        if json {
            let v: Value = serde_json::from_slice(&req.body)
                .map_err(|_| Fault::new(400, "Unexpected character encountered while parsing value."))?;
            let obj = v
                .as_object()
                .ok_or_else(|| Fault::new(400, "Node [CloudTenantSpec] does not exist."))?;
            let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
            return Ok(TenantSpec {
                name: text("Name"),
                description: text("Description"),
            });
        }
        let doc =
            Element::parse(&req.body).ok_or_else(|| Fault::new(400, "There is an error in XML document (1, 1)."))?;
        if xml_at(&doc, "CloudTenantSpec").is_none() {
            return Err(Fault::new(400, "Node [CloudTenantSpec] does not exist."));
        }
        Ok(TenantSpec {
            name: xml_at(&doc, "CloudTenantSpec/Name").map(str::to_owned),
            description: xml_at(&doc, "CloudTenantSpec/Description").map(str::to_owned),
        })
    }
}

fn xml_at<'d>(doc: &'d Element, path: &str) -> Option<&'d str> {
    doc.text_at(path)
}

/// Per-request rendering context: the representation asked for and the base of Hrefs.
struct Cx {
    json: bool,
    base: String,
}

impl Cx {
    fn of(req: &EmuRequest) -> Cx {
        let json = req
            .header("accept")
            .is_some_and(|a| a.to_ascii_lowercase().contains("application/json"));
        let host = req.header("host").unwrap_or("localhost:9398");
        Cx {
            json,
            base: format!("http://{host}"),
        }
    }

    fn href(&self, path: &str) -> String {
        format!("{}/api/{path}", self.base)
    }

    /// A success response in the negotiated representation.
    fn ok(&self, status: u16, body: Entity) -> EmuResponse {
        let resp = EmuResponse::new(status).reason(reason(status));
        if self.json {
            resp.body("application/json; charset=utf-8", body.json.to_string())
        } else {
            resp.body("application/xml; charset=utf-8", body.xml)
        }
    }
}

/// One resource in both representations.
struct Entity {
    xml: String,
    json: Value,
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

fn logon_session(cx: &Cx, id: &str, user: &str) -> Entity {
    let href = cx.href(&format!("logonSessions/{id}"));
    Entity {
        xml: format!(
            r#"<?xml version="1.0" encoding="utf-8"?><LogonSession Href="{h}" Type="LogonSession" xmlns="{NAMESPACE}"><Links><Link Href="{h}" Rel="Delete" Type="LogonSession"/></Links><UserName>{u}</UserName><SessionId>{i}</SessionId></LogonSession>"#,
            h = esc(&href),
            u = esc(user),
            i = esc(id)
        ),
        json: json!({
            "Links": [{"Href": href, "Rel": "Delete", "Type": "LogonSession"}],
            "Href": href,
            "Type": "LogonSession",
            "UserName": user,
            "SessionId": id,
        }),
    }
}

fn backups_list(cx: &Cx) -> Entity {
    let refs = [(BACKUP_ID, BACKUP_NAME), (ORPHANED_BACKUP_ID, "Legacy File Share")];
    entity_references(cx, "Backup", "backups", &refs)
}

/// An `EntityReferences` list: one `Ref` of type `{kind}Reference` per (id, name), each
/// pointing at `{collection}/{id}`.
fn entity_references(cx: &Cx, kind: &str, collection: &str, items: &[(&str, &str)]) -> Entity {
    let mut xml_refs = String::new();
    let mut json_refs = Vec::with_capacity(items.len());
    for (id, name) in items {
        let href = cx.href(&format!("{collection}/{id}"));
        xml_refs.push_str(&format!(
            r#"<Ref UID="urn:veeam:{kind}:{id}" Name="{}" Href="{}" Type="{kind}Reference"/>"#,
            esc(name),
            esc(&href)
        ));
        json_refs.push(json!({"UID": format!("urn:veeam:{kind}:{id}"), "Name": name,
                              "Href": href, "Type": format!("{kind}Reference")}));
    }
    Entity {
        xml: format!(
            r#"<?xml version="1.0" encoding="utf-8"?><EntityReferences xmlns="{NAMESPACE}">{xml_refs}</EntityReferences>"#
        ),
        json: json!({ "Refs": json_refs }),
    }
}

fn backup(cx: &Cx, id: &str) -> Result<EmuResponse, Fault> {
    match id {
        BACKUP_ID => {
            let href = cx.href(&format!("backups/{id}"));
            Ok(cx.ok(
                200,
                Entity {
                    xml: format!(
                        r#"<?xml version="1.0" encoding="utf-8"?><Backup Href="{}" Type="Backup" Name="{BACKUP_NAME}" UID="urn:veeam:Backup:{id}" xmlns="{NAMESPACE}"><Platform>VMware</Platform><JobName>{BACKUP_NAME}</JobName><PointsCount>14</PointsCount></Backup>"#,
                        esc(&href)
                    ),
                    json: json!({"Href": href, "Type": "Backup", "Name": BACKUP_NAME,
                                 "UID": format!("urn:veeam:Backup:{id}"), "Platform": "VMware",
                                 "JobName": BACKUP_NAME, "PointsCount": 14}),
                },
            ))
        }
        ORPHANED_BACKUP_ID => Err(Fault::new(500, NULL_REFERENCE).exception(NULL_REFERENCE_FIRST_CHANCE, ORPHAN_STACK)),
        _ => Err(Fault::new(404, format!("Backup with id [{id}] was not found."))),
    }
}

fn tenant(cx: &Cx, id: &str, t: &Tenant) -> Entity {
    let href = cx.href(&format!("cloud/tenants/{id}"));
    Entity {
        xml: format!(
            r#"<?xml version="1.0" encoding="utf-8"?><CloudTenant Href="{}" Type="CloudTenant" Name="{n}" UID="urn:veeam:CloudTenant:{id}" xmlns="{NAMESPACE}"><Name>{n}</Name><Description>{}</Description><Enabled>true</Enabled></CloudTenant>"#,
            esc(&href),
            esc(&t.description),
            n = esc(&t.name)
        ),
        json: json!({"Href": href, "Type": "CloudTenant", "Name": t.name,
                     "UID": format!("urn:veeam:CloudTenant:{id}"), "Description": t.description,
                     "Enabled": true}),
    }
}

fn tenants_list(cx: &Cx, tenants: &BTreeMap<String, Tenant>) -> Entity {
    let refs: Vec<(&str, &str)> = tenants.iter().map(|(id, t)| (id.as_str(), t.name.as_str())).collect();
    entity_references(cx, "CloudTenant", "cloud/tenants", &refs)
}

fn task_body(cx: &Cx, id: &str, task: &Task) -> Entity {
    let href = cx.href(&format!("tasks/{id}"));
    let op = task.operation.name();
    let state = if task.result.is_some() { "Finished" } else { "Running" };
    let (xml_result, json_result) = match &task.result {
        Some((ok, msg)) => (
            format!(r#"<Result Success="{ok}" Message="{}"/>"#, esc(msg)),
            json!({"Success": ok, "Message": msg}),
        ),
        None => (String::new(), Value::Null),
    };
    let mut json = json!({
        "Links": [{"Href": href, "Rel": "Delete", "Type": "Task"}],
        "Href": href,
        "Type": "Task",
        "TaskId": id,
        "State": state,
        "Operation": op,
    });
    if let (Value::Object(m), false) = (&mut json, json_result.is_null()) {
        m.insert("Result".into(), json_result);
    }
    Entity {
        xml: format!(
            r#"<?xml version="1.0" encoding="utf-8"?><Task Type="Task" Href="{h}" xmlns="{NAMESPACE}"><Links><Link Href="{h}" Rel="Delete" Type="Task"/></Links><TaskId>{i}</TaskId><State>{state}</State><Operation>{op}</Operation>{xml_result}</Task>"#,
            h = esc(&href),
            i = esc(id)
        ),
        json,
    }
}

/// The .NET `HttpStatusCode` enum name Veeam sends as its reason phrase.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "NoContent",
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        500 => "InternalServerError",
        501 => "NotImplemented",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    }
}

fn not_found(path: &str) -> Fault {
    Fault::new(404, format!("Resource [{path}] was not found."))
}

fn forbidden(st: &State, session: &str) -> Fault {
    let user = st.sessions.get(session).map_or("unknown", |s| s.user);
    Fault::new(
        403,
        format!("Access denied: user [{user}] does not have sufficient privileges to perform this operation."),
    )
}

/// A Veeam error, rendered in the request's representation.
#[derive(Debug)]
struct Fault {
    status: u16,
    message: String,
    first_chance: Option<&'static str>,
    stack: Option<&'static str>,
    allow: Option<&'static str>,
    /// The cloud-tenant family's dialect: `<v:Error xmlns:v=..>`, camelCase JSON keys.
    prefixed: bool,
}

impl Fault {
    fn new(status: u16, message: impl Into<String>) -> Fault {
        Fault {
            status,
            message: message.into(),
            first_chance: None,
            stack: None,
            allow: None,
            prefixed: false,
        }
    }

    fn exception(mut self, first_chance: &'static str, stack: &'static str) -> Fault {
        self.first_chance = Some(first_chance);
        self.stack = Some(stack);
        self
    }

    fn prefixed(mut self) -> Fault {
        self.prefixed = true;
        self
    }

    fn allow(mut self, methods: &'static str) -> Fault {
        self.allow = Some(methods);
        self
    }

    fn render(&self, cx: &Cx) -> EmuResponse {
        let mut resp = EmuResponse::new(self.status).reason(reason(self.status));
        if let Some(a) = self.allow {
            resp = resp.header("Allow", a);
        }
        if cx.json {
            let keys: [&str; 5] = if self.prefixed {
                [
                    "firstChanceExceptionMessage",
                    "message",
                    "stackTrace",
                    "status",
                    "statusCode",
                ]
            } else {
                [
                    "FirstChanceExceptionMessage",
                    "Message",
                    "StackTrace",
                    "Status",
                    "StatusCode",
                ]
            };
            let mut m = serde_json::Map::new();
            m.insert(keys[0].into(), self.first_chance.map_or(Value::Null, Value::from));
            m.insert(keys[1].into(), Value::from(self.message.as_str()));
            m.insert(keys[2].into(), self.stack.map_or(Value::Null, Value::from));
            m.insert(keys[3].into(), Value::Null);
            m.insert(keys[4].into(), Value::from(self.status));
            return resp.json(&Value::Object(m));
        }
        let p = if self.prefixed { "v:" } else { "" };
        let ns = if self.prefixed {
            format!(r#"xmlns:v="{NAMESPACE}""#)
        } else {
            format!(r#"xmlns="{NAMESPACE}""#)
        };
        let status_attr = if self.prefixed {
            format!(r#" Status="{}""#, reason(self.status))
        } else {
            String::new()
        };
        let mut xml = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><{p}Error Message="{}" StatusCode="{}"{status_attr} {ns}>"#,
            esc(&self.message),
            self.status
        );
        if let Some(fc) = self.first_chance {
            xml.push_str(&format!(
                "<{p}FirstChanceExceptionMessage>{}</{p}FirstChanceExceptionMessage>",
                esc(fc)
            ));
        }
        if let Some(st) = self.stack {
            xml.push_str(&format!("<{p}StackTrace>{}</{p}StackTrace>", esc(st)));
        }
        xml.push_str(&format!("</{p}Error>"));
        resp.body("application/xml; charset=utf-8", xml)
    }
}

/// `(user, password)` from `Authorization: Basic ..`; `None` when absent or malformed.
fn basic_credentials(req: &EmuRequest) -> Option<(String, String)> {
    let value = req.header("authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(token.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "administrator:Veeam123!"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).as_deref(),
                Some(s.as_bytes())
            );
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_decode("not*base64"), None);
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> EmuRequest {
        EmuRequest::new(method, path, headers, body)
    }

    #[test]
    fn malformed_requests_get_veeam_errors() {
        let v = Veeam::new();
        let auth = basic_authorization(ADMIN_USER, ADMIN_PASSWORD);
        let logon = v.handle(&req("POST", "/api/sessionMngr/", &[("Authorization", &auth)], b""));
        assert_eq!(logon.status, 201);
        let sid = logon
            .headers
            .iter()
            .find(|(k, _)| k == SESSION_HEADER)
            .unwrap()
            .1
            .clone();
        let edit = format!("/api/cloud/tenants/{TENANT_ID}?action=edit");
        let cases: Vec<(EmuRequest, u16)> = vec![
            (
                req("POST", "/api/sessionMngr/", &[("Authorization", "Basic")], b""),
                401,
            ),
            (
                req("POST", "/api/sessionMngr/", &[("Authorization", "Basic ////")], b""),
                401,
            ),
            (
                req("POST", "/api/sessionMngr/", &[("Authorization", "Bearer x")], b""),
                401,
            ),
            (req("GET", "/", &[], b""), 404),
            (req("GET", "/api//backups///", &[(SESSION_HEADER, &sid)], b""), 200),
            (req("GET", "/api/backups", &[("Cookie", "garbage; ;=;")], b""), 401),
            (req("POST", &edit, &[(SESSION_HEADER, &sid)], &[0xff, 0xfe, 0x00]), 400),
            (
                req(
                    "POST",
                    &edit,
                    &[(SESSION_HEADER, &sid), ("Content-Type", "application/json")],
                    b"\"null\"",
                ),
                400,
            ),
            (
                req(
                    "POST",
                    &edit,
                    &[(SESSION_HEADER, &sid), ("Content-Type", "application/json")],
                    b"{}",
                ),
                500,
            ),
            (
                req(
                    "POST",
                    &format!("/api/cloud/tenants/{TENANT_ID}"),
                    &[(SESSION_HEADER, &sid)],
                    b"",
                ),
                400,
            ),
            (req("BREW", "/api/backups", &[(SESSION_HEADER, &sid)], b""), 405),
        ];
        for (r, want) in cases {
            let got = v.handle(&r);
            assert_eq!(
                got.status,
                want,
                "{} {}: {}",
                r.method,
                r.path,
                String::from_utf8_lossy(&got.body)
            );
            if want >= 400 {
                assert!(Element::parse(&got.body).is_some(), "an XML Error body");
            }
        }
    }
}
