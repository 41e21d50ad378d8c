//! Every metric statusgate exports, defined in one place and registered in prometheus's default
//! registry (prometheus 0.14), served by the admin listener's `/metrics`, beside the standard
//! `process_*` metrics (Linux: CPU, memory, file descriptors, start time, threads): with the
//! crate's `process` feature (Cargo.toml) the default registry registers a `ProcessCollector`
//! for this process itself when it is first used, so registering another would fail.
//!
//! The hot path does no label hashing or formatting: each route's counters are resolved when
//! its snapshot is accepted (start or successful reload: `Metrics::accept`), the series of
//! routes and rules that are gone are removed then, and a rejected reload touches nothing. A
//! (code, upstream code, origin) series is resolved once on first use and then found by a
//! packed integer key. Label sets of failures and skip reasons come from their enums' `ALL`.
//!
//! Cardinality is bounded by the configuration: per route at most 501 codes (100-599 and
//! `other`) x 502 upstream codes (plus `none`) x 2 origins for responses (in practice the
//! handful a vendor uses), one series per gateway failure kind (`GatewayFailure::ALL`, split
//! into upstream and client failures) plus `after_header`, one series per rule, 4 skip reasons,
//! one redaction counter, 6 status classes, 3 upgrade results, one open-tunnel gauge, 2 tunnel
//! byte directions and one tunnel duration histogram, and for routes with a shadow profile one
//! comparison counter and a divergence counter per pair of final codes (each bounded by the
//! canonical set, or `other`), and one unmatched counter per upstream error code (400-599 and
//! `other`); no path, client or protocol labels. Upstream address and host
//! labels are bounded by the configured groups, their host names and what those resolve to;
//! the series of an address or a name that leaves are removed.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus::{
    register_gauge, register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

use super::outcome::{Outcome, UpgradeResult};
use crate::engine::{BodySkip, GatewayFailure, Origin};

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
/// Tunnel directions, in `TunnelSeries::bytes` order.
const DIRECTIONS: [&str; 2] = ["to_upstream", "to_client"];
/// Seconds: tunnels last from a moment to hours.
const TUNNEL_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

pub struct Metrics {
    pub responses: IntCounterVec,
    pub upstream_failures: IntCounterVec,
    pub client_failures: IntCounterVec,
    /// Open client connections per listener, and those refused at the listener's cap.
    pub client_connections: IntGaugeVec,
    pub client_connections_refused: IntCounterVec,
    /// Open upstream connections per group (counted where `max_connections` is set).
    pub upstream_connections: IntGaugeVec,
    pub rule_matches: IntCounterVec,
    pub body_skipped: IntCounterVec,
    pub redactions: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_header: HistogramVec,
    pub in_flight: IntGauge,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    pub config_info: IntGaugeVec,
    pub build_info: IntGaugeVec,
    /// Resolutions of upstream host names by result (`ok` or a `DnsError` label).
    pub dns_resolutions: IntCounterVec,
    /// Addresses each upstream host name serves with right now (stale ones included).
    pub dns_addresses: IntGaugeVec,
    /// 1 while an address is in rotation as far as active health checks say, else 0.
    pub upstream_address_up: IntGaugeVec,
    /// Upgrade requests per route by result (`UpgradeResult::NAMES`).
    pub upgrades: IntCounterVec,
    /// Tunnels open right now, per route.
    pub tunnels_open: IntGaugeVec,
    /// Bytes relayed through tunnels, per route and direction (`to_upstream`, `to_client`).
    pub tunnel_bytes: IntCounterVec,
    pub tunnel_duration: HistogramVec,
    /// Responses a route's shadow profile was evaluated on (routes with `shadow_profile`).
    pub shadow_comparisons: IntCounterVec,
    /// Responses whose shadow decision differed from the active one, by both final codes.
    pub shadow_divergences: IntCounterVec,
    /// Upstream error responses (>= 400) no rule matched: the canonical defaults decided.
    pub unmatched: IntCounterVec,
    /// Spans dropped because `tracing.queue_size` spans were already waiting for export.
    pub trace_spans_dropped: IntCounter,
    /// Spans the collector accepted, and spans whose export request failed (lost).
    pub trace_spans_exported: IntCounter,
    pub trace_spans_export_failed: IntCounter,
    /// Requests that matched no route.
    no_route: OnceLock<Arc<RouteMetrics>>,
}

