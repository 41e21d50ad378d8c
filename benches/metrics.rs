//! What the metrics cost per request (criterion): recording one finished request with
//! `RouteMetrics::record` (the response counter found by its packed key, the failure, rule and
//! skip counters, the duration histogram with its clock read, the upstream header histogram)
//! against doing nothing with the same request outcome; for an upstream-answered response that a
//! rule rewrote and for a gateway-made 502. Also `SnapshotSeries::record` (which picks the route), a request
//! that matched no route, and the upstream-answered case on two threads at once (both cores
//! incrementing the same counters).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use statusgate::engine::{GatewayFailure, Origin};
use statusgate::telemetry::metrics::{self, RouteMetrics};
use statusgate::telemetry::outcome::Outcome as RequestLog;

fn route() -> Arc<RouteMetrics> {
    Arc::new(RouteMetrics::new(metrics::global(), "bench").with_rules(["throttled", "validation"].into_iter()))
}

fn log(route: Option<usize>) -> RequestLog {
    let mut log = RequestLog::new(Instant::now(), "bench-1".to_owned());
    log.route = route;
    log.upstream_addr = Some("127.0.0.1:18003".parse().unwrap());
    log
}

/// A vendor 400 that rule 0 turned into 429.
fn upstream_answered(route: Option<usize>) -> RequestLog {
    RequestLog {
        upstream_status: Some(400),
        status: 429,
        rule: Some("throttled".to_owned()),
        rule_index: Some(0),
        upstream_header_after: Some(Duration::from_micros(1800)),
        ..log(route)
    }
}

/// The upstream refused the connection: 502, origin gateway.
fn gateway_failure(route: Option<usize>) -> RequestLog {
    RequestLog {
        upstream_addr: None,
        status: 502,
        origin: Origin::Gateway,
        failure: Some(GatewayFailure::UpstreamRefused),
        error: Some("Connection refused".to_owned()),
        ..log(route)
    }
}

fn bench_record(c: &mut Criterion) {
    let m = metrics::global();
    let route = route();
    let answered = upstream_answered(None);
    let failed = gateway_failure(None);
    // The first record of a (code, upstream code, origin) resolves its series; time the rest.
    route.record(&answered);
    route.record(&failed);

    let mut g = c.benchmark_group("metrics");
    g.bench_function("nothing", |b| b.iter(|| black_box(&answered)));
    g.bench_function("record/upstream_answered", |b| {
        b.iter(|| route.record(black_box(&answered)))
    });
    g.bench_function("record/gateway_failure", |b| {
        b.iter(|| route.record(black_box(&failed)))
    });

    let series = m.accept([("bench", ["throttled", "validation"].into_iter())], None);
    let routed = upstream_answered(Some(0));
    g.bench_function("SnapshotSeries::record/upstream_answered", |b| {
        b.iter(|| series.record(black_box(&routed)))
    });
    let no_route = RequestLog {
        status: 404,
        origin: Origin::Gateway,
        failure: Some(GatewayFailure::NoRoute),
        ..log(None)
    };
    series.record(&no_route);
    g.bench_function("SnapshotSeries::record/no_route", |b| {
        b.iter(|| series.record(black_box(&no_route)))
    });

    // Two threads recording the same series: the time per record on each thread.
    g.bench_function("record/upstream_answered/2_threads", |b| {
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(2));
            let (r, bar) = (route.clone(), barrier.clone());
            let other = std::thread::spawn(move || {
                let log = upstream_answered(None);
                bar.wait();
                for _ in 0..iters {
                    r.record(black_box(&log));
                }
            });
            barrier.wait();
            let t = Instant::now();
            for _ in 0..iters {
                route.record(black_box(&answered));
            }
            let _ = other.join();
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_record);
criterion_main!(benches);
