//! `statusgate completions SHELL` and `statusgate man`: shell completions (clap_complete) and
//! roff man pages (clap_mangen) generated from the binary's own clap definitions, so they
//! cannot drift from the parser. statusgate(1) adds the sections clap does not know (files,
//! signals, exit status, environment). The Debian package installs both (scripts/package).
//! Output is written whole or not at all: a closed pipe is an exit code, not a panic.

use std::io::Write;
use std::path::Path;

use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

/// Prints the completion script of `shell` for `cmd` (the whole command line) to stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> i32 {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "statusgate", &mut out);
    emit("completions", &out)
}

/// Prints statusgate(1), or with `dir` writes it and statusgate-<command>(1) for each command
/// (`help` too: statusgate(1) lists every command).
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> i32 {
    let mut cmd = cmd;
    cmd.build();
    let main = match main_page(&cmd) {
        Ok(page) => page,
        Err(e) => {
            eprintln!("man: {e}");
            return 1;
        }
    };
    let Some(dir) = dir else { return emit("man", &main) };
    let mut pages = vec![("statusgate.1".to_owned(), main)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are `&'static str` without its `string` feature: a few bytes, once.
        let name: &'static str = Box::leak(format!("statusgate-{}", sub.get_name()).into_boxed_str());
        let mut page = Vec::new();
        let man = Man::new(sub.clone().name(name))
            .date(env!("STATUSGATE_BUILD_DATE"))
            .source(source());
        if let Err(e) = man.render(&mut page) {
            eprintln!("man: {name}: {e}");
            return 1;
        }
        pages.push((format!("{name}.1"), page));
    }
    for (file, page) in pages {
        let path = dir.join(file);
        if let Err(e) = std::fs::write(&path, page) {
            eprintln!("man: {}: {e}", path.display());
            return 1;
        }
    }
    0
}

/// `statusgate 0.1.0`: the footer's source field.
fn source() -> String {
    format!("statusgate {}", env!("CARGO_PKG_VERSION"))
}

/// clap's sections, then FILES, SIGNALS, EXIT STATUS, ENVIRONMENT and SEE ALSO.
fn main_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone())
        .date(env!("STATUSGATE_BUILD_DATE"))
        .source(source());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    let mut roff = Roff::new();
    section(
        &mut roff,
        "FILES",
        &[
            (
                "/etc/statusgate/statusgate.yaml",
                "The configuration of the packages (Debian package, container image). Without -c, \
                 statusgate uses the configuration built into the binary, embedded:deploy/statusgate.yaml.",
            ),
            (
                "/etc/statusgate/rules/",
                "The canonical profile (canonical.yaml) and the vendor profiles the configuration names.",
            ),
            (
                "/run/statusgate/upgrade.sock",
                "The graceful-upgrade socket of the packaged configuration (server.upgrade_sock); \
                 /run/statusgate is the only path the gateway writes.",
            ),
        ],
    );
    section(
        &mut roff,
        "SIGNALS",
        &[
            (
                "SIGTERM",
                "Drain in-flight requests for server.grace_period (default 5s), then exit.",
            ),
            (
                "SIGHUP",
                "Reload the configuration; a rejected one leaves the last good one serving.",
            ),
            (
                "SIGQUIT",
                "Hand the listening sockets to a new process started with run --upgrade, then exit.",
            ),
        ],
    );
    section(
        &mut roff,
        "EXIT STATUS",
        &[
            ("0", "Success (check: the configuration is valid)."),
            ("1", "The configuration was rejected (each problem printed as file:line:col: message), or the server could not start."),
            ("2", "A usage error on the command line."),
        ],
    );
    section(
        &mut roff,
        "ENVIRONMENT",
        &[(
            "RUST_LOG",
            "Log filter directives; they win over log.filter in the configuration.",
        )],
    );
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "systemctl(1), the configuration reference docs/configuration.md (installed under /usr/share/doc/statusgate/).",
    )]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// One `.SH` section of `.TP` entries: a bold term, then its text.
fn section(roff: &mut Roff, title: &str, entries: &[(&str, &str)]) {
    roff.control("SH", [title]);
    for (term, text) in entries {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*text)]);
    }
}

/// Writes `bytes` to stdout at once; a failure (a closed pipe) is a message and exit code 1.
fn emit(what: &str, bytes: &[u8]) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{what}: cannot write to standard output: {e}");
            1
        }
    }
}