/// The process's metrics (prometheus's default registry holds each name once).
pub fn global() -> Arc<Metrics> {
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| Arc::new(Metrics::register().expect("metric names are unique")))
        .clone()
}

impl Metrics {
    fn register() -> prometheus::Result<Metrics> {
        let latency = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let m = Metrics {
            responses: register_int_counter_vec!(
                "statusgate_responses_total",
                "Responses sent, by route, final code, the upstream's original code (none: gateway-made) and origin.",
                &["route", "code", "upstream_code", "origin"]
            )?,
            upstream_failures: register_int_counter_vec!(
                "statusgate_upstream_failures_total",
                "Upstream failures the gateway answered itself (502/503/504), or after_header: failed mid-body.",
                &["route", "kind"]
            )?,
            client_failures: register_int_counter_vec!(
                "statusgate_client_failures_total",
                "Requests the gateway refused or answered itself for the client's doing (400/404/405/408/413/431, connection limits).",
                &["route", "kind"]
            )?,
            client_connections: register_int_gauge_vec!(
                "statusgate_client_connections",
                "Open client connections, by listener address.",
                &["listener"]
            )?,
            client_connections_refused: register_int_counter_vec!(
                "statusgate_client_connections_refused_total",
                "Client connections refused because the listener was at limits.client_connections.",
                &["listener"]
            )?,
            upstream_connections: register_int_gauge_vec!(
                "statusgate_upstream_connections",
                "Connections in use to an upstream group that has max_connections.",
                &["upstream"]
            )?,
            rule_matches: register_int_counter_vec!(
                "statusgate_rule_matches_total",
                "Responses shaped by each rule.",
                &["route", "rule"]
            )?,
            body_skipped: register_int_counter_vec!(
                "statusgate_body_rewrites_skipped_total",
                "Bodies that rules wanted but could not read: over_cap, undecodable, unsupported_encoding, too_deep.",
                &["route", "reason"]
            )?,
            redactions: register_int_counter_vec!(
                "statusgate_redactions_total",
                "Problem members from upstream data that the redaction filter changed (stack traces, exception names).",
                &["route"]
            )?,
            duration: register_histogram_vec!(
                "statusgate_request_duration_seconds",
                "Time from the request header to the end of the response, by route and final status class.",
                &["route", "class"],
                latency.clone()
            )?,
            upstream_header: register_histogram_vec!(
                "statusgate_upstream_header_seconds",
                "Time from the request header to the upstream's response header, by route.",
                &["route"],
                latency
            )?,
            in_flight: register_int_gauge!("statusgate_requests_in_flight", "Requests being served.")?,
            reloads: register_int_counter_vec!(
                "statusgate_config_reloads_total",
                "Configuration reloads by result: applied, unchanged or rejected.",
                &["result"]
            )?,
            last_reload_success: register_gauge!(
                "statusgate_config_last_reload_success_timestamp_seconds",
                "Unix time the serving configuration was loaded."
            )?,
            config_info: register_int_gauge_vec!(
                "statusgate_config_info",
                "The serving configuration's version hash (value 1).",
                &["version"]
            )?,
            build_info: register_int_gauge_vec!(
                "statusgate_build_info",
                "statusgate's version (value 1).",
                &["version"]
            )?,
            dns_resolutions: register_int_counter_vec!(
                "statusgate_dns_resolutions_total",
                "Resolutions of upstream host names, by group, host and result: ok, nxdomain, no_records, timeout, config, error.",
                &["upstream", "host", "result"]
            )?,
            dns_addresses: register_int_gauge_vec!(
                "statusgate_dns_addresses",
                "Addresses an upstream host name serves with (the last good resolution, until resolver.stale_for runs out).",
                &["upstream", "host"]
            )?,
            upstream_address_up: register_int_gauge_vec!(
                "statusgate_upstream_address_up",
                "1 while an upstream address is in rotation as far as active health checks say (always 1 without health_check), 0 after fall failed checks.",
                &["upstream", "address"]
            )?,
            upgrades: register_int_counter_vec!(
                "statusgate_upgrades_total",
                "Upgrade requests (Connection: upgrade, e.g. WebSocket) by result: accepted (the upstream switched), declined (it answered something else), refused (the route does not forward the protocol: 403).",
                &["route", "result"]
            )?,
            tunnels_open: register_int_gauge_vec!(
                "statusgate_tunnels_open",
                "Upgraded connections (tunnels) relaying bytes right now.",
                &["route"]
            )?,
            tunnel_bytes: register_int_counter_vec!(
                "statusgate_tunnel_bytes_total",
                "Bytes relayed through tunnels, counted as they pass: to_upstream (from the client) and to_client.",
                &["route", "direction"]
            )?,
            tunnel_duration: register_histogram_vec!(
                "statusgate_tunnel_duration_seconds",
                "How long tunnels lasted, from the 101 to the end of the relay.",
                &["route"],
                TUNNEL_BUCKETS.to_vec()
            )?,
            shadow_comparisons: register_int_counter_vec!(
                "statusgate_shadow_comparisons_total",
                "Upstream responses a route's shadow profile was evaluated on beside the active one.",
                &["route"]
            )?,
            shadow_divergences: register_int_counter_vec!(
                "statusgate_shadow_divergences_total",
                "Responses the shadow profile decided differently (final status, rule, problem type or header edits), by the active and the shadow final code (codes outside the canonical set: other).",
                &["route", "active_code", "shadow_code"]
            )?,
            unmatched: register_int_counter_vec!(
                "statusgate_unmatched_total",
                "Upstream error responses (>= 400) that no rule matched, decided by the canonical defaults, by the upstream's code.",
                &["route", "upstream_code"]
            )?,
            trace_spans_dropped: register_int_counter!(
                "statusgate_trace_spans_dropped_total",
                "Spans (tracing:) dropped without export because tracing.queue_size spans were already waiting: the collector is slower than the traffic, or unreachable."
            )?,
            trace_spans_exported: register_int_counter!(
                "statusgate_trace_spans_exported_total",
                "Spans (tracing:) the OTLP collector accepted."
            )?,
            trace_spans_export_failed: register_int_counter!(
                "statusgate_trace_spans_export_failed_total",
                "Spans (tracing:) lost because their export request failed (collector unreachable, timed out or refused the batch)."
            )?,
            no_route: OnceLock::new(),
        };
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Every result exists from the start at 0: a series that first appears at 1 shows no
        // increase(), so the first rejected reload of a process would never alert.
        for result in ["applied", "unchanged", "rejected"] {
            m.reloads.with_label_values(&[result]);
        }
        Ok(m)
    }

