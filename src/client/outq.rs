//! A queue of byte chunks waiting to be written to a socket. The session core pushes;
//! the driver writes them out with vectored writes, so that many small frames leave in
//! one system call.
//!
//! The queue can *hold* what is pushed: held chunks are not written until released, and
//! can be dropped instead. The session core holds the client's output while a read on a
//! replica may still be replayed elsewhere (see `core/retry.rs`), whatever policy
//! produced it (forwarded answers, answers pgsluice made itself).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// Most chunks handed to one vectored write.
pub const MAX_IOV: usize = 32;

#[derive(Debug, Default)]
pub struct OutQueue {
    /// Chunks to write, then (at the back) the chunks being held.
    chunks: VecDeque<Bytes>,
    /// Bytes queued to write (not the held ones).
    len: usize,
    /// What is held: the last `count` chunks. Kept in the same ring, so that holding
    /// and releasing allocate nothing (a read on a replica holds its answer).
    held: Option<Held>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Held {
    count: usize,
    len: usize,
}

impl OutQueue {
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        match &mut self.held {
            Some(h) => {
                h.len += chunk.len();
                h.count += 1;
            }
            None => self.len += chunk.len(),
        }
        self.chunks.push_back(chunk);
    }

    /// From now on, what is pushed is held back (until [`OutQueue::release_held`] or
    /// [`OutQueue::drop_held`]).
    pub fn hold(&mut self) {
        if self.held.is_none() {
            self.held = Some(Held::default());
        }
    }

    /// Whether pushes are being held.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// Bytes held back.
    pub fn held_len(&self) -> usize {
        self.held.map_or(0, |h| h.len)
    }

    /// Queues what was held, in order, and stops holding.
    pub fn release_held(&mut self) {
        if let Some(h) = self.held.take() {
            self.len += h.len;
        }
    }

    /// Drops what was held and stops holding.
    pub fn drop_held(&mut self) {
        if let Some(h) = self.held.take() {
            self.chunks
                .truncate(self.chunks.len().saturating_sub(h.count));
        }
    }

    /// Chunks to write (the ones not held).
    fn ready(&self) -> usize {
        self.chunks.len() - self.held.map_or(0, |h| h.count)
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
        self.held = None;
    }

    /// The only chunk queued, if there is exactly one.
    #[inline]
    pub fn single(&self) -> Option<&[u8]> {
        match self.ready() {
            1 => self.chunks.front().map(|c| &c[..]),
            _ => None,
        }
    }

    /// Fills `slices` with the first chunks; returns how many.
    pub fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.chunks
            .iter()
            .take(self.ready())
            .zip(slices.iter_mut())
            .map(|(c, s)| *s = IoSlice::new(c))
            .count()
    }

    /// Drops the first `n` bytes (they were written).
    pub fn advance(&mut self, n: usize) {
        // Never past the queued bytes, into the held chunks.
        let mut n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Gives back the memory of a queue that grew large.
    pub fn shrink(&mut self) {
        if self.len == 0 && self.held.is_none() && self.chunks.capacity() > 64 {
            self.chunks = VecDeque::new();
        }
    }

    /// Takes the ring of an empty queue (an idle client keeps none): empty, with its
    /// capacity, for another queue to reuse ([`OutQueue::lend_ring`]).
    pub fn take_ring(&mut self) -> VecDeque<Bytes> {
        if self.len == 0 && self.held.is_none() {
            // Nearly always empty already: `clear` would still walk it (twice per
            // transaction).
            if !self.chunks.is_empty() {
                self.chunks.clear();
            }
            std::mem::take(&mut self.chunks)
        } else {
            VecDeque::new()
        }
    }

    /// Gives a queue without a ring an empty one to fill (no allocation on its next push).
    pub fn lend_ring(&mut self, ring: VecDeque<Bytes>) {
        if self.chunks.capacity() == 0 && ring.is_empty() {
            // The ring replaced has no allocation and no element: nothing to drop (its
            // drop glue would still walk it).
            std::mem::forget(std::mem::replace(&mut self.chunks, ring));
        }
    }

    /// Every queued byte (not what is held), for tests.
    #[cfg(test)]
    pub fn take_all(&mut self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        let ready = self.ready();
        for c in self.chunks.drain(..ready) {
            v.extend_from_slice(&c);
        }
        self.len = 0;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_chunks_wait_and_can_be_dropped() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"a"));
        q.hold();
        q.push(Bytes::from_static(b"bc"));
        assert_eq!((q.len(), q.held_len()), (1, 2));
        assert_eq!(q.take_all(), b"a");
        q.release_held();
        q.push(Bytes::from_static(b"d"));
        assert_eq!(q.take_all(), b"bcd");
        q.hold();
        q.push(Bytes::from_static(b"x"));
        q.drop_held();
        assert!(q.is_empty() && !q.holding());
    }

    #[test]
    fn a_write_sees_and_advances_over_only_what_is_not_held() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"ab"));
        q.hold();
        q.push(Bytes::from_static(b"cd"));
        assert_eq!(q.single(), Some(&b"ab"[..]));
        let mut iov = [IoSlice::new(&[]); 4];
        assert_eq!(q.slices(&mut iov), 1);
        q.advance(5);
        assert!(q.is_empty() && q.single().is_none());
        assert_eq!(q.held_len(), 2);
        q.push(Bytes::from_static(b"e"));
        q.release_held();
        assert_eq!(q.len(), 3);
        assert_eq!(q.take_all(), b"cde");
    }
}
