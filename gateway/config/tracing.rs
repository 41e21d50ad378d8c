//! The `tracing:` section compiled: where and how spans are exported (boot-only: the exporter
//! and its batch processor are made once, at start) and the share of new traces recorded
//! (reloadable). `crate::snapshot` calls `compile_tracing`; `crate::telemetry::traces` runs it.

use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::config::schema::RawTracing;
use crate::config::units::parse_duration;
use crate::config::{ConfigProblem, ProblemKind, SourcePos};
use crate::engine::diagnostics::TracingError;

pub const DEFAULT_SERVICE_NAME: &str = "statusgate";
pub const DEFAULT_QUEUE_SIZE: usize = 2048;
pub const DEFAULT_BATCH_SIZE: usize = 512;
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on `queue_size`: each queued span holds its attributes (about a kilobyte).
pub const MAX_QUEUE_SIZE: u64 = 1_000_000;

/// The exporter's settings: taken at start only (a change is reported as needing a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingExport {
    /// The OTLP/HTTP traces URL (`http://host:port/path`).
    pub endpoint: String,
    pub service_name: String,
    pub queue_size: usize,
    pub batch_size: usize,
    pub batch_delay: Duration,
    pub export_timeout: Duration,
}

impl TracingExport {
    /// The keys of `tracing:` whose values differ from `running`'s.
    pub fn changed_keys(&self, running: &TracingExport) -> Vec<&'static str> {
        [
            (self.endpoint != running.endpoint, "tracing.endpoint"),
            (self.service_name != running.service_name, "tracing.service_name"),
            (self.queue_size != running.queue_size, "tracing.queue_size"),
            (self.batch_size != running.batch_size, "tracing.batch_size"),
            (self.batch_delay != running.batch_delay, "tracing.batch_delay"),
            (self.export_timeout != running.export_timeout, "tracing.export_timeout"),
        ]
        .into_iter()
        .filter_map(|(differs, key)| differs.then_some(key))
        .collect()
    }
}

/// The compiled section: the boot-only exporter settings and the reloadable sample ratio.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    pub export: TracingExport,
    pub sample_ratio: f64,
}

fn problem(at: SourcePos, e: TracingError) -> ConfigProblem {
    ConfigProblem::error(at, ProblemKind::Tracing(e))
}

/// Checks an OTLP/HTTP endpoint: an absolute `http://` URL with a host and a port (given or
/// 80). `https` is refused: the exporter is built without a TLS client.
fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| "not a URL; expected e.g. http://127.0.0.1:4318/v1/traces")?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err("https is not supported (the exporter has no TLS client): send to a collector or agent near the gateway over http://")
        }
        _ => return Err("expected an http:// URL, e.g. http://127.0.0.1:4318/v1/traces"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host; expected e.g. http://127.0.0.1:4318/v1/traces");
    }
    if uri.port_u16() == Some(0) {
        return Err("port 0 is not a port");
    }
    Ok(())
}

