//! An upstream group's `tls:` compiled: the SNI override, verification switches, the trust
//! roots (the group's `ca` files, with or without the system roots), the client certificate
//! (mTLS) and the minimum protocol version, every file read through the loader (so its content
//! is part of the configuration version and a rotated file is picked up by a reload) and every
//! problem positioned on the key that names it. `crate::upstream_peer` turns the result into
//! pingora peer options.
//!
//! Everything pingora's rustls connector would otherwise fail on per connection (a CA it cannot
//! add, a key it cannot convert) or panic on (`CertKey` and `WrappedX509` parse certificates with
//! `expect`) is checked here, once, at load.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::tls::{CertificateDer, ClientConfig, PrivateKeyDer, RootCertStore};
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls_pki_types::pem::PemObject;
use serde_saphyr::Spanned;

use crate::config::load::resolve;
use crate::config::schema::RawUpstreamTls;
use crate::config::{ConfigProblem, SourcePos};
use crate::engine::diagnostics::UpstreamTlsError;

/// The lowest TLS version a group accepts (`min_version`). rustls, and so pingora, speaks only
/// 1.2 and 1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl TlsVersion {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }

    /// The version of a connection as pingora's TLS digest names it (rustls: `TLSv1_2`).
    pub fn from_digest(name: &str) -> Option<TlsVersion> {
        match name {
            "TLSv1_2" => Some(TlsVersion::V1_2),
            "TLSv1_3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }
}

/// The certificates a group trusts instead of the connector's default (the system roots):
/// its `ca` files, plus the system roots when `system_roots: true`. Equal when the same
/// certificates are trusted.
#[derive(Clone)]
pub struct TrustRoots {
    der: Arc<[Vec<u8>]>,
    /// What pingora's peer options take (`PeerOptions::ca`).
    pub ca: Arc<CaType>,
    /// Whether the system roots are among them.
    pub system: bool,
}

impl PartialEq for TrustRoots {
    fn eq(&self, other: &Self) -> bool {
        self.system == other.system && self.der == other.der
    }
}
impl Eq for TrustRoots {}

impl fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TrustRoots({} certificates, system: {})",
            self.der.len(),
            self.system
        )
    }
}

/// The client certificate chain and its key (mTLS). `Debug` never shows the key.
#[derive(Clone)]
pub struct ClientCert {
    chain: Arc<[Vec<u8>]>,
    key: Arc<[u8]>,
    /// What pingora's peer takes (`HttpPeer::client_cert_key`).
    pub cert_key: Arc<CertKey>,
}

impl PartialEq for ClientCert {
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain && self.key == other.key
    }
}
impl Eq for ClientCert {}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientCert({} certificates, key <redacted>)", self.chain.len())
    }
}

/// An upstream group's TLS, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The server name sent (SNI) and verified; `None`: the address's configured host name.
    pub sni: Option<String>,
    /// Verify the certificate chain.
    pub verify: bool,
    /// Verify that the certificate names the server (only meaningful with `verify`).
    pub verify_hostname: bool,
    /// `None`: the system roots (pingora's connector default).
    pub roots: Option<TrustRoots>,
    pub client: Option<ClientCert>,
    pub min_version: TlsVersion,
}

/// Reads a configuration file (hashed into the version and watched): the loader's reader.
pub type ReadFile<'a> = dyn FnMut(&Path) -> Result<String, ConfigProblem> + 'a;

