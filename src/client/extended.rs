//! Named prepared statements in transaction and statement mode: the client-side half.
//!
//! The client's statement names are mapped to pooler-wide server-side names (see
//! [`crate::prepare`]). Parse, Bind, Describe and Close naming a statement are rewritten;
//! a Parse the current server has already seen is answered by pgsluice itself; a statement
//! the server lacks is prepared there first, its ParseComplete hidden.
//!
//! To put synthesised answers in the right place and hide the right ones, every message
//! that the server answers gets an [`Expect`] entry, in order. Server messages complete
//! entries by tag; an ErrorResponse completes the current one and, like the server itself,
//! skips everything up to the next Sync.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

use super::outq::OutQueue;
use super::session::Session;
use crate::prepare::{self, SERVER_PREFIX, Statement};
use crate::protocol::{self, be, fe};

const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";

/// Which server message ends the answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Done {
    Parse,
    Bind,
    Close,
    Describe,
    Execute,
    /// Sync, Query and FunctionCall end with ReadyForQuery.
    Ready,
}

impl Done {
    fn for_tag(tag: u8) -> Option<Done> {
        Some(match tag {
            fe::PARSE => Done::Parse,
            fe::BIND => Done::Bind,
            fe::CLOSE => Done::Close,
            fe::DESCRIBE => Done::Describe,
            fe::EXECUTE => Done::Execute,
            fe::SYNC | fe::QUERY | fe::FUNCTION_CALL => Done::Ready,
            _ => return None,
        })
    }

    fn completed_by(self, tag: u8) -> bool {
        match self {
            Done::Parse => tag == b'1',
            Done::Bind => tag == b'2',
            Done::Close => tag == b'3',
            Done::Describe => tag == b'T' || tag == b'n',
            Done::Execute => matches!(tag, b'C' | b'I' | b's'),
            Done::Ready => tag == be::READY_FOR_QUERY,
        }
    }
}