/// Compiles `tracing:` of `main`; `None` (tracing off) when the section is absent or wrong.
/// Errors go to `problems`; an endpoint whose path is not the OTLP traces path `/v1/traces`
/// (what the OpenTelemetry Collector serves) is a warning.
pub fn compile_tracing(
    main: &Path,
    raw: Option<&Spanned<RawTracing>>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<ConfigProblem>,
) -> Option<TracingSettings> {
    let raw = raw?;
    let t = &raw.value;
    let before = problems.len();
    let endpoint = t.endpoint.value.trim().to_owned();
    match check_endpoint(&endpoint) {
        Err(reason) => problems.push(problem(
            SourcePos::of(main, &t.endpoint),
            TracingError::Endpoint {
                endpoint: endpoint.clone(),
                reason,
            },
        )),
        Ok(()) => {
            let path = endpoint
                .parse::<http::Uri>()
                .map(|u| u.path().to_owned())
                .unwrap_or_default();
            if !path.ends_with("/v1/traces") {
                warnings.push(ConfigProblem::warning(
                    SourcePos::of(main, &t.endpoint),
                    format!(
                        "tracing: endpoint `{endpoint}` is sent to as written; an OTLP/HTTP collector takes traces at the path /v1/traces (e.g. http://127.0.0.1:4318/v1/traces)"
                    ),
                ));
            }
        }
    }
    let service_name = match &t.service_name {
        None => DEFAULT_SERVICE_NAME.to_owned(),
        Some(s) if s.value.trim().is_empty() => {
            problems.push(problem(SourcePos::of(main, s), TracingError::EmptyServiceName));
            DEFAULT_SERVICE_NAME.to_owned()
        }
        Some(s) => s.value.trim().to_owned(),
    };
    let sample_ratio = match &t.sample_ratio {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(&r.value) => r.value,
        Some(r) => {
            problems.push(problem(
                SourcePos::of(main, r),
                TracingError::SampleRatio(r.value.to_string()),
            ));
            1.0
        }
    };
    let mut count = |raw_n: &Option<Spanned<u64>>, key: &'static str, default: usize| match raw_n {
        None => default as u64,
        Some(n) if (1..=MAX_QUEUE_SIZE).contains(&n.value) => n.value,
        Some(n) => {
            problems.push(ConfigProblem::error(
                SourcePos::of(main, n),
                ProblemKind::OutOfRange {
                    key,
                    value: n.value,
                    min: 1,
                    max: MAX_QUEUE_SIZE,
                },
            ));
            default as u64
        }
    };
    let queue_size = count(&t.queue_size, "tracing.queue_size", DEFAULT_QUEUE_SIZE);
    let batch_size = match &t.batch_size {
        // The default batch never exceeds a smaller queue.
        None => (DEFAULT_BATCH_SIZE as u64).min(queue_size),
        Some(_) => count(&t.batch_size, "tracing.batch_size", DEFAULT_BATCH_SIZE),
    };
    if let Some(b) = t.batch_size.as_ref().filter(|_| batch_size > queue_size) {
        problems.push(problem(
            SourcePos::of(main, b),
            TracingError::BatchOverQueue {
                batch: batch_size,
                queue: queue_size,
            },
        ));
    }
    let mut duration = |raw_d: &Option<Spanned<String>>, key: &'static str, default: Duration| match raw_d {
        None => default,
        Some(d) => match parse_duration(&d.value) {
            Ok(v) if v.is_zero() => {
                problems.push(problem(SourcePos::of(main, d), TracingError::ZeroDuration(key)));
                default
            }
            Ok(v) => v,
            Err(e) => {
                problems.push(ConfigProblem::error(SourcePos::of(main, d), ProblemKind::Duration(e)));
                default
            }
        },
    };
    let batch_delay = duration(&t.batch_delay, "batch_delay", DEFAULT_BATCH_DELAY);
    let export_timeout = duration(&t.export_timeout, "export_timeout", DEFAULT_EXPORT_TIMEOUT);
    (problems.len() == before).then_some(TracingSettings {
        export: TracingExport {
            endpoint,
            service_name,
            queue_size: queue_size as usize,
            batch_size: batch_size as usize,
            batch_delay,
            export_timeout,
        },
        sample_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse_yaml;
    use crate::config::schema::RawConfig;

    fn compile(section: &str) -> (Option<TracingSettings>, Vec<String>, Vec<String>) {
        let text = format!("listen: 127.0.0.1:1\nupstreams: {{}}\nroutes: []\ntracing:\n{section}");
        let path = Path::new("gw.yaml");
        let raw: RawConfig = parse_yaml(path, &text).unwrap_or_else(|p| panic!("{p}"));
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let s = compile_tracing(path, raw.tracing.as_ref(), &mut problems, &mut warnings);
        let text = |ps: Vec<ConfigProblem>| ps.iter().map(ToString::to_string).collect();
        (s, text(problems), text(warnings))
    }

    #[test]
    fn defaults_fill_everything_but_the_endpoint() {
        let (s, problems, warnings) = compile("  endpoint: http://127.0.0.1:4318/v1/traces\n");
        assert!(problems.is_empty() && warnings.is_empty(), "{problems:?} {warnings:?}");
        assert_eq!(
            s.unwrap(),
            TracingSettings {
                export: TracingExport {
                    endpoint: "http://127.0.0.1:4318/v1/traces".to_owned(),
                    service_name: "statusgate".to_owned(),
                    queue_size: 2048,
                    batch_size: 512,
                    batch_delay: Duration::from_secs(1),
                    export_timeout: Duration::from_secs(10),
                },
                sample_ratio: 1.0,
            }
        );
        let (s, _, _) = compile("  endpoint: http://127.0.0.1:4318/v1/traces\n  queue_size: 100\n");
        assert_eq!(
            s.unwrap().export.batch_size,
            100,
            "the default batch fits a small queue"
        );
    }

    #[test]
    fn every_bad_value_is_a_positioned_problem() {
        let (s, problems, _) = compile(
            "  endpoint: https://collector:4318/v1/traces\n  service_name: ' '\n  sample_ratio: 1.5\n  queue_size: 10\n  batch_size: 20\n  batch_delay: 0s\n  export_timeout: soon\n",
        );
        assert!(s.is_none());
        assert_eq!(
            problems,
            [
                "gw.yaml:5:13: tracing: endpoint `https://collector:4318/v1/traces`: https is not supported (the exporter has no TLS client): send to a collector or agent near the gateway over http://",
                "gw.yaml:6:17: tracing: service_name must not be empty",
                "gw.yaml:7:17: tracing: sample_ratio 1.5 is outside 0.0-1.0",
                "gw.yaml:9:15: tracing: batch_size 20 is larger than queue_size 10: a batch is taken from the queue",
                "gw.yaml:10:16: tracing: batch_delay must be above 0",
                "gw.yaml:11:19: invalid duration: `soon` is not a duration like 250ms, 1s or 2m",
            ]
        );
        let (_, problems, _) = compile("  endpoint: 127.0.0.1:4318\n  queue_size: 0\n");
        assert_eq!(
            problems,
            [
                "gw.yaml:5:13: tracing: endpoint `127.0.0.1:4318`: expected an http:// URL, e.g. http://127.0.0.1:4318/v1/traces",
                "gw.yaml:6:15: tracing.queue_size: 0 is outside 1-1000000",
            ]
        );
    }

    #[test]
    fn a_path_other_than_the_otlp_traces_path_is_a_warning() {
        let (s, problems, warnings) = compile("  endpoint: http://127.0.0.1:4318\n");
        assert!(s.is_some() && problems.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("gw.yaml:5:13: "), "{warnings:?}");
        assert!(warnings[0].contains("/v1/traces"), "{warnings:?}");
    }

    #[test]
    fn only_the_exporter_keys_need_a_restart() {
        let (a, _, _) = compile("  endpoint: http://127.0.0.1:4318/v1/traces\n");
        let (b, _, _) =
            compile("  endpoint: http://127.0.0.1:4319/v1/traces\n  sample_ratio: 0.25\n  export_timeout: 2s\n");
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(b.sample_ratio, 0.25);
        assert_eq!(
            b.export.changed_keys(&a.export),
            ["tracing.endpoint", "tracing.export_timeout"]
        );
    }
}
