//! Huawei Cloud VPC Endpoint (VPCEP) emulator: `/v1/{project_id}/vpc-endpoints[/{id}]` and
//! `/v1/{project_id}/vpc-endpoint-services[/{id}]` over a small in-memory project, answering with
//! the vendor's statuses, `{"error_code","error_msg"}` bodies (API gateway errors add
//! `request_id`) and an `X-Request-Id` on every response. Every status comes from a real request
//! against the seeded state (the `pub const` ids below), never from a magic path.
//!
//! | status | error_code              | how to trigger                                                        |
//! |--------|-------------------------|-----------------------------------------------------------------------|
//! | 200    |                         | GET/PUT an endpoint, GET a list; POST create (201 would be right)      |
//! | 204    |                         | DELETE an endpoint that is not `creating`                              |
//! | 400    | EndPoint.0002           | body that is not a JSON object, a missing or mistyped field            |
//! | 400    | EndPoint.0006           | `limit` not a number in 1..=1000                                       |
//! | 400    | EndPoint.0021           | `marker` naming no endpoint of the project                             |
//! | 400    | EndPoint.0023           | `subnet_id` not in the given VPC                                       |
//! | 400    | EndPoint.0022           | more than `BURST_LIMIT` creates for a project within one second        |
//! | 400    | Endpoint.1018           | create when the project already holds `QUOTA` endpoints                |
//! | 400    | EndPoint.2001           | create with an unknown `vpc_id`                                        |
//! | 400    | EndPoint.2003           | create with an unknown `endpoint_service_id`                           |
//! | 400    | EndPoint.2022           | create against `FAILED_SERVICE_ID` (service in status `failed`)        |
//! | 400    | EndPoint.3001           | create in `FULL_SUBNET_ID` (no free ports)                             |
//! | 400    | APIGW.0201 *            | an `X-Sdk-Date` that is not `YYYYMMDDTHHMMSSZ`                         |
//! | 401    | EndPoint.0003           | no `X-Auth-Token`, or a token IAM does not know                        |
//! | 403    | EndPoint.0004           | `OTHER_TOKEN` (scoped to `OTHER_PROJECT_ID`) on the demo project       |
//! | 404    | EndPoint.0005           | an endpoint or endpoint service id that does not exist                 |
//! | 404    | EndPoint.2030           | list with `marker=` empty                                              |
//! | 404    | APIGW.0101              | a path the API does not define                                         |
//! | 405    | APIGW.0105 *            | a known method the resource does not support (e.g. PUT on the list)    |
//! | 406    | EndPoint.0024 *         | `Accept` that allows no JSON (e.g. `application/xml`)                  |
//! | 407    | APIGW.0312 *            | a `Via` header (an intermediary) without `Proxy-Authorization`         |
//! | 408    | APIGW.0306 *            | `X-Sdk-Date` more than 15 minutes away from now (signed, then stalled) |
//! | 409    | EndPoint.2050 *         | DELETE/PUT an endpoint still `creating` (created, not yet polled)      |
//! | 500    | EndPoint.0001           | create against, or GET, `BROKEN_SERVICE_ID` (its record is corrupt)    |
//! | 501    | APIGW.0106 *            | a method the API gateway does not know (e.g. `PROPFIND`)               |
//! | 502    | EndPoint.0025 *         | create against `GARBLED_SERVICE_ID` (backend answers garbage)          |
//! | 503    | EndPoint.0027 *         | create against `OVERLOADED_SERVICE_ID` (backend sheds load)            |
//! | 504    | EndPoint.0011           | POST/PUT with an empty body                                            |
//! | 504    | EndPoint.0012           | POST/PUT with a body but no `Content-Type`                             |
//! | 504    | EndPoint.0013           | create against `UNREACHABLE_SERVICE_ID` (backend never answers)        |
//!
//! `*`: the vendor's table gives the status only; the code is the emulator's choice. A new
//! endpoint is `creating` until it has been polled once (`GET .../vpc-endpoints/{id}`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{EmuRequest, EmuResponse, Emulator};

