//! One connection type per side, plain TCP or TLS, with the narrow API the session driver
//! uses: read into a buffer, wait for readability, vectored write, flush, shutdown.
//!
//! [`ClientStream`] is what a client connected with; [`ServerStream`] is pgsluice's
//! connection to a PostgreSQL server. Both are a [`Stream`]: `Plain` keeps the exact
//! system calls of a bare socket (`sendmsg` for vectored writes); `Unix` is a Unix-domain
//! socket (never TLS, as in PostgreSQL); `Tls` goes through rustls. They also implement tokio's `AsyncRead`/`AsyncWrite` for the rare paths
//! (startup, authentication, the console) that read and write whole messages.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

pub use super::looped::{Looped, Sock};

/// A connection, plain or TLS. `T` is the TLS stream of the side (see the aliases).
#[derive(Debug)]
pub enum Stream<T> {
    Plain(TcpStream),
    /// A Unix-domain socket (`.s.PGSQL.<port>`).
    Unix(UnixStream),
    /// Boxed: TLS state is a few KiB and most deployments on a private network use none.
    Tls(Box<T>),
    /// A plain TCP or Unix-domain socket watched by its worker's session loop, not by
    /// tokio's reactor (see `looped.rs`; only a client's, in the loop).
    Looped(Looped),
}

/// A client's connection to pgsluice.
pub type ClientStream = Stream<ClientTls>;

/// pgsluice's connection to a PostgreSQL server.
pub type ServerStream = Stream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A client's TLS connection, with what channel binding needs of it.
#[derive(Debug)]
pub struct ClientTls {
    pub io: tokio_rustls::server::TlsStream<TcpStream>,
    /// The `tls-server-end-point` hash of the certificate pgsluice presented, `None` when
    /// its signature algorithm has no defined hash (then SCRAM-SHA-256-PLUS is not offered).
    pub cert_hash: Option<Arc<[u8]>>,
}

/// What [`Stream`] needs of a TLS stream beyond reading and writing.
pub trait TlsIo: AsyncRead + AsyncWrite + Unpin {
    /// The TCP socket under the TLS layer.
    fn tcp(&self) -> &TcpStream;
    /// True when decrypted bytes (or a TLS error, or the peer's close) wait to be read.
    fn has_plaintext(&mut self) -> bool;
    /// Sends a TLS close_notify on the next flush.
    fn close_notify(&mut self);
}

impl TlsIo for ClientTls {
    fn tcp(&self) -> &TcpStream {
        self.io.get_ref().0
    }

    fn has_plaintext(&mut self) -> bool {
        match self.io.get_mut().1.process_new_packets() {
            Ok(s) => s.plaintext_bytes_to_read() > 0 || s.peer_has_closed(),
            Err(_) => true,
        }
    }

    fn close_notify(&mut self) {
        self.io.get_mut().1.send_close_notify();
    }
}

impl TlsIo for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }

    fn has_plaintext(&mut self) -> bool {
        match self.get_mut().1.process_new_packets() {
            Ok(s) => s.plaintext_bytes_to_read() > 0 || s.peer_has_closed(),
            Err(_) => true,
        }
    }

    fn close_notify(&mut self) {
        self.get_mut().1.send_close_notify();
    }
}

