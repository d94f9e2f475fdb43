//! `recv`, `send` and `sendmsg` as direct system calls. glibc's wrappers of these are
//! thread-cancellation points: each call marks the thread cancellable and back, two atomic
//! operations and ~60 instructions (~120 per transaction in callgrind, stop 37, with a
//! read and a write of the client's per transaction). pgsluice never cancels a thread, so
//! it skips them. Errors are `errno`, as from the wrappers.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

/// What a system call returned: a byte count, or -1 and `errno`.
fn result(rc: libc::c_long) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// Reads into `buf` (no flags); how many bytes it filled, 0 at end of stream.
#[allow(unsafe_code)]
pub fn recv(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length for the call's duration; the kernel writes
    // at most that many bytes; no address is asked for (null, with a null length).
    result(unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    })
}

/// [`recv`] into `buf`'s spare capacity (which should have some: with none, the 0 read
/// would look like end of stream), which grows by what arrived.
#[allow(unsafe_code)]
pub fn recv_buf(fd: RawFd, buf: &mut bytes::BytesMut) -> io::Result<usize> {
    let n = recv(fd, buf.spare_capacity_mut())?;
    // SAFETY: `recv` initialized the first `n` bytes of the spare capacity (it writes at
    // most its length).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Several buffers adding up to at most this many bytes are copied into one and sent by
/// `sendto`: copying a few dozen bytes costs less than `sendmsg`'s header and iovec array
/// (a prepared statement's Bind, renamed for its server, goes out with the Execute and
/// Sync behind it: one `sendmsg` per transaction in prepared mode until stop 43).
const GATHER: usize = 512;

/// Writes `bufs` (one, or several small ones gathered, by `sendto`; more by `sendmsg`)
/// with `MSG_NOSIGNAL`: a closed peer is an error, never a signal. Returns how many bytes
/// went out, counted through `bufs` in order, as `sendmsg` does.
#[allow(unsafe_code)]
pub fn send(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    if bufs.len() > 1 && bufs.iter().map(|b| b.len()).sum::<usize>() <= GATHER {
        let mut one = [0u8; GATHER];
        let mut len = 0;
        for b in bufs {
            if let Some(to) = one.get_mut(len..len + b.len()) {
                to.copy_from_slice(b);
                len += b.len();
            }
        }
        return send(fd, &[IoSlice::new(one.get(..len).unwrap_or_default())]);
    }
    if let [one] = bufs {
        // SAFETY: `one` is readable for its length for the call's duration; no address.
        return result(unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd,
                one.as_ptr(),
                one.len(),
                libc::MSG_NOSIGNAL,
                std::ptr::null::<libc::sockaddr>(),
                0,
            )
        });
    }
    // SAFETY: all-zero is a valid `msghdr` (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it).
    msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
    msg.msg_iovlen = bufs.len().min(libc::c_int::MAX as usize) as _;
    // SAFETY: `msg` points at `bufs`, readable for the call's duration; the kernel only
    // reads through it.
    result(unsafe { libc::syscall(libc::SYS_sendmsg, fd, &raw const msg, libc::MSG_NOSIGNAL) })
}

#[cfg(test)]
mod tests {
    use std::io::{IoSlice, Read, Write};
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;

    #[test]
    fn bytes_go_both_ways_and_errors_are_errno() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let fd = s.as_raw_fd();
        let mut buf = [MaybeUninit::<u8>::uninit(); 16];
        let e = super::recv(fd, &mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        peer.write_all(b"ping").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(super::recv(fd, &mut buf).unwrap(), 4);
        assert_eq!(super::send(fd, &[IoSlice::new(b"po")]).unwrap(), 2);
        let two = [IoSlice::new(b"n"), IoSlice::new(b"g")];
        assert_eq!(super::send(fd, &two).unwrap(), 2);
        let mut back = [0u8; 4];
        peer.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"pong");
        // Small buffers gathered into one send, large ones by sendmsg: the same bytes, in
        // order, either way.
        for sizes in [
            &[3usize, 0, 200, 309][..],
            &[300, 300],
            &[1, 511],
            &[512, 1],
        ] {
            let chunks: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (0..n).map(|j| (i * 7 + j) as u8).collect())
                .collect();
            let slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
            let total: usize = sizes.iter().sum();
            assert_eq!(super::send(fd, &slices).unwrap(), total, "{sizes:?}");
            let mut got = vec![0u8; total];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(got, chunks.concat(), "{sizes:?}");
        }
        drop(peer);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(super::recv(fd, &mut buf).unwrap(), 0, "end of stream");
        let e = super::send(-1, &[IoSlice::new(b"x")]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
}
