//! An idle session in compact form, for its worker's lot (`client/lot.rs`): the fields of
//! [`Core`] that outlive a transaction, without the empty buffers, queues and
//! per-transaction state a running session carries inline (the lot keeps thousands).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::observe::{Observe, ParkedObserve};
use super::sequences::Sequences;
use super::state::ParkedState;
use super::statements::{Mapping, ParkedMapping};
use super::timeouts::Timers;
use super::{Core, Flow, Limits, Phase, Route, SessionState};

/// What a parked session keeps (see [`Core::park`]).
pub struct Parked {
    id: u32,
    status: u8,
    seq: Sequences,
    limits: Arc<Limits>,
    route: Option<Box<Route>>,
    map: ParkedMapping,
    state: ParkedState,
    observe: ParkedObserve,
    opaque_check: Option<crate::router::Classifier>,
    unnamed: Option<Box<(Bytes, Option<u64>)>>,
    timers: Option<Box<Timers>>,
    failpoints: Option<Arc<crate::shared::Failpoints>>,
}

impl Core {
    /// Whether the session can be parked as it is: idle ([`Core::is_idle`]), and every
    /// field [`Core::park`] drops empty (nothing of a transaction left in the flow, the
    /// mapping or the settings, no deadline, no notification waiting, not draining).
    /// What is kept whole (the route, the timers) needs no check.
    pub fn parkable(&self) -> bool {
        let f = &self.flow;
        self.is_idle()
            && f.c_pass == 0
            && f.s_pass == 0
            && f.c_need == 0
            && f.outstanding == 0
            && !f.batch_open
            && !f.held
            && self.retry.is_none()
            && self.idle_txn_deadline.is_none()
            && self.chore_deadline.is_none()
            && !self.draining
            && self.notes.is_none()
            && self.map.parkable()
            && self.state.parkable()
    }

    /// The compact form of a [`Core::parkable`] session. The read buffer, output queues
    /// and action ring are dropped (empty; the worker lends rings to the session that
    /// wakes), and so is the box kept for the next server.
    pub fn park(self) -> Parked {
        debug_assert!(self.parkable());
        let Core {
            id,
            limits,
            cin: _,
            cout: _,
            sout: _,
            flow: _,
            status,
            server: _,
            vacant: _,
            phase: _,
            actions: _,
            route,
            retry: _,
            map,
            state,
            observe,
            idle_txn_deadline: _,
            chore_deadline: _,
            draining: _,
            failpoints,
            client_left: _,
            opaque_check,
            unnamed,
            seq,
            timers,
            notes: _,
        } = self;
        Parked {
            id,
            status,
            seq,
            limits,
            route,
            map: map.park(),
            state: state.park(),
            observe: observe.park(),
            opaque_check,
            unnamed,
            timers,
            failpoints,
        }
    }

    /// The session of a parked one, as it was.
    pub fn unpark(p: Parked) -> Core {
        Core {
            id: p.id,
            limits: p.limits,
            cin: BytesMut::new(),
            cout: Default::default(),
            sout: Default::default(),
            flow: Flow::default(),
            status: p.status,
            server: None,
            vacant: None,
            phase: Phase::Relay,
            actions: Default::default(),
            route: p.route,
            retry: None,
            map: Mapping::unpark(p.map),
            state: SessionState::unpark(p.state),
            observe: Observe::unpark(p.observe),
            idle_txn_deadline: None,
            chore_deadline: None,
            draining: false,
            failpoints: p.failpoints,
            client_left: false,
            opaque_check: p.opaque_check,
            unnamed: p.unnamed,
            seq: p.seq,
            timers: p.timers,
            notes: None,
        }
    }
}
