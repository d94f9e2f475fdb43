//! Statements going away, in the client's terms: `DEALLOCATE name` of a protocol-level
//! statement (rewritten to the server-side name), and texts that drop every statement
//! (DISCARD ALL, DEALLOCATE ALL), whose effect on the record waits for the server's answer.

use bytes::Bytes;

use super::replies::Act;
use super::statements::{Mapping, SYNC, frame};
use super::text::deallocate_target;
use crate::client::outq::OutQueue;
use crate::prepare::{SERVER_PREFIX, Statement};
use crate::protocol::{self, fe};
use crate::server::ServerStatements;
use crate::sql::{self, Effect, PinReason};

impl Mapping {
    /// A simple Query that may be a `DEALLOCATE`, sent to the server with its answer
    /// expected. `DEALLOCATE name` naming a protocol-level statement must work (PostgreSQL
    /// shares one namespace): the name is rewritten to the server-side one (prepared there
    /// first if needed) and forgotten by the client at once, by the server's record when
    /// the server says it ran. Any other text goes as it is.
    pub fn deallocate(&mut self, msg: Bytes, sout: &mut OutQueue, server: &mut ServerStatements) {
        match self.rewrite_deallocate(&msg, sout, server) {
            Some((query, act)) => {
                sout.push(query);
                self.replies.expect(fe::QUERY, act);
            }
            None => self.forward(msg, fe::QUERY, sout),
        }
    }

    fn rewrite_deallocate(
        &mut self,
        msg: &[u8],
        sout: &mut OutQueue,
        server: &mut ServerStatements,
    ) -> Option<(Bytes, Act)> {
        let sql = protocol::cstr(protocol::body(msg))?.0;
        let name = deallocate_target(sql)?;
        let Some(stmt) = self.names.stmts.get(&name).cloned() else {
            // A client must not drop statements pgsluice prepared for everyone.
            return name.starts_with(SERVER_PREFIX).then(|| {
                let sql = format!("DEALLOCATE \"unknown_{name}\"");
                (frame(fe::QUERY, &[sql.as_bytes(), b"\0"]), Act::Forward)
            });
        };
        if !self.replies.skipping && !server.touch(stmt.id) {
            // Prepared first, so that the DEALLOCATE finds it; with a Sync of its own, so
            // that if it fails the server does not skip the client's Query to a Sync that
            // never comes.
            self.note_dropping_text(&stmt);
            self.make_room(stmt.id, sout, server);
            sout.push(stmt.parse_frame());
            sout.push(Bytes::from_static(SYNC));
            self.replies.expect_hidden_query(Some(stmt.clone()));
        }
        self.names.stmts.remove(&name);
        let sql = format!("DEALLOCATE {}", stmt.name);
        let act = Act::Deallocate {
            stmt,
            name,
            failed: false,
        };
        Some((frame(fe::QUERY, &[sql.as_bytes(), b"\0"]), act))
    }

    /// A Query or Parse whose text drops every prepared statement (DISCARD ALL,
    /// DEALLOCATE ALL), or may drop or create one under a server-side name (`names_ours`,
    /// see [`super::text::may_name_ours`]), goes to the server. Nothing is forgotten yet: a Query may
    /// fail (inside a transaction block), a Parse may never be executed; a text naming
    /// ours makes the record unsure.
    pub fn drop_sent(&mut self, tag: u8, names_ours: bool) {
        match tag {
            fe::QUERY if !names_ours => self.drop_in_flight = true,
            _ => self.unsure = true,
        }
    }

    /// pgsluice prepares `stmt` on a server itself (before the client's Bind, Describe or
    /// `DEALLOCATE` of it): if its text drops every prepared statement, whether it runs
    /// there is the client's affair, as for the client's own Parse of it
    /// ([`Mapping::drop_sent`]), so the record may turn wrong and the server is not
    /// handed on.
    pub(super) fn note_dropping_text(&mut self, stmt: &Statement) {
        self.note_dropping_sql(stmt.query());
    }

    /// The kept unnamed statement (`frame`, the client's Parse) is re-sent, hidden, to
    /// another server before a Bind or Describe of it: what its text may do there is as
    /// for the client's own Parse of it ([`Mapping::drop_sent`]).
    pub fn note_resent_parse(&mut self, frame: &[u8]) {
        let text = protocol::cstr_bytes(protocol::body(frame))
            .and_then(|(_, rest)| protocol::cstr_bytes(rest))
            .and_then(|(q, _)| std::str::from_utf8(q).ok());
        let Some(text) = text else {
            return;
        };
        if super::text::may_name_ours(fe::PARSE, text) {
            self.unsure = true;
        } else {
            self.note_dropping_sql(text);
        }
    }

    fn note_dropping_sql(&mut self, text: &str) {
        if sql::may_have_effects(text.as_bytes())
            && sql::inspect(text)
                .iter()
                .any(|e| matches!(e, Effect::DiscardAll | Effect::Unpin(PinReason::SqlPrepare)))
        {
            self.unsure = true;
        }
    }

    /// The server's CommandComplete says a DISCARD ALL or DEALLOCATE ALL of the client's
    /// Query ran: the server has no statements left, and the client none of its names.
    /// (Later units waited for this answer, so nothing sent after it is forgotten.)
    pub fn dropped(&mut self, server: &mut ServerStatements) {
        self.names.stmts.clear();
        self.names.sql.clear();
        server.clear();
    }
}