pub const DEMO_PROJECT_ID: &str = "0605767f3a80d5762fe4c0132e8c2c8a";
pub const OTHER_PROJECT_ID: &str = "5f2ac1b0e4c94d0fa6f1d1d3b8e0c7aa";
/// IAM token scoped to the demo project.
pub const DEMO_TOKEN: &str = "MIIDemoToken-0605767f3a80d5762fe4c0132e8c2c8a";
/// IAM token scoped to the other project.
pub const OTHER_TOKEN: &str = "MIIDemoToken-5f2ac1b0e4c94d0fa6f1d1d3b8e0c7aa";
pub const DEMO_VPC_ID: &str = "4189d3c2-8882-4871-a3c2-d380272eed83";
/// A subnet of the demo VPC with free ports.
pub const DEMO_SUBNET_ID: &str = "68bfbcc1-dff2-47e4-a9d4-332b9bc1b8de";
/// A subnet of the demo VPC whose every port is taken.
pub const FULL_SUBNET_ID: &str = "9d1c2b7e-55a0-4f0e-8d3a-1c2f7e9b0a44";
/// A healthy interface endpoint service.
pub const SERVICE_ID: &str = "b67b2cd1-5f1e-4a2b-8a6c-0fd3c1d2e001";
/// An endpoint service in status `failed`.
pub const FAILED_SERVICE_ID: &str = "b67b2cd1-5f1e-4a2b-8a6c-0fd3c1d2e002";
/// An endpoint service whose stored record is corrupt (the emulator's own fault).
pub const BROKEN_SERVICE_ID: &str = "b67b2cd1-5f1e-4a2b-8a6c-0fd3c1d2e003";
/// An endpoint service whose backend never answers.
pub const UNREACHABLE_SERVICE_ID: &str = "b67b2cd1-5f1e-4a2b-8a6c-0fd3c1d2e004";
/// An endpoint service whose backend answers with garbage.
pub const GARBLED_SERVICE_ID: &str = "b67b2cd1-5f1e-4a2b-8a6c-0fd3c1d2e005";
/// An endpoint service whose backend sheds load.
pub const OVERLOADED_SERVICE_ID: &str = "b67b2cd1-5f1e-4a2b-8a6c-0fd3c1d2e006";
/// The demo project's seeded endpoint (status `accepted`).
pub const DEMO_ENDPOINT_ID: &str = "2c0b3e1a-7d4f-4c55-9a0e-6b1f8e2d3c01";
/// Endpoints a project may hold.
pub const QUOTA: usize = 5;
/// Creates a project may send within one second.
pub const BURST_LIMIT: usize = 5;
/// How far `X-Sdk-Date` may be from now.
const SDK_DATE_SKEW: u64 = 15 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Healthy,
    Corrupt,
    Unreachable,
    Garbled,
    Overloaded,
}

struct Service {
    id: &'static str,
    name: &'static str,
    status: &'static str,
    backend: Backend,
}

const SERVICES: [Service; 6] = [
    Service {
        id: SERVICE_ID,
        name: "eu-west-101.demo-api.b67b2cd1",
        status: "available",
        backend: Backend::Healthy,
    },
    Service {
        id: FAILED_SERVICE_ID,
        name: "eu-west-101.failed-api.b67b2cd2",
        status: "failed",
        backend: Backend::Healthy,
    },
    Service {
        id: BROKEN_SERVICE_ID,
        name: "eu-west-101.broken-api.b67b2cd3",
        status: "available",
        backend: Backend::Corrupt,
    },
    Service {
        id: UNREACHABLE_SERVICE_ID,
        name: "eu-west-101.silent-api.b67b2cd4",
        status: "available",
        backend: Backend::Unreachable,
    },
    Service {
        id: GARBLED_SERVICE_ID,
        name: "eu-west-101.garbled-api.b67b2cd5",
        status: "available",
        backend: Backend::Garbled,
    },
    Service {
        id: OVERLOADED_SERVICE_ID,
        name: "eu-west-101.busy-api.b67b2cd6",
        status: "available",
        backend: Backend::Overloaded,
    },
];

/// (vpc, owning project, its subnets).
const VPCS: [(&str, &str, [&str; 2]); 1] = [(DEMO_VPC_ID, DEMO_PROJECT_ID, [DEMO_SUBNET_ID, FULL_SUBNET_ID])];

struct Subnet {
    free_ports: u32,
    next_host: u32,
}

