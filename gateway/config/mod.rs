//! Reading configuration: the raw YAML schema, units, and the reader that turns files into raw
//! values or positioned problems. Nothing here gives them meaning: `crate::snapshot` assembles
//! the snapshot, the engine compiles profiles. `json_schema`: the JSON Schema of the files.

pub mod admin;
pub mod json_schema;
pub mod listener_tls;
pub mod listeners;
pub mod load;
pub mod schema;
pub mod tracing;
pub mod upstream_tls;
pub use statusgate_engine::units;

pub use load::{ConfigProblem, ProblemKind, Severity, SourcePos};
