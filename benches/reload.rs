//! Reload latency: the time from a rule file being replaced (rename-on-save) to the new
//! snapshot serving, through the directory watcher (100 ms debounce) and through
//! `POST /-/reload`. A real gateway and upstream on loopback; 30 switches each; prints medians.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{request, Gateway, Reply, Upstream};

fn ruleset(status: u16) -> String {
    format!("rules:\n  - name: s{status}\n    when: {{ status: 400 }}\n    then: {{ status: {status} }}\n")
}

fn save(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(gw: &Gateway, status: u16) -> Duration {
    let t = Instant::now();
    for _ in 0..10_000 {
        if request(gw.port, "GET", "/", &[], b"").status == status {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    panic!("status {status} never served");
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<28} n={:<3} median {:>7.2} ms   p90 {:>7.2} ms   max {:>7.2} ms",
        v.len(),
        ms(v[v.len() / 2]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only builds and starts it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("reload latency: run with `cargo bench --bench reload`");
        return;
    }
    let up = Upstream::start(|_| Reply::json(400, "BadRequest", "{}"));
    let cfg = format!(
        "listen: ${{LISTEN}}\nadmin: ${{ADMIN}}\nupstreams:\n  up:\n    addrs: [{}]\nroutes:\n  - name: bench\n    upstream: up\n    profile: rules/p.yaml\n",
        up.addr()
    );
    let gw = Gateway::start(&cfg, &[("rules/p.yaml", &ruleset(422))]);
    let path = gw.path("rules/p.yaml");
    let statuses = [409u16, 422];

    let mut watched = Vec::new();
    for i in 0..30 {
        let s = statuses[i % 2];
        save(&path, &ruleset(s));
        watched.push(wait_for(&gw, s));
        std::thread::sleep(Duration::from_millis(150)); // let the debounce window close
    }
    summary("file write -> serving (watch)", watched);

    let mut posted = Vec::new();
    for i in 0..30 {
        let s = if i % 2 == 0 { 410 } else { 412 };
        std::fs::write(&path, ruleset(s)).unwrap();
        let t = Instant::now();
        request(gw.admin, "POST", "/-/reload", &[], b"");
        let serving = wait_for(&gw, s);
        posted.push(t.elapsed().max(serving));
        std::thread::sleep(Duration::from_millis(150));
    }
    summary("POST /-/reload -> serving", posted);
}