struct Endpoint {
    id: String,
    project: String,
    service: &'static Service,
    vpc_id: String,
    subnet_id: String,
    ip: String,
    marker_id: u64,
    creating: bool,
    enable_whitelist: bool,
    whitelist: Vec<String>,
    created_at: String,
}

impl Endpoint {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "service_type": "interface",
            "status": if self.creating { "creating" } else { "accepted" },
            "active_status": ["active"],
            "endpoint_service_name": self.service.name,
            "endpoint_service_id": self.service.id,
            "vpc_id": self.vpc_id,
            "subnet_id": self.subnet_id,
            "ip": self.ip,
            "marker_id": self.marker_id,
            "project_id": self.project,
            "enable_dns": false,
            "enable_whitelist": self.enable_whitelist,
            "whitelist": self.whitelist,
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.created_at,
        })
    }
}

struct State {
    /// In creation order (the list's marker order).
    endpoints: Vec<Endpoint>,
    subnets: HashMap<&'static str, Subnet>,
    /// Per project, the instants of recent create requests.
    creates: HashMap<String, VecDeque<Instant>>,
    next_marker: u64,
}

/// The emulator; state is per instance.
pub struct Huawei {
    state: Mutex<State>,
    request_ids: AtomicU64,
}

impl Default for Huawei {
    fn default() -> Self {
        Self::new()
    }
}

/// A request's target resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    Endpoints,
    Endpoint(&'a str),
    Services,
    Service(&'a str),
}

impl Target<'_> {
    fn parse(path: &str) -> Option<(&str, Target<'_>)> {
        let mut segs = path.strip_prefix("/v1/")?.split('/');
        let project = segs.next().filter(|p| !p.is_empty())?;
        let target = match (segs.next()?, segs.next()) {
            (_, Some("")) => return None,
            ("vpc-endpoints", None) => Target::Endpoints,
            ("vpc-endpoints", Some(id)) => Target::Endpoint(id),
            ("vpc-endpoint-services", None) => Target::Services,
            ("vpc-endpoint-services", Some(id)) => Target::Service(id),
            _ => return None,
        };
        segs.next().is_none().then_some((project, target))
    }

    fn allows(self, method: &str) -> bool {
        let allowed: &[&str] = match self {
            Target::Endpoints => &["GET", "HEAD", "POST"],
            Target::Endpoint(_) => &["GET", "HEAD", "PUT", "DELETE"],
            Target::Services | Target::Service(_) => &["GET", "HEAD"],
        };
        allowed.contains(&method)
    }
}

const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

fn error(status: u16, code: &str, msg: &str) -> EmuResponse {
    EmuResponse::new(status).json(&json!({ "error_code": code, "error_msg": msg }))
}

/// An error from Huawei's API gateway in front of VPCEP: it carries the request id in the body.
fn apigw(status: u16, code: &str, msg: &str, rid: &str) -> EmuResponse {
    EmuResponse::new(status).json(&json!({ "error_code": code, "error_msg": msg, "request_id": rid }))
}

fn param_error() -> EmuResponse {
    error(400, "EndPoint.0002", "Parameter error.")
}

impl Huawei {
    pub fn new() -> Self {
        let mut subnets = HashMap::new();
        subnets.insert(
            DEMO_SUBNET_ID,
            Subnet {
                free_ports: 250,
                next_host: 11,
            },
        );
        subnets.insert(
            FULL_SUBNET_ID,
            Subnet {
                free_ports: 0,
                next_host: 255,
            },
        );
        let seeded = Endpoint {
            id: DEMO_ENDPOINT_ID.to_owned(),
            project: DEMO_PROJECT_ID.to_owned(),
            service: &SERVICES[0],
            vpc_id: DEMO_VPC_ID.to_owned(),
            subnet_id: DEMO_SUBNET_ID.to_owned(),
            ip: "192.168.0.10".to_owned(),
            marker_id: 1,
            creating: false,
            enable_whitelist: false,
            whitelist: Vec::new(),
            created_at: "2024-05-06T08:00:00Z".to_owned(),
        };
        Huawei {
            state: Mutex::new(State {
                endpoints: vec![seeded],
                subnets,
                creates: HashMap::new(),
                next_marker: 2,
            }),
            request_ids: AtomicU64::new(1),
        }
    }

