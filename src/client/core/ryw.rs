//! Read-your-writes probes: reads of a session that just wrote, on a replica that keeps up.
//!
//! The monitor samples each replica's replay LSN every `lag_check_interval`; a write made
//! a moment ago is newer than any sample, so without more a writer's next read would go
//! to the primary. When the router picks a replica that keeps up (its sampled delay is
//! within `ryw_max_wait` plus [`PROBE_SLACK`]) but whose sample is older than the
//! session's write LSN, the session asks that replica on the connection just checked out,
//! before the client's unit goes there:
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
//! `ryw_max_wait`, waiting on the replica (one round trip, no work in pgsluice while it
//! waits). At or past the write LSN, the unit runs there; otherwise the replica goes
//! back to its pool and the unit goes to the primary (counted as `ryw_timeout`). Either
//! way the position seen raises the replica's known LSN for every session. The guarantee
//! is unchanged: a read runs on a replica only once that replica is known to have
//! replayed the session's last write.
//!
//! [`PROBE_SLACK`]: crate::router::PROBE_SLACK

use std::time::{Duration, Instant};

use super::statements::frame;
use super::{Action, CHORE_TIMEOUT, Core, Phase, Release};
use crate::protocol::{self, be, fe};
use crate::router::{format_lsn, parse_lsn};
use crate::server::CloseReason;

/// A probe in flight.
#[derive(Debug)]
pub struct Probe {
    /// The LSN the replica must have replayed.
    pub min_lsn: u64,
    /// The replay LSN it answered.
    pub lsn: Option<u64>,
}

/// The probe's SQL: waits on the replica, in steps of half a millisecond, up to `wait`.
pub fn probe_sql(min_lsn: u64, wait: Duration) -> String {
    let micros = wait.as_micros().min(10_000_000);
    if micros == 0 {
        return "SELECT pg_catalog.pg_last_wal_replay_lsn()::text".to_string();
    }
    format!(
        "WITH RECURSIVE w(n, lsn) AS (SELECT 0, pg_catalog.pg_last_wal_replay_lsn() \
         UNION ALL SELECT w.n + 1, pg_catalog.pg_last_wal_replay_lsn() \
         FROM w, LATERAL pg_catalog.pg_sleep(0.0005 + 0 * w.n) s \
         WHERE w.lsn < '{}'::pg_lsn AND pg_catalog.clock_timestamp() < \
         pg_catalog.statement_timestamp() + interval '{micros} microseconds') \
         SELECT max(w.lsn)::text FROM w",
        format_lsn(min_lsn)
    )
}

impl Core {
    /// After a server was attached: if the route asked for a probe, sends it and returns
    /// true (client input waits for the answer).
    pub(super) fn start_probe(&mut self, now: Instant) -> bool {
        let Some(r) = &mut self.route else {
            return false;
        };
        let Some(min_lsn) = r.probe.take() else {
            return false;
        };
        let wait = r.db.policy.load().ryw_max_wait;
        let sql = probe_sql(min_lsn, wait);
        self.sout.push(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]));
        self.phase = Phase::Probe(Probe { min_lsn, lsn: None });
        self.chore_deadline = Some(now + CHORE_TIMEOUT + wait);
        true
    }

    /// Consumes the probe's answer.
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
                        p.lsn = first_column(body).and_then(|v| parse_lsn(&v));
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
        if !matches!(self.phase, Phase::Probe(_)) {
            return;
        }
        self.phase = Phase::Relay;
        tracing::warn!(
            client = self.id,
            "replica did not answer the read-your-writes probe in time"
        );
        self.release(Release::Close(CloseReason::Broken));
        if let Some(r) = &mut self.route {
            r.db.report_unreachable(r.node, "no answer to a read-your-writes probe");
        }
        self.send_to_primary_after_probe(now);
    }

    /// The server was lost during a probe: true when that was handled (the unit goes on
    /// elsewhere).
    pub(super) fn probe_lost(&mut self, why: &str, now: Instant) -> bool {
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

/// The first column of a DataRow body as text (`None` for NULL or a malformed row).
fn first_column(body: &[u8]) -> Option<String> {
    let n = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    if n == 0 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let v = body.get(6..6 + len)?;
    Some(String::from_utf8_lossy(v).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sql_waits_only_when_asked() {
        assert_eq!(
            probe_sql(0x16B3748, Duration::ZERO),
            "SELECT pg_catalog.pg_last_wal_replay_lsn()::text"
        );
        let sql = probe_sql(0x16B3748, Duration::from_millis(5));
        assert!(sql.contains("w.lsn < '0/16B3748'::pg_lsn"), "{sql}");
        assert!(sql.contains("interval '5000 microseconds'"), "{sql}");
    }
}
