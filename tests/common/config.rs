//! A typed builder for the gateway's main configuration in tests: `Config::new().upstream("up",
//! Upstream::addr(..).response_timeout("500ms")).route(Route::new("r", "up").prefix("/"))
//! .build()` gives the YAML `Gateway::start` takes (listen/admin are `${LISTEN}`/`${ADMIN}`
//! unless `listen_addr`/`admin_addr`/`no_admin` say otherwise, for files loaded or run without
//! `Gateway`). Every key the tests use has a typed method but an upstream's `tls:`, written with
//! `set` (a value as given, so a flow mapping like `{ sni: localhost }` is a value too). Rule files (profiles) stay literal YAML in
//! the tests: they are the thing under test. The builder's own test is tests/common_builder.rs.

/// A top-level mapping of plain `key: value` lines (`limits`, `server`, ...).
type Section = (String, Vec<(String, String)>);

/// The whole main configuration.
#[derive(Debug, Default, Clone)]
pub struct Config {
    admin: Vec<(String, String)>,
    sections: Vec<Section>,
    upstreams: Vec<(String, Upstream)>,
    routes: Vec<Route>,
    listen: Option<String>,
    admin_addr: Option<String>,
    no_admin: bool,
    tls_listen: Vec<TlsListen>,
    canonical: Option<String>,
}

/// One entry of `tls_listen:`: `TlsListen::new(addr, cert, key).sni_cert(c, k).min_version("1.3")`.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub addr: String,
    pub cert: String,
    pub key: String,
    /// `certs:` entries (cert, key), chosen by SNI.
    pub certs: Vec<(String, String)>,
    pub min_version: Option<String>,
    pub http2: Option<bool>,
}

impl TlsListen {
    /// A listener at `addr` with its default certificate and key.
    pub fn new(addr: &str, cert: &str, key: &str) -> TlsListen {
        TlsListen {
            addr: addr.to_owned(),
            cert: cert.to_owned(),
            key: key.to_owned(),
            certs: Vec::new(),
            min_version: None,
            http2: None,
        }
    }

    /// One `certs:` entry: a certificate chosen when the SNI is one of its DNS names.
    pub fn sni_cert(mut self, cert: &str, key: &str) -> TlsListen {
        self.certs.push((cert.to_owned(), key.to_owned()));
        self
    }

    /// `min_version`: `"1.2"` or `"1.3"`.
    pub fn min_version(mut self, v: &str) -> TlsListen {
        self.min_version = Some(v.to_owned());
        self
    }

    /// `http2`: offer h2 by ALPN.
    pub fn http2(mut self, on: bool) -> TlsListen {
        self.http2 = Some(on);
        self
    }
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// `admin:` as a mapping (`addr: ${ADMIN}` plus these keys) instead of a bare address.
    pub fn admin(mut self, key: &str, value: &str) -> Config {
        self.admin.push((key.to_owned(), value.to_owned()));
        self
    }

    /// One `key: value` under the top-level mapping `section` (created on first use).
    pub fn set(mut self, section: &str, key: &str, value: &str) -> Config {
        let entry = (key.to_owned(), value.to_owned());
        match self.sections.iter_mut().find(|(name, _)| name == section) {
            Some((_, keys)) => keys.push(entry),
            None => self.sections.push((section.to_owned(), vec![entry])),
        }
        self
    }

    /// `listen:` at a fixed address instead of `${LISTEN}` (a file not started by `Gateway`).
    pub fn listen_addr(mut self, addr: &str) -> Config {
        self.listen = Some(addr.to_owned());
        self
    }

    /// The admin listener at a fixed address instead of `${ADMIN}`.
    pub fn admin_addr(mut self, addr: &str) -> Config {
        self.admin_addr = Some(addr.to_owned());
        self
    }

    /// No `admin:` key at all (the default address; for files that are only loaded).
    pub fn no_admin(mut self) -> Config {
        self.no_admin = true;
        self
    }

    /// `admin.token_file` (relative to the main file).
    pub fn admin_token_file(self, path: &str) -> Config {
        self.admin("token_file", path)
    }

    /// `admin.token_env`.
    pub fn admin_token_env(self, name: &str) -> Config {
        self.admin("token_env", name)
    }

    /// `admin.protect_metrics`.
    pub fn protect_metrics(self, on: bool) -> Config {
        self.admin("protect_metrics", &on.to_string())
    }

    /// `admin.protect_probes`.
    pub fn protect_probes(self, on: bool) -> Config {
        self.admin("protect_probes", &on.to_string())
    }

    /// One `tls_listen:` entry with only its default certificate.
    pub fn tls_listen(self, addr: &str, cert: &str, key: &str) -> Config {
        self.tls_listener(TlsListen::new(addr, cert, key))
    }

    /// One `tls_listen:` entry with any of its keys.
    pub fn tls_listener(mut self, listener: TlsListen) -> Config {
        self.tls_listen.push(listener);
        self
    }

