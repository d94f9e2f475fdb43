//! A queue of byte chunks waiting to be written to a socket, written with vectored writes
//! so that many small frames leave in one system call.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;

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

    /// Writes as much as the socket takes. `Ready(Ok)` once the queue is empty.
    pub fn poll_flush(&mut self, stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.len > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = self
                .chunks
                .iter()
                .take(MAX_IOV)
                .zip(slices.iter_mut())
                .map(|(c, s)| *s = IoSlice::new(c))
                .count();
            match send_vectored(stream, &slices[..n]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stream.poll_write_ready(cx)?.is_pending() {
                        return Poll::Pending;
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        if self.chunks.capacity() > 64 {
            self.chunks = VecDeque::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Writes everything, for the rare writes outside the relay loop.
    pub async fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
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

/// `sendmsg` rather than tokio's `writev`: a socket write through the VFS layer pays for
/// file-position locking and object checks that `sendmsg` skips (about 3% of pgsluice's
/// CPU per transaction in a profile of `pgbench -S`). `MSG_NOSIGNAL` comes with socket2.
fn send_vectored(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    stream.try_io(tokio::io::Interest::WRITABLE, || {
        socket2::SockRef::from(stream).send_vectored(bufs)
    })
}