    fn request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:016x}", mix(n), mix(n ^ 0x5bd1_e995))
    }

    fn route(&self, req: &EmuRequest, rid: &str) -> EmuResponse {
        let method = req.method.as_str();
        if !KNOWN_METHODS.contains(&method) {
            return apigw(501, "APIGW.0106", "Method not implemented.", rid);
        }
        if req.header("via").is_some() && req.header("proxy-authorization").is_none() {
            return apigw(
                407,
                "APIGW.0312",
                "Proxy authentication required: the request came through an unauthenticated proxy.",
                rid,
            )
            .header("Proxy-Authenticate", "Basic realm=\"apig-egress\"");
        }
        if let Some(date) = req.header("x-sdk-date") {
            match parse_sdk_date(date) {
                Some(t) if now_secs().abs_diff(t) <= SDK_DATE_SKEW => {}
                Some(_) => return apigw(408, "APIGW.0306", "Request timed out: X-Sdk-Date is out of range.", rid),
                None => return apigw(400, "APIGW.0201", "Bad request: invalid X-Sdk-Date.", rid),
            }
        }
        let Some((project, target)) = Target::parse(&req.path) else {
            return apigw(
                404,
                "APIGW.0101",
                "The API does not exist or has not been published in the environment.",
                rid,
            );
        };
        if !target.allows(method) {
            return apigw(405, "APIGW.0105", "Method not allowed.", rid);
        }
        match req.header("x-auth-token").map(token_project) {
            None | Some(None) => {
                return error(
                    401,
                    "EndPoint.0003",
                    "Authentication failed or authentication information is invalid.",
                )
            }
            Some(Some(p)) if p != project => {
                return error(
                    403,
                    "EndPoint.0004",
                    "Authentication information is incorrect or you have no permissions.",
                )
            }
            Some(Some(_)) => {}
        }
        if !accepts_json(req.header("accept")) {
            return error(
                406,
                "EndPoint.0024",
                "Unsupported Accept type: only application/json is produced.",
            );
        }
        let body = if matches!(method, "POST" | "PUT") {
            if req.body.is_empty() {
                return error(504, "EndPoint.0011", "request body is null");
            }
            let Some(ct) = req.header("content-type") else {
                return error(504, "EndPoint.0012", "request header is null");
            };
            if !media_type(ct).eq_ignore_ascii_case("application/json") {
                return param_error();
            }
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(Value::Object(m)) => m,
                _ => return param_error(),
            }
        } else {
            Map::new()
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (method, target) {
            ("POST", Target::Endpoints) => st.create(project, &body),
            ("PUT", Target::Endpoint(id)) => st.update(project, id, &body),
            ("DELETE", Target::Endpoint(id)) => st.delete(project, id),
            (_, Target::Endpoints) => st.list(project, req),
            (_, Target::Endpoint(id)) => st.show(project, id),
            (_, Target::Services) => {
                let items: Vec<Value> = SERVICES.iter().map(service_json).collect();
                EmuResponse::new(200).json(&json!({ "endpoint_services": items, "total_count": items.len() }))
            }
            (_, Target::Service(id)) => match find_service(id) {
                None => not_found(),
                Some(s) if s.backend == Backend::Corrupt => system_error(),
                Some(s) => EmuResponse::new(200).json(&service_json(s)),
            },
        }
    }
}

impl Emulator for Huawei {
    fn handle(&self, req: &EmuRequest) -> EmuResponse {
        let rid = self.request_id();
        self.route(req, &rid).header("X-Request-Id", rid)
    }
}

fn not_found() -> EmuResponse {
    error(404, "EndPoint.0005", "The requested resource does not exist.")
}

fn system_error() -> EmuResponse {
    error(500, "EndPoint.0001", "System error. Please retry.")
}

fn find_service(id: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.id == id)
}

fn service_json(s: &Service) -> Value {
    json!({
        "id": s.id,
        "service_name": s.name,
        "service_type": "interface",
        "server_type": "VM",
        "status": s.status,
        "approval_enabled": false,
    })
}

fn str_field<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, EmuResponse> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(param_error()),
    }
}