    /// `canonical:` (a canonical profile file instead of the embedded one).
    pub fn canonical(mut self, path: &str) -> Config {
        self.canonical = Some(path.to_owned());
        self
    }

    /// `limits.body_buffer`, e.g. `"256KiB"`.
    pub fn body_buffer(self, size: &str) -> Config {
        self.limit("body_buffer", size)
    }

    /// `limits.body_depth`.
    pub fn body_depth(self, depth: usize) -> Config {
        self.limit("body_depth", &depth.to_string())
    }

    /// `limits.request_header`, e.g. `"1KiB"`.
    pub fn request_header(self, size: &str) -> Config {
        self.limit("request_header", size)
    }

    /// `limits.request_body`, e.g. `"1KiB"`.
    pub fn request_body(self, size: &str) -> Config {
        self.limit("request_body", size)
    }

    /// `limits.client_header_timeout`, e.g. `"1s"`.
    pub fn client_header_timeout(self, d: &str) -> Config {
        self.limit("client_header_timeout", d)
    }

    /// `limits.client_body_timeout`, e.g. `"300ms"`.
    pub fn client_body_timeout(self, d: &str) -> Config {
        self.limit("client_body_timeout", d)
    }

    /// `limits.client_keepalive_timeout`, e.g. `"60s"`.
    pub fn client_keepalive_timeout(self, d: &str) -> Config {
        self.limit("client_keepalive_timeout", d)
    }

    /// `limits.client_connections`: most client connections per listener.
    pub fn client_connections(self, n: u32) -> Config {
        self.limit("client_connections", &n.to_string())
    }

    /// `limits.upgrade_idle_timeout`, e.g. `"200ms"`: a tunnel quiet this long is closed.
    pub fn upgrade_idle_timeout(self, d: &str) -> Config {
        self.limit("upgrade_idle_timeout", d)
    }

    /// `server.threads`.
    pub fn threads(self, n: usize) -> Config {
        self.server("threads", &n.to_string())
    }

    /// `server.grace_period`, e.g. `"0s"`.
    pub fn grace_period(self, d: &str) -> Config {
        self.server("grace_period", d)
    }

    /// `server.watch_config`.
    pub fn watch_config(self, on: bool) -> Config {
        self.server("watch_config", &on.to_string())
    }

    /// `server.work_stealing`.
    pub fn work_stealing(self, on: bool) -> Config {
        self.server("work_stealing", &on.to_string())
    }

    /// `server.upgrade_sock` (relative to the main file).
    pub fn upgrade_sock(self, path: &str) -> Config {
        self.server("upgrade_sock", path)
    }

    /// `log.format`: `text` or `json`.
    pub fn log_format(self, format: &str) -> Config {
        self.set("log", "format", format)
    }

    /// `log.filter`, RUST_LOG-style directives.
    pub fn log_filter(self, filter: &str) -> Config {
        self.set("log", "filter", filter)
    }

    /// `tracing: { key: value }`, e.g. `.tracing("endpoint", &receiver.endpoint())`.
    pub fn tracing(self, key: &str, value: &str) -> Config {
        self.set("tracing", key, value)
    }

    /// `limits: { key: value }`.
    pub fn limit(self, key: &str, value: &str) -> Config {
        self.set("limits", key, value)
    }

    /// `server: { key: value }`.
    pub fn server(self, key: &str, value: &str) -> Config {
        self.set("server", key, value)
    }

    pub fn upstream(mut self, name: &str, upstream: Upstream) -> Config {
        self.upstreams.push((name.to_owned(), upstream));
        self
    }

    pub fn route(mut self, route: Route) -> Config {
        self.routes.push(route);
        self
    }

    /// The YAML text.
    pub fn build(&self) -> String {
        let listen = self.listen.as_deref().unwrap_or("${LISTEN}");
        let admin = self.admin_addr.as_deref().unwrap_or("${ADMIN}");
        let mut y = format!("listen: {listen}\n");
        if !self.tls_listen.is_empty() {
            y.push_str("tls_listen:\n");
            for t in &self.tls_listen {
                y.push_str(&format!(
                    "  - addr: {}\n    cert: {}\n    key: {}\n",
                    t.addr, t.cert, t.key
                ));
                if !t.certs.is_empty() {
                    y.push_str("    certs:\n");
                    for (cert, key) in &t.certs {
                        y.push_str(&format!("      - {{ cert: {cert}, key: {key} }}\n"));
                    }
                }
                if let Some(v) = &t.min_version {
                    y.push_str(&format!("    min_version: \"{v}\"\n"));
                }
                if let Some(on) = t.http2 {
                    y.push_str(&format!("    http2: {on}\n"));
                }
            }
        }
        match (self.no_admin, self.admin.is_empty()) {
            (true, _) => {}
            (false, true) => y.push_str(&format!("admin: {admin}\n")),
            (false, false) => {
                y.push_str(&format!("admin:\n  addr: {admin}\n"));
                push_keys(&mut y, "  ", &self.admin);
            }
        }
        if let Some(c) = &self.canonical {
            y.push_str(&format!("canonical: {c}\n"));
        }
        for (name, keys) in &self.sections {
            y.push_str(&format!("{name}:\n"));
            push_keys(&mut y, "  ", keys);
        }
        if self.upstreams.is_empty() {
            y.push_str("upstreams: {}\n");
        } else {
            y.push_str("upstreams:\n");
        }
        for (name, up) in &self.upstreams {
            y.push_str(&format!("  {name}:\n    addrs: [{}]\n", up.addrs.join(", ")));
            push_keys(&mut y, "    ", &up.keys);
        }
        if self.routes.is_empty() {
            y.push_str("routes: []\n");
        } else {
            y.push_str("routes:\n");
        }
        for r in &self.routes {
            y.push_str(&format!("  - name: {}\n", r.name));
            push_keys(&mut y, "    ", &r.keys);
            if !r.ensure.is_empty() {
                y.push_str("    ensure_headers:\n");
                for (status, name, value) in &r.ensure {
                    y.push_str(&format!("      {status}: {{ {name}: {} }}\n", quote(value)));
                }
            }
        }
        y
    }
}

