//! Shared test parts: a raw HTTP/1.1 client, scripted upstream servers and an in-process
//! gateway, all on real loopback sockets.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod gateway;
pub mod upstream;
pub mod vendor;

pub use client::{request, Response};
pub use gateway::Gateway;
pub use upstream::{Reply, Upstream};
