//! A `tls_listen:` entry's certificates compiled: the default pair (`cert`/`key`), the pairs
//! chosen by SNI (`certs:`, by the DNS names of each certificate's subjectAltName) and
//! `min_version`, turned into rustls `CertifiedKey`s at load. Every file is read through the
//! loader (its content is part of the configuration version and it is watched, so a rotated
//! certificate is picked up by a reload) and every problem is positioned on the key that names
//! the file. `crate::listener_certs` serves the result to the running listeners.
//!
//! pingora's `TlsSettings::build` panics on a certificate or key it cannot load: it never sees a
//! file; everything it would fail on is checked here, once, and the listener gets a resolver.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_saphyr::Spanned;
use x509_parser::extensions::GeneralName;

use crate::config::load::resolve;
use crate::config::schema::RawTlsListener;
use crate::config::upstream_tls::ReadFile;
pub use crate::config::upstream_tls::TlsVersion;
use crate::config::{ConfigProblem, SourcePos};
use crate::engine::diagnostics::ListenerTlsError;

/// What one TLS listener serves: reloadable as a whole. `Debug` never shows a key.
#[derive(Clone)]
pub struct ListenerCerts {
    /// Served without SNI, or when no `certs` entry names the requested server.
    pub default: Arc<CertifiedKey>,
    /// Lower-case DNS name -> certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` as `example.com` -> certificate.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    pub min_version: TlsVersion,
    /// What each certificate is, default first (for `GET /-/config`).
    pub served: Vec<ServedCert>,
}

/// A served certificate as operators identify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCert {
    /// The `cert` path as configured.
    pub file: String,
    /// The default pair (else a `certs` entry).
    pub default: bool,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The leaf's DNS names (lower case).
    pub names: Vec<String>,
    /// The leaf's notAfter, seconds since the Unix epoch.
    pub not_after_unix: i64,
}

impl fmt::Debug for ListenerCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ListenerCerts(default, {} names, {} wildcards, min {}, keys <redacted>)",
            self.exact.len(),
            self.wildcard.len(),
            self.min_version.name()
        )
    }
}

impl ListenerCerts {
    /// The certificate for the client's SNI: an exact name first, then a wildcard covering
    /// exactly one label (`*.example.com` matches `a.example.com`, not `example.com` nor
    /// `a.b.example.com`), case-insensitively; else the default.
    pub fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some(c) = self.exact.get(&name) {
            return c;
        }
        name.split_once('.')
            .filter(|(label, _)| !label.is_empty())
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }

    /// The same sets with every certified key replaced by `f(key)` (the runtime wraps the keys
    /// of a TLS 1.3-only listener).
    pub fn map_keys(&self, f: impl Fn(&Arc<CertifiedKey>) -> Arc<CertifiedKey>) -> ListenerCerts {
        // One certificate may serve several names: map it once so they stay one value.
        let mut done: Vec<(Arc<CertifiedKey>, Arc<CertifiedKey>)> = Vec::new();
        let mut map = |k: &Arc<CertifiedKey>| {
            if let Some((_, m)) = done.iter().find(|(o, _)| Arc::ptr_eq(o, k)) {
                return m.clone();
            }
            let m = f(k);
            done.push((k.clone(), m.clone()));
            m
        };
        ListenerCerts {
            default: map(&self.default),
            exact: self.exact.iter().map(|(n, k)| (n.clone(), map(k))).collect(),
            wildcard: self.wildcard.iter().map(|(n, k)| (n.clone(), map(k))).collect(),
            min_version: self.min_version,
            served: self.served.clone(),
        }
    }
}

/// One pair as loaded: the rustls key and what identifies the leaf.
struct Pair {
    certified: Arc<CertifiedKey>,
    names: Vec<String>,
    serial: String,
    not_after_unix: i64,
}

impl Pair {
    fn served(&self, file: &Spanned<String>, default: bool) -> ServedCert {
        ServedCert {
            file: file.value.clone(),
            default,
            serial: self.serial.clone(),
            names: self.names.clone(),
            not_after_unix: self.not_after_unix,
        }
    }
}

