//! The `statusgate` binary: the library's commands (`statusgate::cli`: `run`, `check`,
//! `explain`) plus `demo` (this binary's `demo` module, the only user of the vendor emulators).

mod demo;

use clap::{Parser, Subcommand};

/// `--features mimalloc`: mimalloc as the global allocator (a benchmark experiment; off by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "statusgate", version, about = "A status-normalizing edge gateway on pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Gateway(statusgate::cli::Command),
    /// Run the four vendor emulators and the gateway with the shipped profiles on loopback.
    Demo,
}

fn main() {
    let code = match Cli::parse().command {
        Command::Gateway(command) => statusgate::cli::run(command),
        Command::Demo => demo::run(),
    };
    std::process::exit(code);
}