impl State {
    fn find(&mut self, project: &str, id: &str) -> Option<&mut Endpoint> {
        self.endpoints.iter_mut().find(|e| e.project == project && e.id == id)
    }

    /// Records a create request; true when the project went over its burst limit.
    fn throttled(&mut self, project: &str) -> bool {
        let now = Instant::now();
        let window = self.creates.entry(project.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        window.push_back(now);
        window.len() > BURST_LIMIT
    }

    fn create(&mut self, project: &str, body: &Map<String, Value>) -> EmuResponse {
        if self.throttled(project) {
            return error(
                400,
                "EndPoint.0022",
                "The number of requests exceeded the limit. Please try later.",
            );
        }
        let (vpc_id, subnet_id, service_id) = match (
            str_field(body, "vpc_id"),
            str_field(body, "subnet_id"),
            str_field(body, "endpoint_service_id"),
        ) {
            (Ok(v), Ok(s), Ok(e)) => (v, s, e),
            _ => return param_error(),
        };
        let Some((_, _, subnets)) = VPCS.iter().find(|(v, p, _)| *v == vpc_id && *p == project) else {
            return error(400, "EndPoint.2001", "VPC does not exist.");
        };
        if !subnets.contains(&subnet_id) {
            return error(400, "EndPoint.0023", "Invalid subnet_id.");
        }
        let Some(service) = find_service(service_id) else {
            return error(400, "EndPoint.2003", "The endpoint service does not exist.");
        };
        if self.endpoints.iter().filter(|e| e.project == project).count() >= QUOTA {
            return error(400, "Endpoint.1018", "The number of endpoints exceeds the quota.");
        }
        if service.status == "failed" {
            return error(400, "EndPoint.2022", "Failed to create an endpoint.");
        }
        match service.backend {
            Backend::Healthy => {}
            Backend::Corrupt => return system_error(),
            Backend::Unreachable => return error(504, "EndPoint.0013", "timed out"),
            Backend::Garbled => {
                return error(
                    502,
                    "EndPoint.0025",
                    "Invalid response from the endpoint service backend.",
                )
            }
            Backend::Overloaded => {
                return error(503, "EndPoint.0027", "The endpoint service is temporarily unavailable.")
            }
        }
        let Some(subnet) = self.subnets.get_mut(subnet_id).filter(|s| s.free_ports > 0) else {
            return error(400, "EndPoint.3001", "Failed to create a port.");
        };
        subnet.free_ports -= 1;
        let ip = format!("192.168.0.{}", subnet.next_host);
        subnet.next_host += 1;
        let marker = self.next_marker;
        self.next_marker += 1;
        let endpoint = Endpoint {
            id: uuid_like(marker),
            project: project.to_owned(),
            service,
            vpc_id: vpc_id.to_owned(),
            subnet_id: subnet_id.to_owned(),
            ip,
            marker_id: marker,
            creating: true,
            enable_whitelist: false,
            whitelist: Vec::new(),
            created_at: rfc3339(now_secs()),
        };
        let out = EmuResponse::new(200).json(&endpoint.to_json());
        self.endpoints.push(endpoint);
        out
    }

    fn show(&mut self, project: &str, id: &str) -> EmuResponse {
        let Some(e) = self.find(project, id) else {
            return not_found();
        };
        let out = EmuResponse::new(200).json(&e.to_json());
        // The poll completes provisioning: the next read sees `accepted`.
        e.creating = false;
        out
    }

    fn update(&mut self, project: &str, id: &str, body: &Map<String, Value>) -> EmuResponse {
        let enable = match body.get("enable_whitelist") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return param_error(),
        };
        let whitelist = match body.get("whitelist") {
            None => None,
            Some(Value::Array(items)) => {
                let list: Option<Vec<String>> = items.iter().map(|v| v.as_str().map(str::to_owned)).collect();
                match list {
                    Some(l) => Some(l),
                    None => return param_error(),
                }
            }
            Some(_) => return param_error(),
        };
        let Some(e) = self.find(project, id) else {
            return not_found();
        };
        if e.creating {
            return still_creating();
        }
        if let Some(b) = enable {
            e.enable_whitelist = b;
        }
        if let Some(l) = whitelist {
            e.whitelist = l;
        }
        EmuResponse::new(200).json(&e.to_json())
    }

