//! Oracle REST Data Services (ORDS) emulator: `/ords/{schema}/...` with an AutoREST `employees`
//! table, a PL/SQL-backed report, a protected module, the Database API's Data Pump jobs (202 +
//! Location to poll) and a module written to the Oracle Cloud REST standard. ORDS's own errors
//! use its 20.4+ problem-like JSON (`code`/`message`/`type`/`instance`, no `status`), or an HTML
//! page when the client's Accept prefers text/html (`error.responseFormat` auto); the cloud
//! module's handlers answer with the cloud variant (`title`/`status`/`detail`/`o:errorCode`).
//! Every status comes from a real request against the seeded state.
//!
//! | status | code / body                       | how to trigger                                              |
//! |--------|-----------------------------------|-------------------------------------------------------------|
//! | 200    |                                   | GET `employees/`, `employees/{id}`; PUT/DELETE `employees/{id}` |
//! | 201    | Location of the new row           | POST `employees/` with a valid JSON body                     |
//! | 202    | Location of a job to poll         | POST `_/db-api/stable/database/datapump/export` (admin token) |
//! | 400    | BadRequest                        | POST/PUT body that is not a JSON object, or lacks `last_name`, `email` or `job_id` |
//! | 400    | cloud `invalid-parameter`         | GET `hcm/v1/workers?limit=abc`                               |
//! | 401    | Unauthorized                      | a protected resource (`secure/`, `_/db-api/`) without a known bearer token |
//! | 403    | Forbidden                         | a protected resource with `CLERK_TOKEN` (no role)            |
//! | 404    | NotFound                          | unknown row id, job, resource, or schema                     |
//! | 404    | cloud `not-found`                 | GET `hcm/v1/workers/{unknown}`                               |
//! | 405    | MethodNotAllowed                  | a method the resource has no handler for (DELETE `employees/`) |
//! | 406    | NotAcceptable                     | Accept allowing neither JSON nor HTML (`application/xml`)    |
//! | 415    | UnsupportedMediaType              | POST/PUT with a Content-Type other than application/json; the reason phrase reproduces the table's slip, "Not Acceptable" |
//! | 500    | InternalServerError               | GET `_/db-api/stable/database/datapump/jobs/{BROKEN_JOB}` (admin token): ORDS's own Database API fails reading the job (ORA-39006); the HTML page prints the ORA trace |
//! | 555    | UserDefinedResourceError, `o:errorCode` ORDS-25001 | GET `departments/{EMPTY_DEPARTMENT_ID}/salary_stats`: the user-defined PL/SQL handler raises ORA-01476 (divide by zero); `cause` carries the ORA trace, the HTML page prints it |
//! | 503    | ServiceUnavailable                | any request to `DISABLED_SCHEMA` (REST application not running), no Retry-After |
//!
//! Paths are relative to `/ords/hr/`. The cloud variant family is `/ords/{schema}/hcm/v1/**`:
//! errors its handlers raise use the cloud body; ORDS's own (405, 406) keep ORDS's format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::{EmuRequest, EmuResponse, Emulator};

/// The REST-enabled schema.
pub const SCHEMA: &str = "hr";
/// A schema ORDS knows whose REST application is not running.
pub const DISABLED_SCHEMA: &str = "sales";
/// OAuth bearer token of a client with the `HR Administrator` and `SQL Administrator` roles.
pub const ADMIN_TOKEN: &str = "ords-7Qm2xHr0AdminToken";
/// OAuth bearer token of a client with no role.
pub const CLERK_TOKEN: &str = "ords-Kp41vNc9ClerkToken";
/// A seeded employee.
pub const EMPLOYEE_ID: u64 = 100;
/// A department with employees.
pub const DEPARTMENT_ID: u64 = 90;
/// A department without employees: its salary statistics divide by zero.
pub const EMPTY_DEPARTMENT_ID: u64 = 270;
/// A Data Pump job whose record ORDS's own Database API cannot read: polling it is ORDS's 500.
pub const BROKEN_JOB: &str = "DATAPUMP_REST_EXPORT_0";
/// A worker of the cloud-standard module.
pub const WORKER_ID: &str = "W100";

const NOT_MAPPED: &str = "The request could not be mapped to any database. Check the request URL is correct, \
                          and that URL to database mappings have been correctly configured";