impl<T: TlsIo> Stream<T> {
    /// Reads what is available into `buf` (which must have spare capacity).
    /// `Ready(Ok(0))` is end of stream.
    pub fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Looped(l) => l.poll_read_buf(buf),
            Stream::Plain(s) => poll_recv_buf(s, cx, buf),
            _ => tokio_util::io::poll_read_buf(Pin::new(self), cx, buf),
        }
    }

    /// Ready when a read would make progress: the socket is readable or, for TLS,
    /// decrypted bytes are already buffered. Lets a caller allocate its read buffer only
    /// once data is there.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Tls(t) => {
                if t.has_plaintext() {
                    return Poll::Ready(Ok(()));
                }
                t.tcp().poll_read_ready(cx)
            }
            Stream::Looped(l) => {
                if l.read_ready() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    /// Writes some of `bufs`; how much is the `usize`. For TLS the bytes may sit in the
    /// TLS layer until [`Stream::poll_flush`].
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Plain(s) => loop {
                match send_vectored(s, bufs) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if s.poll_write_ready(cx)?.is_pending() {
                            return Poll::Pending;
                        }
                    }
                    r => return Poll::Ready(r),
                }
            },
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Looped(l) => l.poll_write_vectored(bufs),
        }
    }

    /// Pushes out what the TLS layer holds; always ready for plain TCP.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(_) | Stream::Unix(_) | Stream::Looped(_) => Poll::Ready(Ok(())),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    /// Closes the writing half (TLS: close_notify first).
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
            Stream::Looped(l) => Poll::Ready(l.shutdown()),
        }
    }

    /// The peer's TCP address (an error for a Unix socket, which has none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Looped(l) => l.peer_addr(),
            _ => self.tcp()?.peer_addr(),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Looped(l) => l.local_addr(),
            _ => self.tcp()?.local_addr(),
        }
    }

    /// Whether this is a Unix-domain socket.
    pub fn is_unix(&self) -> bool {
        match self {
            Stream::Unix(_) => true,
            Stream::Looped(l) => l.is_unix(),
            Stream::Plain(_) | Stream::Tls(_) => false,
        }
    }

    /// The TCP socket, for keepalives and addresses (`None` on a Unix socket).
    pub fn tcp_socket(&self) -> Option<&TcpStream> {
        self.tcp().ok()
    }

    /// Sets the socket's receive low-water mark (`SO_RCVLOWAT`): the kernel reports it
    /// readable, and wakes the worker, only once `bytes` are queued (or the peer closed).
    /// Plain TCP only (under TLS the queued bytes are records, not messages; a Unix
    /// socket's readiness ignores the mark): false when not applied.
    pub fn set_recv_lowat(&self, bytes: usize) -> bool {
        match self {
            Stream::Plain(s) => set_recv_lowat(s, bytes).is_ok(),
            Stream::Unix(_) | Stream::Tls(_) | Stream::Looped(_) => false,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    fn tcp(&self) -> io::Result<&TcpStream> {
        match self {
            Stream::Plain(s) => Ok(s),
            Stream::Unix(_) => Err(super::looped::no_address()),
            Stream::Tls(t) => Ok(t.tcp()),
            Stream::Looped(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a socket in a session loop has no tokio socket",
            )),
        }
    }

    /// True when the peer sent something (or closed) while nobody was waiting for it.
    /// Tokio records readiness from the event loop whether or not anyone polls, so a quiet
    /// socket is recognised without a system call; a socket marked readable is confirmed
    /// with one read (readiness can be stale). A byte read here is lost: the caller closes
    /// a connection that had data waiting anyway.
    pub fn has_unexpected_data(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self {
            // `try_read` looks at the recorded readiness first: no system call, and no
            // waker registered, for a quiet socket.
            Stream::Plain(s) => {
                let mut probe = [0u8; 1];
                !matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Unix(s) => {
                let mut probe = [0u8; 1];
                !matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(t) => {
                if !t.has_plaintext() && t.tcp().poll_read_ready(&mut cx).is_pending() {
                    return false;
                }
                let mut probe = [0u8; 1];
                let mut rb = ReadBuf::new(&mut probe);
                // A TLS record with no application data (a session ticket) reads as
                // Pending: quiet.
                Pin::new(t.as_mut()).poll_read(&mut cx, &mut rb).is_ready()
            }
            Stream::Looped(l) => l.has_unexpected_data(),
        }
    }

    /// Writes `bytes` if the socket takes them now, without waiting (TLS: and a
    /// close_notify). For a goodbye such as Terminate before dropping the connection.
    pub fn write_now_and_close(&mut self, bytes: &[u8]) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self {
            Stream::Plain(s) => {
                let _ = s.try_write(bytes);
            }
            Stream::Unix(s) => {
                let _ = s.try_write(bytes);
            }
            Stream::Tls(t) => {
                let _ = Pin::new(t.as_mut()).poll_write(&mut cx, bytes);
                t.close_notify();
                let _ = Pin::new(t.as_mut()).poll_flush(&mut cx);
            }
            Stream::Looped(l) => l.write_now(bytes),
        }
    }
}

impl ClientStream {
    /// The `tls-server-end-point` channel-binding data, for SCRAM-SHA-256-PLUS.
    pub fn cert_hash(&self) -> Option<Arc<[u8]>> {
        match self {
            Stream::Tls(t) => t.cert_hash.clone(),
            Stream::Plain(_) | Stream::Unix(_) | Stream::Looped(_) => None,
        }
    }

    /// The client's certificate (DER), when it presented one (verified by the handshake).
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Stream::Tls(t) => {
                t.io.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref())
            }
            Stream::Plain(_) | Stream::Unix(_) | Stream::Looped(_) => None,
        }
    }
}