    fn delete(&mut self, project: &str, id: &str) -> EmuResponse {
        let Some(i) = self.endpoints.iter().position(|e| e.project == project && e.id == id) else {
            return not_found();
        };
        if self.endpoints[i].creating {
            return still_creating();
        }
        let gone = self.endpoints.remove(i);
        if let Some(s) = self.subnets.get_mut(gone.subnet_id.as_str()) {
            s.free_ports += 1;
        }
        EmuResponse::new(204)
    }

    fn list(&self, project: &str, req: &EmuRequest) -> EmuResponse {
        let limit = match req.query_param("limit") {
            None => 10,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => return error(400, "EndPoint.0006", "Invalid limit."),
            },
        };
        let mine: Vec<&Endpoint> = self.endpoints.iter().filter(|e| e.project == project).collect();
        let start = match req.query_param("marker") {
            None => 0,
            Some("") => return error(404, "EndPoint.2030", "markerId is empty"),
            Some(m) => match mine.iter().position(|e| e.id == m) {
                Some(i) => i + 1,
                None => return error(400, "EndPoint.0021", "Invalid marker_id."),
            },
        };
        let page: Vec<Value> = mine.iter().skip(start).take(limit).map(|e| e.to_json()).collect();
        EmuResponse::new(200).json(&json!({ "endpoints": page, "total_count": mine.len() }))
    }
}

fn still_creating() -> EmuResponse {
    error(
        409,
        "EndPoint.2050",
        "The endpoint is being created. Try again when its status is accepted.",
    )
}

/// The project an IAM token is scoped to.
fn token_project(token: &str) -> Option<&'static str> {
    match token {
        DEMO_TOKEN => Some(DEMO_PROJECT_ID),
        OTHER_TOKEN => Some(OTHER_PROJECT_ID),
        _ => None,
    }
}

fn media_type(v: &str) -> &str {
    v.split(';').next().unwrap_or("").trim()
}

/// True when `Accept` is absent or allows application/json with a non-zero quality.
fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !zero && matches!(media.as_str(), "application/json" | "application/*" | "*/*")
    })
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `20240506T080000Z` (the SDK signing date) -> seconds since the epoch.
fn parse_sdk_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    u64::try_from(days * 86_400 + i64::from(h * 3600 + mi * 60 + se)).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch -> `2024-05-06T08:00:00Z`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// splitmix64: counter -> well-spread bits (ids that look random but are reproducible).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uuid_like(n: u64) -> String {
    let (a, b) = (mix(n), mix(!n));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// The current time as an `X-Sdk-Date` value, offset by `offset_secs` (tests and demo use it).
pub fn sdk_date(offset_secs: i64) -> String {
    let t = now_secs().saturating_add_signed(offset_secs);
    rfc3339(t).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_sdk_date("20240506T080000Z"), Some(1_714_982_400));
        assert_eq!(rfc3339(1_714_982_400), "2024-05-06T08:00:00Z");
        assert_eq!(
            parse_sdk_date(&sdk_date(0)).map(|t| now_secs().abs_diff(t) < 5),
            Some(true)
        );
        assert_eq!(parse_sdk_date("2024-05-06"), None);
        assert_eq!(parse_sdk_date("20241306T080000Z"), None);
    }

    #[test]
    fn paths_and_accept() {
        assert_eq!(Target::parse("/v1/p/vpc-endpoints"), Some(("p", Target::Endpoints)));
        assert_eq!(
            Target::parse("/v1/p/vpc-endpoints/"),
            None,
            "the API gateway matches exactly"
        );
        assert_eq!(
            Target::parse("/v1/p/vpc-endpoints/e1"),
            Some(("p", Target::Endpoint("e1")))
        );
        assert_eq!(Target::parse("/v1/p/vpc-endpoints/e1/x"), None);
        assert_eq!(Target::parse("/v2/p/vpc-endpoints"), None);
        assert!(accepts_json(Some("application/json, text/plain")));
        assert!(accepts_json(Some("*/*")));
        assert!(!accepts_json(Some("application/xml")));
        assert!(!accepts_json(Some("application/json;q=0")));
    }
}
