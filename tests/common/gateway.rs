//! The gateway in-process, on free loopback ports, with its config files in a temp dir.
//! Dropping it shuts the pingora server down gracefully and joins its thread.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use statusgate::reload::SnapshotHandle;
use tokio::sync::Notify;

/// A free loopback port that no earlier call in this process returned. The kernel hands a
/// just-closed probe port out again (std binds with SO_REUSEADDR, which makes it likelier;
/// measured here: two consecutive probes gave one port about 1 time in 4,000, and 300 probes
/// held about 6 repeats), and the tests run in parallel. Without the record two servers of one
/// test binary could be given one port (a test then talks to another test's server), or a
/// gateway one port for its listener and its admin listener (a configuration statusgate
/// rejects: pingora 0.9.1 would give both listeners one descriptor and close it twice).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no loopback port left that this test binary has not used");
}

pub struct TestSignal(pub Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for TestSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::GracefulTerminate
    }
}

pub struct Gateway {
    pub port: u16,
    pub admin: u16,
    pub dir: tempfile::TempDir,
    pub handle: Arc<SnapshotHandle>,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Gateway {
    /// `config` may use `${LISTEN}` and `${ADMIN}`; `files` are written next to it.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let (port, admin) = (free_port(), free_port());
        let path = dir.path().join("statusgate.yaml");
        std::fs::write(&path, render(config, port, admin)).unwrap();
        let snap = statusgate::snapshot::load(&path).unwrap_or_else(|ps| {
            panic!(
                "config rejected:\n{}",
                ps.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
            )
        });
        let handle = Arc::new(SnapshotHandle::new(&path, snap));
        let built = statusgate::server::build(handle.clone(), false).expect("server builds");
        let stop = Arc::new(Notify::new());
        let signal = TestSignal(stop.clone());
        let thread = std::thread::spawn(move || {
            built.server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            });
            if let Some(traces) = &built.traces {
                traces.shutdown();
            }
        });
        let gw = Gateway {
            port,
            admin,
            dir,
            handle,
            stop,
            thread: Some(thread),
        };
        gw.wait_port(port);
        gw.wait_port(admin);
        // wait_port's probe connection took a place under limits.client_connections until the
        // gateway sees it closed; a test with a cap of 1 must not race it (tests/http2.rs failed
        // 1 run in ~10 under full-suite load: its h2 connection was over the cap and closed).
        // Bounded (10 s) and not an assertion: on a loaded machine the close may be seen late,
        // and a test that depends on the place fails with its own message.
        let t = Instant::now();
        while gw.metric("statusgate_client_connections", &[]) != 0.0 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        gw
    }

    fn wait_port(&self, port: u16) {
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "gateway did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces the main file with `config` (as `start` takes it: `${LISTEN}` and `${ADMIN}`
    /// are this gateway's ports) for a reload to pick up.
    pub fn write_config(&self, config: &str) {
        std::fs::write(self.path("statusgate.yaml"), render(config, self.port, self.admin)).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// GET on the admin listener.
    pub fn admin_get(&self, path: &str) -> super::Response {
        super::request(self.admin, "GET", path, &[], b"")
    }

    /// Asserts that the summed series reach `want`. Metrics are recorded just after the
    /// response is written, so a test reading them right after its response polls (bounded).
    pub fn expect_metric(&self, name: &str, labels: &[(&str, &str)], want: f64, why: &str) {
        let mut got = self.metric(name, labels);
        for _ in 0..100 {
            if got == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
            got = self.metric(name, labels);
        }
        panic!("{name}{labels:?}: expected {want}, got {got}. {why}");
    }

    /// The value of one metric series from `/metrics`, 0 when absent.
    /// `series` is the exact text before the value, e.g. `statusgate_x{a="b"}`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.admin_get("/metrics").text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                (n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                    .then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }
}

/// The main file's text: the ports in, and one thread with no grace period unless `config`
/// has its own `server:` section.
fn render(config: &str, port: u16, admin: u16) -> String {
    let text = config
        .replace("${LISTEN}", &format!("127.0.0.1:{port}"))
        .replace("${ADMIN}", &format!("127.0.0.1:{admin}"));
    if text.contains("server:") {
        text
    } else {
        format!("{text}\nserver:\n  threads: 1\n  grace_period: 0s\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
