//! Shared test parts: a raw HTTP/1.1 client, scripted upstream servers and an in-process
//! gateway, all on real loopback sockets; a typed builder for the main configuration
//! (`config`), the captured access log (`access_log`), the shared response assertions (`assert`), the documentation's examples as tests read them
//! (`docs`) and an OTLP traces receiver (`otlp`).
#![allow(dead_code, unused_imports)]

pub mod access_log;
pub mod assert;
pub mod client;
pub mod config;
pub mod curl;
pub mod dns;
pub mod docs;
pub mod gateway;
pub mod otlp;
pub mod tls;
pub mod upstream;
pub mod vendor;

pub use client::{request, Response};
pub use gateway::Gateway;
pub use upstream::{Reply, Upstream};
