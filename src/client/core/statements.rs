//! Named prepared statements in transaction and statement mode: the client's half of the
//! mapping (the pooler-wide half is [`crate::prepare`]).
//!
//! The client's statement names are mapped to pooler-wide server-side names. Parse,
//! Bind, Describe and Close naming a statement are rewritten; a Parse the current server
//! has already seen is answered by pgsluice itself; a statement the server lacks is
//! prepared there first, its ParseComplete hidden. [`Replies`] keeps the order of what the
//! server owes, so synthesised answers go out in the right place.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

use super::replies::{Act, CLOSE_COMPLETE, PARSE_COMPLETE, Replies, Undo};

pub(super) const SYNC: &[u8] = b"S\0\0\0\x04";
use crate::client::outq::OutQueue;
use crate::prepare::{self, Registry, SERVER_PREFIX, Statement};
use crate::protocol::{self, fe};
use crate::server::ServerStatements;

/// A client's SQL-level prepared statement: what it runs, and the `PREPARE` text as the
/// client sent it (what `pg_prepared_statements` shows, see `prepared_view.rs`).
#[derive(Debug)]
pub struct SqlPrepared {
    pub stmt: Arc<Statement>,
    pub text: Box<str>,
}

/// The client's statement names.
#[derive(Debug, Default)]
pub struct Names {
    /// Client statement name → statement (protocol level). Looked up on every Bind and
    /// Describe: foldhash (seeded per process), not SipHash.
    pub stmts: HashMap<String, Arc<Statement>, foldhash::fast::RandomState>,
    /// Client SQL-level (`PREPARE`) statement name → statement and text.
    pub sql: HashMap<String, SqlPrepared, foldhash::fast::RandomState>,
    /// SQL `PREPARE`s sent to the server and not yet answered: the statement, the client's
    /// name, and how many ReadyForQuery messages come before its own.
    pub sql_pending: Vec<(Arc<Statement>, String, u32)>,
}

impl Names {
    /// A named Parse failed: the server has no such statement and the client's name refers
    /// to nothing, as on PostgreSQL.
    pub fn forget_parse(&mut self, id: u64, name: &str, server: &mut ServerStatements) {
        server.remove(id);
        self.forget_if(name, id);
    }

    /// Forgets `name` if it still maps to statement `id`.
    pub fn forget_if(&mut self, name: &str, id: u64) {
        if self.stmts.get(name).is_some_and(|s| s.id == id) {
            self.stmts.remove(name);
        }
    }

    pub fn restore(&mut self, name: String, stmt: Arc<Statement>) {
        self.stmts.insert(name, stmt);
    }
}

/// Where the mapping writes: to the server, to the client.
pub struct Out<'a> {
    pub sout: &'a mut OutQueue,
    pub cout: &'a mut OutQueue,
}

/// The statement mapping of one session.
#[derive(Debug)]
pub struct Mapping {
    pub names: Names,
    pub replies: Replies,
    registry: Arc<Registry>,
    max_prepared: usize,
    /// A simple Query dropping every prepared statement (DISCARD ALL, DEALLOCATE ALL) is
    /// unanswered: later units wait, and its CommandComplete, if it comes, is when the
    /// statements go (see [`Mapping::dropped`]).
    pub drop_in_flight: bool,
    /// A Parse of such a statement was sent: whether and when it runs is the client's
    /// Bind and Execute's affair, so the record of the server's statements may be wrong
    /// and the server is not handed to another client (closed instead of released).
    pub unsure: bool,
}

/// Builds a frame from its tag and body parts.
pub fn frame(tag: u8, parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(tag);
    b.put_i32((4 + len) as i32);
    for p in parts {
        b.put_slice(p);
    }
    b.freeze()
}

/// Whether a whole Parse, Bind, Describe or Close frame names a prepared statement (not
/// the unnamed one), so that the name must be mapped. True for a malformed frame too: the
/// mapping deals with it.
pub fn names_statement(tag: u8, frame: &[u8]) -> bool {
    let body = protocol::body(frame);
    match tag {
        fe::PARSE => body.first() != Some(&0),
        fe::BIND => {
            protocol::cstr_bytes(body).is_none_or(|(_portal, rest)| rest.first() != Some(&0))
        }
        // 'S' and a name; a portal ('P') is never renamed.
        _ => body.first() == Some(&b'S') && body.get(1) != Some(&0),
    }
}

