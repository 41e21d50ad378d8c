//! The upstream body as buffered for the rules: the first chunk kept as pingora handed it (no
//! copy; most error bodies arrive in one), later chunks joined into one buffer allocated once,
//! sized from Content-Length (at most the cap + 1) when the upstream sent one.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Default)]
pub struct BodyBuffer {
    /// The only chunk so far (empty before the first).
    first: Bytes,
    /// Every chunk, once a second one arrived.
    joined: Option<BytesMut>,
    /// The joined buffer's capacity when it is made (0: as large as what it first holds).
    size_hint: usize,
}

impl BodyBuffer {
    /// `size_hint`: the body's expected raw length, bounded by the caller's cap.
    pub fn new(size_hint: usize) -> BodyBuffer {
        BodyBuffer {
            size_hint,
            ..BodyBuffer::default()
        }
    }

    pub fn push(&mut self, chunk: Bytes) {
        if let Some(j) = &mut self.joined {
            j.extend_from_slice(&chunk);
        } else if self.first.is_empty() {
            self.first = chunk;
        } else if !chunk.is_empty() {
            let held = self.first.len() + chunk.len();
            let mut j = BytesMut::with_capacity(self.size_hint.max(held));
            j.extend_from_slice(&self.first);
            j.extend_from_slice(&chunk);
            self.first = Bytes::new();
            self.joined = Some(j);
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.joined {
            Some(j) => j,
            None => &self.first,
        }
    }

    pub fn freeze(self) -> Bytes {
        match self.joined {
            Some(j) => j.freeze(),
            None => self.first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chunk_is_kept_as_is_and_more_are_joined_in_order() {
        let one = Bytes::from_static(b"{\"error\":1}");
        let mut b = BodyBuffer::new(64);
        b.push(one.clone());
        assert_eq!(b.as_bytes().as_ptr(), one.as_ptr(), "the first chunk is not copied");
        b.push(Bytes::new());
        assert_eq!(b.len(), one.len());
        assert!(!b.is_empty() && BodyBuffer::new(8).is_empty());
        for part in [&b"ab"[..], b"", b"cd"] {
            b.push(Bytes::copy_from_slice(part));
        }
        assert_eq!(b.as_bytes(), b"{\"error\":1}abcd");
        assert_eq!(b.freeze(), Bytes::from_static(b"{\"error\":1}abcd"));
        assert_eq!(BodyBuffer::new(0).freeze(), Bytes::new());
    }
}
