//! Named prepared statements in transaction and statement mode: the client-side half.
//!
//! The client's statement names are mapped to pooler-wide server-side names (see
//! [`crate::prepare`]). Parse, Bind, Describe and Close naming a statement are rewritten;
//! a Parse the current server has already seen is answered by pgsluice itself; a statement
//! the server lacks is prepared there first, its ParseComplete hidden.
//!
//! To put synthesised answers in the right place and hide the right ones, every message
//! that the server answers is recorded in order; `replies.rs` holds that record and what
//! each server reply means for it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

mod replies;
mod sql;

pub(super) use replies::{Act, Undo, Verdict};
use replies::{CLOSE_COMPLETE, Done, Expect, PARSE_COMPLETE};
pub(super) use sql::{SqlStep, may_be_sql_prepared};

use super::outq::OutQueue;
use super::session::Session;
use crate::prepare::{self, SERVER_PREFIX, Statement};
use crate::protocol::{self, fe};

/// Per-session state of the mapping.
#[derive(Debug, Default)]
pub(super) struct Extended {
    /// Client statement name → statement.
    pub stmts: std::collections::HashMap<String, Arc<Statement>>,
    /// Client SQL-level (`PREPARE`) statement name → statement.
    pub sql: std::collections::HashMap<String, Arc<Statement>>,
    /// SQL `PREPARE`s sent to the server and not yet answered: the statement, the client's
    /// name, and how many ReadyForQuery messages come before its own.
    pub sql_pending: Vec<(Arc<Statement>, String, u32)>,
    pub expect: VecDeque<Expect>,
    /// The server reported an error and ignores messages until the next Sync.
    pub skipping: bool,
}

fn name_and_rest(body: &[u8]) -> Option<(&str, &[u8])> {
    protocol::cstr(body)
}

fn frame(tag: u8, parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(tag);
    b.put_i32((4 + len) as i32);
    for p in parts {
        b.put_slice(p);
    }
    b.freeze()
}

impl Session {
    /// Handles a whole client Parse, Bind, Describe or Close while a server is attached,
    /// queuing what goes to the server and what the client will be answered.
    pub(super) fn extended_client(&mut self, tag: u8, msg: Bytes) {
        let body = protocol::body(&msg);
        let named = match tag {
            fe::PARSE | fe::BIND => None,
            _ => body.first().copied(),
        };
        match (tag, named) {
            (fe::PARSE, _) => self.client_parse(msg),
            (fe::BIND, _) => self.client_bind(msg),
            (fe::DESCRIBE, Some(b'S')) => self.client_describe(msg),
            (fe::CLOSE, Some(b'S')) => self.client_close(msg),
            _ => self.forward(msg, tag),
        }
    }

    /// Passes a message on unchanged, expecting its answer.
    pub(super) fn forward(&mut self, msg: Bytes, tag: u8) {
        self.sout.push(msg);
        self.expect_answer(tag, Act::Forward);
    }

    /// Records that a forwarded message will be answered (none while the server skips).
    pub(super) fn expect_answer(&mut self, tag: u8, act: Act) {
        let Some(done) = Done::for_tag(tag) else {
            return;
        };
        if done == Done::Ready {
            self.ext.skipping = false;
        } else if self.ext.skipping {
            return;
        }
        self.ext.expect.push_back(Expect { done, act });
    }

    fn client_parse(&mut self, msg: Bytes) {
        let Some((name, key)) = name_and_rest(protocol::body(&msg)) else {
            return self.forward(msg, fe::PARSE);
        };
        if name.is_empty() || self.ext.skipping {
            return self.forward(msg, fe::PARSE);
        }
        if self.ext.stmts.contains_key(name) {
            // PostgreSQL refuses to redefine a name (42P05). Let the server say so: a
            // Parse under the existing statement's server-side name fails the same way
            // and puts the server into skip-to-Sync, as the client expects.
            let server_name = self.server_name_for(name);
            let refused = frame(fe::PARSE, &[server_name.as_bytes(), b"\0", key]);
            return self.forward(refused, fe::PARSE);
        }
        let stmt = self.shared.statements.intern(key);
        stmt.client_prepares.fetch_add(1, Ordering::Relaxed);
        let name = name.to_string();
        self.ext.stmts.insert(name.clone(), stmt.clone());
        let Some(server) = &mut self.server else {
            return;
        };
        if server.statements.touch(stmt.id) {
            self.shared
                .statements
                .local_parses
                .fetch_add(1, Ordering::Relaxed);
            stmt.local_answers.fetch_add(1, Ordering::Relaxed);
            self.synthesize(PARSE_COMPLETE, Undo::Forget(name, stmt.id));
        } else {
            let act = Act::ForwardParse {
                stmt: stmt.clone(),
                name,
            };
            self.prepare_on_server(&stmt, act);
        }
    }

