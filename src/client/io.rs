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

/// The buffer a client that holds none reads into: its usual request (a query, an
/// extended-protocol batch) fits, and a client queued for a server with it does not hold
/// [`READ_CHUNK`] meanwhile. A longer request fills it, and the next read makes
/// [`READ_CHUNK`] of room.
pub const FIRST_READ: usize = 1024;

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
    if buf.capacity() == 0 {
        *buf = super::buffers::take(want.max(FIRST_READ));
    } else if buf.is_empty() {
        // Reclaims the buffer in place once the requests split off it are gone (else
        // takes a new one); keeps a bigger buffer's room (a stream of long messages).
        // Reading on into what is left of it instead held 2.4 times the memory per
        // queued client (see BENCHMARKS.md).
        buf.reserve(want.max(FIRST_READ));
    } else if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        // Part of a message, or several: a long request, or a stream.
        buf.reserve(want.max(READ_CHUNK));
    }
    stream.poll_read_buf(cx, buf)
}

/// Reads what the server sent into `buf`. `Ready(Ok(0))` on EOF.
pub fn poll_read_server<T: TlsIo>(
    stream: &mut Stream<T>,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        // Back to the start of its allocation when nothing else holds it (the last answer
        // was written out): the next answer lands in the cache lines the last one warmed,
        // not 200 bytes further on, sweeping 8 KiB per server connection. Never allocates.
        let _ = buf.try_reclaim(buf.capacity() + 1);
    }
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    stream.poll_read_buf(cx, buf)
}

#[cfg(test)]
mod tests {
    use super::{FIRST_READ, READ_CHUNK, poll_read_client, poll_read_server};
    use crate::net::ClientStream;
    use bytes::BytesMut;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (ClientStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        (ClientStream::Plain(s), peer)
    }

    async fn read(stream: &mut ClientStream, buf: &mut BytesMut, want: usize) -> usize {
        std::future::poll_fn(|cx| poll_read_client(stream, buf, want, false, cx))
            .await
            .unwrap()
    }

    /// A client queued for a server holds its request in a buffer of [`FIRST_READ`],
    /// not [`READ_CHUNK`]; a request longer than that is read whole, the buffer growing
    /// once it is full; an empty buffer is reclaimed in place when nothing else holds it.
    #[tokio::test]
    async fn a_short_request_takes_a_small_buffer_and_a_long_one_grows_it() {
        let (mut stream, mut peer) = pair().await;
        let mut buf = BytesMut::new();
        peer.write_all(&[b'Q'; 100]).await.unwrap();
        assert_eq!(read(&mut stream, &mut buf, 5).await, 100);
        assert!(buf.capacity() < READ_CHUNK, "{} bytes", buf.capacity());
        let request = buf.split().freeze();
        drop(request);
        // Nothing refers to the first request any more: the same room again, no more.
        peer.write_all(&[b'Q'; 100]).await.unwrap();
        assert_eq!(read(&mut stream, &mut buf, 5).await, 100);
        assert!(buf.capacity() >= FIRST_READ && buf.capacity() < READ_CHUNK);
        buf.clear();

        let long = vec![b'x'; 3 * FIRST_READ];
        peer.write_all(&long).await.unwrap();
        let mut got = 0;
        while got < long.len() {
            got += read(&mut stream, &mut buf, long.len() - got).await;
        }
        assert_eq!(&buf[..], &long[..]);
    }

    /// A server's answer is read at the start of its buffer's allocation once the last
    /// answer has been written out (dropped), and after it while that one is still held.
    #[tokio::test]
    async fn a_server_answer_is_read_where_the_last_one_was_once_it_is_gone() {
        let (mut stream, mut peer) = pair().await;
        let mut buf = BytesMut::new();
        peer.write_all(&[b'D'; 200]).await.unwrap();
        let n = std::future::poll_fn(|cx| poll_read_server(&mut stream, &mut buf, cx))
            .await
            .unwrap();
        assert_eq!(n, 200);
        let start = buf.as_ptr();
        let held = buf.split().freeze();

        peer.write_all(&[b'D'; 200]).await.unwrap();
        std::future::poll_fn(|cx| poll_read_server(&mut stream, &mut buf, cx))
            .await
            .unwrap();
        assert_eq!(
            buf.as_ptr(),
            start.wrapping_add(200),
            "after the held answer"
        );
        let second = buf.split().freeze();
        drop((held, second));

        peer.write_all(&[b'D'; 200]).await.unwrap();
        std::future::poll_fn(|cx| poll_read_server(&mut stream, &mut buf, cx))
            .await
            .unwrap();
        assert_eq!(buf.as_ptr(), start, "at the start again");
        assert!(buf.capacity() >= READ_CHUNK);
    }
}
