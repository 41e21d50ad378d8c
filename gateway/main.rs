//! The `statusgate` binary; everything lives in the library (`statusgate::cli`).

/// `--features mimalloc`: mimalloc as the global allocator (a benchmark experiment; off by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(statusgate::cli::main());
}
