//! The writer's WAL position after a transaction that wrote (read-your-writes, `ryw.rs`):
//! `SELECT pg_current_wal_insert_lsn()` on the same connection, an upper bound of the
//! commit's LSN, before the server goes back to the pool.
//!
//! After most transactions the read goes once the client's answer is in, in a round trip
//! of its own ([`Core::start_write_lsn`]). After one `INSERT`/`UPDATE`/`DELETE`/`MERGE`
//! sent outside a transaction block, the usual write of an application in autocommit, it
//! goes in the same write as the statement, right behind it
//! ([`Core::write_lsn_fits_behind`]): the statement commits as it ends, PostgreSQL runs
//! the read after it, and the answer follows the statement's ReadyForQuery. That saves
//! one system call to the server per write, and the server is held one round trip less.
//!
//! With statement mapping on, the read is a statement prepared once per primary
//! connection (`probe_sql::LSN_NAME`, listed in the connection's record of prepared
//! statements as `probe_sql::LSN_ID`, so eviction and resets treat it as any of
//! pgsluice's): each read is a Bind, an Execute and a Sync, and the primary skips parsing
//! and planning it, so its answer trails the statement's by less and more often reaches
//! pgsluice in the same read (one wake-up of the worker instead of two). A connection
//! whose record is full, or a pool without statement mapping, gets the Query.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::chores::Chore;
use super::probe_sql::{LSN_ID, lsn_read};
use super::{CHORE_TIMEOUT, Core, Phase, Release};
use crate::config::PoolMode;
use crate::protocol::build;
use crate::router::format_lsn;
use crate::server::CloseReason;
use crate::server::Own;

/// How pgsluice reads the writer's WAL insert position after a write: the whole Query
/// message (tag, length 50, text, NUL), sent as it is after every write.
const WRITE_LSN_QUERY: &[u8] = b"Q\x00\x00\x00\x32SELECT pg_catalog.pg_current_wal_insert_lsn()\0";

impl Core {
    /// After a transaction that wrote: reads the writer's WAL insert position on the same
    /// connection (an upper bound of the commit's LSN) before it goes back to the pool.
    pub(super) fn start_write_lsn(&mut self, report: bool, now: Instant) {
        let read = self.write_lsn_read();
        self.sout.push(read);
        self.await_write_lsn(report, false, now);
    }

    /// The write-LSN read's messages for the held server: Bind/Execute/Sync of the
    /// prepared read when the connection has it, its Parse first when the connection's
    /// record has room (recorded now, and taken back when the answer has no ParseComplete:
    /// a read sent behind the client's statement may fail and leave the server with the
    /// session, see [`Core::write_lsn_parse_answered`]), else the Query (which drops the
    /// unnamed statement). Without a route (nowhere to note the Parse) it is the Query.
    fn write_lsn_read(&mut self) -> Bytes {
        let room = self.own_statement_room();
        if let (Some(att), Some(route)) = (&mut self.server, &mut self.route) {
            route.lsn_parse = false;
            match att.state.statements.own(LSN_ID, room) {
                Own::Prepared => return lsn_read(false),
                Own::Prepare => {
                    route.lsn_parse = true;
                    return lsn_read(true);
                }
                Own::Unnamed => {}
            }
        }
        self.unnamed_dropped();
        Bytes::from_static(WRITE_LSN_QUERY)
    }

    /// The write-LSN read's answer comes next.
    fn await_write_lsn(&mut self, report: bool, behind: bool, now: Instant) {
        let parse = self
            .route
            .as_mut()
            .is_some_and(|r| std::mem::take(&mut r.lsn_parse))
            .then_some(false);
        self.phase = Phase::Chore(Box::new(Chore::WriteLsn {
            report,
            lsn: None,
            behind,
            parse,
        }));
        self.chore_deadline = Some(now + CHORE_TIMEOUT);
    }

