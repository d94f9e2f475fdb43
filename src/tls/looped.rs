//! A client socket watched by its worker's session loop (`client/lot.rs`) instead of
//! tokio's reactor: the loop's epoll set reports its readiness, the loop records it here
//! ([`Looped::mark`]) and then polls the session, which reads and writes with plain
//! system calls. No waker is registered per socket and no task is woken per event: that
//! machinery cost ~1,100 instructions per transaction of a relay on tokio (stop 37's
//! profile of `examples/floor_relay/`).
//!
//! Readiness is remembered as tokio remembers it: set by an event, cleared by a read or
//! write that would block (or a read that did not fill the buffer: the socket is drained,
//! and edge-triggered epoll reports the next arrival); a closed or failed socket stays
//! ready for good, so that its end is always read.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::task::Poll;

use bytes::BytesMut;

/// The socket itself, plain TCP or Unix-domain.
#[derive(Debug)]
pub enum Sock {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

/// A socket in a session loop's epoll set, with the readiness the loop last saw.
#[derive(Debug)]
pub struct Looped {
    sock: Sock,
    readable: bool,
    writable: bool,
    /// The peer closed its side, or the socket failed: reads end (or fail) at once.
    read_closed: bool,
    write_closed: bool,
}

impl Looped {
    /// A socket just put in a loop's epoll set: assumed ready both ways until a system
    /// call says otherwise (what arrived before it was registered is read).
    pub fn new(sock: Sock) -> Looped {
        Looped {
            sock,
            readable: true,
            writable: true,
            read_closed: false,
            write_closed: false,
        }
    }

    /// A socket put in a loop's epoll set as its session parks, drained: not readable
    /// until an event says so (the registration reports what is already there).
    pub fn parked(sock: Sock) -> Looped {
        Looped {
            readable: false,
            ..Looped::new(sock)
        }
    }

    pub fn fd(&self) -> RawFd {
        match &self.sock {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
        }
    }

    pub fn is_unix(&self) -> bool {
        matches!(self.sock, Sock::Unix(_))
    }

    /// Records what an event of the loop's epoll set says of this socket.
    pub fn mark(&mut self, ev: &mio::event::Event) {
        self.readable |= ev.is_readable();
        self.writable |= ev.is_writable();
        self.read_closed |= ev.is_read_closed() || ev.is_error();
        self.write_closed |= ev.is_write_closed() || ev.is_error();
    }

    /// Whether a read would make progress (data, EOF or an error), as far as the loop
    /// knows.
    pub fn read_ready(&self) -> bool {
        self.readable || self.read_closed
    }

    /// The socket out of the loop: for tokio's reactor (needs the runtime's context; the
    /// caller has taken it out of the loop's epoll set).
    pub fn into_sock(self) -> Sock {
        self.sock
    }

    fn sock_ref(&self) -> socket2::SockRef<'_> {
        match &self.sock {
            Sock::Tcp(s) => socket2::SockRef::from(s),
            Sock::Unix(s) => socket2::SockRef::from(s),
        }
    }

    /// Reads what is waiting into `buf`'s spare capacity (which must have some).
    /// `Ready(Ok(0))` is end of stream; `Pending` until the loop sees the socket readable.
    pub fn poll_read_buf(&mut self, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        if !self.read_ready() {
            return Poll::Pending;
        }
        let room = buf.capacity() - buf.len();
        loop {
            match super::sys::recv_buf(self.fd(), buf) {
                Ok(n) => {
                    if n > 0 && n < room {
                        // Drained: the next arrival is the next event.
                        self.readable = false;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Reads into `out`, for the rare paths that read whole messages
    /// (`tokio::io::AsyncRead`).
    pub fn poll_read_slice(&mut self, out: &mut [u8]) -> Poll<io::Result<usize>> {
        if !self.read_ready() {
            return Poll::Pending;
        }
        loop {
            match io::Read::read(&mut &*self, out) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes some of `bufs` (one buffer by `send`, more by `sendmsg`, `MSG_NOSIGNAL`: see
    /// `sys.rs`). `Pending` until the loop sees the socket writable again.
    pub fn poll_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if !(self.writable || self.write_closed) {
            return Poll::Pending;
        }
        loop {
            match super::sys::send(self.fd(), bufs) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Poll::Pending;
                }
                r => return Poll::Ready(r),
            }
        }
    }

    /// Closes the writing half.
    pub fn shutdown(&self) -> io::Result<()> {
        self.sock_ref().shutdown(std::net::Shutdown::Write)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.sock {
            Sock::Tcp(s) => s.peer_addr(),
            Sock::Unix(_) => Err(no_address()),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.sock {
            Sock::Tcp(s) => s.local_addr(),
            Sock::Unix(_) => Err(no_address()),
        }
    }

    /// True when the peer sent something (or closed); a byte read here is lost.
    pub fn has_unexpected_data(&mut self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.poll_read_slice(&mut probe), Poll::Pending)
    }

    /// Writes `bytes` if the socket takes them now, without waiting.
    pub fn write_now(&mut self, bytes: &[u8]) {
        let _ = self.poll_write_vectored(&[IoSlice::new(bytes)]);
    }
}

impl io::Read for &Looped {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &self.sock {
            Sock::Tcp(s) => (&*s).read(out),
            Sock::Unix(s) => (&*s).read(out),
        }
    }
}

pub(super) fn no_address() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a Unix-domain socket has no TCP address",
    )
}

#[cfg(test)]
mod tests {
    use super::{Looped, Sock};
    use bytes::BytesMut;
    use std::io::{IoSlice, Write};
    use std::task::Poll;

    fn pair() -> (Looped, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        (Looped::new(Sock::Tcp(s)), peer)
    }

    /// A read that would block, or that did not fill the buffer, makes the socket wait
    /// for the loop's next event; EOF is read once the peer closes, however the readiness
    /// stood.
    #[test]
    fn readiness_is_dropped_by_a_read_that_drains_the_socket() {
        let (mut s, mut peer) = pair();
        let mut buf = BytesMut::with_capacity(64);
        assert!(s.poll_read_buf(&mut buf).is_pending(), "nothing sent yet");
        assert!(!s.read_ready());
        peer.write_all(b"hello").unwrap();
        assert!(s.poll_read_buf(&mut buf).is_pending(), "no event seen yet");
        s.readable = true;
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(matches!(s.poll_read_buf(&mut buf), Poll::Ready(Ok(5))));
        assert_eq!(&buf[..], b"hello");
        assert!(!s.read_ready(), "a short read drains the socket");
        drop(peer);
        s.read_closed = true;
        assert!(matches!(s.poll_read_buf(&mut buf), Poll::Ready(Ok(0))));
    }

    #[test]
    fn a_write_goes_out_while_the_socket_takes_it() {
        let (mut s, peer) = pair();
        let got = s.poll_write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")]);
        assert!(matches!(got, Poll::Ready(Ok(4))));
        let got = s.poll_write_vectored(&[IoSlice::new(b"e")]);
        assert!(matches!(got, Poll::Ready(Ok(1))));
        let mut back = [0u8; 5];
        std::io::Read::read_exact(&mut &peer, &mut back).unwrap();
        assert_eq!(&back, b"abcde");
    }
}
