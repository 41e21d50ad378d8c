//! A real DNS server on loopback for tests: Debian's dnsmasq in the foreground on a free port
//! of 127.0.0.1, answering only from a hosts file the test rewrites (`set`, then SIGHUP makes
//! dnsmasq read it again), with a 1-second TTL; names under `.test` that the file lacks get
//! NXDOMAIN. Dropping it (or `stop`) kills the process.

use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

pub struct Dnsmasq {
    pub port: u16,
    hosts: PathBuf,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dnsmasq {
    /// Starts with `records` (`(ip, name)` pairs) and waits until it accepts connections.
    pub fn start(records: &[(&str, &str)]) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        write_hosts(&hosts, records);
        for _attempt in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new(DNSMASQ)
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--local=/test/",
                    "--local-ttl=1",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--user=root",
                    "--pid-file=",
                    "--log-facility=-",
                    &format!("--port={port}"),
                    &format!("--addn-hosts={}", hosts.display()),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq runs (the Debian package dnsmasq-base, see scripts/setup)");
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Dnsmasq {
                        port,
                        hosts,
                        _dir: dir,
                        child: Some(child),
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start on a free loopback port");
    }

    /// `ip:port` of the server, for `resolver.nameservers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the records; dnsmasq reads the file again on SIGHUP.
    pub fn set(&self, records: &[(&str, &str)]) {
        write_hosts(&self.hosts, records);
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "SIGHUP to dnsmasq");
    }

    /// Stops answering: the process is killed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_hosts(path: &std::path::Path, records: &[(&str, &str)]) {
    let text: String = records.iter().map(|(ip, name)| format!("{ip} {name}\n")).collect();
    std::fs::write(path, text).unwrap();
}
