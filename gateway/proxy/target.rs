//! Request-target normalization, before routing: the path a route matches is the path its
//! upstream receives. Dot segments are removed, percent-encoded unreserved characters (`%2e`,
//! `%41`, ...) are decoded, other escapes are upper-cased, runs of slashes are merged (as nginx's
//! `merge_slashes on`). Targets that an upstream could resolve outside the matched prefix in a
//! way the gateway cannot see are refused: `..` above the root, encoded `/` or `\` (`%2F`,
//! `%5C`), a raw `\` (IIS and .NET treat it as `/`), `%00`, control characters and malformed
//! escapes. Pure: no pingora types.

use std::borrow::Cow;

/// Why a request target is refused (a canonical 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRefusal {
    /// The path does not start with `/`.
    NotOriginForm,
    /// `..` climbs above the root.
    AboveRoot,
    /// `%2F` or `%5C`: a separator the upstream may decode after the gateway routed.
    EncodedSeparator,
    /// A raw backslash.
    Backslash,
    /// `%00`, a control character or a non-ASCII byte.
    ForbiddenByte,
    /// `%` not followed by two hex digits.
    BadEscape,
}

impl TargetRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOriginForm => "the path must start with /",
            Self::AboveRoot => "the path climbs above the root (..)",
            Self::EncodedSeparator => "the path holds an encoded / or \\ (%2F, %5C)",
            Self::Backslash => "the path holds a backslash",
            Self::ForbiddenByte => "the path holds %00, a control character or a raw non-ASCII byte",
            Self::BadEscape => "the path holds a malformed percent escape",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether a path needs any work: the common case (plain segments) is answered without
/// allocating.
fn is_plain(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in path.iter().enumerate() {
        if b == b'%' || b == b'\\' || !(0x21..=0x7e).contains(&b) || (b == b'/' && prev == b'/') {
            return false;
        }
        if b == b'.' && prev == b'/' {
            // `/.` starts a dot segment only when followed by `/`, `.` + (`/` | end), or end.
            let rest = &path[i + 1..];
            if rest.is_empty() || rest[0] == b'/' || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/')) {
                return false;
            }
        }
        prev = b;
    }
    true
}

/// The normalized path, or why the target is refused. The query is not part of `path`.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, TargetRefusal> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(TargetRefusal::NotOriginForm);
    }
    if is_plain(raw) {
        return Ok(Cow::Borrowed(path));
    }
    // Decode segment by segment, then resolve dot segments on the decoded segments.
    let mut segments: Vec<String> = Vec::new();
    // A path ending in `/`, `/.` or `/..` names a directory: it keeps its slash.
    let mut dir = false;
    for seg in path[1..].split('/') {
        let decoded = decode_segment(seg.as_bytes())?;
        dir = matches!(decoded.as_str(), "" | "." | "..");
        match decoded.as_str() {
            // Empty segments (`//`) are merged away; `.` is the same directory.
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(TargetRefusal::AboveRoot);
                }
            }
            _ => segments.push(decoded),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || dir {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// One segment with unreserved escapes decoded and the others upper-cased.
fn decode_segment(seg: &[u8]) -> Result<String, TargetRefusal> {
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    seg.get(i + 1).copied().and_then(hex),
                    seg.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(TargetRefusal::BadEscape);
                };
                let c = h << 4 | l;
                match c {
                    b'/' | b'\\' => return Err(TargetRefusal::EncodedSeparator),
                    0x00..=0x1f | 0x7f => return Err(TargetRefusal::ForbiddenByte),
                    c if is_unreserved(c) => out.push(c as char),
                    c => {
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[(c >> 4) as usize]));
                        out.push(char::from(b"0123456789ABCDEF"[(c & 15) as usize]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(TargetRefusal::Backslash),
            0x00..=0x20 | 0x7f..=0xff => return Err(TargetRefusal::ForbiddenByte),
            b => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(p: &str) -> Result<String, TargetRefusal> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn plain_paths_pass_unchanged_without_allocating() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/v1/p/vpc-endpoints",
            "/a.b/c..d/.e/f.",
            "/~u/x-y_z",
        ] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_their_encodings_are_resolved() {
        assert_eq!(n("/public/../internal/secret").unwrap(), "/internal/secret");
        assert_eq!(n("/public/%2e%2e/internal/secret").unwrap(), "/internal/secret");
        assert_eq!(n("/public/%2E./internal").unwrap(), "/internal");
        assert_eq!(n("/huawei/../veeam/x").unwrap(), "/veeam/x");
        assert_eq!(n("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(n("/%61%62c").unwrap(), "/abc");
        assert_eq!(n("/a%20b%3a").unwrap(), "/a%20b%3A");
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        assert_eq!(n("/.."), Err(TargetRefusal::AboveRoot));
        assert_eq!(n("/a/../../etc/passwd"), Err(TargetRefusal::AboveRoot));
        assert_eq!(n("/a%2f..%2fb"), Err(TargetRefusal::EncodedSeparator));
        assert_eq!(n("/a%5C..%5Cb"), Err(TargetRefusal::EncodedSeparator));
        assert_eq!(n("/a\\..\\b"), Err(TargetRefusal::Backslash));
        assert_eq!(n("/a%00b"), Err(TargetRefusal::ForbiddenByte));
        assert_eq!(n("/a%zz"), Err(TargetRefusal::BadEscape));
        assert_eq!(n("/a%4"), Err(TargetRefusal::BadEscape));
        assert_eq!(n("http://x/a"), Err(TargetRefusal::NotOriginForm));
        assert_eq!(n("*"), Err(TargetRefusal::NotOriginForm));
    }

    proptest! {
        /// Whatever the input: no panic; an accepted path starts with `/`, has no dot segment,
        /// no empty segment, no encoded separator, and normalizing it again changes nothing.
        #[test]
        fn normalized_paths_are_canonical(p in "/[a-zA-Z0-9./%_~\\-]{0,40}") {
            if let Ok(out) = normalize_path(&p) {
                prop_assert!(out.starts_with('/'));
                let segs: Vec<&str> = out[1..].split('/').collect();
                for (i, s) in segs.iter().enumerate() {
                    prop_assert!(*s != "." && *s != "..", "{out}");
                    prop_assert!(!s.is_empty() || i == segs.len() - 1, "{out}");
                }
                prop_assert!(!out.to_ascii_lowercase().contains("%2f"));
                prop_assert!(!out.to_ascii_lowercase().contains("%2e"));
                prop_assert_eq!(n(&out).unwrap(), out.to_string());
            }
        }

        /// Any bytes at all: an answer, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(p in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = String::from_utf8_lossy(&p);
            let _ = normalize_path(&s);
        }
    }
}
