//! Every metric statusgate exports, defined in one place, registered in prometheus's default
//! registry (the one pingora-prometheus serves), recorded from a finished `RequestLog`.

use std::sync::{Arc, OnceLock};

use prometheus::{
    register_gauge, register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    Gauge, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
};

use crate::proxy::RequestLog;

pub struct Metrics {
    pub responses: IntCounterVec,
    pub upstream_failures: IntCounterVec,
    pub rule_matches: IntCounterVec,
    pub body_skipped: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGauge,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    pub config_info: IntGaugeVec,
}

/// The process's metrics (prometheus's default registry holds each name once).
pub fn global() -> Arc<Metrics> {
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| Arc::new(Metrics::register().expect("metric names are unique")))
        .clone()
}

impl Metrics {
    /// Registers the metrics; call once per process.
    pub fn register() -> prometheus::Result<Metrics> {
        Ok(Metrics {
            responses: register_int_counter_vec!(
                "statusgate_responses_total",
                "Responses sent, by route, final code, the upstream's original code and origin.",
                &["route", "code", "upstream_code", "origin"]
            )?,
            upstream_failures: register_int_counter_vec!(
                "statusgate_upstream_failures_total",
                "Failures the gateway answered itself (or, for after_header, could only close on).",
                &["route", "kind"]
            )?,
            rule_matches: register_int_counter_vec!(
                "statusgate_rule_matches_total",
                "Responses shaped by each rule.",
                &["route", "rule"]
            )?,
            body_skipped: register_int_counter_vec!(
                "statusgate_body_rewrites_skipped_total",
                "Bodies rules wanted but could not read.",
                &["route", "reason"]
            )?,
            duration: register_histogram_vec!(
                "statusgate_request_duration_seconds",
                "Time from request start to the end of the response.",
                &["route", "class"]
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
        })
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

    pub fn record(&self, log: &RequestLog) {
        let route = log.route.as_deref().unwrap_or("none");
        let code = code_label(log.status);
        let upstream_code = log.upstream_status.map_or("none".to_owned(), code_label);
        self.responses
            .with_label_values(&[route, &code, &upstream_code, log.origin.as_str()])
            .inc();
        if let Some(f) = log.failure {
            if f.status() >= 500 {
                self.upstream_failures.with_label_values(&[route, f.name()]).inc();
            }
        }
        if log.failed_after_header {
            self.upstream_failures.with_label_values(&[route, "after_header"]).inc();
        }
        if let Some(rule) = &log.rule {
            self.rule_matches.with_label_values(&[route, rule]).inc();
        }
        if let Some(s) = log.body_skip {
            self.body_skipped.with_label_values(&[route, s.name()]).inc();
        }
        let class = match log.status {
            100..=599 => ["1xx", "2xx", "3xx", "4xx", "5xx"][(log.status / 100 - 1) as usize],
            _ => "other",
        };
        self.duration
            .with_label_values(&[route, class])
            .observe(log.started.elapsed().as_secs_f64());
    }
}

/// Statuses outside 100-599 count as `other`, so an upstream cannot grow the label set.
fn code_label(status: u16) -> String {
    if (100..=599).contains(&status) {
        status.to_string()
    } else {
        "other".to_owned()
    }
}
