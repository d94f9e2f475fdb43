//! SQL-level prepared statements (`PREPARE`, `EXECUTE`, `DEALLOCATE`) in transaction and
//! statement mode.
//!
//! Each client's statement names are mapped to the same pooler-wide server-side names as
//! protocol-level statements (the server keeps both kinds in one namespace), deduplicated
//! by statement text and parameter types. The client's `PREPARE` is rewritten to prepare
//! the shared name, or answered by pgsluice when a server already accepted that
//! statement; its `EXECUTE` is rewritten, after a hidden `PREPARE` on a server that lacks
//! the statement; its `DEALLOCATE` forgets the client's name only. A query string holding
//! more than one statement is not mapped: a `PREPARE` in one pins the client instead.

use bytes::BytesMut;

use super::frame;
use crate::client::session::Session;
use crate::prepare::SERVER_PREFIX;
use crate::protocol::{self, build, fe};
use crate::sql as inspect;

/// What became of a Query that may name an SQL-level prepared statement.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::client) enum SqlStep {
    /// Not one of ours: handle it as any Query.
    NotOurs,
    /// Consumed: answered here or forwarded rewritten.
    Done,
    /// Consumed and answered; the idle server may go back to the pool.
    DoneRelease,
    /// It needs a server first.
    NeedServer,
    /// It must wait until the server answered what is in flight.
    Hold,
}

/// A cheap test on the first word: PREPARE, EXECUTE or DEALLOCATE.
pub(in crate::client) fn may_be_sql_prepared(query_body: &[u8]) -> bool {
    let start = query_body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let t = &query_body[start..];
    [&b"prepare"[..], b"execute", b"deallocate"]
        .iter()
        .any(|w| t.len() > w.len() && t[..w.len()].eq_ignore_ascii_case(w))
}

impl Session {
    /// Handles the Query of `len` bytes at the head of the client buffer if it is a lone
    /// SQL `PREPARE`, an `EXECUTE` of a mapped name, or a `DEALLOCATE` of one. `in_flight`
    /// says whether answers from the server are still due ahead of it.
    pub(in crate::client) fn sql_prepared(&mut self, len: usize, in_flight: bool) -> SqlStep {
        let Some(sql) = protocol::cstr(protocol::body(&self.cin[..len])).map(|(q, _)| q) else {
            return SqlStep::NotOurs;
        };
        if let Some(p) = inspect::sql_prepare(sql) {
            let (name, types, body) = (p.name, p.types.to_string(), p.body.to_string());
            return self.sql_prepare(len, name, &types, &body, in_flight);
        }
        if let Some((name, rest)) = inspect::sql_execute(sql) {
            let rest = rest.to_string();
            return self.sql_execute(len, &name, &rest);
        }
        if let Some(name) = super::deallocate_target(sql)
            && self.ext.sql.contains_key(&name)
        {
            if in_flight {
                return SqlStep::Hold;
            }
            self.ext.sql.remove(&name);
            return self.answer_here(len, Ok("DEALLOCATE"));
        }
        SqlStep::NotOurs
    }

    fn sql_prepare(
        &mut self,
        len: usize,
        name: String,
        types: &str,
        body: &str,
        in_flight: bool,
    ) -> SqlStep {
        if self.ext.sql.contains_key(&name) {
            if in_flight {
                return SqlStep::Hold;
            }
            let msg = format!("prepared statement \"{name}\" already exists");
            return self.answer_here(len, Err(("42P05", msg)));
        }
        let stmt = self.shared.statements.intern_sql(body, types);
        stmt.client_prepares
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let here = self
            .server
            .as_ref()
            .is_some_and(|s| s.statements.contains(stmt.id));
        let validated = stmt.validated.load(std::sync::atomic::Ordering::Relaxed);
        if here || (validated && self.server.is_none()) {
            // A server accepted this statement already: no round trip.
            if in_flight {
                return SqlStep::Hold;
            }
            stmt.local_answers
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.ext.sql.insert(name, stmt);
            self.shared
                .statements
                .local_parses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return self.answer_here(len, Ok("PREPARE"));
        }
        if self.server.is_none() {
            return SqlStep::NeedServer;
        }
        let Some(create) = stmt.prepare_sql() else {
            return SqlStep::NotOurs;
        };
        let _ = self.cin.split_to(len);
        self.outstanding += 1;
        self.shared
            .statements
            .server_parses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stmt.server_prepares
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.make_room(stmt.id);
        let ahead = self.outstanding - 1;
        self.ext.sql.insert(name.clone(), stmt.clone());
        self.ext.sql_pending.push((stmt, name, ahead));
        self.forward(frame(fe::QUERY, &[create.as_bytes(), b"\0"]), fe::QUERY);
        SqlStep::Done
    }

    fn sql_execute(&mut self, len: usize, name: &str, rest: &str) -> SqlStep {
        let Some(stmt) = self.ext.sql.get(name).cloned() else {
            if !name.starts_with(SERVER_PREFIX) {
                return SqlStep::NotOurs;
            }
            // Never let a client run a statement pgsluice prepared for everyone.
            if self.server.is_none() {
                return SqlStep::NeedServer;
            }
            let _ = self.cin.split_to(len);
            self.outstanding += 1;
            let sql = format!("EXECUTE \"unknown_{name}\"");
            self.forward(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]), fe::QUERY);
            return SqlStep::Done;
        };
        let Some(server) = &mut self.server else {
            return SqlStep::NeedServer;
        };
        let _ = self.cin.split_to(len);
        self.outstanding += 1;
        if !self.ext.skipping && !server.statements.touch(stmt.id) {
            self.prepare_on_server(&stmt, super::Act::Hidden { stmt: stmt.clone() });
        }
        let sql = format!("EXECUTE {}{rest}", stmt.name);
        self.forward(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]), fe::QUERY);
        SqlStep::Done
    }

    /// Consumes the Query and answers it here: a command tag, or an error.
    fn answer_here(&mut self, len: usize, result: Result<&str, (&str, String)>) -> SqlStep {
        let _ = self.cin.split_to(len);
        let mut buf = BytesMut::new();
        match result {
            Ok(tag) => build::command_complete(&mut buf, tag),
            Err((code, msg)) => build::error(&mut buf, "ERROR", code, &msg),
        }
        build::ready_for_query(&mut buf, self.status);
        self.cout.push(buf.freeze());
        let idle = self.server.is_some()
            && self.outstanding == 0
            && !self.batch_open
            && self.status == b'I';
        if idle {
            SqlStep::DoneRelease
        } else {
            SqlStep::Done
        }
    }

    /// At each ReadyForQuery: settles the SQL `PREPARE`s whose answer it ends. A failed
    /// one leaves no name behind, as on PostgreSQL.
    pub(in crate::client) fn settle_sql_prepares(&mut self, failed: bool) {
        if self.ext.sql_pending.is_empty() {
            return;
        }
        let mut settled = Vec::new();
        self.ext.sql_pending.retain_mut(|(stmt, name, ahead)| {
            if *ahead == 0 {
                settled.push((stmt.clone(), std::mem::take(name)));
                false
            } else {
                *ahead -= 1;
                true
            }
        });
        for (stmt, name) in settled {
            if failed {
                if self.ext.sql.get(&name).is_some_and(|s| s.id == stmt.id) {
                    self.ext.sql.remove(&name);
                }
                self.forget_on_server(stmt.id);
            } else {
                stmt.validated
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}
