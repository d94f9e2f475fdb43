//! The client's SQL-level prepared statements under its own names, for code on the server
//! that names them.
//!
//! In transaction and statement mode a client's `PREPARE p` is a statement of pgsluice's
//! naming on the server (`sql_prepare.rs`). PL/pgSQL's dynamic SQL
//! (`EXECUTE 'execute p (1)'`) runs on the server, out of pgsluice's sight, and would find
//! no `p` there. So before a unit that runs such code (a `DO` block, a `CALL`, or a call of
//! a function outside the read-only allowlist: what makes the transaction opaque), on a
//! server between transactions, each of the client's SQL-level statements is prepared
//! under its own name by a hidden copy of the client's own `PREPARE`, pipelined ahead of
//! the unit (no extra round trip). When the transaction ends they are deallocated, ahead
//! of the settings read-back that follows such a transaction (`chores.rs`), or by the
//! cleanup when the client leaves; a server released any other way while it holds them is
//! closed. No other client can run them.
//!
//! Inside an open transaction block the hidden `PREPARE`s run inside a savepoint that is
//! then rolled back and released: a `PREPARE` is not undone by a rollback, while one that
//! failed (say, its table was dropped since) leaves the client's transaction as it was.
//! In a failed transaction block nothing is prepared: the unit fails anyway. Nor on a
//! replica, where a read-your-writes probe or a kept read may be ahead of the unit.

use super::Core;
use super::statements::frame;
use crate::prepare::SERVER_PREFIX;
use crate::protocol::fe;

/// Around the hidden `PREPARE`s inside a transaction block.
const SAVEPOINT: &str = "SAVEPOINT pgsluice_own_names";
const UNDO_SAVEPOINT: &str =
    "ROLLBACK TO SAVEPOINT pgsluice_own_names; RELEASE SAVEPOINT pgsluice_own_names";

impl Core {
    /// The client frame `tag` at `cin[*fwd..]`, which starts a unit, makes the transaction
    /// opaque: the client's SQL-level statements the server lacks under their own names
    /// go ahead of it (the frames before it are flushed first).
    pub(super) fn own_names_before(&mut self, fwd: &mut usize, tag: u8) {
        if self.map.names.sql.is_empty() || self.map.replies.skipping {
            return;
        }
        // Not on a replica: a probe or a retry may be holding the unit's answer there,
        // and its code cannot write anyway.
        if self.route.as_ref().is_some_and(|r| r.reading) || self.retry.is_some() {
            return;
        }
        // Nothing of the client's may be in flight: the server's transaction status must be
        // known when the hidden statements run. (A Query was counted already.)
        if self.flow.outstanding != u32::from(tag == fe::QUERY) {
            return;
        }
        let Some(att) = self.server.as_deref() else {
            return;
        };
        let in_block = match att.state.status {
            b'I' => false,
            b'T' => true,
            _ => return,
        };
        let mut missing: Vec<String> = self
            .map
            .names
            .sql
            .keys()
            .filter(|n| !n.starts_with(SERVER_PREFIX) && !att.state.own_names().contains(n))
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        // In a stable order, so a recorded exchange replays the same.
        missing.sort();
        self.flush_client_bytes(fwd);
        let Some(att) = self.server.as_deref_mut() else {
            return;
        };
        let mut hidden = |sout: &mut crate::client::outq::OutQueue, sql: &str| {
            sout.push(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]));
            self.map.replies.expect_hidden_query(None);
        };
        if in_block {
            hidden(&mut self.sout, SAVEPOINT);
        }
        for name in missing {
            let Some(p) = self.map.names.sql.get(&name) else {
                continue;
            };
            hidden(&mut self.sout, &p.text);
            att.state.rare.get_or_insert_default().own_names.push(name);
        }
        if in_block {
            hidden(&mut self.sout, UNDO_SAVEPOINT);
        }
        self.unnamed_dropped();
        // A unit kept for a retry could not be replayed without them.
        self.disarm_retry();
    }
}

/// The statements that deallocate `names` (each alone: one that the server's code
/// deallocated itself fails without stopping the others).
pub(super) fn deallocations(names: &[String]) -> impl Iterator<Item = String> + '_ {
    names
        .iter()
        .map(|n| format!("DEALLOCATE \"{}\"", n.replace('"', "\"\"")))
}
