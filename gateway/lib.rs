//! statusgate: a status-normalizing edge gateway on pingora.
//!
//! - `config`: the YAML schema and file loading (positions for every problem);
//! - `engine`: the pure rule engine (compiled rules -> canonical decision);
//! - `snapshot`: load + validate + compile the whole configuration into one immutable value;
//! - `proxy`: the pingora glue (routing, upstream exchange, gateway-made errors);
//! - `admin`, `metrics`, `access_log`: operations.

pub mod config;
pub mod engine;
pub mod snapshot;