/// A parked session's mapping: its statement names (none boxed when it has none) and
/// what the mapping is made of (see `parked.rs`).
pub struct ParkedMapping {
    names: Option<Box<Names>>,
    registry: Arc<Registry>,
    max_prepared: usize,
}

impl Mapping {
    /// Nothing in flight: no reply expected, no drop or uncertain Parse outstanding.
    pub(super) fn parkable(&self) -> bool {
        self.replies.is_empty()
            && !self.replies.skipping
            && !self.drop_in_flight
            && !self.unsure
            && self.names.sql_pending.is_empty()
    }

    /// The compact form of a [`Mapping::parkable`] mapping.
    pub(super) fn park(self) -> ParkedMapping {
        let Mapping {
            names,
            replies: _,
            registry,
            max_prepared,
            drop_in_flight: _,
            unsure: _,
        } = self;
        let empty = names.stmts.is_empty() && names.sql.is_empty();
        ParkedMapping {
            names: (!empty).then(|| Box::new(names)),
            registry,
            max_prepared,
        }
    }

    pub(super) fn unpark(p: ParkedMapping) -> Mapping {
        let mut m = Mapping::new(p.registry, p.max_prepared);
        if let Some(names) = p.names {
            m.names = *names;
        }
        m
    }

    pub fn new(registry: Arc<Registry>, max_prepared: usize) -> Mapping {
        Mapping {
            names: Names::default(),
            replies: Replies::default(),
            registry,
            max_prepared,
            drop_in_flight: false,
            unsure: false,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How many statements a server may hold.
    pub fn max_prepared(&self) -> usize {
        self.max_prepared
    }

    /// Handles a whole client Parse, Bind, Describe or Close while a server is attached,
    /// queuing what goes to the server and what the client will be answered.
    pub fn client_message(
        &mut self,
        tag: u8,
        msg: Bytes,
        out: Out<'_>,
        server: &mut ServerStatements,
    ) {
        let body = protocol::body(&msg);
        let named = match tag {
            fe::PARSE | fe::BIND => None,
            _ => body.first().copied(),
        };
        match (tag, named) {
            (fe::PARSE, _) => self.parse(msg, out, server),
            (fe::BIND, _) => self.bind(msg, out, server),
            (fe::DESCRIBE, Some(b'S')) => self.describe(msg, out, server),
            (fe::CLOSE, Some(b'S')) => self.close(msg, out),
            _ => self.forward(msg, tag, out.sout),
        }
    }

    /// Passes a message on unchanged, expecting its answer.
    pub fn forward(&mut self, msg: Bytes, tag: u8, sout: &mut OutQueue) {
        sout.push(msg);
        self.replies.expect_forward(tag);
    }

    fn parse(&mut self, msg: Bytes, out: Out<'_>, server: &mut ServerStatements) {
        let Some((name, key)) = protocol::cstr(protocol::body(&msg)) else {
            return self.forward(msg, fe::PARSE, out.sout);
        };
        if name.is_empty() || self.replies.skipping {
            return self.forward(msg, fe::PARSE, out.sout);
        }
        if self.names.stmts.contains_key(name) {
            // PostgreSQL refuses to redefine a name (42P05). Let the server say so: a
            // Parse under the existing statement's server-side name fails the same way
            // and puts the server into skip-to-Sync, as the client expects.
            let server_name = self.server_name_for(name, out.sout, server);
            let refused = frame(fe::PARSE, &[server_name.as_bytes(), b"\0", key]);
            return self.forward(refused, fe::PARSE, out.sout);
        }
        let stmt = self.registry.intern(key);
        stmt.client_prepares.fetch_add(1, Ordering::Relaxed);
        let name = name.to_string();
        self.names.stmts.insert(name.clone(), stmt.clone());
        if server.touch(stmt.id) {
            self.registry.local_parses.fetch_add(1, Ordering::Relaxed);
            stmt.local_answers.fetch_add(1, Ordering::Relaxed);
            self.replies
                .synthesize(out.cout, PARSE_COMPLETE, Undo::Forget(name, stmt.id));
        } else {
            let act = Act::ForwardParse {
                stmt: stmt.clone(),
                name,
            };
            self.prepare_on_server(&stmt, act, out.sout, server);
        }
    }

    /// Sends a Parse of `stmt` under its server-side name, making room for it first.
    /// (An SQL-level statement is prepared with a hidden `PREPARE` Query instead.)
    pub fn prepare_on_server(
        &mut self,
        stmt: &Arc<Statement>,
        act: Act,
        sout: &mut OutQueue,
        server: &mut ServerStatements,
    ) {
        self.registry.server_parses.fetch_add(1, Ordering::Relaxed);
        stmt.server_prepares.fetch_add(1, Ordering::Relaxed);
        self.note_dropping_text(stmt);
        self.make_room(stmt.id, sout, server);
        if let Some(sql) = stmt.prepare_sql() {
            sout.push(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]));
            if let Act::Hidden { stmt } = act {
                self.replies.expect_hidden_query(Some(stmt));
            }
            return;
        }
        sout.push(stmt.parse_frame());
        self.replies.expect(fe::PARSE, act);
    }