    /// Records that `version` now serves.
    pub fn config_loaded(&self, version: &str, at: std::time::SystemTime) {
        self.config_info.reset();
        self.config_info.with_label_values(&[version]).set(1);
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload_success.set(secs);
    }

    /// Metrics of requests that matched no route (`route="none"`).
    pub fn no_route(self: &Arc<Self>) -> Arc<RouteMetrics> {
        self.no_route
            .get_or_init(|| Arc::new(RouteMetrics::new(self.clone(), "none")))
            .clone()
    }

    /// Resolves the series of a snapshot that is being accepted, `routes` in snapshot order
    /// (name, rule names in profile order), and removes the series of `previous` that name a
    /// route or a route's rule the new snapshot no longer has.
    pub fn accept<'a, R>(
        self: &Arc<Self>,
        routes: impl IntoIterator<Item = (&'a str, R)>,
        previous: Option<&SnapshotSeries>,
    ) -> SnapshotSeries
    where
        R: Iterator<Item = &'a str>,
    {
        let routes: Vec<Arc<RouteMetrics>> = routes
            .into_iter()
            .map(|(name, rules)| Arc::new(RouteMetrics::new(self.clone(), name).with_rules(rules)))
            .collect();
        for old in previous.map_or(&[][..], |p| &p.routes[..]) {
            match routes.iter().find(|r| r.route == old.route) {
                None => old.remove_series(),
                Some(new) => {
                    for rule in old.rule_names.iter().filter(|n| !new.rule_names.contains(n)) {
                        let _ = self.rule_matches.remove_label_values(&[&old.route, rule]);
                    }
                }
            }
        }
        SnapshotSeries {
            routes,
            no_route: self.no_route(),
        }
    }
}

