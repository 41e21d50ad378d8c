//! Helpers for the engine's in-process unit tests: a small canonical profile and a profile
//! compiled from YAML text, no file system and no socket.

use std::collections::HashMap;
use std::path::Path;

use crate::canonical::{standard_reason, CanonicalStatus};
use http::HeaderMap;

use crate::spec::RawProfile;
use crate::{CanonicalProfile, CompiledProfile, RequestFacts};

/// Statuses 400, 404, 429, 500, 502 and 503; fallbacks 400 and 500.
pub fn canonical() -> CanonicalProfile {
    let statuses = [400u16, 404, 429, 500, 502, 503]
        .into_iter()
        .map(|s| {
            let c = CanonicalStatus {
                reason: standard_reason(s).to_owned(),
                type_uri: format!("urn:test:{s}"),
                title: format!("title {s}"),
            };
            (s, c)
        })
        .collect();
    CanonicalProfile::new(statuses, 400, 500, HashMap::new())
}

/// Parses and compiles a profile (file name `p.yaml`); panics on problems (tests only).
pub fn compile(yaml: &str) -> (RawProfile, CompiledProfile) {
    let path = Path::new("p.yaml");
    let raw: RawProfile = crate::yaml::parse_yaml(path, yaml).expect("test profile parses");
    let compiled = CompiledProfile::compile(path, &raw, &canonical(), 1 << 20, 64).expect("test profile compiles");
    (raw, compiled)
}

/// Parses a profile (file name `p.yaml`) that must not compile; its problems (tests only).
pub fn problems(yaml: &str) -> Vec<crate::diagnostics::ConfigProblem> {
    let path = Path::new("p.yaml");
    let raw: RawProfile = crate::yaml::parse_yaml(path, yaml).expect("test profile parses");
    match CompiledProfile::compile(path, &raw, &canonical(), 1 << 20, 64) {
        Ok(_) => panic!("the test profile compiled"),
        Err(problems) => problems,
    }
}

/// A `GET /` with these request headers and request id `r`.
pub fn get_root(headers: &HeaderMap) -> RequestFacts<'_> {
    RequestFacts {
        method: "GET",
        path: "/",
        headers,
        request_id: "r",
    }
}
