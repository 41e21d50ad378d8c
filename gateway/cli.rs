//! The command line of the library: `run`, `check`, `schema`, `explain` (over `engine::pipeline`, the
//! proxy's path; `Command`, `run`), `suggest` (over `crate::suggest`) and what the binary's `demo` shares with them
//! (`load_reporting`). The `statusgate` binary adds `demo` itself (gateway/demo.rs), so the
//! library never depends on the vendor emulators.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Severity;
use crate::engine::pipeline::{self, Normalized, RawBody};
use crate::engine::response::CanonicalBody;
use crate::engine::trace::RuleTrace;
use crate::engine::{RequestFacts, UpstreamHead};
use crate::reload::SnapshotHandle;
use crate::snapshot::{self, Snapshot};

/// The configuration without `-c`: `deploy/statusgate.yaml`, built into the binary.
pub const EMBEDDED_CONFIG: &str = "embedded:deploy/statusgate.yaml";

/// What `--version` prints after the name: the package version, the git revision and the build
/// date (UTC), both from build.rs (`STATUSGATE_REVISION`, `SOURCE_DATE_EPOCH`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("STATUSGATE_REVISION"),
    ", built ",
    env!("STATUSGATE_BUILD_DATE"),
    ")"
);

#[derive(Parser, Debug)]
#[command(name = "statusgate", version = VERSION, about = "A status-normalizing edge gateway on pingora")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve. SIGTERM drains gracefully, SIGHUP reloads, SIGQUIT hands over to a `--upgrade` process.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Take the listening sockets over from a running statusgate (graceful upgrade).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate the configuration and its rules like `nginx -t`: exit 0 or 1.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show the canonical response the gateway would send for an upstream response.
    Explain(ExplainArgs),
    /// Print rule skeletons with examples for the upstream errors no rule matched (a running
    /// gateway's admin /-/unmatched, or a saved listing), each checked like `check` would.
    Suggest(SuggestArgs),
    /// Print the JSON Schema of a configuration file (as shipped in docs/schema/).
    Schema {
        #[arg(value_enum)]
        kind: crate::config::json_schema::SchemaKind,
    },
}

#[derive(Args, Debug)]
pub struct ConfigArg {
    /// Configuration file [default: `embedded:deploy/statusgate.yaml`, built into the binary: the
    /// gateway on 127.0.0.1:8080 forwards every path to 127.0.0.1:18080 with the canonical
    /// profile only, admin on 127.0.0.1:9090; the packages use /etc/statusgate/statusgate.yaml].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn path(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(|| PathBuf::from(EMBEDDED_CONFIG))
    }
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The route whose profile applies.
    #[arg(long)]
    pub route: String,
    /// The upstream's status.
    #[arg(long)]
    pub status: u16,
    /// The client's method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The client's path (as sent to the gateway).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// An upstream response header, `Name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// A client request header, `Name: value` (repeatable).
    #[arg(long = "request-header")]
    pub request_headers: Vec<String>,
    /// The upstream body, or `@file`.
    #[arg(long)]
    pub body: Option<String>,
    /// Also print, for each rule of the profile in order, whether it was a candidate for the
    /// status, the first condition that failed with the value it saw, or that it matched; then
    /// the decision.
    #[arg(long)]
    pub trace: bool,
}