#[derive(Debug, Clone)]
struct Employee {
    first_name: Option<String>,
    last_name: String,
    email: String,
    job_id: String,
    salary: Option<f64>,
    department_id: Option<u64>,
}

struct State {
    employees: BTreeMap<u64, Employee>,
    next_employee: u64,
    /// Data Pump jobs: name -> polled at least once.
    jobs: BTreeMap<String, bool>,
    next_job: u64,
}

/// The emulator; state is per instance.
pub struct Oracle {
    state: Mutex<State>,
    ecids: AtomicU64,
}

impl Default for Oracle {
    fn default() -> Self {
        Self::new()
    }
}

/// A request's target resource within the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Employees,
    Employee(u64),
    SalaryStats(u64),
    Salaries,
    Export,
    Job(String),
    Workers,
    Worker(String),
}

impl Resource {
    /// `rest` is the path after `/ords/{schema}/`; URI templates match exactly (ORDS's
    /// collection templates end in `/`, item templates do not).
    fn parse(rest: &str) -> Option<Resource> {
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.last().is_some_and(|s| s.is_empty())
            && !matches!(segs.as_slice(), ["employees", ""] | ["secure", "salaries", ""])
        {
            return None;
        }
        Some(match segs.as_slice() {
            ["employees", ""] => Resource::Employees,
            ["employees", id] => Resource::Employee(id.parse().ok()?),
            ["departments", id, "salary_stats"] => Resource::SalaryStats(id.parse().ok()?),
            ["secure", "salaries", ""] => Resource::Salaries,
            ["_", "db-api", "stable", "database", "datapump", "export"] => Resource::Export,
            ["_", "db-api", "stable", "database", "datapump", "jobs", job] => Resource::Job((*job).to_owned()),
            ["hcm", "v1", "workers"] => Resource::Workers,
            ["hcm", "v1", "workers", id] => Resource::Worker((*id).to_owned()),
            _ => return None,
        })
    }

    /// The methods with a handler (HEAD goes with GET).
    fn allows(&self, method: &str) -> bool {
        let allowed: &[&str] = match self {
            Resource::Employees => &["GET", "HEAD", "POST"],
            Resource::Employee(_) => &["GET", "HEAD", "PUT", "DELETE"],
            Resource::Export => &["POST"],
            _ => &["GET", "HEAD"],
        };
        allowed.contains(&method)
    }

    /// The role a protected resource needs.
    fn role(&self) -> Option<&'static str> {
        match self {
            Resource::Salaries => Some("HR Administrator"),
            Resource::Export | Resource::Job(_) => Some("SQL Administrator"),
            _ => None,
        }
    }
}

/// One error ORDS raises, before it is rendered as JSON or HTML.
struct OrdsError {
    status: u16,
    code: &'static str,
    message: String,
    /// Printed on the HTML page only (ORDS's debug output).
    trace: Option<&'static str>,
    /// A user-defined resource's failure (555): ORDS's message code, and the cause (the ORA
    /// trace) and action members its JSON carries.
    user_defined: Option<UserDefined>,
}

struct UserDefined {
    error_code: &'static str,
    cause: String,
    action: &'static str,
}

fn ords(status: u16, code: &'static str, message: impl Into<String>) -> OrdsError {
    OrdsError {
        status,
        code,
        message: message.into(),
        trace: None,
        user_defined: None,
    }
}

/// ORDS's 555: the SQL or PL/SQL of a user-defined resource handler raised `trace`.
fn user_defined_resource_error(sql_code: u32, trace: &'static str) -> OrdsError {
    OrdsError {
        trace: Some(trace),
        user_defined: Some(UserDefined {
            error_code: "ORDS-25001",
            cause: format!(
                "An error occurred when evaluating the SQL statement associated with this resource. \
                 SQL Error Code {sql_code}, Error Message: {trace}"
            ),
            action: "Ask the user defined resource author to check the SQL statement is correctly formed and executes without error",
        }),
        ..ords(
            555,
            "UserDefinedResourceError",
            "The request could not be processed due to an error in a user defined resource",
        )
    }
}

fn not_found() -> OrdsError {
    ords(404, "NotFound", "Not Found")
}

fn bad_request(message: &str) -> OrdsError {
    ords(400, "BadRequest", message)
}

/// What a handler produces: a response, or an ORDS error to render for the client.
type Outcome = Result<EmuResponse, OrdsError>;