/// Compiles one group's `tls:`. Problems go to `problems`, warnings (`verify: false`) to
/// `warnings`; `None` when there was a problem.
pub fn compile_tls(
    file: &Path,
    group: &str,
    raw: &Spanned<RawUpstreamTls>,
    read: &mut ReadFile<'_>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<ConfigProblem>,
) -> Option<UpstreamTls> {
    let before = problems.len();
    let t = &raw.value;
    let verify = t.verify.as_ref().is_none_or(|v| v.value);
    if let Some(v) = t.verify.as_ref().filter(|v| !v.value) {
        warnings.push(ConfigProblem::warning(
            SourcePos::of(file, v),
            format!("upstream `{group}`: tls.verify is false: any certificate is accepted, so anyone on the path can impersonate this upstream"),
        ));
    }
    let verify_hostname = t.verify_hostname.as_ref().map_or(verify, |v| v.value);
    let sni = t.sni.as_ref().map(|s| s.value.clone());
    if let Some(s) = &t.sni {
        if s.value.is_empty() || pingora::tls::ServerName::try_from(s.value.as_str()).is_err() {
            problems.push(ConfigProblem::error(
                SourcePos::of(file, s),
                UpstreamTlsError::Sni(s.value.clone()).into(),
            ));
        }
    }
    let min_version = match &t.min_version {
        None => TlsVersion::V1_2,
        Some(v) => match v.value.as_str() {
            "1.2" => TlsVersion::V1_2,
            "1.3" => TlsVersion::V1_3,
            other => {
                problems.push(ConfigProblem::error(
                    SourcePos::of(file, v),
                    UpstreamTlsError::MinVersion(other.to_owned()).into(),
                ));
                TlsVersion::V1_2
            }
        },
    };

    if let Some(c) = t.ca.as_ref().filter(|c| c.value.0.is_empty()) {
        problems.push(ConfigProblem::error(
            SourcePos::of(file, c),
            UpstreamTlsError::EmptyCa.into(),
        ));
    }
    let mut files = Vec::new();
    for (path, at) in t.ca.iter().flat_map(|c| c.value.0.iter().map(move |p| (p, c))) {
        if let Some(certs) = read_certs(file, path, at, "tls.ca", read, problems) {
            files.extend(certs);
        }
    }
    let system = match (&t.system_roots, &t.ca) {
        (Some(s), None) if !s.value => {
            problems.push(ConfigProblem::error(
                SourcePos::of(file, s),
                UpstreamTlsError::NothingToTrust.into(),
            ));
            false
        }
        (s, _) => s.as_ref().is_some_and(|s| s.value),
    };
    let roots = match &t.ca {
        None => None,
        Some(_) => {
            let mut der = Vec::new();
            if system {
                match pingora::tls::load_native_certs() {
                    // A system root rustls cannot use would fail every handshake in pingora's
                    // connector (it adds the whole list per connection): leave it out.
                    Ok(certs) => der.extend(certs.into_iter().map(|c| c.to_vec()).filter(|d| usable_root(d))),
                    Err(e) => problems.push(ConfigProblem::error(
                        t.system_roots
                            .as_ref()
                            .map_or(SourcePos::of(file, raw), |s| SourcePos::of(file, s)),
                        UpstreamTlsError::SystemRoots(e.to_string()).into(),
                    )),
                }
            }
            der.extend(files);
            let ca: Arc<CaType> = der.iter().map(|d| WrappedX509::new(d.clone(), parse_x509)).collect();
            Some(TrustRoots {
                der: der.into(),
                ca,
                system,
            })
        }
    };

    let client = match (&t.cert, &t.key) {
        (None, None) => None,
        (Some(c), None) => {
            problems.push(ConfigProblem::error(
                SourcePos::of(file, c),
                UpstreamTlsError::CertWithoutKey.into(),
            ));
            None
        }
        (None, Some(k)) => {
            problems.push(ConfigProblem::error(
                SourcePos::of(file, k),
                UpstreamTlsError::KeyWithoutCert.into(),
            ));
            None
        }
        (Some(c), Some(k)) => client_cert(file, c, k, read, problems),
    };

    (problems.len() == before).then_some(UpstreamTls {
        sni,
        verify,
        verify_hostname,
        roots,
        client,
        min_version,
    })
}

fn invalid<T>(file: &Path, at: &Spanned<T>, error: UpstreamTlsError) -> ConfigProblem {
    ConfigProblem::error(SourcePos::of(file, at), error.into())
}

