//! Scripted upstream servers on loopback: each request is answered by a closure returning a
//! `Reply`, which may be a normal response or a misbehaviour (hang, close, reset, garbage,
//! trickle, a body cut short). Every request received is recorded.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub enum Reply {
    /// Bytes written as they are; the connection stays open for the next request.
    Raw(Vec<u8>),
    /// Read the request and never answer.
    Hang,
    /// Close without a byte.
    Close,
    /// Abort the connection with a TCP reset.
    Reset,
    /// Write these bytes one at a time, `Duration` apart, then close.
    Trickle(Vec<u8>, Duration),
    /// Write these bytes, then close (a body cut short).
    Partial(Vec<u8>),
    /// Write these bytes, then hold the connection open, silent, for this long.
    Stall(Vec<u8>, Duration),
    /// Wait this long, then answer.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// A complete response with Content-Length.
    pub fn new(status: u16, reason: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut raw = format!("HTTP/1.1 {status} {reason}\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        if status != 204 && status != 304 {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        Reply::Raw(bytes)
    }

    pub fn json(status: u16, reason: &str, body: &str) -> Reply {
        Reply::new(status, reason, &[("Content-Type", "application/json")], body.as_bytes())
    }

    pub fn xml(status: u16, reason: &str, body: &str) -> Reply {
        Reply::new(status, reason, &[("Content-Type", "application/xml")], body.as_bytes())
    }
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

pub struct Upstream {
    pub port: u16,
    /// The loopback address it listens on (127.0.0.1 unless `start_at` said otherwise).
    pub ip: std::net::IpAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Upstream {
        Upstream::start_at("127.0.0.1:0", handler).expect("loopback port")
    }

    /// On a given loopback address (`127.0.0.2:8080`; port 0: any free port), e.g. several
    /// servers on one port that a host name resolves to; `None` when the address is taken.
    pub fn start_at(addr: &str, handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Option<Upstream> {
        let listener = TcpListener::bind(addr).ok()?;
        let local = listener.local_addr().unwrap();
        let (ip, port) = (local.ip(), local.port());
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let connections = Arc::new(AtomicUsize::new(0));
        let (rec, st, count) = (received.clone(), stop.clone(), connections.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                let (h, rec) = (handler.clone(), rec.clone());
                thread::spawn(move || serve(conn, &*h, &rec));
            }
        });
        Some(Upstream {
            port,
            ip,
            received,
            connections,
            stop,
        })
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect((self.ip, self.port));
    }
}

fn serve(conn: TcpStream, handler: &Handler, rec: &Mutex<Vec<Received>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r) {
        rec.lock().unwrap().push(req.clone());
        let mut reply = handler(&req);
        while let Reply::Delay(d, inner) = reply {
            thread::sleep(d);
            reply = *inner;
        }
        match reply {
            Reply::Delay(..) => unreachable!("unwrapped above"),
            Reply::Stall(bytes, hold) => {
                let _ = w.write_all(&bytes);
                let _ = w.flush();
                thread::sleep(hold);
                return;
            }
            Reply::Raw(bytes) => {
                if w.write_all(&bytes).is_err() {
                    return;
                }
            }
            Reply::Hang => {
                thread::sleep(Duration::from_secs(20));
                return;
            }
            Reply::Close => return,
            Reply::Reset => {
                let _ = socket2::SockRef::from(&w).set_linger(Some(Duration::ZERO));
                return;
            }
            Reply::Trickle(bytes, gap) => {
                for b in bytes {
                    if w.write_all(&[b]).is_err() {
                        return;
                    }
                    thread::sleep(gap);
                }
                return;
            }
            Reply::Partial(bytes) => {
                let _ = w.write_all(&bytes);
                let _ = w.flush();
                thread::sleep(Duration::from_millis(50));
                return;
            }
        }
    }
}

fn read_request(r: &mut impl BufRead) -> Option<Received> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}
