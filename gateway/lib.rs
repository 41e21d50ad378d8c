//! statusgate: a status-normalizing edge gateway on pingora.
//!
//! - `config`: the YAML schema and file loading (positions for every problem);
//! - `engine`: the pure rule engine (compiled rules -> canonical decision);
//! - `snapshot`: load + validate + compile the whole configuration into one immutable value;
//! - `reload`: the live snapshot behind arc-swap and the reload path; `watch`: file triggers;
//! - `balancer`: the upstream groups' runtime state, made when a snapshot is accepted (`reload`)
//!   and read by the proxy, so neither imports the other's runtime;
//! - `dns`: resolving upstream host names; `upkeep`: the background tasks that keep each
//!   balancer's addresses and health current (resolution, active health checks);
//! - `listener_certs`: the TLS listeners' certificate resolvers (made with the live handle,
//!   installed by `server`, refilled by every accepted reload);
//! - `proxy`: the pingora glue (upstream exchange, the failure table `rescue`);
//! - `telemetry`: a request's `outcome` and what reads it, `metrics` and `access_log`, and
//!   `traces` (its OpenTelemetry spans with `tracing:`);
//! - `upstream_peer`: the one factory of pingora upstream peers (TLS, HTTP/2, timeouts);
//! - `admin`: operations; `server`: assembling pingora's server;
//! - `heap`: gives freed heap memory back to the OS while no request is in flight (glibc);
//! - `suggest`: rule skeletons from the unmatched responses a gateway lists (`statusgate suggest`);
//! - `cli`: `run`, `check`, `explain`, `schema` (the binary adds `demo`, with the vendor emulators of the
//!   separate `statusgate-emulators` crate; this library does not depend on them, and
//!   `completions` and `man`, generated from its clap definitions).

pub mod admin;
pub mod balancer;
pub mod cli;
pub mod config;
pub mod dns;
pub mod heap;
pub mod listener_certs;
pub use statusgate_engine as engine;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod snapshot;
pub mod suggest;
pub mod telemetry;
pub mod upkeep;
pub mod upstream_peer;
pub mod watch;
