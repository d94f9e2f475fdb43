//! The start of a unit: the node chosen and a server asked for, or, on a held server,
//! the route watching the unit (a write waits for a replica's answers).

use std::time::Instant;

use super::client::Stop;
use super::route::NamesView;
use super::{Action, Core, Phase};
use crate::router::route::Unit;

impl Core {
    /// Chooses the node for the unit at the head and asks for a server there
    /// (`Stop::Yield`). `Stop::ForClient` while the unit's end has not arrived; `None` when
    /// no node can serve it and it was answered with an error, so the scan goes on.
    pub(super) fn ask_for_server(&mut self, fwd: usize, now: Instant) -> Option<Stop> {
        debug_assert_eq!(fwd, 0);
        let node = match &mut self.route {
            None => 0,
            Some(r) => {
                let unit = r.classify(
                    &self.cin,
                    self.limits.max_message,
                    &NamesView(&self.map.names),
                    &self.state.gucs,
                );
                if unit == Unit::Incomplete {
                    return Some(Stop::ForClient);
                }
                match r.choose(unit, None) {
                    Ok(n) => n,
                    Err((code, msg)) => {
                        if self.refuse_unit(&code, &msg) {
                            return None;
                        }
                        self.fatal(&code, &msg);
                        self.finish(msg);
                        return Some(Stop::Yield);
                    }
                }
            }
        };
        self.observe.waiting(node, now);
        self.actions.push_back(Action::NeedServer { node });
        self.phase = Phase::Checkout;
        Some(Stop::Yield)
    }

    /// At the start of a unit on a held server: a write arriving while the client reads
    /// from a replica waits for the replica's answers (the replica then goes back and the
    /// write starts on the primary); a write on the primary is noted for read-your-writes.
    pub(super) fn watch_unit(&mut self, fwd: usize) -> Option<Stop> {
        let r = self.route.as_mut()?;
        let head = r.head.take();
        if !r.watching() {
            return None;
        }
        let unit = match head {
            Some(u) => u,
            None => {
                let buf = self.cin.get(fwd..).unwrap_or_default();
                r.classify(
                    buf,
                    self.limits.max_message,
                    &NamesView(&self.map.names),
                    &self.state.gucs,
                )
            }
        };
        match unit {
            Unit::Incomplete => Some(Stop::ForClient),
            Unit::Read => None,
            // A write behind reads on a replica: wait for them, then move.
            Unit::Write if r.reading && self.flow.outstanding > 0 => Some(Stop::ForServer),
            // Inside a transaction on the replica it stays there, as it must (a read-only
            // transaction refuses writes).
            Unit::Write if r.reading => None,
            Unit::Write => {
                r.wrote = true;
                None
            }
        }
    }
}
