//! Read-your-writes probes: reads of a session that just wrote, on a replica that keeps up.
//!
//! The monitor samples each replica's replay LSN every `lag_check_interval`; a write made
//! a moment ago is newer than any sample, so without more a writer's next read would go
//! to the primary. When the router picks a replica that keeps up (its sampled delay is
//! within `ryw_max_wait` plus [`PROBE_SLACK`]) but whose sample is older than the
//! session's write LSN, the session asks that replica on the connection just checked out:
//!
//! ```sql
//! WITH RECURSIVE w(n, lsn) AS (
//!   SELECT 0, pg_last_wal_replay_lsn()
//!   UNION ALL
//!   SELECT w.n + 1, pg_last_wal_replay_lsn() FROM w, LATERAL pg_sleep(0.0005 + 0 * w.n) s
//!   WHERE w.lsn < '<write LSN>' AND clock_timestamp() < statement_timestamp() + <ryw_max_wait>)
//! SELECT max(lsn) FROM w
//! ```
//!
//! (The sleep's argument names `w` so that it runs again for every step: a sleep that
//! does not depend on the row runs once and is rescanned.)
//! It answers at once when the replica has replayed the write, else after at most
//! `ryw_max_wait`, waiting on the replica (no work in pgsluice while it waits).
//!
//! # Pipelined with the read
//! When the unit can be replayed elsewhere (what the retry of a refused read needs, see
//! `retry.rs`), the probe and the unit go in one write, the probe first ([`Ahead`]): no
//! round trip of its own. The probe then goes as extended-protocol messages with no Sync,
//! in a transaction of its own ([`ahead_probe`]):
//!
//! ```text
//! Parse/Bind/Execute "BEGIN", [Parse] Bind/Execute <probe>, Parse/Bind/Execute "COMMIT"
//! ```
//!
//! The probe is a statement prepared on the replica connection by its first probe, under
//! a pgsluice name listed in the connection's record of prepared statements
//! (`probe_sql::PROBE_ID`), with the write's LSN and the wait as Bind parameters: the
//! replica plans the recursive query once per connection, not for every probe (about
//! 0.1 ms each on the benchmark machine). A connection whose record is full, or a pool
//! without statement mapping (whose clients' `DISCARD ALL` pgsluice does not follow),
//! gets it as the unnamed statement.
//!
//! PostgreSQL sends its answers only at the next ReadyForQuery (or a full output
//! buffer), so the probe's answer reaches pgsluice in the same read as the unit's, not in
//! a read and a wake-up of its own; the `COMMIT` ends the probe's transaction, so the
//! unit takes its snapshot after the probe has seen the write, at any isolation level.
//! PostgreSQL runs the connection's messages in order, so the unit starts only once the
//! probe has answered; a probe that saw the write's LSN therefore proves the unit's
//! snapshot holds the write. The unit's answer is held (as for any replayable read) until
//! the probe's answer is in: on a hit it goes on to the client; on a miss it is dropped up
//! to its ReadyForQuery, the replica goes back, and the unit goes to the primary (counted
//! as `ryw_timeout`), as after a refusal. A probe that fails (a recovery conflict, the
//! client's `statement_timeout`) leaves the replica skipping messages up to a Sync, the
//! unit unrun: that connection is closed and the unit goes to the primary.
//!
//! The probe's answer may come only with the end of the unit's (a long read that sends
//! little), so no deadline of its own is set: the read waits as any read does.
//!
//! A unit that cannot be replayed (too large, session mode, binding a statement only that
//! server knows, an SQL-level `PREPARE`/`EXECUTE`, settings to restore first) is sent
//! after the answer of a probe sent alone, as one Query ([`probe_frame`]), under
//! `CHORE_TIMEOUT` plus the wait. Client input past the unit waits for the probe's answer.
//!
//! Either way the position seen raises the replica's known LSN for every session. The
//! guarantee is unchanged: a read's answer reaches the client from a replica only once
//! that replica is known to have replayed the session's last write before the read ran.
//!
//! [`PROBE_SLACK`]: crate::router::PROBE_SLACK

use std::time::Instant;

use bytes::Buf;

use super::probe_sql::{PROBE_ID, ProbeStatement, ahead_probe, first_column_lsn, probe_frame};
use super::{Action, CHORE_TIMEOUT, Core, Phase, Release};
use crate::config::PoolMode;
use crate::protocol::{self, be, fe};
use crate::router::route::Unit;
use crate::server::CloseReason;
use crate::server::Own;