    fn bind(&mut self, msg: Bytes, out: Out<'_>, server: &mut ServerStatements) {
        let body = protocol::body(&msg);
        let Some((portal, rest)) = protocol::cstr(body) else {
            return self.forward(msg, fe::BIND, out.sout);
        };
        let Some((name, params)) = protocol::cstr(rest) else {
            return self.forward(msg, fe::BIND, out.sout);
        };
        if name.is_empty() {
            return self.forward(msg, fe::BIND, out.sout);
        }
        let server_name = self.server_name_for(name, out.sout, server);
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
        self.forward(rewritten, fe::BIND, out.sout);
    }

    fn describe(&mut self, msg: Bytes, out: Out<'_>, server: &mut ServerStatements) {
        let Some((name, _)) = protocol::body(&msg).get(1..).and_then(protocol::cstr) else {
            return self.forward(msg, fe::DESCRIBE, out.sout);
        };
        if name.is_empty() {
            return self.forward(msg, fe::DESCRIBE, out.sout);
        }
        let server_name = self.server_name_for(name, out.sout, server);
        let rewritten = frame(fe::DESCRIBE, &[b"S", server_name.as_bytes(), b"\0"]);
        self.forward(rewritten, fe::DESCRIBE, out.sout);
    }

    fn close(&mut self, msg: Bytes, out: Out<'_>) {
        let Some((name, _)) = protocol::body(&msg).get(1..).and_then(protocol::cstr) else {
            return self.forward(msg, fe::CLOSE, out.sout);
        };
        if name.is_empty() || self.replies.skipping {
            return self.forward(msg, fe::CLOSE, out.sout);
        }
        // Other clients may share the server-side statement: only the name goes.
        let undo = match self.names.stmts.remove(name) {
            Some(stmt) => Undo::Restore(name.to_string(), stmt),
            None => Undo::Forget(String::new(), 0),
        };
        self.replies.synthesize(out.cout, CLOSE_COMPLETE, undo);
    }