    /// Sends a Parse of `stmt` under its server-side name, making room for it first.
    /// (An SQL-level statement is prepared with a hidden `PREPARE` Query instead.)
    fn prepare_on_server(&mut self, stmt: &Statement, act: Act) {
        self.shared
            .statements
            .server_parses
            .fetch_add(1, Ordering::Relaxed);
        stmt.server_prepares.fetch_add(1, Ordering::Relaxed);
        self.make_room(stmt.id);
        if let Some(sql) = stmt.prepare_sql() {
            self.sout.push(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]));
            if let Act::Hidden { stmt } = act {
                self.ext.expect.push_back(Expect {
                    done: replies::Done::Ready,
                    act: Act::HiddenQuery { stmt },
                });
            }
            return;
        }
        self.sout.push(stmt.parse_frame());
        self.expect_answer(fe::PARSE, act);
    }

    fn client_bind(&mut self, msg: Bytes) {
        let body = protocol::body(&msg);
        let Some((portal, rest)) = protocol::cstr(body) else {
            return self.forward(msg, fe::BIND);
        };
        let Some((name, params)) = protocol::cstr(rest) else {
            return self.forward(msg, fe::BIND);
        };
        if name.is_empty() {
            return self.forward(msg, fe::BIND);
        }
        let server_name = self.server_name_for(name);
        let rewritten = frame(
            fe::BIND,
            &[
                portal.as_bytes(),
                b"\0",
                server_name.as_bytes(),
                b"\0",
                params,
            ],
        );
        self.forward(rewritten, fe::BIND);
    }

    fn client_describe(&mut self, msg: Bytes) {
        let Some((name, _)) = protocol::cstr(&protocol::body(&msg)[1..]) else {
            return self.forward(msg, fe::DESCRIBE);
        };
        if name.is_empty() {
            return self.forward(msg, fe::DESCRIBE);
        }
        let server_name = self.server_name_for(name);
        let rewritten = frame(fe::DESCRIBE, &[b"S", server_name.as_bytes(), b"\0"]);
        self.forward(rewritten, fe::DESCRIBE);
    }

    fn client_close(&mut self, msg: Bytes) {
        let Some((name, _)) = protocol::cstr(&protocol::body(&msg)[1..]) else {
            return self.forward(msg, fe::CLOSE);
        };
        if name.is_empty() || self.ext.skipping {
            return self.forward(msg, fe::CLOSE);
        }
        // Other clients may share the server-side statement: only the name goes.
        match self.ext.stmts.remove(name) {
            Some(stmt) => self.synthesize(CLOSE_COMPLETE, Undo::Restore(name.to_string(), stmt)),
            None => self.synthesize(CLOSE_COMPLETE, Undo::Forget(String::new(), 0)),
        }
    }

    /// `DEALLOCATE name` in a simple Query naming a protocol-level statement: PostgreSQL
    /// shares one namespace, so it must work. The name is rewritten to the server-side one
    /// (prepared there first if needed) and forgotten by client and server. Returns the
    /// rewritten Query, or `None` when the text is anything else.
    pub(super) fn client_deallocate(&mut self, msg: &[u8]) -> Option<Bytes> {
        let sql = protocol::cstr(protocol::body(msg))?.0;
        let name = deallocate_target(sql)?;
        let Some(stmt) = self.ext.stmts.get(&name).cloned() else {
            // A client must not drop statements pgsluice prepared for everyone.
            return name.starts_with(SERVER_PREFIX).then(|| {
                let sql = format!("DEALLOCATE \"unknown_{name}\"");
                frame(fe::QUERY, &[sql.as_bytes(), b"\0"])
            });
        };
        let server_name = self.server_name_for(&name);
        self.ext.stmts.remove(&name);
        self.forget_on_server(stmt.id);
        let sql = format!("DEALLOCATE {server_name}");
        Some(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]))
    }

    /// The server-side name for a client's statement name, preparing it on this server
    /// first if needed. An unknown name is passed through (the server reports 26000),
    /// altered if it could be mistaken for one of ours.
    fn server_name_for(&mut self, name: &str) -> String {
        let Some(stmt) = self.ext.stmts.get(name).cloned() else {
            return if name.starts_with(SERVER_PREFIX) {
                format!("unknown_{name}")
            } else {
                name.to_string()
            };
        };
        if !self.ext.skipping
            && let Some(server) = &mut self.server
            && !server.statements.touch(stmt.id)
        {
            self.prepare_on_server(&stmt, Act::Hidden { stmt: stmt.clone() });
        }
        stmt.name.clone()
    }

    /// Marks `id` prepared on the server, closing the least recently used statement there
    /// first if the server is at its limit.
    fn make_room(&mut self, id: u64) {
        let limit = self.max_prepared;
        let Some(server) = &mut self.server else {
            return;
        };
        if server.statements.len() >= limit
            && let Some(victim) = server.statements.victim(id)
        {
            server.statements.remove(victim);
            self.sout
                .push(prepare::close_frame(&format!("{SERVER_PREFIX}{victim}")));
            self.expect_answer(fe::CLOSE, Act::Evict { id: victim });
        }
        if let Some(server) = &mut self.server {
            server.statements.insert(id);
        }
    }

    /// DISCARD ALL or DEALLOCATE ALL ran on the server: it has no statements left, and the
    /// client none of its names.
    pub(super) fn forget_all_statements(&mut self) {
        self.ext.stmts.clear();
        self.ext.sql.clear();
        if let Some(s) = &mut self.server {
            s.statements.clear();
        }
    }
}