/// The series of one accepted snapshot, indexed like its routes.
pub struct SnapshotSeries {
    routes: Vec<Arc<RouteMetrics>>,
    no_route: Arc<RouteMetrics>,
}

impl std::fmt::Debug for SnapshotSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.routes).finish()
    }
}

impl SnapshotSeries {
    /// The series of the route at `index` (`None` or out of range: `route="none"`).
    pub fn route(&self, index: Option<usize>) -> &RouteMetrics {
        index.and_then(|i| self.routes.get(i)).unwrap_or(&self.no_route)
    }

    /// Counts one finished request on its route's series.
    pub fn record(&self, outcome: &Outcome) {
        self.route(outcome.route).record(outcome);
    }
}

/// One route's series, resolved once per snapshot.
pub struct RouteMetrics {
    metrics: Arc<Metrics>,
    route: String,
    /// Indexed by `GatewayFailure::index` (the order of `ALL`).
    failures: Vec<IntCounter>,
    after_header: IntCounter,
    rules: Vec<IntCounter>,
    /// The rules' names, in profile order (to remove their series when they are gone).
    rule_names: Vec<String>,
    /// Indexed like `BodySkip::ALL`.
    skipped: [IntCounter; BodySkip::ALL.len()],
    redactions: IntCounter,
    duration: Vec<Histogram>,
    upstream_header: Histogram,
    /// Indexed like `UpgradeResult::NAMES`.
    upgrades: [IntCounter; 3],
    tunnel_duration: Histogram,
    /// What a running tunnel counts as it goes.
    pub tunnel: TunnelSeries,
    /// (code, upstream code, origin) packed into a u32 -> its counter.
    responses: RwLock<HashMap<u32, IntCounter>>,
    /// `statusgate_shadow_comparisons_total`, resolved on the route's first comparison.
    shadow_comparisons: OnceLock<IntCounter>,
    /// (active code << 16 | shadow code) -> its divergence counter (0: other).
    divergences: RwLock<HashMap<u32, IntCounter>>,
    /// Upstream code index -> its unmatched counter.
    unmatched: RwLock<HashMap<u32, IntCounter>>,
}

/// The counter of `key` in `cache`, made by `make` on first use.
fn cached(cache: &RwLock<HashMap<u32, IntCounter>>, key: u32, make: impl FnOnce() -> IntCounter) -> IntCounter {
    if let Some(c) = cache.read().ok().and_then(|m| m.get(&key).cloned()) {
        return c;
    }
    let c = make();
    if let Ok(mut m) = cache.write() {
        m.insert(key, c.clone());
    }
    c
}

fn cached_keys(cache: &RwLock<HashMap<u32, IntCounter>>) -> Vec<u32> {
    cache
        .read()
        .map_or_else(|_| Vec::new(), |r| r.keys().copied().collect())
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteMetrics({})", self.route)
    }
}

fn code_index(status: u16) -> u32 {
    if (100..=599).contains(&status) {
        status as u32
    } else {
        0
    }
}

fn code_label(index: u32) -> String {
    match index {
        0 => "other".to_owned(),
        1 => "none".to_owned(),
        n => n.to_string(),
    }
}