impl Oracle {
    pub fn new() -> Self {
        let emp = |first: &str, last: &str, email: &str, job: &str, salary: f64, dept: u64| Employee {
            first_name: Some(first.to_owned()),
            last_name: last.to_owned(),
            email: email.to_owned(),
            job_id: job.to_owned(),
            salary: Some(salary),
            department_id: Some(dept),
        };
        let employees = BTreeMap::from([
            (100, emp("Steven", "King", "SKING", "AD_PRES", 24000.0, 90)),
            (101, emp("Neena", "Kochhar", "NKOCHHAR", "AD_VP", 17000.0, 90)),
            (102, emp("Lex", "De Haan", "LDEHAAN", "AD_VP", 17000.0, 90)),
            (103, emp("Alexander", "Hunold", "AHUNOLD", "IT_PROG", 9000.0, 60)),
        ]);
        Oracle {
            state: Mutex::new(State {
                employees,
                next_employee: 207,
                jobs: BTreeMap::new(),
                next_job: 1,
            }),
            ecids: AtomicU64::new(1),
        }
    }

    /// An execution context id, as ORDS tags its errors with.
    fn ecid(&self) -> String {
        let n = self.ecids.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&mix(n).to_be_bytes());
        bytes[8..].copy_from_slice(&mix(!n).to_be_bytes());
        base64url(&bytes)
    }

    fn route(&self, req: &EmuRequest) -> Outcome {
        let Some((schema, rest)) = req
            .path
            .strip_prefix("/ords/")
            .map(|r| r.split_once('/').unwrap_or((r, "")))
        else {
            return Err(ords(404, "NotFound", NOT_MAPPED));
        };
        if schema.eq_ignore_ascii_case(DISABLED_SCHEMA) {
            return Err(ords(
                503,
                "ServiceUnavailable",
                format!("The REST application for schema {schema} is not running."),
            ));
        }
        if !schema.eq_ignore_ascii_case(SCHEMA) {
            return Err(ords(404, "NotFound", NOT_MAPPED));
        }
        let resource = Resource::parse(rest).ok_or_else(not_found)?;
        let method = req.method.as_str();
        if !resource.allows(method) {
            return Err(ords(405, "MethodNotAllowed", "Method Not Allowed"));
        }
        if let Some(role) = resource.role() {
            match bearer(req).and_then(token_roles) {
                None => return Err(ords(401, "Unauthorized", "Unauthorized")),
                Some(roles) if !roles.contains(&role) => return Err(ords(403, "Forbidden", "Forbidden")),
                Some(_) => {}
            }
        }
        if !acceptable(req.header("accept")) {
            return Err(ords(406, "NotAcceptable", "Not Acceptable"));
        }
        let body = if matches!(method, "POST" | "PUT") {
            Some(json_body(req)?)
        } else {
            None
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let base = format!("http://{}/ords/{schema}", req.header("host").unwrap_or("localhost"));
        match (resource, body) {
            (Resource::Employees, Some(b)) => st.create(&base, &b),
            (Resource::Employees, None) => Ok(st.list(&base)),
            (Resource::Employee(id), Some(b)) => st.update(&base, id, &b),
            (Resource::Employee(id), None) if method == "DELETE" => st.delete(id),
            (Resource::Employee(id), None) => st.show(&base, id),
            (Resource::SalaryStats(dept), _) => st.salary_stats(dept),
            (Resource::Salaries, _) => Ok(st.salaries()),
            (Resource::Export, _) => Ok(st.export(&base)),
            (Resource::Job(name), _) => st.poll(&base, &name),
            (Resource::Workers, _) => Ok(workers(req)),
            (Resource::Worker(id), _) => Ok(worker(&id)),
        }
    }

    fn render(&self, req: &EmuRequest, e: OrdsError) -> EmuResponse {
        let instance = format!("tag:oracle.com,2020:ecid/{}", self.ecid());
        let reason = match e.status {
            415 => Some("Not Acceptable"),
            555 => Some("User Defined Resource Error"),
            _ => None,
        };
        let resp = if prefers_html(req.header("accept")) {
            EmuResponse::new(e.status).body("text/html; charset=utf-8", html_page(&e, &instance))
        } else {
            let mut body = json!({
                "code": e.code,
                "message": e.message,
                "type": format!("tag:oracle.com,2020:error/{}", e.code),
                "instance": instance,
            });
            if let (Some(u), Some(m)) = (&e.user_defined, body.as_object_mut()) {
                m.insert("title".into(), json!("User Defined Resource Error"));
                m.insert("o:errorCode".into(), json!(u.error_code));
                m.insert("cause".into(), json!(u.cause));
                m.insert("action".into(), json!(u.action));
            }
            EmuResponse::new(e.status).body(
                "application/problem+json",
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        };
        match reason {
            Some(r) => resp.reason(r),
            None => resp,
        }
    }
}

impl Emulator for Oracle {
    fn handle(&self, req: &EmuRequest) -> EmuResponse {
        self.route(req).unwrap_or_else(|e| self.render(req, e))
    }
}

fn json_body(req: &EmuRequest) -> Result<Map<String, Value>, OrdsError> {
    let ct = req.header("content-type").unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ords(
            415,
            "UnsupportedMediaType",
            format!("The media type {media:?} is not supported; send application/json."),
        ));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad_request("The request body is not a valid JSON object.")),
    }
}

