//! curl as the client, for what the raw HTTP/1.1 client cannot speak: HTTP/2 (with prior
//! knowledge on a plain listener, by ALPN over TLS) and `Expect: 100-continue` uploads. The
//! response comes back as the same `Response` the raw client gives, with every interim (1xx)
//! response curl saw listed beside it.

use std::process::Command;

use super::Response;

/// How curl talks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `--http1.1`.
    Http11,
    /// `--http2-prior-knowledge` on a plain listener (h2c).
    H2c,
    /// `--http2` over TLS: HTTP/2 when the listener offers it by ALPN.
    H2Tls,
}

/// One exchange as curl saw it.
#[derive(Debug)]
pub struct Exchange {
    pub response: Response,
    /// The protocol of the final response: "1.1" or "2".
    pub version: String,
    /// The statuses of interim responses (100 Continue) before the final one.
    pub interim: Vec<u16>,
}

/// One response header block curl wrote: status, reason, fields.
type Block = (u16, String, Vec<(String, String)>);

/// Panics (with curl's stderr) when curl cannot run or the transfer fails.
pub fn curl(proto: Proto, url: &str, args: &[&str]) -> Exchange {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_version}"]);
    cmd.arg(match proto {
        Proto::Http11 => "--http1.1",
        Proto::H2c => "--http2-prior-knowledge",
        Proto::H2Tls => "--http2",
    });
    cmd.args(args).arg(url);
    let out = cmd.output().expect("curl runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&head).unwrap();
    let mut blocks: Vec<Block> = Vec::new();
    for line in head.split("\r\n") {
        if let Some(status_line) = line.strip_prefix("HTTP/") {
            let mut parts = status_line.splitn(3, ' ');
            let _version = parts.next();
            let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let reason = parts.next().unwrap_or("").trim().to_owned();
            blocks.push((status, reason, Vec::new()));
        } else if let (Some((k, v)), Some(block)) = (line.split_once(':'), blocks.last_mut()) {
            block.2.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let (status, reason, headers) = blocks.pop().expect("a response header");
    Exchange {
        response: Response {
            status,
            reason,
            headers,
            body: std::fs::read(&body).unwrap_or_default(),
            truncated: false,
        },
        version: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        interim: blocks.iter().map(|b| b.0).collect(),
    }
}
