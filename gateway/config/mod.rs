//! Reading configuration: the raw YAML schema, units, and the loader that turns files into raw
//! values or positioned problems. Meaning (compilation) lives in `crate::snapshot`.

pub mod load;
pub mod schema;
pub use statusgate_engine::units;

pub use load::{ConfigProblem, ProblemKind, Severity, SourcePos};
