//! An idle session's memory: what the driver lets go of while the client sends nothing.

use bytes::BytesMut;

use super::{Core, Phase};

impl Core {
    /// An idle client keeps no read buffer: hands an empty one back for reuse.
    pub fn take_idle_buffer(&mut self) -> Option<BytesMut> {
        (self.cin.is_empty() && self.cin.capacity() > 0 && self.server.is_none())
            .then(|| std::mem::take(&mut self.cin))
    }

    /// Nothing to do until the client sends more: no server, nothing buffered or queued
    /// either way, no action waiting. The driver then lets go of the session's transient
    /// memory ([`Core::stow`]) and waits for the client's next byte.
    pub fn is_idle(&self) -> bool {
        self.server.is_none()
            && matches!(self.phase, Phase::Relay)
            && !self.client_left
            && self.actions.is_empty()
            && self.cin.is_empty()
            && self.cout.is_empty()
            && !self.cout.holding()
            && self.sout.is_empty()
    }
}
