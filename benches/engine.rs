//! Rule-engine micro benchmarks (criterion): matching on a generated 5,000-rule profile by kind
//! of condition, normalizing 1 KiB and 64 KiB vendor error bodies into problem bodies, and
//! compiling a 5,000-rule snapshot (the cost of a reload).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use statusgate::engine::profile::EnsureHeaders;
use statusgate::engine::response::compose;
use statusgate::engine::{ProblemFormat, RequestFacts, UpstreamBody, UpstreamHead};
use statusgate::snapshot::{self, Snapshot};

/// 5,000 rules over statuses 400-499, a quarter of each kind: status only, response header,
/// JSON body field, XML body field. The rule that matches the benchmarked responses is last.
fn generated_profile() -> String {
    let mut y = String::from("rules:\n");
    for i in 0..4999 {
        let status = 400 + (i % 100);
        let cond = match i % 4 {
            0 => format!("status: {status}, method: PATCH"),
            1 => format!("status: {status}, headers: {{ X-Vendor-Rule: r{i} }}"),
            2 => format!("status: {status}, json: {{ /error_code: E{i} }}"),
            _ => format!("status: {status}, xml: {{ Error/@Code: E{i} }}"),
        };
        y.push_str(&format!(
            "  - name: r{i}\n    when: {{ {cond} }}\n    then: {{ status: 422 }}\n"
        ));
    }
    y.push_str("  - name: last\n    when: { status: 400, json: { /error_code: { equals: EndPoint.0022, ignore_case: true } } }\n    then:\n      status: 429\n      headers: { set: { Retry-After: \"1\" } }\n      problem: { detail: \"${json:/error_msg}\", vendor_code: \"${json:/error_code}\" }\n");
    y
}

fn write_config(dir: &Path, profile: &str) -> PathBuf {
    std::fs::write(dir.join("p.yaml"), profile).unwrap();
    let main = dir.join("gw.yaml");
    std::fs::write(
        &main,
        "listen: 127.0.0.1:1\nupstreams:\n  up:\n    addrs: [127.0.0.1:2]\nroutes:\n  - name: r\n    upstream: up\n    profile: p.yaml\n",
    )
    .unwrap();
    main
}

fn load(profile: &str) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    snapshot::load(&write_config(dir.path(), profile)).unwrap()
}

fn error_body(size: usize) -> Vec<u8> {
    let pad = size.saturating_sub(80);
    format!(
        r#"{{"error_code":"EndPoint.0022","error_msg":"The number of requests exceeded the limit.","pad":"{}"}}"#,
        "x".repeat(pad)
    )
    .into_bytes()
}

fn bench_matching(c: &mut Criterion) {
    let snap = load(&generated_profile());
    let route = &snap.routes[0];
    let req_headers = HeaderMap::new();
    let mut json_headers = HeaderMap::new();
    json_headers.insert("content-type", HeaderValue::from_static("application/json"));
    let req = RequestFacts {
        method: "GET",
        path: "/v1/p/vpc-endpoints",
        headers: &req_headers,
        request_id: "r",
    };
    let none = EnsureHeaders::default();
    let body = error_body(200);

    let mut g = c.benchmark_group("match_5000_rules");
    // Status 204: no rule can match; the common success path.
    g.bench_function("status_only_miss", |b| {
        let head = UpstreamHead {
            status: 204,
            headers: &json_headers,
        };
        b.iter(|| {
            black_box(
                route
                    .profile
                    .evaluate(&snap.canonical, &none, &req, &head, UpstreamBody::NotRead),
            )
        })
    });
    g.bench_function("header_rules", |b| {
        let mut h = json_headers.clone();
        h.insert("x-vendor-rule", HeaderValue::from_static("r1"));
        let head = UpstreamHead {
            status: 401,
            headers: &h,
        };
        b.iter(|| {
            black_box(
                route
                    .profile
                    .evaluate(&snap.canonical, &none, &req, &head, UpstreamBody::NotRead),
            )
        })
    });
    g.bench_function("json_body_field_last_rule", |b| {
        let head = UpstreamHead {
            status: 400,
            headers: &json_headers,
        };
        b.iter(|| {
            black_box(
                route
                    .profile
                    .evaluate(&snap.canonical, &none, &req, &head, UpstreamBody::Read(&body)),
            )
        })
    });
    g.bench_function("xml_body_field", |b| {
        let xml = br#"<Error Code="E3" Message="m" xmlns="http://www.veeam.com/ent/v1.0"/>"#;
        let head = UpstreamHead {
            status: 403,
            headers: &json_headers,
        };
        b.iter(|| {
            black_box(
                route
                    .profile
                    .evaluate(&snap.canonical, &none, &req, &head, UpstreamBody::Read(xml)),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("normalize_error_body");
    for size in [1024usize, 64 * 1024] {
        let body = error_body(size);
        g.bench_function(format!("{}KiB", size / 1024), |b| {
            let head = UpstreamHead {
                status: 400,
                headers: &json_headers,
            };
            b.iter(|| {
                let d = route
                    .profile
                    .evaluate(&snap.canonical, &none, &req, &head, UpstreamBody::Read(&body));
                black_box(compose(&d, 400, &json_headers, "r", ProblemFormat::Json, false))
            })
        });
    }
    g.finish();
}

fn bench_compile(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let main = write_config(dir.path(), &generated_profile());
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("snapshot_5000_rules", |b| {
        b.iter(|| black_box(snapshot::load(&main).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench_matching, bench_compile);
criterion_main!(benches);
