//! The rings an idle session lets go of, lent to its next active spell.
//!
//! An idle client keeps no ring (issue 14: an idle client costs about a kilobyte), but
//! freeing four rings when a client goes idle and allocating them again on its next
//! query cost about 1,400 instructions per `pgbench -S` transaction (issue 11). The
//! driver keeps a [`Spare`] per worker instead (`client/buffers.rs`) and lends it to the
//! next session that wakes up.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{Action, Attached, Core, replies};

/// The empty rings of an idle session: its actions, both output queues and the expected
/// replies (each keeps its capacity, none holds an element), and its server box.
#[derive(Default)]
pub struct Spare {
    actions: VecDeque<Action>,
    cout: VecDeque<Bytes>,
    sout: VecDeque<Bytes>,
    replies: replies::Ring,
    /// The box of a server given back (see [`Core::attach_from`]).
    vacant: Option<Box<Attached>>,
}

impl Core {
    /// Takes the rings of an idle session (see [`Core::is_idle`]); a ring still in use
    /// stays and an empty one is taken in its place.
    pub fn stow(&mut self) -> Spare {
        let actions = if self.actions.is_empty() {
            std::mem::take(&mut self.actions)
        } else {
            VecDeque::new()
        };
        Spare {
            actions,
            cout: self.cout.take_ring(),
            sout: self.sout.take_ring(),
            replies: self.map.replies.take_ring(),
            vacant: self.vacant.take(),
        }
    }

    /// Puts the rings of [`Core::stow`] (this session's or another's) where the session
    /// has none; the others are dropped.
    pub fn unstow(&mut self, spare: Spare) {
        if self.actions.capacity() == 0 && spare.actions.is_empty() {
            // Nothing to drop in the ring replaced (no allocation, no element).
            std::mem::forget(std::mem::replace(&mut self.actions, spare.actions));
        }
        self.cout.lend_ring(spare.cout);
        self.sout.lend_ring(spare.sout);
        self.map.replies.lend_ring(spare.replies);
        if self.vacant.is_none() {
            self.vacant = spare.vacant;
        }
    }
}