    /// The server-side name for a client's statement name, preparing it on this server
    /// first if needed. An unknown name is passed through (the server reports 26000),
    /// altered if it could be mistaken for one of ours.
    pub fn server_name_for<'a>(
        &'a mut self,
        name: &'a str,
        sout: &mut OutQueue,
        server: &mut ServerStatements,
    ) -> Cow<'a, str> {
        if let Some(stmt) = self.names.stmts.get(name)
            && !self.replies.skipping
            && !server.touch(stmt.id)
        {
            let stmt = stmt.clone();
            self.prepare_on_server(&stmt, Act::Hidden { stmt: stmt.clone() }, sout, server);
        }
        match self.names.stmts.get(name) {
            // Borrowed: a Bind or Describe of a statement the server has costs no copy of
            // its name and no touch of the statement's reference count.
            Some(stmt) => Cow::Borrowed(stmt.name.as_str()),
            None if name.starts_with(SERVER_PREFIX) => Cow::Owned(format!("unknown_{name}")),
            None => Cow::Borrowed(name),
        }
    }

    /// Marks `id` prepared on the server, closing the least recently used statement there
    /// first if the server is at its limit.
    pub fn make_room(&mut self, id: u64, sout: &mut OutQueue, server: &mut ServerStatements) {
        if server.len() >= self.max_prepared
            && let Some(victim) = server.victim(id)
        {
            server.remove(victim);
            sout.push(prepare::close_frame(&format!("{SERVER_PREFIX}{victim}")));
            self.replies.expect(fe::CLOSE, Act::Evict { id: victim });
        }
        server.insert(id);
    }

    /// Whether a whole Parse, Bind, Describe or Close (`frame`, when there is one) must
    /// wait before it is rewritten: the answers to earlier units may still take back what
    /// the record says, and deciding on it now (preparing a statement, making room for
    /// one, refusing a Parse of a name that turns out to be free) would go wrong.
    pub fn must_wait(&self, tag: u8, frame: Option<&[u8]>, server: &ServerStatements) -> bool {
        if self.replies.is_empty() && self.names.sql_pending.is_empty() {
            return false;
        }
        let body = frame.map(protocol::body).unwrap_or_default();
        // The statement's name, as bytes: the unnamed one (most Parses, Binds and
        // Describes name it) is never mapped, so it is settled without a UTF-8 check.
        let name = match tag {
            fe::PARSE => protocol::cstr_bytes(body).map(|(n, _)| n),
            fe::BIND => protocol::cstr_bytes(body)
                .and_then(|(_, rest)| protocol::cstr_bytes(rest))
                .map(|(n, _)| n),
            _ => body
                .split_first()
                .filter(|(kind, _)| **kind == b'S')
                .and_then(|(_, rest)| protocol::cstr_bytes(rest))
                .map(|(n, _)| n),
        };
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return false;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return false;
        };
        if tag == fe::PARSE {
            // Its text's statement is not looked up yet: any doubt counts.
            self.any_unsettled()
        } else {
            self.unsettled(name, server)
        }
    }

    /// Whether the client's statement `name` must wait for the answers to earlier units:
    /// they may take back what is recorded for it, or it must be prepared on `server`
    /// while they may take back anything (false for a name the client has not prepared:
    /// that is passed on as it is).
    pub fn unsettled(&self, name: &str, server: &ServerStatements) -> bool {
        // The unnamed statement is never a mapped one (most Binds and Describes name it).
        if name.is_empty() {
            return false;
        }
        let Some(stmt) = self.names.stmts.get(name) else {
            return false;
        };
        self.replies.unsettled(name, Some(stmt.id))
            || self
                .names
                .sql_pending
                .iter()
                .any(|(s, _, _)| s.id == stmt.id)
            || (!server.contains(stmt.id) && self.any_unsettled())
    }

    /// Whether the answers to earlier units may still take back anything recorded: a
    /// skipped Parse or Close, or a failed SQL `PREPARE`.
    pub fn any_unsettled(&self) -> bool {
        !self.names.sql_pending.is_empty() || self.replies.unsettled("", None)
    }

    /// Without a server: a named Parse of a statement some server already accepted,
    /// followed by Sync or Flush, is answered here. This is the cache hit that costs no
    /// round trip, and it keeps a client that prepares synchronously between transactions
    /// (pgbench -M prepared, many drivers) from waiting for a server just to be told
    /// "ParseComplete". Returns the bytes consumed from `buf`, or `None` to go the normal
    /// way.
    pub fn local_parse(
        &mut self,
        cout: &mut OutQueue,
        status: u8,
        buf: &[u8],
        parse_len: usize,
    ) -> Option<usize> {
        let body = protocol::body(buf.get(..parse_len)?);
        // Most Parses are of the unnamed statement: not looked at further.
        if body.first().is_none_or(|&c| c == 0) {
            return None;
        }
        let (name, key) = protocol::cstr(body)?;
        let next = buf.get(parse_len..parse_len + protocol::HEADER_LEN)?;
        if self.names.stmts.contains_key(name)
            || next != [fe::SYNC, 0, 0, 0, 4] && next != [fe::FLUSH, 0, 0, 0, 4]
        {
            return None;
        }
        let stmt = self.registry.intern(key);
        if !stmt.validated.load(Ordering::Relaxed) {
            return None;
        }
        stmt.client_prepares.fetch_add(1, Ordering::Relaxed);
        stmt.local_answers.fetch_add(1, Ordering::Relaxed);
        self.names.stmts.insert(name.to_string(), stmt);
        self.registry.local_parses.fetch_add(1, Ordering::Relaxed);
        cout.push(Bytes::from_static(PARSE_COMPLETE));
        if next.first() == Some(&fe::SYNC) {
            let mut z = BytesMut::with_capacity(6);
            crate::protocol::build::ready_for_query(&mut z, status);
            cout.push(z.freeze());
        }
        Some(parse_len + protocol::HEADER_LEN)
    }
}