/// A probe in flight, sent alone: client input waits for its answer.
#[derive(Debug)]
pub struct Probe {
    /// The LSN the replica must have replayed.
    pub min_lsn: u64,
    /// The replay LSN it answered.
    pub lsn: Option<u64>,
}

/// A probe sent ahead of the unit it vouches for, in the same write.
#[derive(Debug)]
pub struct Ahead {
    pub probe: Probe,
    /// The class of the unit (for its way to the primary after a miss).
    pub unit: Unit,
    /// The probe has answered that the replica had not replayed `min_lsn`: the unit's
    /// answer is being dropped, and the unit goes to the primary after it.
    pub missed: bool,
    /// CommandComplete messages of the probe's answer seen so far (`BEGIN`, the probe,
    /// `COMMIT`).
    pub completes: u8,
}

impl Core {
    /// How many statements a server connection's record may hold, for pgsluice's own
    /// (the probe, the write-LSN read) to be prepared there: 0 without statement mapping,
    /// where pgsluice does not follow what clients do to the server's prepared statements
    /// (a DISCARD ALL), so its own go unnamed.
    pub(super) fn own_statement_room(&self) -> usize {
        if self.limits.rewrite {
            self.map.max_prepared()
        } else {
            0
        }
    }

    /// After a server was attached: if the route asked for a probe, sends it. Returns true
    /// when it went alone (client input waits for its answer); false when there is none,
    /// or when it goes ahead of the unit (the caller then goes on, and the unit follows
    /// it in the same write).
    pub(super) fn start_probe(&mut self, now: Instant) -> bool {
        if self.route.as_ref().is_none_or(|r| r.probe.is_none()) {
            return false;
        }
        let retry = self.retry_ahead();
        let room = self.own_statement_room();
        let Some(r) = &mut self.route else {
            return false;
        };
        let Some(min_lsn) = r.probe.take() else {
            return false;
        };
        let wait = r.db.policy.load().ryw_max_wait;
        let probe = Probe { min_lsn, lsn: None };
        if let Some(retry) = retry {
            let how = probe_statement(&mut self.server, room, wait);
            self.sout.push(ahead_probe(min_lsn, wait, how));
            r.ahead = Some(Ahead {
                probe,
                unit: r.head.unwrap_or(Unit::Read),
                missed: false,
                completes: 0,
            });
            // The unit's answer is held from its first byte (as `arm_retry` would).
            self.retry = Some(Box::new(retry));
            self.cout.hold();
            return false;
        }
        self.sout.push(probe_frame(min_lsn, wait));
        self.chore_deadline = Some(now + CHORE_TIMEOUT + wait);
        self.phase = Phase::Probe(probe);
        true
    }

    /// The retry for the unit at the head of the client's input when it can go right
    /// behind the probe: the retry keeps it (see `arm_retry`), and nothing runs between
    /// the probe and it (no settings to restore, no SQL-level statement pgsluice handles
    /// itself, no text pgsluice rewrites: the retry keeps the unit as the client sent it,
    /// so its length must be what goes to the server).
    fn retry_ahead(&self) -> Option<super::retry::Retry> {
        let between = self.flow.outstanding == 0
            && !self.flow.batch_open
            && self.status == b'I'
            && self.flow.c_pass == 0
            && self.retry.is_none();
        if !between || self.limits.mode == PoolMode::Session || self.settings_differ() {
            return None;
        }
        let head = self.cin.first().copied();
        if head == Some(fe::QUERY) && self.limits.rewrite {
            let len = protocol::header(&self.cin, self.limits.max_message)
                .ok()??
                .frame_len;
            let text = self.cin.get(protocol::HEADER_LEN..len)?;
            if super::sql_prepare::may_be_sql_prepared(text) {
                return None;
            }
        }
        let retry = self.new_retry(0)?;
        let unit = &retry.unit[..];
        let rewritten = self.limits.rewrite && crate::sql::may_name_prepared_view(unit)
            || self.limits.listen_here && crate::sql::may_call_listening_channels(unit);
        (!rewritten).then_some(retry)
    }

    /// Whether a client frame of `len` bytes must wait because a probe sent ahead has not
    /// settled: the frames of the unit behind it go, anything after them waits.
    pub(super) fn ahead_holds(&self, len: usize) -> bool {
        self.route.as_ref().is_some_and(|r| r.ahead.is_some())
            && self.retry.as_ref().is_none_or(|t| t.left < len)
    }

    /// Whether a probe sent ahead is still to answer.
    pub(super) fn ahead_unanswered(&self) -> bool {
        self.route
            .as_ref()
            .and_then(|r| r.ahead.as_ref())
            .is_some_and(|a| !a.missed)
    }

