//! What the gateway tells about itself, downstream of the proxy: the outcome of one request (a
//! leaf type the proxy fills), the metrics that count outcomes, and the access log that writes
//! one line per outcome; `traces`, the OpenTelemetry spans of a request (with `tracing:`). Nothing here imports the proxy or the snapshot loader.

pub mod access_log;
pub mod metrics;
pub mod outcome;
pub mod shadow;
pub mod traces;
pub mod unmatched;
