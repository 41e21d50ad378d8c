//! The `admin:` section compiled: the admin listener's address and its bearer token (from a
//! file or an environment variable), with every problem positioned. The admin listener
//! (`crate::admin`) enforces it; the loader (`crate::snapshot`) calls `compile_admin`.

use std::fmt;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;
use subtle::ConstantTimeEq;

use crate::config::load::resolve;
use crate::config::schema::RawAdmin;
use crate::config::{ConfigProblem, ProblemKind, SourcePos};
use crate::engine::diagnostics::{AdminError, AdminSwitch, TokenSource};

/// Where the admin listener binds without an `admin:` setting.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";

/// The challenge sent with every 401.
pub const CHALLENGE: &str = r#"Bearer realm="statusgate-admin""#;

/// The bearer token. Its value is never printed: `Debug` redacts it, `/-/config` shows only
/// where it comes from.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8]>);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Constant-time comparison (only the length can be learned from timing).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_ref().ct_eq(presented).into()
    }
}

/// Who may use the admin endpoints, part of each snapshot (so a reload changes it).
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    pub token: Option<AdminToken>,
    /// Where the token comes from, for `/-/config`: `file:<path>` or `env:<NAME>`.
    pub token_source: Option<String>,
    /// `/metrics` needs the token too.
    pub protect_metrics: bool,
    /// `/healthz` and `/readyz` need the token too.
    pub protect_probes: bool,
}

/// The compiled `admin:` section.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub addr: String,
    /// Where `addr` is set; `None` for the default.
    pub addr_at: Option<SourcePos>,
    pub auth: AdminAuth,
}

fn invalid(at: SourcePos, e: AdminError) -> ConfigProblem {
    ConfigProblem::error(at, ProblemKind::Admin(e))
}

/// A token is sent as `Authorization: Bearer <token>`: visible ASCII, no spaces.
fn token_value(raw: &str, what: &TokenSource, at: &SourcePos) -> Result<AdminToken, ConfigProblem> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(invalid(at.clone(), AdminError::EmptyToken(what.clone())));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(at.clone(), AdminError::TokenNotVisibleAscii(what.clone())));
    }
    Ok(AdminToken(Arc::from(t.as_bytes())))
}

/// Compiles the `admin:` section of `main`. `read` reads a token file and makes it part of the
/// configuration (its content goes into the version hash, its directory is watched). Errors go
/// to `problems`; a listener off loopback without a token is a warning.
pub fn compile_admin(
    main: &Path,
    raw: Option<&Spanned<RawAdmin>>,
    read: &mut dyn FnMut(&Path) -> Result<String, ConfigProblem>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<ConfigProblem>,
) -> AdminSettings {
    let mut settings = AdminSettings {
        addr: DEFAULT_ADMIN_ADDR.to_owned(),
        addr_at: None,
        auth: AdminAuth::default(),
    };
    let Some(raw) = raw else {
        return settings;
    };
    let addr_at = match &raw.value {
        RawAdmin::Addr(a) => {
            settings.addr = a.clone();
            SourcePos::of(main, raw)
        }
        RawAdmin::Listener(l) => {
            let auth = &mut settings.auth;
            if let (Some(_), Some(env)) = (&l.token_file, &l.token_env) {
                problems.push(invalid(SourcePos::of(main, env), AdminError::BothTokenSources));
            } else if let Some(f) = &l.token_file {
                let at = SourcePos::of(main, f);
                let path = resolve(main, &f.value);
                let what = TokenSource::File(path.clone());
                match read(&path) {
                    Ok(text) => match token_value(&text, &what, &at) {
                        Ok(t) => {
                            auth.token = Some(t);
                            auth.token_source = Some(format!("file:{}", path.display()));
                        }
                        Err(p) => problems.push(p),
                    },
                    Err(p) => {
                        let reason = match p.kind {
                            ProblemKind::Unreadable(why) => why,
                            other => other.to_string(),
                        };
                        problems.push(invalid(at, AdminError::TokenUnreadable { token: what, reason }))
                    }
                }
            } else if let Some(env) = &l.token_env {
                let at = SourcePos::of(main, env);
                let what = TokenSource::Env(env.value.clone());
                match std::env::var(&env.value) {
                    Ok(text) => match token_value(&text, &what, &at) {
                        Ok(t) => {
                            auth.token = Some(t);
                            auth.token_source = Some(format!("env:{}", env.value));
                        }
                        Err(p) => problems.push(p),
                    },
                    Err(std::env::VarError::NotPresent) => problems.push(invalid(at, AdminError::EnvNotSet(what))),
                    Err(std::env::VarError::NotUnicode(_)) => {
                        problems.push(invalid(at, AdminError::EnvNotUnicode(what)))
                    }
                }
            }
            for (flag, name, field) in [
                (
                    &l.protect_metrics,
                    AdminSwitch::ProtectMetrics,
                    &mut auth.protect_metrics,
                ),
                (&l.protect_probes, AdminSwitch::ProtectProbes, &mut auth.protect_probes),
            ] {
                if let Some(flag) = flag {
                    *field = flag.value;
                    if flag.value && l.token_file.is_none() && l.token_env.is_none() {
                        problems.push(invalid(
                            SourcePos::of(main, flag),
                            AdminError::ProtectWithoutToken(name),
                        ));
                    }
                }
            }
            match &l.addr {
                Some(a) => {
                    settings.addr = a.value.clone();
                    SourcePos::of(main, a)
                }
                None => SourcePos::of(main, raw),
            }
        }
    };
    settings.addr_at = Some(addr_at.clone());
    match settings.addr.to_socket_addrs() {
        Err(_) => problems.push(ConfigProblem::error(
            addr_at,
            ProblemKind::Address(settings.addr.clone()),
        )),
        Ok(resolved) => {
            let resolved: Vec<_> = resolved.collect();
            let loopback = !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback());
            if !loopback && settings.auth.token.is_none() {
                warnings.push(ConfigProblem::warning(
                    addr_at,
                    format!(
                        "the admin listener `{}` is not on loopback and has no token: whoever reaches it can read the configuration (GET /-/config) and reload it (POST /-/reload); set admin.token_file or admin.token_env",
                        settings.addr
                    ),
                ));
            }
        }
    }
    settings
}
