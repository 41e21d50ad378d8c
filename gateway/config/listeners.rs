//! The listener addresses (`listen`, `tls_listen`, `admin`) checked against each other: each
//! listener needs an address of its own.
//!
//! Why this is a configuration error and not left to bind(): pingora 0.9.1 keeps one table of
//! a server's listening sockets keyed by the address text, and a second listener whose text is
//! already in it does not bind but wraps the first listener's descriptor again
//! (`ListenerEndpointBuilder::listen`, pingora-core `src/listeners/l4.rs`: `fds_table.get`
//! then `from_raw_fd`). Two owners of one descriptor close it twice at shutdown: a debug
//! build aborts ("IO Safety violation: owned file descriptor already closed"), a release build
//! closes whatever descriptor was opened under that number in between. Addresses that differ
//! in text but overlap (a host name and its IP, a wildcard and an IP on the same port) do not
//! share a descriptor; their second bind fails, after pingora's 30 one-second retries, and the
//! service panics. Both are caught here, with the positions of both listeners.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{ConfigProblem, ProblemKind, SourcePos};
use crate::engine::diagnostics::ListenerOverlap;

/// One listener as configured.
pub struct Listener<'a> {
    /// The setting it comes from: `listen`, `tls_listen` or `admin`.
    pub role: &'static str,
    pub addr: &'a str,
    /// `None` for the built-in admin default.
    pub at: Option<SourcePos>,
}

/// Whether two resolved socket addresses cannot both be listened on. Port 0 (any free port)
/// never clashes by resolution; the same text clashes whatever it says (see the module docs).
fn overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (ia, ib) = (a.ip(), b.ip());
    // An IPv6 wildcard listener is dual-stack on Linux by default: it takes the port on IPv4 too.
    let v6_any = |ip: &std::net::IpAddr| ip.is_ipv6() && ip.is_unspecified();
    ia == ib
        || (ia.is_ipv4() == ib.is_ipv4() && (ia.is_unspecified() || ib.is_unspecified()))
        || v6_any(&ia)
        || v6_any(&ib)
}

fn clash(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (Ok(ra), Ok(rb)) = (a.to_socket_addrs(), b.to_socket_addrs()) else {
        return false; // an unresolvable address is reported on its own
    };
    let rb: Vec<SocketAddr> = rb.collect();
    ra.into_iter().any(|x| rb.iter().any(|y| overlap(&x, y)))
}

/// One problem per listener that takes the address of an earlier one, reported at the later
/// listener (at the earlier one when the later is the admin default, which has no position).
pub fn check_distinct(listeners: &[Listener]) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for (j, later) in listeners.iter().enumerate() {
        let Some(earlier) = listeners[..j].iter().find(|e| clash(e.addr, later.addr)) else {
            continue;
        };
        let (here, there) = match (&later.at, &earlier.at) {
            (Some(_), _) | (None, None) => (later, earlier),
            (None, Some(_)) => (earlier, later),
        };
        let Some(at) = here.at.clone().or_else(|| there.at.clone()) else {
            continue;
        };
        problems.push(ConfigProblem::error(
            at,
            ProblemKind::ListenerOverlap(Box::new(ListenerOverlap {
                addr: here.addr.to_owned(),
                role: here.role,
                other: there.addr.to_owned(),
                other_role: there.role,
                other_at: there
                    .at
                    .as_ref()
                    .map_or_else(|| "the default".to_owned(), ToString::to_string),
            })),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pos(line: u64) -> Option<SourcePos> {
        Some(SourcePos {
            file: Path::new("gw.yaml").to_path_buf(),
            line,
            col: 9,
        })
    }

    fn messages(listeners: &[(&'static str, &str, Option<SourcePos>)]) -> Vec<String> {
        let ls: Vec<Listener> = listeners
            .iter()
            .map(|(role, addr, at)| Listener {
                role,
                addr,
                at: at.clone(),
            })
            .collect();
        check_distinct(&ls).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn distinct_addresses_pass() {
        let ls = [
            ("listen", "127.0.0.1:8080", pos(1)),
            ("listen", "127.0.0.1:8081", pos(1)),
            ("tls_listen", "127.0.0.2:8080", pos(3)),
            ("admin", "127.0.0.1:9090", None),
        ];
        assert_eq!(messages(&ls), Vec::<String>::new());
    }

    #[test]
    fn the_admin_on_the_listen_address_is_reported_at_the_admin() {
        let ls = [
            ("listen", "127.0.0.1:8080", pos(1)),
            ("admin", "127.0.0.1:8080", pos(2)),
        ];
        assert_eq!(
            messages(&ls),
            ["gw.yaml:2:9: listener `127.0.0.1:8080` (admin) takes the address of `127.0.0.1:8080` (listen, gw.yaml:1:9): each listener needs an address of its own"]
        );
    }

    #[test]
    fn the_admin_default_taken_by_listen_is_reported_at_listen() {
        let ls = [("listen", "127.0.0.1:9090", pos(1)), ("admin", "127.0.0.1:9090", None)];
        assert_eq!(
            messages(&ls),
            ["gw.yaml:1:9: listener `127.0.0.1:9090` (listen) takes the address of `127.0.0.1:9090` (admin, the default): each listener needs an address of its own"]
        );
    }

    #[test]
    fn overlaps_by_resolution_and_wildcard_are_caught() {
        for (a, b) in [
            ("127.0.0.1:8080", "localhost:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:8080", "127.0.0.1:8080"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ] {
            let ls = [("listen", a, pos(1)), ("tls_listen", b, pos(4))];
            assert_eq!(messages(&ls).len(), 1, "{a} and {b}");
        }
    }

    #[test]
    fn different_ports_families_and_any_port_do_not_clash() {
        for (a, b) in [
            ("127.0.0.1:8080", "127.0.0.1:8443"),
            ("0.0.0.0:8080", "[::1]:8080"),
            ("127.0.0.1:0", "localhost:0"),
        ] {
            let ls = [("listen", a, pos(1)), ("tls_listen", b, pos(4))];
            assert_eq!(messages(&ls), Vec::<String>::new(), "{a} and {b}");
        }
    }
}