/// A YAML single-quoted scalar: any text, `'` doubled.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn push_keys(y: &mut String, indent: &str, keys: &[(String, String)]) {
    for (k, v) in keys {
        y.push_str(&format!("{indent}{k}: {v}\n"));
    }
}

/// One entry of `upstreams:`.
#[derive(Debug, Default, Clone)]
pub struct Upstream {
    addrs: Vec<String>,
    keys: Vec<(String, String)>,
}

impl Upstream {
    /// One address, `127.0.0.1:port`.
    pub fn addr(addr: &str) -> Upstream {
        Upstream::addrs(&[addr])
    }

    pub fn addrs(addrs: &[&str]) -> Upstream {
        Upstream {
            addrs: addrs.iter().map(|a| (*a).to_owned()).collect(),
            keys: Vec::new(),
        }
    }

    /// Any upstream key, e.g. `.set("tls", "{ sni: localhost, verify: false }")`.
    pub fn set(mut self, key: &str, value: &str) -> Upstream {
        self.keys.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn connect_timeout(self, v: &str) -> Upstream {
        self.set("connect_timeout", v)
    }

    pub fn response_timeout(self, v: &str) -> Upstream {
        self.set("response_timeout", v)
    }

    pub fn body_timeout(self, v: &str) -> Upstream {
        self.set("body_timeout", v)
    }

    pub fn body_deadline(self, v: &str) -> Upstream {
        self.set("body_deadline", v)
    }

    pub fn write_timeout(self, v: &str) -> Upstream {
        self.set("write_timeout", v)
    }

    pub fn fail_timeout(self, v: &str) -> Upstream {
        self.set("fail_timeout", v)
    }

    pub fn max_connections(self, n: u32) -> Upstream {
        self.set("max_connections", &n.to_string())
    }

    pub fn host_header(self, v: &str) -> Upstream {
        self.set("host_header", v)
    }

    pub fn idle_timeout(self, v: &str) -> Upstream {
        self.set("idle_timeout", v)
    }
}

/// One entry of `routes:`.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    keys: Vec<(String, String)>,
    /// `ensure_headers:` entries: final status, header name, value.
    ensure: Vec<(u16, String, String)>,
}

impl Route {
    /// A route named `name` to the upstream `upstream` (no prefix: it matches every path).
    pub fn new(name: &str, upstream: &str) -> Route {
        Route {
            name: name.to_owned(),
            keys: Vec::new(),
            ensure: Vec::new(),
        }
        .set("upstream", upstream)
    }

    /// Any route key, e.g. `.set("ensure_headers", "{ 401: { WWW-Authenticate: Bearer } }")`.
    pub fn set(mut self, key: &str, value: &str) -> Route {
        self.keys.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn prefix(self, p: &str) -> Route {
        self.set("path_prefix", p)
    }

    pub fn strip_prefix(self) -> Route {
        self.set("strip_prefix", "true")
    }

    pub fn host(self, h: &str) -> Route {
        self.set("host", h)
    }

    pub fn profile(self, p: &str) -> Route {
        self.set("profile", p)
    }

    /// `shadow_profile:`: evaluated beside `profile` on every response, never answering.
    pub fn shadow_profile(self, p: &str) -> Route {
        self.set("shadow_profile", p)
    }

    /// `upgrades: [..]`: the protocols whose `Connection: upgrade` requests the route forwards.
    pub fn upgrades(self, protocols: &[&str]) -> Route {
        self.set("upgrades", &format!("[{}]", protocols.join(", ")))
    }

    /// One `ensure_headers:` entry: `name: value` added when the final status is `status` and
    /// the header is missing (one header per status).
    pub fn ensure_header(mut self, status: u16, name: &str, value: &str) -> Route {
        self.ensure.push((status, name.to_owned(), value.to_owned()));
        self
    }
}
