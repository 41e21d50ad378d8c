//! A vendor emulator on a free loopback port (its own pingora server), and a gateway routing
//! `/<prefix>/` to it with the shipped profile from `rules/`.

use std::sync::Arc;
use std::thread::JoinHandle;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use statusgate_emulators::{service, Emulator};
use tokio::sync::Notify;

use super::gateway::{free_port, TestSignal};
use super::Gateway;

pub struct EmulatorServer {
    pub port: u16,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl EmulatorServer {
    pub fn start<E: Emulator>(emulator: E) -> EmulatorServer {
        let port = free_port();
        let conf = ServerConf {
            threads: 1,
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(1),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();
        server.add_service(service("emulator", emulator, &format!("127.0.0.1:{port}")));
        let stop = Arc::new(Notify::new());
        let signal = TestSignal(stop.clone());
        let thread = std::thread::spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            })
        });
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "emulator did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        EmulatorServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EmulatorServer {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The path of a shipped profile, e.g. `profile("huawei-vpcep.yaml")`.
pub fn profile(file: &str) -> String {
    format!("{}/rules/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// A gateway with one route `/<prefix>/` (stripped) to the emulator, using the shipped profile.
/// `route_extra` is appended to the route (e.g. `    ensure_headers: ...`).
pub fn vendor_gateway(
    route: &str,
    prefix: &str,
    emulator: &EmulatorServer,
    profile_file: &str,
    route_extra: &str,
) -> Gateway {
    let cfg = format!(
        "listen: ${{LISTEN}}\nadmin: ${{ADMIN}}\nupstreams:\n  vendor:\n    addrs: [127.0.0.1:{}]\n    response_timeout: 5s\nroutes:\n  - name: {route}\n    path_prefix: /{prefix}/\n    strip_prefix: true\n    upstream: vendor\n    profile: {}\n{route_extra}\n",
        emulator.port,
        profile(profile_file)
    );
    Gateway::start(&cfg, &[])
}
