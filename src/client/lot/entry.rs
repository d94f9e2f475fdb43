//! How a session enters its worker's loop (after login, or from a task of its own), and
//! how it gets a task of its own when the loop cannot take it.

use crate::client::Counted;
use crate::client::driver::Driver;
use crate::net::ClientStream;
use crate::net::stream::Sock;

use super::{LOT, lot};

/// A session that logged in (or whose task gave it up) goes to its worker's loop; a TLS
/// session, or any when the loop cannot take it, runs in a task of its own.
pub fn park(driver: Box<Driver>, stream: ClientStream, count: Counted) {
    if stream.is_tls() {
        driver.never_parks();
        return resume(driver, stream, count);
    }
    let Some(lot) = lot(driver.shared()) else {
        return resume(driver, stream, count);
    };
    let stream = match stream {
        ClientStream::Looped(l) => match into_tokio(l.into_sock()) {
            Ok(s) => s,
            Err(e) => {
                // The socket is gone with the error: the session ends as for a lost client.
                tracing::debug!(
                    client = driver.id(),
                    "cannot move a client to its loop: {e}"
                );
                return;
            }
        },
        stream => stream,
    };
    let mut inbox = lot.inbox();
    if inbox.closed {
        drop(inbox);
        return resume(driver, stream, count);
    }
    inbox.arrivals.push((driver, stream, count));
    if !std::mem::replace(&mut inbox.notified, true)
        && let Some(w) = &inbox.waker
    {
        w.wake_by_ref();
    }
}

/// A session runs in a task of its own.
pub(super) fn resume(driver: Box<Driver>, stream: ClientStream, count: Counted) {
    tokio::spawn(serve(driver, stream, count));
}

/// A session whose socket left the loop (or never entered it) gets a task of its own.
pub(super) fn resume_sock(driver: Box<Driver>, sock: Sock, count: Counted) {
    match into_tokio(sock) {
        Ok(stream) => resume(driver, stream, count),
        Err(e) => tracing::warn!(client = driver.id(), "a client's socket: {e}"),
    }
}

/// A client's socket out of tokio's reactor. (A TLS session never enters the loop: its
/// stream, which cannot leave, is refused and dropped.)
pub(super) fn out_of_tokio(stream: ClientStream) -> std::io::Result<Sock> {
    match stream {
        ClientStream::Plain(s) => s.into_std().map(Sock::Tcp),
        ClientStream::Unix(s) => s.into_std().map(Sock::Unix),
        ClientStream::Looped(l) => Ok(l.into_sock()),
        ClientStream::Tls(_) => Err(std::io::Error::other("a TLS session keeps its task")),
    }
}

/// A socket back in tokio's reactor (needs the runtime's context).
pub(super) fn into_tokio(sock: Sock) -> std::io::Result<ClientStream> {
    Ok(match sock {
        Sock::Tcp(s) => ClientStream::Plain(tokio::net::TcpStream::from_std(s)?),
        Sock::Unix(s) => ClientStream::Unix(tokio::net::UnixStream::from_std(s)?),
    })
}

/// A session's own task: runs it until it ends or may park (then it goes to the loop).
async fn serve(driver: Box<Driver>, stream: ClientStream, count: Counted) {
    if let Some((driver, stream)) = driver.run(stream).await {
        if stream.is_tls() || LOT.with(|l| l.borrow().as_ref().is_none_or(|l| l.inbox().closed)) {
            // Nowhere to park: the task goes on (it tries again `park_idle_after` on).
            return resume(driver, stream, count);
        }
        park(driver, stream, count);
    }
}
