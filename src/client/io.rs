//! The driver's socket I/O over plain TCP or TLS ([`crate::net::Stream`]): writing an
//! output queue with vectored writes, and reading into a buffer only once data is waiting
//! (an idle client holds no buffer).

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::BytesMut;

use super::outq::{MAX_IOV, OutQueue};
use crate::net::stream::{Stream, TlsIo};

/// Room to make before each read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Writes as much of `q` as the socket takes. `Ready(Ok)` once the queue is empty (and,
/// for TLS, flushed out of the TLS layer).
#[inline]
pub fn poll_flush<T: TlsIo>(
    q: &mut OutQueue,
    stream: &mut Stream<T>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    // The driver asks on every pass; most find nothing queued and no TLS layer to flush.
    if q.is_empty() && !matches!(stream, Stream::Tls(_)) {
        return Poll::Ready(Ok(()));
    }
    poll_write_queue(q, stream, cx)
}

fn poll_write_queue<T: TlsIo>(
    q: &mut OutQueue,
    stream: &mut Stream<T>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !q.is_empty() {
        let written = match q.single() {
            // Most writes are one chunk (a query, a server's answer): no slice array.
            Some(chunk) => stream.poll_write_vectored(cx, &[IoSlice::new(chunk)]),
            None => {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let n = q.slices(&mut slices);
                stream.poll_write_vectored(cx, slices.get(..n).unwrap_or_default())
            }
        };
        match written {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(written)) => q.advance(written),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    q.shrink();
    stream.poll_flush(cx)
}

/// Writes everything, for the rare writes outside the relay loop.
pub async fn flush<T: TlsIo>(q: &mut OutQueue, stream: &mut Stream<T>) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_flush(q, stream, cx)).await
}

/// Reads what the client sent into `buf`, allocating it only once data is waiting.
/// `Ready(Ok(0))` on EOF. `want` is how many bytes the head frame still needs.
///
/// The socket's readiness is asked first, so that an idle client takes no buffer;
/// unless `likely` says data is most probably there (the task was just woken with the
/// socket registered), when the read itself asks: one readiness poll instead of two. A
/// buffer taken for nothing goes back with the idle client's (see
/// [`super::core::Core::take_idle_buffer`]).
pub fn poll_read_client<T: TlsIo>(
    stream: &mut Stream<T>,
    buf: &mut BytesMut,
    want: usize,
    likely: bool,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if !likely && stream.poll_read_ready(cx)?.is_pending() {
        return Poll::Pending;
    }
    let want = want.max(READ_CHUNK);
    if buf.capacity() == 0 {
        *buf = super::buffers::take(want);
    } else if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(want);
    }
    stream.poll_read_buf(cx, buf)
}

/// Reads what the server sent into `buf`. `Ready(Ok(0))` on EOF.
pub fn poll_read_server<T: TlsIo>(
    stream: &mut Stream<T>,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    stream.poll_read_buf(cx, buf)
}