impl Employee {
    fn to_json(&self, base: &str, id: u64) -> Value {
        json!({
            "employee_id": id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "job_id": self.job_id,
            "salary": self.salary,
            "department_id": self.department_id,
            "links": [{ "rel": "self", "href": format!("{base}/employees/{id}") }],
        })
    }

    /// Applies `body` on top of `self` (every member optional), checking types.
    fn merged(&self, body: &Map<String, Value>) -> Result<Employee, OrdsError> {
        let text = |key: &str, old: &str| -> Result<String, OrdsError> {
            match body.get(key) {
                None => Ok(old.to_owned()),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(_) => Err(bad_request(&format!("The value of {key} must be a non-empty string."))),
            }
        };
        let mut e = self.clone();
        e.last_name = text("last_name", &self.last_name)?;
        e.email = text("email", &self.email)?;
        e.job_id = text("job_id", &self.job_id)?;
        match body.get("first_name") {
            None => {}
            Some(Value::String(s)) => e.first_name = Some(s.clone()),
            Some(Value::Null) => e.first_name = None,
            Some(_) => return Err(bad_request("The value of first_name must be a string.")),
        }
        match body.get("salary") {
            None => {}
            Some(Value::Number(n)) => e.salary = n.as_f64(),
            Some(Value::Null) => e.salary = None,
            Some(_) => return Err(bad_request("The value of salary must be a number.")),
        }
        match body.get("department_id") {
            None => {}
            Some(Value::Null) => e.department_id = None,
            Some(v) => match v.as_u64() {
                Some(d) => e.department_id = Some(d),
                None => return Err(bad_request("The value of department_id must be an integer.")),
            },
        }
        Ok(e)
    }
}

impl State {
    fn list(&self, base: &str) -> EmuResponse {
        let items: Vec<Value> = self.employees.iter().map(|(id, e)| e.to_json(base, *id)).collect();
        EmuResponse::new(200).json(&json!({
            "items": items,
            "hasMore": false,
            "limit": 25,
            "offset": 0,
            "count": items.len(),
            "links": [{ "rel": "self", "href": format!("{base}/employees/") }],
        }))
    }

    fn show(&self, base: &str, id: u64) -> Outcome {
        let e = self.employees.get(&id).ok_or_else(not_found)?;
        Ok(EmuResponse::new(200).json(&e.to_json(base, id)))
    }

    fn create(&mut self, base: &str, body: &Map<String, Value>) -> Outcome {
        if let Some(missing) = ["last_name", "email", "job_id"]
            .into_iter()
            .find(|k| !body.contains_key(*k))
        {
            return Err(bad_request(&format!(
                "The request body lacks the required property {missing}."
            )));
        }
        let blank = Employee {
            first_name: None,
            last_name: String::new(),
            email: String::new(),
            job_id: String::new(),
            salary: None,
            department_id: None,
        };
        let e = blank.merged(body)?;
        let id = self.next_employee;
        self.next_employee += 1;
        let location = format!("{base}/employees/{id}");
        let out = EmuResponse::new(201)
            .header("Location", location.clone())
            .header("Content-Location", location)
            .json(&e.to_json(base, id));
        self.employees.insert(id, e);
        Ok(out)
    }