/// Compiles one `tls_listen:` entry's certificates. Problems go to `problems`, warnings (a
/// certificate outside its validity period) to `warnings`; `None` when there was a problem.
pub fn compile_listener_tls(
    file: &Path,
    raw: &RawTlsListener,
    read: &mut ReadFile<'_>,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<ConfigProblem>,
) -> Option<ListenerCerts> {
    let before = problems.len();
    let min_version = match &raw.min_version {
        None => TlsVersion::V1_2,
        Some(v) => match v.value.as_str() {
            "1.2" => TlsVersion::V1_2,
            "1.3" => TlsVersion::V1_3,
            other => {
                problems.push(ConfigProblem::error(
                    SourcePos::of(file, v),
                    ListenerTlsError::MinVersion(other.to_owned()).into(),
                ));
                TlsVersion::V1_2
            }
        },
    };
    let mut ctx = Ctx {
        file,
        read,
        problems,
        warnings,
    };
    let default = ctx.pair(&raw.cert, &raw.key, "tls_listen.cert", "tls_listen.key");
    let mut served: Vec<ServedCert> = default.iter().map(|d| d.served(&raw.cert, true)).collect();
    let mut exact: HashMap<String, Arc<CertifiedKey>> = HashMap::new();
    let mut wildcard: HashMap<String, Arc<CertifiedKey>> = HashMap::new();
    // Which entry claimed a name first: its key, path and position.
    let mut claimed: HashMap<String, (String, String, SourcePos)> = HashMap::new();
    for (i, entry) in raw.certs.iter().enumerate() {
        let e = &entry.value;
        let (ckey, kkey) = (
            format!("tls_listen.certs[{i}].cert"),
            format!("tls_listen.certs[{i}].key"),
        );
        let Some(pair) = ctx.pair(&e.cert, &e.key, &ckey, &kkey) else {
            continue;
        };
        let at = SourcePos::of(file, &e.cert);
        served.push(pair.served(&e.cert, false));
        if pair.names.is_empty() {
            ctx.problems.push(ConfigProblem::error(
                at.clone(),
                ListenerTlsError::NoDnsName {
                    key: ckey.clone(),
                    path: e.cert.value.clone(),
                }
                .into(),
            ));
        }
        for name in pair.names {
            if let Some((other_key, other_path, other_at)) = claimed.get(&name) {
                ctx.problems.push(ConfigProblem::error(
                    at.clone(),
                    ListenerTlsError::DuplicateName {
                        key: ckey.clone(),
                        path: e.cert.value.clone(),
                        name,
                        other: format!("{other_key} {other_path}"),
                        other_at: other_at.to_string(),
                    }
                    .into(),
                ));
                continue;
            }
            claimed.insert(name.clone(), (ckey.clone(), e.cert.value.clone(), at.clone()));
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.insert(parent.to_owned(), pair.certified.clone()),
                None => exact.insert(name, pair.certified.clone()),
            };
        }
    }
    let default = default?;
    (ctx.problems.len() == before).then_some(ListenerCerts {
        default: default.certified,
        exact,
        wildcard,
        min_version,
        served,
    })
}

struct Ctx<'a, 'r> {
    file: &'a Path,
    read: &'a mut ReadFile<'r>,
    problems: &'a mut Vec<ConfigProblem>,
    warnings: &'a mut Vec<ConfigProblem>,
}

impl Ctx<'_, '_> {
    fn bad(&mut self, at: &Spanned<String>, key: &str, reason: impl Into<String>) {
        self.problems.push(ConfigProblem::error(
            SourcePos::of(self.file, at),
            ListenerTlsError::File {
                key: key.to_owned(),
                path: at.value.clone(),
                reason: reason.into(),
            }
            .into(),
        ));
    }

    /// Reads the file named by `at` (the loader hashes and watches it).
    fn text(&mut self, at: &Spanned<String>, key: &str) -> Option<String> {
        let path = resolve(self.file, &at.value);
        match (self.read)(&path) {
            Ok(t) => Some(t),
            Err(p) => {
                self.bad(at, key, p.kind.to_string());
                None
            }
        }
    }