    /// Whether the write-LSN read can go right behind the Query about to be sent (`facts`:
    /// of its text), in the same write, instead of after its answer in a round trip of its
    /// own: the Query is one `INSERT`/`UPDATE`/`DELETE`/`MERGE`, sent on the writer with
    /// nothing in flight and no transaction open, in a session that must learn its write
    /// LSN and is not told it. Such a statement commits (or fails) as it ends, so the read
    /// runs after the commit, as when sent after the answer; no transaction of the
    /// client's is open when it runs, and a session that pins on the statement, or sent
    /// more behind it, keeps its server (see [`Core::write_lsn_behind_done`]).
    pub(super) fn write_lsn_fits_behind(&self, facts: Option<&crate::sql::TextFacts>) -> bool {
        self.status == b'I'
            && self.flow.outstanding == 0
            && !self.flow.batch_open
            && matches!(
                self.limits.mode,
                PoolMode::Transaction | PoolMode::Statement
            )
            && !self.state.is_pinned()
            && facts.is_some_and(|f| f.one_dml())
            && self
                .route
                .as_ref()
                .is_some_and(|r| r.needs_write_lsn() && !r.reports_write_lsn())
    }

    /// Queues the write-LSN read behind the Query just queued (see
    /// [`Core::write_lsn_fits_behind`]); its answer is taken at that Query's
    /// ReadyForQuery.
    pub(super) fn write_lsn_behind(&mut self) {
        let read = self.write_lsn_read();
        self.sout.push(read);
        if let Some(r) = &mut self.route {
            r.lsn_behind = true;
        }
    }

    /// At the ReadyForQuery of a statement with the write-LSN read behind it: the read's
    /// answer comes next.
    pub(super) fn take_write_lsn_behind(&mut self, now: Instant) -> bool {
        let behind = self
            .route
            .as_mut()
            .is_some_and(|r| std::mem::take(&mut r.lsn_behind));
        if behind {
            self.await_write_lsn(false, true, now);
        }
        behind
    }

    pub(super) fn write_lsn_done(&mut self, report: bool, lsn: Option<u64>, now: Instant) {
        if let Some(r) = &mut self.route {
            r.wrote_up_to(lsn);
        }
        if report {
            let mut buf = BytesMut::new();
            if let Some(lsn) = lsn {
                build::parameter_status(&mut buf, "pgsluice.write_lsn", &format_lsn(lsn));
            }
            build::ready_for_query(&mut buf, b'I');
            self.cout.push(buf.freeze());
        }
        self.back_after_write_lsn(lsn.is_some(), now);
    }

    /// The answer of a write-LSN read sent behind the client's statement. With nothing
    /// else of the client's in flight it is the session's write LSN, and the server goes
    /// back as after a read sent on its own (unless the statement pinned the session).
    /// With more in flight behind it (pipelined before the statement was answered, and
    /// not watched since the session had written already), that may write too: the LSN
    /// is not the session's yet, and the read runs again once all of it is answered.
    pub(super) fn write_lsn_behind_done(&mut self, lsn: Option<u64>, status: u8, now: Instant) {
        if !self.quiet() {
            return;
        }
        if let Some(r) = &mut self.route {
            r.wrote_up_to(lsn);
        }
        if status != b'I' || self.state.is_pinned() {
            return;
        }
        self.back_after_write_lsn(lsn.is_some(), now);
    }

    /// The write-LSN read's answer is in: a Parse of its statement that the server did not
    /// confirm (it failed, or was skipped after an error) leaves the statement out of the
    /// connection's record. (A read that fails closes the server unless it went behind a
    /// statement whose session keeps the server: then the record must stay true.)
    pub(super) fn write_lsn_parse_answered(&mut self, parse: Option<bool>) {
        if parse == Some(false)
            && let Some(att) = &mut self.server
        {
            att.state.statements.remove(LSN_ID);
        }
    }

    /// The server goes back after its write-LSN read: clean when the read was answered,
    /// closed when it was not (the session's reads then stay on the primary).
    fn back_after_write_lsn(&mut self, answered: bool, now: Instant) {
        if answered {
            self.give_back(now);
        } else {
            tracing::warn!(
                client = self.id,
                "could not read the write LSN; reads stay on the primary"
            );
            self.release(Release::Close(CloseReason::Broken));
        }
    }
}

#[cfg(test)]
#[path = "write_lsn_tests.rs"]
mod tests;