    /// Consumes the answer of the probe sent ahead of the unit. True when it is over and
    /// the scan goes on (the unit's answer follows).
    ///
    /// Its ten messages are read where they are and passed over, not split off the buffer.
    pub(super) fn ahead_frames(&mut self, now: Instant) -> bool {
        enum Next {
            More,
            Answered,
            Failed(String),
        }
        loop {
            let Some(att) = &mut self.server else {
                return false;
            };
            let buf = &att.state.buf;
            let h = match protocol::header(buf, super::server::MAX_SERVER_MESSAGE) {
                Ok(Some(h)) if buf.len() >= h.frame_len => h,
                Ok(_) => return false,
                Err(e) => {
                    self.server_lost(&format!("server protocol error: {e}"), now);
                    return false;
                }
            };
            let Some(a) = self.route.as_mut().and_then(|r| r.ahead.as_mut()) else {
                return true;
            };
            let body = buf
                .get(protocol::HEADER_LEN..h.frame_len)
                .unwrap_or_default();
            let next = match h.tag {
                be::DATA_ROW => {
                    a.probe.lsn = first_column_lsn(body);
                    Next::More
                }
                be::COMMAND_COMPLETE => {
                    a.completes += 1;
                    // `BEGIN`, the probe, `COMMIT`: the replica is idle again.
                    if a.completes == 3 {
                        Next::Answered
                    } else {
                        Next::More
                    }
                }
                // Parse and Bind completions, notices.
                be::PARSE_COMPLETE | be::BIND_COMPLETE | be::NOTICE_RESPONSE => Next::More,
                // An error (the replica now skips to a Sync: the unit did not run), or
                // anything a probe does not answer.
                be::ERROR_RESPONSE => {
                    let e = protocol::error_fields(body);
                    Next::Failed(format!("{}: {}", e.code, e.message))
                }
                tag => Next::Failed(format!(
                    "unexpected message {:?} in its answer",
                    tag as char
                )),
            };
            att.state.buf.advance(h.frame_len);
            match next {
                Next::More => {}
                Next::Answered => return self.ahead_answered(b'I'),
                Next::Failed(why) => {
                    self.ahead_failed(&why, now);
                    return false;
                }
            }
        }
    }

    /// The probe sent ahead failed: the replica skips the unit (up to a Sync it may not
    /// have), so its connection is closed and the unit goes to the primary, a miss.
    fn ahead_failed(&mut self, why: &str, now: Instant) {
        tracing::info!(
            client = self.id,
            "read-your-writes probe failed on the replica ({why}); reading on the primary"
        );
        if let Some(r) = &mut self.route
            && let Some(a) = &r.ahead
        {
            // Counted as a probe that saw nothing.
            r.probe_answered(a.probe.min_lsn, None);
        }
        self.release(Release::Close(CloseReason::Broken));
        self.ahead_to_primary(now);
    }

    /// The probe sent ahead answered (the replica's transaction status after it): on a hit the
    /// unit's answer goes on to the client; on a miss it is dropped, and the unit goes to
    /// the primary once it is over. True either way (the scan goes on).
    fn ahead_answered(&mut self, status: u8) -> bool {
        let Some(r) = &mut self.route else {
            return true;
        };
        let Some(mut ahead) = r.ahead.take() else {
            return true;
        };
        let ok = r.probe_answered(ahead.probe.min_lsn, ahead.probe.lsn) && status == b'I';
        if ok {
            if self.flow.held {
                self.flow.held = false;
                self.flow.c_need = 0;
            }
            return true;
        }
        ahead.missed = true;
        r.ahead = Some(ahead);
        if let Some(retry) = &mut self.retry {
            retry.discarding = true;
        }
        true
    }

    /// The unit behind a missed probe is over on the replica (its answer dropped, the
    /// replica released): it goes again, on the primary.
    pub(super) fn ahead_to_primary(&mut self, now: Instant) {
        if let Some(retry) = self.retry.take() {
            self.cout.drop_held();
            self.put_back(&retry);
        }
        let Some(r) = &mut self.route else { return };
        let unit = r.ahead.take().map_or(Unit::Read, |a| a.unit);
        r.head = Some(unit);
        self.send_to_primary_after_probe(now);
    }

