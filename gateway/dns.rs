//! Resolving upstream host names (hickory-resolver on tokio): the compiled `resolver:` settings,
//! one lookup of every A and AAAA record of a name with the records' TTL clamped, and the
//! bounded set of outcomes that metrics and `/-/config` report. No caching here: the balancer
//! keeps the last good addresses and decides when to ask again.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};

/// The compiled `resolver:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Explicit nameservers; empty: the system's resolv.conf (and /etc/hosts).
    pub nameservers: Vec<SocketAddr>,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub stale_for: Duration,
    pub timeout: Duration,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
            stale_for: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
        }
    }
}

impl ResolverSettings {
    /// The TTL a resolution is kept for: the records' own, within `min_ttl..=max_ttl`.
    pub fn clamp_ttl(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
            .max(Duration::from_millis(100))
    }
}

/// A successful lookup: every address (A and AAAA, sorted) and the clamped TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub addrs: Vec<IpAddr>,
    pub ttl: Duration,
}

/// Why a lookup failed; `label()` is the `result` label of `statusgate_dns_resolutions_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("the name does not exist (NXDOMAIN)")]
    NxDomain,
    #[error("the name has no A or AAAA record")]
    NoRecords,
    #[error("no answer within the resolver timeout")]
    Timeout,
    #[error("the resolver cannot be set up: {0}")]
    Config(String),
    #[error("{0}")]
    Failed(String),
}

impl DnsError {
    /// Every `result` label value but `ok`.
    pub const LABELS: [&'static str; 5] = ["nxdomain", "no_records", "timeout", "config", "error"];

    pub fn label(&self) -> &'static str {
        match self {
            DnsError::NxDomain => "nxdomain",
            DnsError::NoRecords => "no_records",
            DnsError::Timeout => "timeout",
            DnsError::Config(_) => "config",
            DnsError::Failed(_) => "error",
        }
    }

    fn of(e: &ResolveError) -> DnsError {
        if e.is_nx_domain() {
            return DnsError::NxDomain;
        }
        if e.is_no_records_found() {
            return DnsError::NoRecords;
        }
        match e.proto().map(|p| p.kind()) {
            Some(ProtoErrorKind::Timeout) => DnsError::Timeout,
            _ => DnsError::Failed(e.to_string()),
        }
    }
}

/// A resolver built from the settings.
pub struct Resolver {
    inner: TokioResolver,
    settings: ResolverSettings,
}

impl Resolver {
    /// Must run inside a tokio runtime (the resolver spawns its connections there).
    pub fn new(settings: &ResolverSettings) -> Result<Resolver, DnsError> {
        let mut builder = if settings.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsError::Config(e.to_string()))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for &ns in &settings.nameservers {
                group.push(NameServerConfig::new(ns, Protocol::Udp));
                group.push(NameServerConfig::new(ns, Protocol::Tcp));
            }
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                TokioConnectionProvider::default(),
            );
            // Explicit nameservers answer alone, like nginx's `resolver`.
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.cache_size = 0;
        opts.timeout = settings.timeout;
        opts.attempts = 1;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        Ok(Resolver {
            inner: builder.build(),
            settings: settings.clone(),
        })
    }

    /// Every A and AAAA record of `host`, bounded by the resolver timeout.
    pub async fn resolve(&self, host: &str) -> Result<Resolution, DnsError> {
        let lookup = tokio::time::timeout(self.settings.timeout, self.inner.lookup_ip(host))
            .await
            .map_err(|_| DnsError::Timeout)?
            .map_err(|e| DnsError::of(&e))?;
        let ttl = lookup
            .as_lookup()
            .record_iter()
            .map(|r| r.ttl())
            .min()
            .map_or(self.settings.min_ttl, |s| Duration::from_secs(u64::from(s)));
        let mut addrs: Vec<IpAddr> = lookup.iter().collect();
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(DnsError::NoRecords);
        }
        Ok(Resolution {
            addrs,
            ttl: self.settings.clamp_ttl(ttl),
        })
    }
}

/// Resolves `hosts` once each, concurrently, on a thread and runtime of its own (callable from
/// anywhere, a runtime thread included): the load's first look at the names.
pub fn resolve_blocking(settings: &ResolverSettings, hosts: &[String]) -> Vec<Result<Resolution, DnsError>> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let failed = |e: String| hosts.iter().map(|_| Err(DnsError::Config(e.clone()))).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return failed(e.to_string()),
            };
            rt.block_on(async {
                let resolver = match Resolver::new(settings) {
                    Ok(r) => r,
                    Err(e) => return failed(e.to_string()),
                };
                let mut tasks = tokio::task::JoinSet::new();
                let resolver = std::sync::Arc::new(resolver);
                for (i, h) in hosts.iter().enumerate() {
                    let (r, h) = (resolver.clone(), h.clone());
                    tasks.spawn(async move { (i, r.resolve(&h).await) });
                }
                let mut out: Vec<Result<Resolution, DnsError>> = hosts.iter().map(|_| Err(DnsError::Timeout)).collect();
                while let Some(done) = tasks.join_next().await {
                    if let Ok((i, r)) = done {
                        out[i] = r;
                    }
                }
                out
            })
        })
        .join()
        .unwrap_or_else(|_| failed("the resolver thread failed".to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_clamped_between_min_and_max() {
        let s = ResolverSettings {
            min_ttl: Duration::from_secs(2),
            max_ttl: Duration::from_secs(60),
            ..ResolverSettings::default()
        };
        assert_eq!(s.clamp_ttl(Duration::ZERO), Duration::from_secs(2));
        assert_eq!(s.clamp_ttl(Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(s.clamp_ttl(Duration::from_secs(86400)), Duration::from_secs(60));
    }

    #[test]
    fn every_failure_has_a_bounded_label() {
        for e in [
            DnsError::NxDomain,
            DnsError::NoRecords,
            DnsError::Timeout,
            DnsError::Config(String::new()),
            DnsError::Failed(String::new()),
        ] {
            assert!(DnsError::LABELS.contains(&e.label()));
        }
    }
}
