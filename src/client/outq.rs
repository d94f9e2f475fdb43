//! A queue of byte chunks waiting to be written to a socket, written with vectored writes
//! so that many small frames leave in one system call (`sendmsg` for plain TCP, see
//! `net::stream`).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};

use crate::net::stream::{Stream, TlsIo};

/// Most chunks handed to one `writev`.
const MAX_IOV: usize = 32;

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

    /// Writes as much as the socket takes. `Ready(Ok)` once the queue is empty (and, for
    /// TLS, flushed out of the TLS layer).
    pub fn poll_flush<T: TlsIo>(
        &mut self,
        stream: &mut Stream<T>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.len > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = self
                .chunks
                .iter()
                .take(MAX_IOV)
                .zip(slices.iter_mut())
                .map(|(c, s)| *s = IoSlice::new(c))
                .count();
            match stream.poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => self.advance(written),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.chunks.capacity() > 64 {
            self.chunks = VecDeque::new();
        }
        stream.poll_flush(cx)
    }

    /// Writes everything, for the rare writes outside the relay loop.
    pub async fn flush<T: TlsIo>(&mut self, stream: &mut Stream<T>) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(stream, cx)).await
    }

    fn advance(&mut self, mut n: usize) {
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
}
