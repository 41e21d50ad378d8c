//! Gives freed heap memory back to the operating system while the gateway is idle.
//!
//! glibc's allocator keeps what a burst of requests freed in its per-thread arenas: after a load
//! the process stays several MiB larger than it needs to be until the next burst reuses it
//! (BENCHMARKS.md: about 3 MiB of a 30 MiB idle gateway). A thread checks every
//! `CHECK_EVERY` and, when no request is in flight, asks glibc to trim its arenas
//! (`malloc_trim(0)`, which returns whole free pages with `madvise`). Under load there is
//! always a request in flight and it does nothing, so it never competes with requests for the
//! arena locks. Only with glibc's allocator (not with the `mimalloc` / `jemalloc` features,
//! which manage their own pages).

use prometheus::IntGauge;

/// Starts the trimming thread (once per process).
pub fn start_idle_trim(in_flight: IntGauge) {
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        not(feature = "mimalloc"),
        not(feature = "jemalloc")
    ))]
    {
        const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
        static STARTED: std::sync::Once = std::sync::Once::new();
        STARTED.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("statusgate-heap-trim".to_owned())
                .stack_size(64 * 1024)
                .spawn(move || loop {
                    std::thread::sleep(CHECK_EVERY);
                    if in_flight.get() == 0 {
                        // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
                        unsafe { libc::malloc_trim(0) };
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the heap trimming thread: freed memory stays in the allocator");
            }
        });
    }
    #[cfg(not(all(
        target_os = "linux",
        target_env = "gnu",
        not(feature = "mimalloc"),
        not(feature = "jemalloc")
    )))]
    let _ = in_flight;
}
