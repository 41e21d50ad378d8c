//! The `statusgate` binary: the library's commands (`statusgate::cli`: `run`, `check`,
//! `explain`) plus `demo` (this binary's `demo` module, the only user of the vendor emulators)
//! and `completions` / `man` (the `manual` module: generated from this file's clap definitions).

mod demo;
mod manual;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

/// `--features mimalloc`: mimalloc as the global allocator (a benchmark experiment; off by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// `--features jemalloc`: the same experiment with jemalloc.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "statusgate",
    version = statusgate::cli::VERSION,
    about = "A status-normalizing edge gateway on pingora"
)]
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
    /// Print the shell completion script for SHELL to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page statusgate(1) (roff) to standard output, or write it and one page per
    /// command (statusgate-run(1), ...) into a directory.
    Man {
        /// Write the pages into this directory instead of printing statusgate(1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() {
    let code = match Cli::parse().command {
        Command::Gateway(command) => statusgate::cli::run(command),
        Command::Demo => demo::run(),
        Command::Completions { shell } => manual::completions(Cli::command(), shell),
        Command::Man { dir } => manual::man(Cli::command(), dir.as_deref()),
    };
    std::process::exit(code);
}