    fn update(&mut self, base: &str, id: u64, body: &Map<String, Value>) -> Outcome {
        let e = self.employees.get_mut(&id).ok_or_else(not_found)?;
        *e = e.merged(body)?;
        Ok(EmuResponse::new(200).json(&e.to_json(base, id)))
    }

    fn delete(&mut self, id: u64) -> Outcome {
        self.employees.remove(&id).ok_or_else(not_found)?;
        Ok(EmuResponse::new(200).json(&json!({ "rowsDeleted": 1 })))
    }

    fn salary_stats(&self, dept: u64) -> Outcome {
        if ![DEPARTMENT_ID, 60, EMPTY_DEPARTMENT_ID].contains(&dept) {
            return Err(not_found());
        }
        let salaries: Vec<f64> = self
            .employees
            .values()
            .filter(|e| e.department_id == Some(dept))
            .filter_map(|e| e.salary)
            .collect();
        if salaries.is_empty() {
            // The handler's PL/SQL (user-defined, not ORDS's) divides the total by the head
            // count: ORDS reports the handler's failure as 555, not as its own 500.
            return Err(user_defined_resource_error(
                1476,
                "ORA-01476: divisor is equal to zero\nORA-06512: at \"HR.SALARY_STATS_PKG\", line 42\nORA-06512: at line 7",
            ));
        }
        let total: f64 = salaries.iter().sum();
        Ok(EmuResponse::new(200).json(&json!({
            "department_id": dept,
            "employees": salaries.len(),
            "total_salary": total,
            "average_salary": total / salaries.len() as f64,
        })))
    }

    fn salaries(&self) -> EmuResponse {
        let items: Vec<Value> = self
            .employees
            .iter()
            .map(|(id, e)| json!({ "employee_id": id, "salary": e.salary }))
            .collect();
        EmuResponse::new(200).json(&json!({ "items": items, "hasMore": false, "count": items.len() }))
    }

    fn export(&mut self, base: &str) -> EmuResponse {
        let name = format!("DATAPUMP_REST_EXPORT_{}", self.next_job);
        self.next_job += 1;
        self.jobs.insert(name.clone(), false);
        let location = format!("{base}/_/db-api/stable/database/datapump/jobs/{name}");
        EmuResponse::new(202).header("Location", location.clone()).json(&json!({
            "job_name": name,
            "operation": "EXPORT",
            "job_mode": "SCHEMA",
            "state": "EXECUTING",
            "links": [{ "rel": "self", "href": location }],
        }))
    }

    /// A job runs until its first poll has been answered.
    fn poll(&mut self, base: &str, name: &str) -> Outcome {
        if name == BROKEN_JOB {
            // ORDS's own Database API (not a user-defined handler) fails: ORDS's 500.
            return Err(OrdsError {
                trace: Some("ORA-39006: internal error\nORA-06512: at \"SYS.DBMS_DATAPUMP\", line 4929"),
                ..ords(500, "InternalServerError", "Internal Server Error")
            });
        }
        let polled = self.jobs.get_mut(name).ok_or_else(not_found)?;
        let state = if *polled { "COMPLETED" } else { "EXECUTING" };
        *polled = true;
        Ok(EmuResponse::new(200).json(&json!({
            "job_name": name,
            "operation": "EXPORT",
            "state": state,
            "links": [{ "rel": "self", "href": format!("{base}/_/db-api/stable/database/datapump/jobs/{name}") }],
        })))
    }
}

/// An error in the Oracle Cloud REST standard's format.
fn cloud_error(status: u16, section: &str, title: &str, detail: &str, code: &str, path: &str) -> EmuResponse {
    EmuResponse::new(status).body(
        "application/vnd.oracle.resource+json; type=error",
        serde_json::to_vec(&json!({
            "type": format!("http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#sec{section}"),
            "title": title,
            "status": status,
            "detail": detail,
            "o:errorCode": code,
            "o:errorPath": path,
        }))
        .unwrap_or_default(),
    )
}

fn worker_json(id: &str) -> Value {
    json!({ "WorkerId": id, "DisplayName": "Steven King", "AssignmentStatus": "ACTIVE" })
}

fn workers(req: &EmuRequest) -> EmuResponse {
    if let Some(l) = req.query_param("limit") {
        if !l.parse::<u32>().is_ok_and(|n| n > 0) {
            return cloud_error(
                400,
                "10.4.1",
                "BadRequestException",
                &format!("Invalid value {l} for query parameter limit."),
                "urn:oracle:cloud:client:error:invalid-parameter",
                "/workers?limit",
            );
        }
    }
    EmuResponse::new(200).json(&json!({ "items": [worker_json(WORKER_ID)], "count": 1, "hasMore": false }))
}