#[derive(Args, Debug)]
pub struct SuggestArgs {
    /// The configuration whose canonical profile the suggestions are checked against (the
    /// gateway's own, so that the statuses the defaults answered agree).
    #[command(flatten)]
    pub config: ConfigArg,
    /// `http://ADDR[/-/unmatched]` (a gateway's admin listener, plain HTTP) or a file holding
    /// a saved `GET /-/unmatched` listing.
    #[arg(long, value_name = "URL-OR-FILE")]
    pub from: String,
    /// Only this route's suggestions.
    #[arg(long)]
    pub route: Option<String>,
    /// A file holding the admin listener's bearer token (when `admin.token_file`/`token_env` is set).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// The configuration was rejected; its problems were printed.
#[derive(Debug)]
pub struct Rejected;

/// Loads a snapshot and prints problems as `file:line:col: message`.
pub fn load_reporting(path: &Path) -> Result<Snapshot, Rejected> {
    match snapshot::load(path) {
        Ok(s) => {
            for w in &s.warnings {
                eprintln!("{w}");
            }
            Ok(s)
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            let errors = problems.iter().filter(|p| p.severity == Severity::Error).count();
            eprintln!("{}: {errors} problem(s), configuration rejected", path.display());
            Err(Rejected)
        }
    }
}

pub fn check(path: &Path) -> i32 {
    match load_reporting(path) {
        Ok(s) => {
            let rules: usize = s.routes.iter().map(|r| r.profile.rule_names().count()).sum();
            println!(
                "{}: ok ({} routes, {} upstreams, {} rules, version {})",
                path.display(),
                s.routes.len(),
                s.upstreams.len(),
                rules,
                s.version
            );
            0
        }
        Err(Rejected) => 1,
    }
}

fn parse_headers(lines: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for l in lines {
        let (k, v) = l.split_once(':').ok_or_else(|| format!("`{l}` is not `Name: value`"))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| format!("bad header name `{k}`"))?;
        let value = HeaderValue::from_str(v.trim()).map_err(|_| format!("bad header value `{v}`"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Renders what the gateway would answer; the text `explain` prints.
pub fn explain(snap: &Snapshot, args: &ExplainArgs) -> Result<String, String> {
    let route = snap.routes.iter().find(|r| *r.name == *args.route).ok_or_else(|| {
        format!(
            "no route `{}` (routes: {})",
            args.route,
            snap.routes.iter().map(|r| &*r.name).collect::<Vec<_>>().join(", ")
        )
    })?;
    let resp_headers = parse_headers(&args.headers)?;
    let req_headers = parse_headers(&args.request_headers)?;
    let body = match &args.body {
        Some(b) if b.starts_with('@') => std::fs::read(&b[1..]).map_err(|e| format!("{}: {e}", &b[1..]))?,
        Some(b) => b.clone().into_bytes(),
        None => Vec::new(),
    };
    let request_id = "explain";
    let upstream_path = route.upstream_path(&args.path).into_owned();
    let facts = RequestFacts {
        method: &args.method,
        path: &upstream_path,
        headers: &req_headers,
        request_id,
    };
    let head = UpstreamHead {
        status: args.status,
        headers: &resp_headers,
    };
    let need = pipeline::body_need(&route.profile, &facts, &head);
    let mut trace = RuleTrace::default();
    let Normalized {
        decision,
        response: resp,
    } = pipeline::normalize_traced(
        &route.profile,
        &snap.canonical,
        &route.ensure,
        &facts,
        &head,
        RawBody::buffered(need, &body),
        pipeline::format_for(&facts),
        args.trace.then_some(&mut trace),
    );
    let mut text = format!("# route: {}  profile: {}\n", route.name, route.profile.source);
    text.push_str(&format!(
        "# rule: {}\n",
        decision.rule.unwrap_or("(none: canonical defaults)")
    ));
    if let Some(s) = decision.body_skip {
        text.push_str(&format!("# body not used: {}\n", s.name()));
    }
    if args.trace {
        text.push_str("# trace:\n");
        for line in trace.lines() {
            text.push_str(&format!("#   {line}\n"));
        }
    }
    text.push_str(&format!("HTTP/1.1 {} {}\n", resp.status, resp.reason));
    for (k, v) in resp.headers.iter() {
        text.push_str(&format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes())));
    }
    text.push('\n');
    match &resp.body {
        CanonicalBody::Replace(b) => text.push_str(&String::from_utf8_lossy(b)),
        CanonicalBody::Upstream => text.push_str(&String::from_utf8_lossy(&body)),
        CanonicalBody::None => {}
    }
    text.push('\n');
    Ok(text)
}

/// `statusgate suggest`: prints the suggestions on stdout, those left out (and why) on stderr.
fn suggest(args: &SuggestArgs) -> i32 {
    let token = match &args.token_file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(t.trim().to_owned()),
            Err(e) => {
                eprintln!("suggest: {}: {e}", path.display());
                return 1;
            }
        },
    };
    let listing = match crate::suggest::read_listing(&args.from, token.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("suggest: {e}");
            return 1;
        }
    };
    let Ok(snap) = load_reporting(&args.config.path()) else {
        return 1;
    };
    match crate::suggest::render(&listing, args.route.as_deref(), &snap.canonical) {
        Ok((text, left_out)) => {
            print!("{text}");
            for l in &left_out {
                eprintln!("suggest: {l}");
            }
            0
        }
        Err(e) => {
            eprintln!("suggest: {e}");
            1
        }
    }
}

/// Parses the command line (`run`, `check`, `explain`) and runs it; returns the exit code.
pub fn main() -> i32 {
    run(Cli::parse().command)
}

/// Runs one of the library's commands; returns the exit code.
pub fn run(command: Command) -> i32 {
    match command {
        Command::Check { config } => check(&config.path()),
        Command::Schema { kind } => {
            print!("{}", crate::config::json_schema::render(kind));
            0
        }
        Command::Suggest(args) => suggest(&args),
        Command::Explain(args) => {
            let Ok(snap) = load_reporting(&args.config.path()) else {
                return 1;
            };
            match explain(&snap, &args) {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => {
                    eprintln!("explain: {e}");
                    1
                }
            }
        }
        Command::Run { config, upgrade } => {
            let path = config.path();
            let Ok(snap) = load_reporting(&path) else { return 1 };
            let _log_guard = crate::telemetry::access_log::init(&snap.boot.log_format, &snap.boot.log_filter);
            crate::server::raise_fd_limit();
            let handle = Arc::new(SnapshotHandle::new(&path, snap));
            match crate::server::build(handle.clone(), upgrade) {
                Ok(built) => {
                    crate::heap::start_idle_trim(crate::telemetry::metrics::global().in_flight.clone());
                    let s = handle.current();
                    tracing::info!(statusgate = VERSION, config = %path.display(), version = %s.version, listen = ?s.boot.listen, admin = %s.boot.admin, "statusgate starting");
                    // `run` (unlike `run_forever`) returns after a graceful shutdown, so the log
                    // guard below flushes the last lines before the process exits.
                    built.server.run(pingora::server::RunArgs::default());
                    if let Some(traces) = &built.traces {
                        traces.shutdown();
                    }
                    tracing::info!("statusgate stopped");
                    0
                }
                Err(e) => {
                    eprintln!("statusgate: cannot start: {e}");
                    1
                }
            }
        }
    }
}
