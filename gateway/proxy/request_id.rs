//! Request ids: the client's `X-Request-Id` when it is sane, otherwise a fresh one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Accepts 1-128 characters of `[A-Za-z0-9._:/+=@-]`; anything else is replaced.
pub fn is_sane(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || b"._:/+=@-".contains(b))
}

/// 32 hex characters, unique per process and random across processes.
pub fn generate() -> String {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = seed.build_hasher();
    h.write_u64(n);
    let a = h.finish();
    h.write_u64(a);
    format!("{:016x}{:016x}", a, h.finish() ^ n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanity_and_uniqueness() {
        assert!(is_sane(b"abc-123_X.y"));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"a b"));
        assert!(!is_sane(b"a\r\nb"));
        assert!(!is_sane(&[b'a'; 129]));
        let a = generate();
        assert_eq!(a.len(), 32);
        assert_ne!(a, generate());
        assert!(is_sane(a.as_bytes()));
    }
}
