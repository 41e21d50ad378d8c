//! The TLS listeners' certificates at run time: one rustls certificate resolver per
//! `tls_listen` address, holding what the listener serves in an `ArcSwap`. pingora asks it on
//! every handshake (the SNI picks the certificate); an accepted reload stores the new sets into
//! the running listeners' resolvers (matched by address), so new handshakes use them without a
//! restart and established connections are untouched. It also enforces `min_version: "1.3"`,
//! which pingora 0.9.1's listener cannot express (it always enables TLS 1.2 and 1.3).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::config::listener_tls::{ListenerCerts, TlsVersion};
use crate::snapshot::Snapshot;

/// What a resolver serves: the snapshot's sets, keys wrapped for a TLS 1.3-only listener.
struct Active {
    certs: ListenerCerts,
    /// The TLS 1.3 suites this process implements (for the ClientHello check).
    tls13_suites: Vec<u16>,
}

/// One TLS listener's certificate resolver (installed with `TlsSettings::set_cert_resolver`).
pub struct ListenerCertResolver {
    active: ArcSwap<Active>,
}

impl std::fmt::Debug for ListenerCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListenerCertResolver({:?})", self.active.load().certs)
    }
}

impl ListenerCertResolver {
    fn new(certs: &ListenerCerts) -> ListenerCertResolver {
        ListenerCertResolver {
            active: ArcSwap::from_pointee(Active::of(certs)),
        }
    }

    /// Serves `certs` from the next handshake on.
    pub fn store(&self, certs: &ListenerCerts) {
        self.active.store(Arc::new(Active::of(certs)));
    }
}

impl Active {
    fn of(certs: &ListenerCerts) -> Active {
        let certs = match certs.min_version {
            TlsVersion::V1_2 => certs.clone(),
            TlsVersion::V1_3 => certs.map_keys(|k| {
                Arc::new(CertifiedKey {
                    cert: k.cert.clone(),
                    key: Arc::new(Tls13Only(k.key.clone())),
                    ocsp: k.ocsp.clone(),
                })
            }),
        };
        pingora::tls::install_default_crypto_provider();
        let tls13_suites = rustls::crypto::CryptoProvider::get_default()
            .map(|p| {
                p.cipher_suites
                    .iter()
                    .filter(|s| s.tls13().is_some())
                    .map(|s| u16::from(s.suite()))
                    .collect()
            })
            .unwrap_or_default();
        Active { certs, tls13_suites }
    }
}

impl ResolvesServerCert for ListenerCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let active = self.active.load();
        if active.certs.min_version == TlsVersion::V1_3
            && !hello
                .cipher_suites()
                .iter()
                .any(|s| active.tls13_suites.contains(&u16::from(*s)))
        {
            // A client that offers no TLS 1.3 suite cannot speak 1.3: refuse it here, with
            // rustls's alert (access_denied). `Tls13Only` catches those that offer one anyway.
            return None;
        }
        Some(active.certs.select(hello.server_name()).clone())
    }
}

/// The signing key of a `min_version: "1.3"` listener: it signs TLS 1.3 handshakes only.
///
/// Why here and why this is sound (rustls 0.23.46, `src/server/hs.rs`, `tls12.rs`, `tls13.rs`):
/// rustls picks the version from the ClientHello's `supported_versions` before it asks the
/// resolver and does not tell the resolver which one it picked, and a client's offered cipher
/// suites do not prove it offered 1.3: a rustls client limited to TLS 1.2 still lists its
/// provider's TLS 1.3 suites (`client/hs.rs` takes every suite of the provider), so the
/// resolver's suite check alone would let it in at 1.2. What does tell the versions apart is
/// the one thing every full handshake of this listener signs: TLS 1.3's CertificateVerify
/// content is 64 spaces, "TLS 1.3, server CertificateVerify" and a zero byte
/// (`construct_server_verify_message`), while a TLS 1.2 ServerKeyExchange signs client random,
/// server random and the ECDHE parameters, and rustls ends that server random with the
/// downgrade sentinel `DOWNGRD\x01` whenever TLS 1.3 is enabled (it always is on pingora's
/// listener), so bytes 56..64 of a 1.2 message are never spaces. rustls has no TLS 1.2 suite
/// without a server signature (no static RSA). So refusing to sign anything else fails every
/// full TLS 1.2 handshake. A TLS 1.2 session resumption signs nothing: it needs a session from
/// a full 1.2 handshake on this listener, which is only possible from before a reload raised
/// `min_version` (rustls's in-memory session cache of 256 entries); the suite check above
/// still refuses such a client when it offers no 1.3 suite.
#[derive(Debug)]
struct Tls13Only(Arc<dyn SigningKey>);

/// RFC 8446 section 4.4.3: what a TLS 1.3 server's CertificateVerify signature covers first.
const TLS13_SERVER_VERIFY_PREFIX: [u8; 98] = {
    let mut p = [0x20u8; 98];
    let context = b"TLS 1.3, server CertificateVerify\0";
    let mut i = 0;
    while i < context.len() {
        p[64 + i] = context[i];
        i += 1;
    }
    p
};

impl SigningKey for Tls13Only {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        self.0
            .choose_scheme(offered)
            .map(|s| Box::new(Tls13OnlySigner(s)) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.0.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.0.algorithm()
    }
}

#[derive(Debug)]
struct Tls13OnlySigner(Box<dyn Signer>);

impl Signer for Tls13OnlySigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        if !message.starts_with(&TLS13_SERVER_VERIFY_PREFIX) {
            return Err(rustls::Error::General(
                "refusing a TLS 1.2 handshake: this listener's min_version is 1.3".to_owned(),
            ));
        }
        self.0.sign(message)
    }

    fn scheme(&self) -> SignatureScheme {
        self.0.scheme()
    }
}

/// The running TLS listeners' resolvers, by listener address (made from the snapshot the
/// process started with: listener addresses are boot-only).
#[derive(Debug, Default)]
pub struct ListenerResolvers {
    by_addr: HashMap<String, Arc<ListenerCertResolver>>,
}

impl ListenerResolvers {
    pub fn new(first: &Snapshot) -> ListenerResolvers {
        ListenerResolvers {
            by_addr: first
                .listener_certs
                .iter()
                .map(|l| (l.addr.clone(), Arc::new(ListenerCertResolver::new(&l.certs))))
                .collect(),
        }
    }

    /// The resolver of the listener at `addr`, for the server to install.
    pub fn get(&self, addr: &str) -> Option<Arc<ListenerCertResolver>> {
        self.by_addr.get(addr).cloned()
    }

    /// Stores an accepted snapshot's sets into the running listeners of the same address. A
    /// listener the snapshot no longer has keeps serving its last sets until the restart its
    /// removal needs; a new address has no running listener yet.
    pub fn store(&self, snapshot: &Snapshot) {
        for l in &snapshot.listener_certs {
            if let Some(r) = self.by_addr.get(&l.addr) {
                r.store(&l.certs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_64_spaces_and_the_server_context() {
        assert!(TLS13_SERVER_VERIFY_PREFIX[..64].iter().all(|b| *b == b' '));
        assert_eq!(
            &TLS13_SERVER_VERIFY_PREFIX[64..],
            b"TLS 1.3, server CertificateVerify\0"
        );
    }
}