fn worker(id: &str) -> EmuResponse {
    if id == WORKER_ID {
        return EmuResponse::new(200).json(&worker_json(id));
    }
    cloud_error(
        404,
        "10.4.5",
        "NotFoundException",
        &format!("Entity with ID {id} not found"),
        "urn:oracle:cloud:client:error:not-found",
        &format!("/{id}"),
    )
}

fn bearer(req: &EmuRequest) -> Option<&str> {
    let v = req.header("authorization")?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn token_roles(token: &str) -> Option<&'static [&'static str]> {
    match token {
        ADMIN_TOKEN => Some(&["HR Administrator", "SQL Administrator"]),
        CLERK_TOKEN => Some(&[]),
        _ => None,
    }
}

/// (media range, quality) of each Accept item.
fn accept_items(accept: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    accept.split(',').map(|item| {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
            .unwrap_or(1.0);
        (media, q)
    })
}

/// Whether ORDS can answer this Accept: JSON, or HTML (browsers get the JSON anyway).
fn acceptable(accept: Option<&str>) -> bool {
    accept.is_none_or(|a| {
        accept_items(a).any(|(m, q)| {
            q > 0.0
                && matches!(
                    m.as_str(),
                    "application/json" | "application/problem+json" | "application/*" | "*/*" | "text/html" | "text/*"
                )
        })
    })
}

/// True when Accept ranks text/html strictly above every JSON type (responseFormat auto).
fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let (mut html, mut json) = (0.0f32, 0.0f32);
    for (m, q) in accept_items(accept) {
        match m.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            "application/json" | "application/problem+json" | "application/*" | "*/*" => json = json.max(q),
            _ => {}
        }
    }
    html > json
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_page(e: &OrdsError, instance: &str) -> String {
    let reason = match e.status {
        555 => Some("User Defined Resource Error"),
        s => http::StatusCode::from_u16(s).ok().and_then(|s| s.canonical_reason()),
    }
    .unwrap_or("Error");
    let trace = e
        .trace
        .map(|t| format!("<pre>{}</pre>\n", html_escape(t)))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"/><title>{status} {reason}</title></head>\n\
         <body>\n<div id=\"error\">\n<h1>{status} {reason}</h1>\n<p>{message}</p>\n\
         <dl><dt>Error Code</dt><dd>{code}</dd></dl>\n{trace}\
         <footer><small>{instance}</small></footer>\n</div>\n</body>\n</html>\n",
        status = e.status,
        message = html_escape(&e.message),
        code = e.code,
    )
}

/// splitmix64: counter -> well-spread bits (ids that look random but are reproducible).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Unpadded base64url, the form of an ECID.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecids_look_like_ords() {
        assert_eq!(base64url(b"Man"), "TWFu");
        assert_eq!(base64url(b"Ma"), "TWE");
        let o = Oracle::new();
        let (a, b) = (o.ecid(), o.ecid());
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
    }

    #[test]
    fn resources_and_negotiation() {
        assert_eq!(Resource::parse("employees/"), Some(Resource::Employees));
        assert_eq!(Resource::parse("employees/7"), Some(Resource::Employee(7)));
        assert_eq!(Resource::parse("employees/x"), None);
        assert_eq!(Resource::parse("employees"), None);
        assert_eq!(Resource::parse("employees/7/"), None);
        assert!(prefers_html(Some("text/html,application/xhtml+xml,*/*;q=0.8")));
        assert!(!prefers_html(Some("text/html, application/json")));
        assert!(!acceptable(Some("application/xml")));
        assert!(acceptable(Some("text/html")));
    }

    #[test]
    fn html_page_is_well_formed_xml() {
        let e = OrdsError {
            trace: Some("ORA-01476 <x> & y"),
            ..ords(500, "InternalServerError", "a \"b\" & <c>")
        };
        let page = html_page(&e, "tag:oracle.com,2020:ecid/x");
        let doc = crate::xml::Element::parse(page.as_bytes()).unwrap();
        assert_eq!(doc.text_at("html/body/div/dl/dd"), Some("InternalServerError"));
    }
}
