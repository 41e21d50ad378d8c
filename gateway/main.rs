//! The `statusgate` binary; everything lives in the library (`statusgate::cli`).

fn main() {
    std::process::exit(statusgate::cli::main());
}
