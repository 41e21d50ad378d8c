//! A typed builder for the gateway's main configuration in tests: `Config::new().upstream("up",
//! Upstream::addr(..).response_timeout("500ms")).route(Route::new("r", "up").prefix("/"))
//! .build()` gives the YAML `Gateway::start` takes (listen/admin are `${LISTEN}`/`${ADMIN}`).
//! Values are written as given, so a flow mapping (`{ sni: localhost }`) is a value too. Rule
//! files (profiles) stay literal YAML in the tests: they are the thing under test.

/// A top-level mapping of plain `key: value` lines (`limits`, `server`, ...).
type Section = (String, Vec<(String, String)>);

/// The whole main configuration.
#[derive(Debug, Default, Clone)]
pub struct Config {
    admin: Vec<(String, String)>,
    sections: Vec<Section>,
    upstreams: Vec<(String, Upstream)>,
    routes: Vec<Route>,
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
        let mut y = String::from("listen: ${LISTEN}\n");
        if self.admin.is_empty() {
            y.push_str("admin: ${ADMIN}\n");
        } else {
            y.push_str("admin:\n  addr: ${ADMIN}\n");
            push_keys(&mut y, "  ", &self.admin);
        }
        for (name, keys) in &self.sections {
            y.push_str(&format!("{name}:\n"));
            push_keys(&mut y, "  ", keys);
        }
        y.push_str("upstreams:\n");
        for (name, up) in &self.upstreams {
            y.push_str(&format!("  {name}:\n    addrs: [{}]\n", up.addrs.join(", ")));
            push_keys(&mut y, "    ", &up.keys);
        }
        y.push_str("routes:\n");
        for r in &self.routes {
            y.push_str(&format!("  - name: {}\n", r.name));
            push_keys(&mut y, "    ", &r.keys);
        }
        y
    }
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
}

/// One entry of `routes:`.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    keys: Vec<(String, String)>,
}

impl Route {
    /// A route named `name` to the upstream `upstream` (no prefix: it matches every path).
    pub fn new(name: &str, upstream: &str) -> Route {
        Route {
            name: name.to_owned(),
            keys: Vec::new(),
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
}

#[test]
fn a_built_config_is_the_yaml_the_tests_used_to_write_by_hand() {
    let y = Config::new()
        .limit("request_header", "1KiB")
        .upstream(
            "up",
            Upstream::addrs(&["127.0.0.1:1", "127.0.0.1:2"]).response_timeout("2s"),
        )
        .route(Route::new("api", "up").prefix("/api/").strip_prefix().profile("p.yaml"))
        .build();
    assert_eq!(
        y,
        "listen: ${LISTEN}\nadmin: ${ADMIN}\nlimits:\n  request_header: 1KiB\nupstreams:\n  up:\n    addrs: [127.0.0.1:1, 127.0.0.1:2]\n    response_timeout: 2s\nroutes:\n  - name: api\n    upstream: up\n    path_prefix: /api/\n    strip_prefix: true\n    profile: p.yaml\n"
    );
    let protected = Config::new().admin("token", "x").build();
    assert!(protected.starts_with("listen: ${LISTEN}\nadmin:\n  addr: ${ADMIN}\n  token: x\n"));
}