    /// A certificate chain (leaf first), every certificate valid X.509.
    fn chain(&mut self, at: &Spanned<String>, key: &str) -> Option<Vec<CertificateDer<'static>>> {
        let text = self.text(at, key)?;
        let mut out = Vec::new();
        for item in CertificateDer::pem_slice_iter(text.as_bytes()) {
            match item {
                Ok(c) if x509_parser::parse_x509_certificate(&c).is_ok() => out.push(c),
                Ok(_) => {
                    self.bad(at, key, format!("certificate {} is not valid X.509", out.len() + 1));
                    return None;
                }
                Err(e) => {
                    self.bad(at, key, format!("not PEM: {e}"));
                    return None;
                }
            }
        }
        if out.is_empty() {
            self.bad(at, key, "no PEM certificate in the file");
            return None;
        }
        Some(out)
    }

    /// A certificate and its key, checked against each other; the leaf's validity period is
    /// warned about, not refused.
    fn pair(&mut self, cert: &Spanned<String>, key: &Spanned<String>, ckey: &str, kkey: &str) -> Option<Pair> {
        let chain = self.chain(cert, ckey);
        let key_text = self.text(key, kkey)?;
        let chain = chain?;
        let key_der = match PrivateKeyDer::from_pem_slice(key_text.as_bytes()) {
            Ok(k) => k,
            Err(e) => {
                self.bad(key, kkey, format!("no usable PEM private key: {e}"));
                return None;
            }
        };
        pingora::tls::install_default_crypto_provider();
        let Some(provider) = CryptoProvider::get_default() else {
            self.bad(key, kkey, "no TLS crypto provider is installed");
            return None;
        };
        let signing = match provider.key_provider.load_private_key(key_der) {
            Ok(k) => k,
            Err(e) => {
                self.bad(key, kkey, format!("unsupported private key: {e}"));
                return None;
            }
        };
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                self.problems.push(ConfigProblem::error(
                    SourcePos::of(self.file, key),
                    ListenerTlsError::KeyMismatch {
                        key: kkey.to_owned(),
                        path: key.value.clone(),
                        cert: cert.value.clone(),
                        reason: e.to_string(),
                    }
                    .into(),
                ));
                return None;
            }
        }
        // `chain` parsed every certificate already: this cannot fail, but says so if it does.
        let Some((_, leaf)) = certified
            .cert
            .first()
            .and_then(|c| x509_parser::parse_x509_certificate(c).ok())
        else {
            self.bad(cert, ckey, "the leaf certificate is not valid X.509");
            return None;
        };
        let validity = leaf.validity();
        if !validity.is_valid() {
            let now = x509_parser::time::ASN1Time::now();
            let why = if now < validity.not_before {
                format!("is not valid before {}", validity.not_before)
            } else {
                format!("expired on {}", validity.not_after)
            };
            self.warnings.push(ConfigProblem::warning(
                SourcePos::of(self.file, cert),
                format!("{ckey} {}: the certificate {why}: clients that check it refuse the handshake (it is served anyway, so a late renewal does not take the listener down)", cert.value),
            ));
        }
        let mut names: Vec<String> = match leaf.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(n) => Some(n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        names.sort_unstable();
        names.dedup();
        Some(Pair {
            serial: leaf.raw_serial_as_string().replace(':', ""),
            not_after_unix: validity.not_after.timestamp(),
            certified: Arc::new(certified),
            names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse_yaml;
    use crate::config::ProblemKind;

    /// A self-signed certificate for `names`, PEM, with its key.
    fn pem(names: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn compile(yaml: &str, files: &[(&str, &(String, String))]) -> Result<ListenerCerts, Vec<String>> {
        let main = Path::new("/etc/sg/gw.yaml");
        let raw: RawTlsListener = parse_yaml(main, yaml).unwrap();
        let mut read = |p: &Path| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let (stem, ext) = name.split_once('.').unwrap();
            files
                .iter()
                .find(|(n, _)| *n == stem)
                .map(|(_, (c, k))| if ext == "crt" { c.clone() } else { k.clone() })
                .ok_or_else(|| ConfigProblem::error(SourcePos::file(p), ProblemKind::Unreadable("not found".into())))
        };
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        compile_listener_tls(main, &raw, &mut read, &mut problems, &mut warnings)
            .ok_or_else(|| problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn sni_selects_exact_then_one_label_wildcard_then_the_default() {
        let (d, a, w) = (pem(&["localhost"]), pem(&["api.example.com"]), pem(&["*.example.net"]));
        let certs = compile(
            "addr: 127.0.0.1:1\ncert: d.crt\nkey: d.key\ncerts:\n  - { cert: a.crt, key: a.key }\n  - { cert: w.crt, key: w.key }\n",
            &[("d", &d), ("a", &a), ("w", &w)],
        )
        .unwrap();
        let is = |sni: Option<&str>, want: &(String, String)| {
            let der = CertificateDer::from_pem_slice(want.0.as_bytes()).unwrap();
            assert_eq!(certs.select(sni).cert[0], der, "{sni:?}");
        };
        is(Some("api.example.com"), &a);
        is(Some("API.EXAMPLE.COM."), &a);
        is(Some("x.example.net"), &w);
        is(Some("example.net"), &d);
        is(Some("y.x.example.net"), &d);
        is(Some("other.example.com"), &d);
        is(None, &d);
        assert_eq!(certs.served.len(), 3);
        assert!(certs.served[0].default && !certs.served[1].default);
        assert_eq!(certs.served[2].names, ["*.example.net"]);
    }

    #[test]
    fn a_missing_default_key_and_an_unknown_version_are_both_reported() {
        let d = pem(&["localhost"]);
        let problems = compile(
            "addr: 127.0.0.1:1\ncert: d.crt\nkey: gone.key\nmin_version: \"1.4\"\n",
            &[("d", &d)],
        )
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "/etc/sg/gw.yaml:4:14: tls_listen.min_version `1.4`: use \"1.2\" or \"1.3\"",
                "/etc/sg/gw.yaml:3:6: tls_listen.key gone.key: cannot read file: not found",
            ]
        );
    }
}