/// A problem with the file `path` named by `key`.
fn bad_file(key: &str, path: &str, reason: impl Into<String>) -> UpstreamTlsError {
    UpstreamTlsError::File {
        key: key.to_owned(),
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads a PEM file named by `key`; the problem (missing, unreadable) is on the key.
fn read_pem<T>(
    file: &Path,
    path: &str,
    at: &Spanned<T>,
    key: &str,
    read: &mut ReadFile<'_>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<String> {
    let resolved = resolve(file, path);
    read(&resolved)
        .map_err(|p| {
            problems.push(ConfigProblem::error(
                SourcePos::of(file, at),
                bad_file(key, &resolved.display().to_string(), p.kind.to_string()).into(),
            ))
        })
        .ok()
}

/// The certificates of a PEM file, each checked the way pingora will use it.
fn read_certs<T>(
    file: &Path,
    path: &str,
    at: &Spanned<T>,
    key: &str,
    read: &mut ReadFile<'_>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Vec<Vec<u8>>> {
    let text = read_pem(file, path, at, key, read, problems)?;
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(text.as_bytes()) {
        match item {
            Ok(c) if x509_parser::parse_x509_certificate(&c).is_ok() => out.push(c.to_vec()),
            Ok(_) => {
                problems.push(invalid(
                    file,
                    at,
                    bad_file(key, path, "a certificate is not valid X.509"),
                ));
                return None;
            }
            Err(e) => {
                problems.push(invalid(file, at, bad_file(key, path, format!("not PEM: {e}"))));
                return None;
            }
        }
    }
    if out.is_empty() {
        problems.push(invalid(file, at, bad_file(key, path, "no PEM certificate in the file")));
        return None;
    }
    if key == "tls.ca" {
        if let Some(i) = out.iter().position(|d| !usable_root(d)) {
            problems.push(invalid(
                file,
                at,
                bad_file(key, path, format!("certificate {} cannot be a trust anchor", i + 1)),
            ));
            return None;
        }
    }
    Some(out)
}

/// Whether rustls accepts the certificate as a trust anchor (what pingora's connector does with
/// each per-peer CA on every connection).
fn usable_root(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok()
        && RootCertStore::empty().add(CertificateDer::from(der.to_vec())).is_ok()
}

fn client_cert(
    file: &Path,
    cert: &Spanned<String>,
    key: &Spanned<String>,
    read: &mut ReadFile<'_>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<ClientCert> {
    let chain = read_certs(file, &cert.value, cert, "tls.cert", read, problems);
    let key_text = read_pem(file, &key.value, key, "tls.key", read, problems)?;
    let chain = chain?;
    let key_der = match PrivateKeyDer::from_pem_slice(key_text.as_bytes()) {
        Ok(k) => k,
        Err(e) => {
            problems.push(invalid(
                file,
                key,
                bad_file("tls.key", &key.value, format!("no usable PEM private key: {e}")),
            ));
            return None;
        }
    };
    let key_bytes = key_der.secret_der().to_vec();
    // pingora converts the key back from its bytes with `try_into().unwrap()` per connection:
    // the same conversion must succeed here.
    if PrivateKeyDer::try_from(key_bytes.clone()).is_err() {
        problems.push(invalid(
            file,
            key,
            bad_file("tls.key", &key.value, "unrecognized private key format"),
        ));
        return None;
    }
    pingora::tls::install_default_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = chain.iter().map(|d| CertificateDer::from(d.clone())).collect();
    let checked = ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_client_auth_cert(certs, key_der.clone_key());
    if let Err(e) = checked {
        problems.push(invalid(
            file,
            key,
            UpstreamTlsError::KeyMismatch {
                key: key.value.clone(),
                cert: cert.value.clone(),
                reason: e.to_string(),
            },
        ));
        return None;
    }
    Some(ClientCert {
        cert_key: Arc::new(CertKey::new(chain.clone(), key_bytes.clone())),
        chain: chain.into(),
        key: key_bytes.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_versions_compare_against_the_minimum() {
        assert_eq!(TlsVersion::from_digest("TLSv1_2"), Some(TlsVersion::V1_2));
        assert_eq!(TlsVersion::from_digest("TLSv1_3"), Some(TlsVersion::V1_3));
        assert_eq!(TlsVersion::from_digest(""), None);
        assert!(TlsVersion::V1_2 < TlsVersion::V1_3);
    }
}
