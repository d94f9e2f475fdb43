//! A session in the form it waits in, in its worker's lot (`client/lot.rs`): what the
//! driver keeps across transactions ([`Kept`]) and the core's compact form, and the
//! driver made again from them.

use std::sync::Arc;
use std::time::Instant;

use super::park::{self, Park};
use super::{Core, Driver, Registered, Watch};
use crate::shared::Shared;

/// What a session keeps while parked in its worker's lot (`lot.rs`): the core's compact
/// form ([`Core::park`]) and the driver's fields that outlive a transaction. The rest (the
/// server, the timer, the wait, the hand-off slot) is what [`Driver::new`] makes.
pub struct Idle {
    core: crate::client::core::Parked,
    kept: Kept,
}

/// The driver's fields that outlive a transaction.
pub(super) struct Kept {
    pub(super) reg: Registered,
    pub(super) pools: super::server::NodePools,
    /// The shared state's wake-up generation the session saw last.
    pub(super) seen: u64,
}

impl Idle {
    pub fn id(&self) -> u32 {
        self.kept.reg.id
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.kept.reg.shared
    }

    /// The session back as a driver: it asks its socket first (its bytes, or EOF, are
    /// most likely why it is back).
    pub fn into_driver(self) -> Box<Driver> {
        // Idle with its task again (in the count `unpark` or the lot takes it out of).
        park::idle_here().fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Idle { core, kept } = self;
        Box::new(Driver::assemble(Core::unpark(core), kept, Park::Polling))
    }
}

impl Driver {
    /// A driver around `core` with what a session keeps across the lot (`kept`), and
    /// nothing of a transaction: no server, timer, wait or hand-off slot.
    pub(super) fn assemble(core: Core, kept: Kept, park: Park) -> Driver {
        let Kept { reg, pools, seen } = kept;
        Driver {
            reg,
            core,
            pools,
            lease: None,
            timer: None,
            timer_at: None,
            listen: None,
            watch: Watch {
                seen,
                registered: false,
            },
            armed: false,
            woke: false,
            lowat: false,
            park,
            waiting: None,
            handoff: None,
            idle_since: Instant::now(),
            sent: false,
        }
    }

    /// The session in the compact form it waits in, in its worker's lot; itself back when
    /// it cannot park as it is (something besides its socket to wait on).
    pub fn into_idle(self: Box<Self>) -> Result<Box<Idle>, Box<Self>> {
        if self.lease.is_some()
            || self.waiting.is_some()
            || self.listen.is_some()
            || !self.core.parkable()
            || self.core.deadline().is_some()
        {
            return Err(self);
        }
        let Driver {
            core,
            reg,
            pools,
            lease: _,
            timer: _,
            timer_at: _,
            listen: _,
            watch,
            armed: _,
            woke: _,
            lowat: _,
            park: _,
            waiting: _,
            handoff: _,
            idle_since: _,
            sent: _,
        } = *self;
        let kept = Kept {
            reg,
            pools,
            seen: watch.seen,
        };
        // No longer an idle session with a task (counted again by `Idle::into_driver`).
        // Counted out here, not as it leaves the relay: a driver the lot cannot take goes
        // back to a task still idle, and its `unpark` counts it out.
        park::idle_here().fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Box::new(Idle {
            core: core.park(),
            kept,
        }))
    }
}
