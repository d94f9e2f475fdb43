//! SQL-level prepared statements (`PREPARE`, `EXECUTE`, `DEALLOCATE`) in transaction and
//! statement mode: the same mapping as the protocol level's (the server keeps both kinds
//! in one namespace), deduplicated by statement text and parameter types.
//!
//! The client's `PREPARE` is forwarded with just its name token replaced, or answered by
//! pgsluice when a server already accepted that statement; an `EXECUTE` (alone, under
//! `EXPLAIN`, or feeding `CREATE TABLE ... AS`) is rewritten the same way, after a hidden
//! `PREPARE` on a server that lacks the statement; `DEALLOCATE` forgets the client's name
//! only. Errors in the answers are put back in the client's terms. A query string holding
//! more than one statement is not mapped: a `PREPARE` in one pins the client instead.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::replies::Act;
use super::statements::{Mapping, SqlPrepared, frame};
use super::text::deallocate_target;
use super::translate;
use crate::client::outq::OutQueue;
use crate::prepare::SERVER_PREFIX;
use crate::protocol::fe;
use crate::server::ServerStatements;
use crate::sql;

/// What became of a Query that may name an SQL-level prepared statement.
#[derive(Debug)]
pub enum SqlStep {
    /// Not one of ours: handle it as any Query.
    NotOurs,
    /// Send this Query in its place; its answer is handled by `act`.
    Forward(Bytes, Act),
    /// Answer it here: a command tag, or an error (SQLSTATE, message).
    Answer(Result<&'static str, (&'static str, String)>),
    /// It needs a server first.
    NeedServer,
    /// It must wait until the server answered what is in flight.
    Hold,
}

/// A cheap test on the text: whether it may be a `PREPARE`, an `EXECUTE` (also under
/// `EXPLAIN` or `CREATE TABLE ... AS`) or a `DEALLOCATE`.
pub fn may_be_sql_prepared(text: &[u8]) -> bool {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let t = text.get(start..).unwrap_or_default();
    // Every word looked for starts with one of four letters: most texts (SELECT, INSERT,
    // UPDATE, ...) are settled by their first byte.
    if !matches!(t.first().map(|b| b | 0x20), Some(b'p' | b'e' | b'd' | b'c')) {
        return false;
    }
    let starts =
        |w: &[u8]| t.len() > w.len() && t.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w));
    starts(b"prepare")
        || starts(b"execute")
        || starts(b"deallocate")
        || (starts(b"explain") || starts(b"create")) && contains_ci(t, b"execute")
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

impl Mapping {
    /// Handles a Query whose `text` may be an SQL-level `PREPARE`, a statement running a
    /// mapped `EXECUTE`, or a `DEALLOCATE` of one. `in_flight` says whether answers from
    /// the server are still due ahead of it; `outstanding` how many ReadyForQuery messages.
    pub fn sql_query(
        &mut self,
        text: &str,
        server: Option<&mut ServerStatements>,
        sout: &mut OutQueue,
        in_flight: bool,
        outstanding: u32,
    ) -> SqlStep {
        if let Some(p) = sql::sql_prepare(text) {
            return self.sql_prepare(text, p, server, sout, in_flight, outstanding);
        }
        if let Some(e) = sql::sql_execute(text) {
            return self.sql_execute(text, e, server, sout);
        }
        if let Some(name) = deallocate_target(text) {
            if self.names.sql.contains_key(&name) {
                if in_flight {
                    return SqlStep::Hold;
                }
                self.names.sql.remove(&name);
                return SqlStep::Answer(Ok("DEALLOCATE"));
            }
            // A protocol-level statement's (`Mapping::deallocate`), once its record is
            // settled.
            if server.as_deref().is_some_and(|s| self.unsettled(&name, s)) {
                return SqlStep::Hold;
            }
        }
        SqlStep::NotOurs
    }

    fn sql_prepare(
        &mut self,
        text: &str,
        p: sql::SqlPrepare<'_>,
        server: Option<&mut ServerStatements>,
        sout: &mut OutQueue,
        in_flight: bool,
        outstanding: u32,
    ) -> SqlStep {
        if self.names.sql.contains_key(&p.name) {
            if in_flight {
                return SqlStep::Hold;
            }
            let msg = format!("prepared statement \"{}\" already exists", p.name);
            return SqlStep::Answer(Err(("42P05", msg)));
        }
        let stmt = self.registry().intern_sql(p.body, p.types);
        let here = server.as_ref().is_some_and(|s| s.contains(stmt.id));
        let validated = stmt.validated.load(Ordering::Relaxed);
        if here || (validated && server.is_none()) {
            // A server accepted this statement already: no round trip.
            if in_flight {
                return SqlStep::Hold;
            }
            stmt.client_prepares.fetch_add(1, Ordering::Relaxed);
            stmt.local_answers.fetch_add(1, Ordering::Relaxed);
            let text = text.into();
            self.names.sql.insert(p.name, SqlPrepared { stmt, text });
            self.registry().local_parses.fetch_add(1, Ordering::Relaxed);
            return SqlStep::Answer(Ok("PREPARE"));
        }
        let Some(server) = server else {
            return SqlStep::NeedServer;
        };
        if self.any_unsettled() {
            // It changes the record: not before earlier answers have settled it.
            return SqlStep::Hold;
        }
        let Some((sent, t)) = translate::splice(text, p.span, &p.name, &stmt.name) else {
            return SqlStep::NotOurs;
        };
        stmt.client_prepares.fetch_add(1, Ordering::Relaxed);
        self.registry()
            .server_parses
            .fetch_add(1, Ordering::Relaxed);
        stmt.server_prepares.fetch_add(1, Ordering::Relaxed);
        self.make_room(stmt.id, sout, server);
        let prepared = SqlPrepared {
            stmt: stmt.clone(),
            text: text.into(),
        };
        self.names.sql.insert(p.name.clone(), prepared);
        self.names.sql_pending.push((stmt, p.name, outstanding));
        let query = frame(fe::QUERY, &[sent.as_bytes(), b"\0"]);
        SqlStep::Forward(query, Act::Translated(Box::new(t)))
    }