impl ServerStream {
    /// The server certificate's `tls-server-end-point` hash, for SCRAM-SHA-256-PLUS.
    pub fn server_cert_hash(&self) -> Option<Vec<u8>> {
        match self {
            Stream::Tls(t) => {
                let cert = t.get_ref().1.peer_certificates()?.first()?;
                super::cert::end_point_hash(cert.as_ref())
            }
            Stream::Plain(_) | Stream::Unix(_) | Stream::Looped(_) => None,
        }
    }
}

/// `setsockopt(SO_RCVLOWAT)`, which neither tokio nor socket2 exposes.
#[allow(unsafe_code)]
fn set_recv_lowat(stream: &TcpStream, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is the stream's own, open while `stream` is borrowed; the
    // option value is a `c_int` that lives across the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// tokio's read of a TCP socket by a direct `recv` (`sys.rs`), without its `ReadBuf`
/// and `read` layers (~150 instructions per transaction on a server's socket, stop 38).
/// As tokio's own read does, one that does not fill the buffer drops the socket's
/// readiness (the socket is drained: the next read waits for the next event instead of
/// asking the kernel only to hear "would block").
fn poll_recv_buf(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    use std::os::fd::AsRawFd;
    let room = buf.capacity() - buf.len();
    loop {
        std::task::ready!(stream.poll_read_ready(cx))?;
        let mut short = None;
        let read = stream.try_io(tokio::io::Interest::READABLE, || {
            let n = super::sys::recv_buf(stream.as_raw_fd(), buf)?;
            if n > 0 && n < room {
                // "Would block" to `try_io`, which then clears the readiness; the bytes
                // are in `buf`, and `short` says how many.
                short = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (read, short) {
            (_, Some(n)) | (Ok(n), None) => return Poll::Ready(Ok(n)),
            (Err(e), None)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            (Err(e), None) => return Poll::Ready(Err(e)),
        }
    }
}

/// `send`/`sendmsg` rather than tokio's `write`/`writev`: a socket write through the VFS
/// layer pays for file-position locking and object checks that these skip (about 3% of
/// pgsluice's CPU per transaction in a profile of `pgbench -S`). One buffer, the usual
/// case, goes by `send`: `sendmsg` also copies in and checks the message header and the
/// iovec array (0.15-0.19 µs per transaction in the kernel, stop 36). `MSG_NOSIGNAL`: a
/// closed peer is an error here, never a signal (Rust's runtime ignores SIGPIPE too).
/// Direct system calls, not glibc's cancellable wrappers (`sys.rs`).
fn send_vectored(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    stream.try_io(tokio::io::Interest::WRITABLE, || {
        super::sys::send(stream.as_raw_fd(), bufs)
    })
}

impl<T: TlsIo> AsyncRead for Stream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
            Stream::Looped(l) => {
                let n = std::task::ready!(l.poll_read_slice(buf.initialize_unfilled()))?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncRead for ClientTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<T: TlsIo> AsyncWrite for Stream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
            Stream::Looped(l) => l.poll_write_vectored(&[IoSlice::new(buf)]),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Stream::poll_write_vectored(self.get_mut(), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Stream::poll_flush(self.get_mut(), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Stream::poll_shutdown(self.get_mut(), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    async fn read(stream: &mut ServerStream, buf: &mut BytesMut) -> io::Result<usize> {
        std::future::poll_fn(|cx| stream.poll_read_buf(cx, buf)).await
    }

    /// A server socket's read by `recv`: what arrived, then "not yet" (no error) while
    /// nothing more has, then the next bytes once they come, and 0 at end of stream.
    #[tokio::test]
    async fn a_plain_socket_reads_what_arrived_and_waits_for_more() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut stream: ServerStream = Stream::Plain(TcpStream::from_std(s).unwrap());
        let mut buf = BytesMut::with_capacity(64);
        peer.write_all(b"hello").unwrap();
        assert_eq!(read(&mut stream, &mut buf).await.unwrap(), 5);
        let nothing = std::future::poll_fn(|cx| Poll::Ready(stream.poll_read_buf(cx, &mut buf)));
        assert!(nothing.await.is_pending(), "nothing more yet");
        peer.write_all(b" world").unwrap();
        assert_eq!(read(&mut stream, &mut buf).await.unwrap(), 6);
        assert_eq!(&buf[..], b"hello world");
        drop(peer);
        assert_eq!(
            read(&mut stream, &mut buf).await.unwrap(),
            0,
            "end of stream"
        );
    }
}
