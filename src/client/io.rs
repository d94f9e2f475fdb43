//! The driver's socket I/O: writing an output queue with vectored writes, and reading
//! into a buffer only once data is waiting (an idle client holds no buffer).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use super::outq::{MAX_IOV, OutQueue};

/// Room to make before each read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Writes as much of `q` as the socket takes. `Ready(Ok)` once the queue is empty.
pub fn poll_flush(
    q: &mut OutQueue,
    stream: &TcpStream,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !q.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = q.slices(&mut slices);
        match send_vectored(stream, slices.get(..n).unwrap_or_default()) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(written) => q.advance(written),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stream.poll_write_ready(cx)?.is_pending() {
                    return Poll::Pending;
                }
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    q.shrink();
    Poll::Ready(Ok(()))
}

/// Writes everything, for the rare writes outside the relay loop.
pub async fn flush(q: &mut OutQueue, stream: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_flush(q, stream, cx)).await
}

/// `sendmsg` rather than tokio's `writev`: a socket write through the VFS layer pays for
/// file-position locking and object checks that `sendmsg` skips (about 3% of pgsluice's
/// CPU per transaction in a profile of `pgbench -S`). `MSG_NOSIGNAL` comes with socket2.
fn send_vectored(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    stream.try_io(tokio::io::Interest::WRITABLE, || {
        socket2::SockRef::from(stream).send_vectored(bufs)
    })
}

/// Reads what the client sent into `buf`, allocating it only once data is waiting.
/// `Ready(Ok(0))` on EOF. `want` is how many bytes the head frame still needs.
///
/// Reads go through `poll_read`, which clears the socket's readiness after a short read,
/// saving the extra `recv` that would only return `EWOULDBLOCK`.
pub fn poll_read_client(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if stream.poll_read_ready(cx)?.is_pending() {
        return Poll::Pending;
    }
    let want = want.max(READ_CHUNK);
    if buf.capacity() == 0 {
        *buf = super::buffers::take(want);
    } else if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(want);
    }
    poll_read_buf(Pin::new(stream), cx, buf)
}

/// Reads what the server sent into `buf`. `Ready(Ok(0))` on EOF.
pub fn poll_read_server(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    poll_read_buf(Pin::new(stream), cx, buf)
}
