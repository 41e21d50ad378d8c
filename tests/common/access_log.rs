//! The gateway's access log captured in-process as JSON lines (one tracing subscriber per test
//! binary), and the line of one request, waited for (bounded).

use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::Duration;

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (target `statusgate::access`, JSON); once per binary.
pub fn capture_access_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new("statusgate::access=info"))
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// The access line whose `request_id` is `request_id`, polled for 5 s: it is written just
/// after the response (a tunnel's when the tunnel ends).
pub fn access_line(request_id: &str) -> serde_json::Value {
    let needle = format!("\"request_id\":\"{request_id}\"");
    for _ in 0..250 {
        let text = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
            return serde_json::from_str(line).expect("a JSON access line");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no access line for {request_id}");
}