    /// Consumes the answer of a probe sent alone.
    pub(super) fn probe_frames(&mut self, now: Instant) {
        loop {
            let Some(att) = &self.server else { return };
            let h = match protocol::header(&att.state.buf, super::server::MAX_SERVER_MESSAGE) {
                Ok(Some(h)) if att.state.buf.len() >= h.frame_len => h,
                Ok(_) => return,
                Err(e) => return self.server_lost(&format!("server protocol error: {e}"), now),
            };
            let frame = self.take_server_frame(h.frame_len);
            let body = protocol::body(&frame);
            match h.tag {
                be::DATA_ROW => {
                    if let Phase::Probe(p) = &mut self.phase {
                        p.lsn = first_column_lsn(body);
                    }
                }
                be::READY_FOR_QUERY => {
                    let status = body.first().copied().unwrap_or(b'E');
                    if let Some(att) = &mut self.server {
                        att.state.status = status;
                    }
                    self.chore_deadline = None;
                    let Phase::Probe(p) = std::mem::replace(&mut self.phase, Phase::Relay) else {
                        return;
                    };
                    return self.probe_done(p, status, now);
                }
                // An error (the answer then has no row) is a miss; anything else is
                // ignored.
                _ => {}
            }
        }
    }

    fn probe_done(&mut self, p: Probe, status: u8, now: Instant) {
        let ok = match &mut self.route {
            Some(r) => r.probe_answered(p.min_lsn, p.lsn),
            None => false,
        };
        if ok && status == b'I' {
            if !self.sync_settings(now) {
                self.step(now);
            }
            return;
        }
        self.release(if status == b'I' {
            Release::Clean
        } else {
            Release::Close(CloseReason::Broken)
        });
        self.send_to_primary_after_probe(now);
    }

    /// The unit goes to the primary: the probed replica did not have the write in time,
    /// or was lost.
    fn send_to_primary_after_probe(&mut self, now: Instant) {
        let Some(r) = &mut self.route else { return };
        let node = r.probe_missed();
        self.observe.waiting(node, now);
        self.actions.push_back(Action::NeedServer { node });
        self.phase = Phase::Checkout;
    }

    /// The probe got no answer in time: the replica's connection is closed.
    pub(super) fn probe_timed_out(&mut self, now: Instant) {
        // Only a probe sent alone has a deadline: one sent ahead answers with its unit.
        if !matches!(self.phase, Phase::Probe(_)) {
            return;
        }
        tracing::warn!(
            client = self.id,
            "replica did not answer the read-your-writes probe in time"
        );
        self.probe_lost("no answer to a read-your-writes probe", now);
    }

    /// The server was lost during a probe (or while the unit behind a missed probe was
    /// being dropped): true when that was handled (the unit goes on elsewhere).
    pub(super) fn probe_lost(&mut self, why: &str, now: Instant) -> bool {
        let ahead = self.route.as_ref().and_then(|r| r.ahead.as_ref());
        if let Some(missed) = ahead.map(|a| a.missed) {
            self.chore_deadline = None;
            self.release(Release::Close(CloseReason::Broken));
            if missed {
                if let Some(r) = &self.route {
                    r.db.report_unreachable(r.node, why);
                }
                self.ahead_to_primary(now);
            } else {
                // Unanswered: the replica is left out and the unit chooses again, as any
                // read lost before its answer.
                if let Some(r) = &mut self.route {
                    r.ahead = None;
                }
                self.requeue_retry(Some(why), now);
            }
            return true;
        }
        if !matches!(self.phase, Phase::Probe(_)) {
            return false;
        }
        self.phase = Phase::Relay;
        self.chore_deadline = None;
        self.release(Release::Close(CloseReason::Broken));
        if let Some(r) = &mut self.route {
            r.db.report_unreachable(r.node, why);
        }
        self.send_to_primary_after_probe(now);
        true
    }
}

/// How the probe sent ahead names its statement on the attached replica connection (see
/// [`ProbeStatement`]); a probe to prepare is recorded as prepared there now (its
/// Parse goes first; if it fails, the connection is closed with the failed probe). A
/// connection whose record is full (`room` statements; 0 without statement mapping)
/// keeps its statements and gets the probe unnamed.
fn probe_statement(
    server: &mut Option<Box<super::Attached>>,
    room: usize,
    wait: std::time::Duration,
) -> ProbeStatement {
    if wait.is_zero() {
        return ProbeStatement::AtOnce;
    }
    let Some(att) = server else {
        return ProbeStatement::Unnamed;
    };
    match att.state.statements.own(PROBE_ID, room) {
        Own::Prepared => ProbeStatement::Prepared,
        Own::Prepare => ProbeStatement::Prepare,
        Own::Unnamed => ProbeStatement::Unnamed,
    }
}

#[cfg(test)]
#[path = "ryw_tests.rs"]
mod ryw_tests;
