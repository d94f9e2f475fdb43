//! Read buffers and rings lent to active clients, per worker thread.
//!
//! An idle client holds no read buffer (it would be 16 KiB per connection); an active one
//! borrows one when it wakes up (or when data arrives) and hands it back when it goes idle.
//! The buffer is reused, not freed and reallocated, once per transaction. The same goes
//! for the session core's rings ([`Spare`]): given back when a client goes idle, lent to
//! the next client of the worker that wakes up.

use std::cell::RefCell;

use bytes::BytesMut;

use super::core::Spare;
use super::io::READ_CHUNK;

/// Buffers kept per worker; beyond this, returned buffers are freed. Enough for the
/// clients a pool serves at once; more is memory that stays when every client is idle
/// (93 buffers, 1.5 MiB, were kept after 2,000 clients logged in 100 at a time).
const KEEP: usize = 32;

/// What a worker keeps for its sessions (one thread-local: a session that parks or wakes
/// touches it once).
struct Kept {
    free: Vec<BytesMut>,
    spares: Vec<Spare>,
}

thread_local! {
    static KEPT: RefCell<Kept> = const {
        RefCell::new(Kept {
            free: Vec::new(),
            spares: Vec::new(),
        })
    };
}

/// A buffer with room for at least `want` bytes: a reused one when the worker has one.
pub fn take(want: usize) -> BytesMut {
    let reused = KEPT.with(|k| k.borrow_mut().free.pop());
    let mut buf = reused.unwrap_or_default();
    // Reclaims the whole allocation when nothing else refers to it any more (the frames
    // split off it have been written), else allocates.
    buf.reserve(want);
    buf
}

impl Kept {
    /// Keeps an empty buffer for reuse by another client of this worker; not one grown
    /// past [`READ_CHUNK`] for a long message, which would stay the worker's for good.
    fn give_back(&mut self, buf: BytesMut) {
        debug_assert!(buf.is_empty());
        if (1..=READ_CHUNK).contains(&buf.capacity()) && self.free.len() < KEEP {
            self.free.push(buf);
        }
    }
}

/// Keeps an idle session's rings, and its read buffer if it holds one, for the next
/// session of this worker that wakes up.
pub fn stow(spare: Spare, buf: Option<BytesMut>) {
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        if k.spares.len() < KEEP {
            k.spares.push(spare);
        }
        if let Some(buf) = buf {
            k.give_back(buf);
        }
    });
}

/// Rings kept by [`stow`], and a read buffer when `buffer` (a session that wakes up is
/// most likely about to read), if the worker has them.
pub fn unstow(buffer: bool) -> (Option<Spare>, Option<BytesMut>) {
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        let buf = if buffer { k.free.pop() } else { None };
        (k.spares.pop(), buf)
    })
}

#[cfg(test)]
mod tests {
    use super::{stow, take, unstow};
    use crate::client::core::Spare;
    use crate::client::io::READ_CHUNK;
    use bytes::BytesMut;

    /// An ordinary buffer is kept for the worker's next client; one grown for a long
    /// message is freed, not kept.
    #[test]
    fn a_buffer_grown_for_a_long_message_is_not_kept() {
        stow(Spare::default(), Some(BytesMut::with_capacity(1024)));
        let (_, kept) = unstow(true);
        assert!(kept.is_some_and(|b| b.capacity() >= 1024));

        stow(
            Spare::default(),
            Some(BytesMut::with_capacity(4 * READ_CHUNK)),
        );
        assert!(unstow(true).1.is_none());
        assert!(take(100).capacity() < 4 * READ_CHUNK);
    }
}