    fn sql_execute(
        &mut self,
        text: &str,
        e: sql::SqlExecute,
        server: Option<&mut ServerStatements>,
        sout: &mut OutQueue,
    ) -> SqlStep {
        let stmt = self.names.sql.get(&e.name).map(|p| p.stmt.clone());
        if stmt.is_none() && !e.name.starts_with(SERVER_PREFIX) {
            return SqlStep::NotOurs;
        }
        let Some(server) = server else {
            return SqlStep::NeedServer;
        };
        if stmt.as_ref().is_some_and(|s| !server.contains(s.id)) && self.any_unsettled() {
            // Prepared here first, which changes the record: not before earlier answers
            // have settled it.
            return SqlStep::Hold;
        }
        let server_name = match &stmt {
            Some(stmt) => {
                if !self.replies.skipping && !server.touch(stmt.id) {
                    self.prepare_on_server(
                        stmt,
                        Act::Hidden {
                            stmt: Arc::clone(stmt),
                        },
                        sout,
                        server,
                    );
                }
                stmt.name.clone()
            }
            // Never let a client run a statement pgsluice prepared for everyone.
            None => format!("\"unknown_{}\"", e.name),
        };
        let Some((sent, t)) = translate::splice(text, e.span, &e.name, &server_name) else {
            return SqlStep::NotOurs;
        };
        let query = frame(fe::QUERY, &[sent.as_bytes(), b"\0"]);
        SqlStep::Forward(query, Act::Translated(Box::new(t)))
    }

    /// An unnamed Parse whose text runs a mapped SQL statement (`EXECUTE p`, as psql's
    /// `\gdesc` sends it): the same Parse naming the server-side statement, prepared there
    /// first if needed, with how its errors are translated back. `None` for anything else.
    pub fn parse_of_execute(
        &mut self,
        msg: &[u8],
        sout: &mut OutQueue,
        server: &mut ServerStatements,
    ) -> Option<(Bytes, Act)> {
        // No SQL-level statement prepared (nearly every session): nothing to look at.
        if self.names.sql.is_empty() {
            return None;
        }
        let (name, rest) = crate::protocol::cstr(crate::protocol::body(msg))?;
        if !name.is_empty() {
            return None;
        }
        let (text, types) = crate::protocol::cstr(rest)?;
        if !may_be_sql_prepared(text.as_bytes()) {
            return None;
        }
        let e = sql::sql_execute(text)?;
        let stmt = self.names.sql.get(&e.name)?.stmt.clone();
        if !self.replies.skipping && !server.touch(stmt.id) {
            self.prepare_on_server(
                &stmt,
                Act::Hidden {
                    stmt: Arc::clone(&stmt),
                },
                sout,
                server,
            );
        }
        let (sent, t) = translate::splice(text, e.span, &e.name, &stmt.name)?;
        let parse = frame(fe::PARSE, &[b"\0", sent.as_bytes(), b"\0", types]);
        Some((parse, Act::Translated(Box::new(t))))
    }

    /// At each ReadyForQuery: settles the SQL `PREPARE`s whose answer it ends. A failed
    /// one leaves no name behind, as on PostgreSQL.
    pub fn settle_sql_prepares(&mut self, failed: bool, server: Option<&mut ServerStatements>) {
        if self.names.sql_pending.is_empty() {
            return;
        }
        let mut settled = Vec::new();
        self.names.sql_pending.retain_mut(|(stmt, name, ahead)| {
            if *ahead == 0 {
                settled.push((stmt.clone(), std::mem::take(name)));
                false
            } else {
                *ahead -= 1;
                true
            }
        });
        let mut server = server;
        for (stmt, name) in settled {
            if failed {
                if self
                    .names
                    .sql
                    .get(&name)
                    .is_some_and(|s| s.stmt.id == stmt.id)
                {
                    self.names.sql.remove(&name);
                }
                if let Some(s) = server.as_deref_mut() {
                    s.remove(stmt.id);
                }
            } else {
                stmt.validated.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::may_be_sql_prepared;

    #[test]
    fn prefilter() {
        assert!(may_be_sql_prepared(b"  PREPARE p AS SELECT 1"));
        assert!(may_be_sql_prepared(b"execute p"));
        assert!(may_be_sql_prepared(b"EXPLAIN (COSTS OFF) EXECUTE p"));
        assert!(may_be_sql_prepared(b"CREATE TABLE t AS EXECUTE p"));
        assert!(!may_be_sql_prepared(b"SELECT 1"));
        assert!(!may_be_sql_prepared(b"EXPLAIN SELECT 1"));
        assert!(!may_be_sql_prepared(b""));
        // Every first letter the words start with, in either case.
        assert!(may_be_sql_prepared(b"Deallocate p"));
        assert!(may_be_sql_prepared(b"\tcreate table t as execute p"));
        assert!(may_be_sql_prepared(b"pRePaRe p AS SELECT 1"));
        assert!(!may_be_sql_prepared(b"Select 1"));
    }
}
