//! A queue of byte chunks waiting to be written to a socket. The session core pushes;
//! the driver writes them out with vectored writes, so that many small frames leave in
//! one system call.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// Most chunks handed to one vectored write.
pub const MAX_IOV: usize = 32;

#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl OutQueue {
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
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
    }

    /// Fills `slices` with the first chunks; returns how many.
    pub fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.chunks
            .iter()
            .zip(slices.iter_mut())
            .map(|(c, s)| *s = IoSlice::new(c))
            .count()
    }

    /// Drops the first `n` bytes (they were written).
    pub fn advance(&mut self, mut n: usize) {
        self.len = self.len.saturating_sub(n);
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
        if self.len == 0 && self.chunks.capacity() > 64 {
            self.chunks = VecDeque::new();
        }
    }

    /// Every queued byte, for tests.
    #[cfg(test)]
    pub fn take_all(&mut self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for c in self.chunks.drain(..) {
            v.extend_from_slice(&c);
        }
        self.len = 0;
        v
    }
}