/// What to do with the answer to one request.
#[derive(Debug)]
pub(super) enum Act {
    /// The client's own request: pass the answer on.
    Forward,
    /// The client's named Parse, sent to the server: on failure the name is forgotten.
    ForwardParse { stmt: Arc<Statement>, name: String },
    /// Answered by pgsluice: send this message when its turn comes. If an earlier error
    /// makes the server skip it, the client's names are put back as they were.
    Synth(&'static [u8], Undo),
    /// pgsluice's own Parse before a Bind or Describe: hide the ParseComplete.
    Hidden { stmt: Arc<Statement> },
    /// pgsluice's own Close of an evicted statement: hide the CloseComplete.
    Evict { id: u64 },
}

/// How to take back a synthesised answer the server would never have given.
#[derive(Debug)]
pub(super) enum Undo {
    /// A Parse mapped this name: forget it (if still mapped to this statement).
    Forget(String, u64),
    /// A Close removed this name: map it again.
    Restore(String, Arc<Statement>),
}

#[derive(Debug)]
pub(super) struct Expect {
    pub done: Done,
    pub act: Act,
}

/// What a server message means for the entries.
pub(super) enum Verdict {
    /// Not the end of anything we track: forward.
    Pass,
    /// Forward it.
    Forward,
    /// Hide it from the client.
    Swallow,
}

/// Per-session state of the mapping.
#[derive(Debug, Default)]
pub(super) struct Extended {
    /// Client statement name → statement.
    pub stmts: std::collections::HashMap<String, Arc<Statement>>,
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
    fn prepare_on_server(&mut self, stmt: &Statement, act: Act) {
        self.shared
            .statements
            .server_parses
            .fetch_add(1, Ordering::Relaxed);
        self.make_room(stmt.id);
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

    /// Answers the client with `msg` once everything before it has been answered.
    fn synthesize(&mut self, msg: &'static [u8], undo: Undo) {
        if self.ext.expect.is_empty() {
            self.cout.push(Bytes::from_static(msg));
        } else {
            self.ext.expect.push_back(Expect {
                done: Done::Parse,
                act: Act::Synth(msg, undo),
            });
        }
    }

    pub(super) fn front_is_synth(&self) -> bool {
        matches!(
            self.ext.expect.front(),
            Some(Expect {
                act: Act::Synth(..),
                ..
            })
        )
    }

    /// Whether a server message with `tag` ends (or fails) the request at the head.
    pub(super) fn completes_front(&self, tag: u8) -> bool {
        self.ext.expect.front().is_some_and(|f| {
            (tag == be::ERROR_RESPONSE && f.done != Done::Ready) || f.done.completed_by(tag)
        })
    }

    /// Sends every synthesised answer now at the head of the queue.
    pub(super) fn emit_synths(&mut self) {
        while let Some(Expect {
            act: Act::Synth(msg, _),
            ..
        }) = self.ext.expect.front()
        {
            self.cout.push(Bytes::from_static(msg));
            self.ext.expect.pop_front();
        }
    }

    /// Decides what a server message with `tag` means for the entries.
    pub(super) fn expected_server_frame(&mut self, tag: u8) -> Verdict {
        let Some(front) = self.ext.expect.front() else {
            return Verdict::Pass;
        };
        let error = tag == be::ERROR_RESPONSE && front.done != Done::Ready;
        if !error && !front.done.completed_by(tag) {
            return Verdict::Pass;
        }
        let Some(entry) = self.ext.expect.pop_front() else {
            return Verdict::Pass;
        };
        let verdict = match entry.act {
            Act::Hidden { stmt } if error => {
                self.forget_on_server(stmt.id);
                Verdict::Forward
            }
            Act::ForwardParse { stmt, name } if error => {
                self.forget_parse(stmt.id, &name);
                Verdict::Forward
            }
            Act::Evict { id } if error => {
                if let Some(s) = &mut self.server {
                    s.statements.insert(id);
                }
                Verdict::Forward
            }
            Act::Hidden { stmt } => {
                stmt.validated.store(true, Ordering::Relaxed);
                Verdict::Swallow
            }
            Act::ForwardParse { stmt, .. } => {
                stmt.validated.store(true, Ordering::Relaxed);
                Verdict::Forward
            }
            Act::Evict { .. } => Verdict::Swallow,
            Act::Forward | Act::Synth(..) => Verdict::Forward,
        };
        if error {
            self.skip_to_sync();
        }
        verdict
    }

    /// After an error the server ignores everything up to Sync: so do the entries.
    fn skip_to_sync(&mut self) {
        while let Some(front) = self.ext.expect.front() {
            if front.done == Done::Ready {
                // The client's Sync is already on its way: the server stops skipping there.
                return;
            }
            let Some(entry) = self.ext.expect.pop_front() else {
                return;
            };
            match entry.act {
                Act::Hidden { stmt } => self.forget_on_server(stmt.id),
                Act::ForwardParse { stmt, name } => self.forget_parse(stmt.id, &name),
                Act::Evict { id } => {
                    if let Some(s) = &mut self.server {
                        s.statements.insert(id);
                    }
                }
                Act::Synth(_, Undo::Forget(name, id)) => {
                    if self.ext.stmts.get(&name).is_some_and(|s| s.id == id) {
                        self.ext.stmts.remove(&name);
                    }
                }
                Act::Synth(_, Undo::Restore(name, stmt)) => {
                    self.ext.stmts.insert(name, stmt);
                }
                Act::Forward => {}
            }
        }
        // Messages the client sends before its Sync are ignored by the server too.
        self.ext.skipping = true;
    }

    fn forget_on_server(&mut self, id: u64) {
        if let Some(s) = &mut self.server {
            s.statements.remove(id);
        }
    }

    /// A named Parse failed: the server has no such statement and the client's name
    /// refers to nothing, as on PostgreSQL.
    fn forget_parse(&mut self, id: u64, name: &str) {
        self.forget_on_server(id);
        if self.ext.stmts.get(name).is_some_and(|s| s.id == id) {
            self.ext.stmts.remove(name);
        }
    }

    /// DISCARD ALL or DEALLOCATE ALL ran on the server: it has no statements left, and the
    /// client none of its names.
    pub(super) fn forget_all_statements(&mut self) {
        self.ext.stmts.clear();
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