/// Without a server: a named Parse of a statement some server already accepted,
/// followed by Sync or Flush, is answered here. This is the cache hit that costs no
/// round trip, and it keeps a client that prepares synchronously between transactions
/// (pgbench -M prepared, many drivers) from waiting for a server just to be told
/// "ParseComplete". Returns the bytes consumed from `buf`, or `None` to go the normal way.
pub(super) fn local_parse(
    ext: &mut Extended,
    registry: &prepare::Registry,
    cout: &mut OutQueue,
    status: u8,
    buf: &[u8],
    parse_len: usize,
) -> Option<usize> {
    let (name, key) = protocol::cstr(protocol::body(&buf[..parse_len]))?;
    let next = buf.get(parse_len..parse_len + protocol::HEADER_LEN)?;
    if name.is_empty()
        || ext.stmts.contains_key(name)
        || next != [fe::SYNC, 0, 0, 0, 4] && next != [fe::FLUSH, 0, 0, 0, 4]
    {
        return None;
    }
    let stmt = registry.intern(key);
    if !stmt.validated.load(Ordering::Relaxed) {
        return None;
    }
    stmt.client_prepares.fetch_add(1, Ordering::Relaxed);
    stmt.local_answers.fetch_add(1, Ordering::Relaxed);
    ext.stmts.insert(name.to_string(), stmt);
    registry.local_parses.fetch_add(1, Ordering::Relaxed);
    cout.push(Bytes::from_static(PARSE_COMPLETE));
    if next[0] == fe::SYNC {
        let mut z = BytesMut::with_capacity(6);
        crate::protocol::build::ready_for_query(&mut z, status);
        cout.push(z.freeze());
    }
    Some(parse_len + protocol::HEADER_LEN)
}

/// The statement name of a lone `DEALLOCATE [PREPARE] name` (not `ALL`), as PostgreSQL
/// folds it: unquoted names lowercased, quoted ones exact.
fn deallocate_target(sql: &str) -> Option<String> {
    let mut words = sql
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case("prepare") {
        name = words.next()?;
    }
    if words.next().is_some() || name.eq_ignore_ascii_case("all") {
        return None;
    }
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) if !quoted.contains('"') => Some(quoted.to_string()),
        Some(_) => None,
        None if name.contains('"') || name.contains(';') => None,
        None => Some(name.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::deallocate_target;

    #[test]
    fn deallocate_names() {
        assert_eq!(deallocate_target("DEALLOCATE s1"), Some("s1".into()));
        assert_eq!(
            deallocate_target(" deallocate prepare S1 ;"),
            Some("s1".into())
        );
        assert_eq!(deallocate_target("DEALLOCATE \"S1\""), Some("S1".into()));
        assert_eq!(deallocate_target("DEALLOCATE ALL"), None);
        assert_eq!(deallocate_target("DEALLOCATE a; SELECT 1"), None);
        assert_eq!(deallocate_target("SELECT 1"), None);
    }
}