/// A route's tunnel series, counted while a tunnel runs (a long tunnel shows its traffic as it
/// flows, not when it ends).
pub struct TunnelSeries {
    open: IntGauge,
    pub to_upstream: IntCounter,
    pub to_client: IntCounter,
}

/// A tunnel counted in `statusgate_tunnels_open` until it is dropped.
pub struct OpenTunnel(IntGauge);

impl TunnelSeries {
    pub fn opened(&self) -> OpenTunnel {
        self.open.inc();
        OpenTunnel(self.open.clone())
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl RouteMetrics {
    /// Resolves a route's series (rules: `with_rules`).
    pub fn new(metrics: Arc<Metrics>, route: &str) -> RouteMetrics {
        RouteMetrics {
            failures: GatewayFailure::ALL
                .iter()
                .map(|f| {
                    let vec = if f.is_upstream() {
                        &metrics.upstream_failures
                    } else {
                        &metrics.client_failures
                    };
                    vec.with_label_values(&[route, f.name()])
                })
                .collect(),
            after_header: metrics.upstream_failures.with_label_values(&[route, "after_header"]),
            rules: Vec::new(),
            rule_names: Vec::new(),
            skipped: BodySkip::ALL.map(|r| metrics.body_skipped.with_label_values(&[route, r.name()])),
            redactions: metrics.redactions.with_label_values(&[route]),
            duration: CLASSES
                .iter()
                .map(|c| metrics.duration.with_label_values(&[route, c]))
                .collect(),
            upstream_header: metrics.upstream_header.with_label_values(&[route]),
            upgrades: UpgradeResult::NAMES.map(|r| metrics.upgrades.with_label_values(&[route, r])),
            tunnel_duration: metrics.tunnel_duration.with_label_values(&[route]),
            tunnel: TunnelSeries {
                open: metrics.tunnels_open.with_label_values(&[route]),
                to_upstream: metrics.tunnel_bytes.with_label_values(&[route, DIRECTIONS[0]]),
                to_client: metrics.tunnel_bytes.with_label_values(&[route, DIRECTIONS[1]]),
            },
            responses: RwLock::new(HashMap::new()),
            shadow_comparisons: OnceLock::new(),
            divergences: RwLock::new(HashMap::new()),
            unmatched: RwLock::new(HashMap::new()),
            route: route.to_owned(),
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.route
    }

    /// Resolves the per-rule counters, in profile order.
    pub fn with_rules<'a>(mut self, names: impl Iterator<Item = &'a str>) -> Self {
        self.rule_names = names.map(str::to_owned).collect();
        self.rules = self
            .rule_names
            .iter()
            .map(|n| self.metrics.rule_matches.with_label_values(&[&self.route, n]))
            .collect();
        self
    }

    /// Removes every series of this route from the registry (its route is gone).
    fn remove_series(&self) {
        let m = &self.metrics;
        let route = self.route.as_str();
        for f in GatewayFailure::ALL {
            let vec = if f.is_upstream() {
                &m.upstream_failures
            } else {
                &m.client_failures
            };
            let _ = vec.remove_label_values(&[route, f.name()]);
        }
        let _ = m.upstream_failures.remove_label_values(&[route, "after_header"]);
        for rule in &self.rule_names {
            let _ = m.rule_matches.remove_label_values(&[route, rule]);
        }
        for r in BodySkip::ALL {
            let _ = m.body_skipped.remove_label_values(&[route, r.name()]);
        }
        let _ = m.redactions.remove_label_values(&[route]);
        for c in CLASSES {
            let _ = m.duration.remove_label_values(&[route, c]);
        }
        let _ = m.upstream_header.remove_label_values(&[route]);
        for r in UpgradeResult::NAMES {
            let _ = m.upgrades.remove_label_values(&[route, r]);
        }
        let _ = m.tunnels_open.remove_label_values(&[route]);
        for d in DIRECTIONS {
            let _ = m.tunnel_bytes.remove_label_values(&[route, d]);
        }
        let _ = m.tunnel_duration.remove_label_values(&[route]);
        if self.shadow_comparisons.get().is_some() {
            let _ = m.shadow_comparisons.remove_label_values(&[route]);
        }
        for key in cached_keys(&self.divergences) {
            let (a, s) = (code_label(key >> 16), code_label(key & 0xffff));
            let _ = m.shadow_divergences.remove_label_values(&[route, &a, &s]);
        }
        for key in cached_keys(&self.unmatched) {
            let _ = m.unmatched.remove_label_values(&[route, &code_label(key)]);
        }
        for key in cached_keys(&self.responses) {
            let origin = if key & 1 == 1 {
                Origin::Gateway
            } else {
                Origin::Upstream
            };
            let _ = m.responses.remove_label_values(&[
                route,
                &code_label(key >> 16),
                &code_label((key >> 1) & 0x7fff),
                origin.as_str(),
            ]);
        }
    }

    fn response_counter(&self, status: u16, upstream: Option<u16>, origin: Origin) -> IntCounter {
        let up = upstream.map_or(1, code_index);
        let key = (code_index(status) << 16) | (up << 1) | u32::from(origin == Origin::Gateway);
        cached(&self.responses, key, || {
            self.metrics.responses.with_label_values(&[
                &self.route,
                &code_label(code_index(status)),
                &code_label(up),
                origin.as_str(),
            ])
        })
    }

    /// Counts one shadow comparison; `divergence`: the pair of final codes when the decisions
    /// differed, each already bounded by the canonical set (`None` for a code outside it:
    /// `other`).
    pub fn shadow_compared(&self, divergence: Option<(Option<u16>, Option<u16>)>) {
        self.shadow_comparisons
            .get_or_init(|| self.metrics.shadow_comparisons.with_label_values(&[&self.route]))
            .inc();
        if let Some((active, shadow)) = divergence {
            let index = |c: Option<u16>| c.map_or(0, code_index);
            let key = (index(active) << 16) | index(shadow);
            cached(&self.divergences, key, || {
                self.metrics.shadow_divergences.with_label_values(&[
                    &self.route,
                    &code_label(key >> 16),
                    &code_label(key & 0xffff),
                ])
            })
            .inc();
        }
    }

    /// Counts one finished request (`SnapshotSeries::record` picks the route; public for the benches).
    pub fn record(&self, log: &Outcome) {
        self.response_counter(log.status, log.upstream_status, log.origin).inc();
        if let Some(c) = log.failure.and_then(|f| self.failures.get(f.index())) {
            c.inc();
        }
        if log.failed_after_header {
            self.after_header.inc();
        }
        if let Some(c) = log.rule_index.and_then(|i| self.rules.get(i)) {
            c.inc();
        }
        if let Some(upstream) = log.unmatched_upstream_status() {
            let key = code_index(upstream);
            cached(&self.unmatched, key, || {
                self.metrics
                    .unmatched
                    .with_label_values(&[&self.route, &code_label(key)])
            })
            .inc();
        }
        if let Some(c) = log
            .body_skip
            .and_then(|s| BodySkip::ALL.iter().position(|r| *r == s))
            .and_then(|i| self.skipped.get(i))
        {
            c.inc();
        }
        if log.redactions > 0 {
            self.redactions.inc_by(u64::from(log.redactions));
        }
        if let Some(u) = &log.upgrade {
            self.upgrades[u.result.index()].inc();
        }
        match log.upgrade.as_ref().map(|u| &u.result) {
            // A tunnel's life is not a request's latency: it has its own histogram.
            Some(UpgradeResult::Tunnel(t)) => self.tunnel_duration.observe(t.duration.as_secs_f64()),
            _ => {
                let class = match log.status {
                    100..=599 => (log.status / 100 - 1) as usize,
                    _ => 5,
                };
                self.duration[class].observe(log.started.elapsed().as_secs_f64());
            }
        }
        if let Some(d) = log.upstream_header_after {
            self.upstream_header.observe(d.as_secs_f64());
        }
    }
}
