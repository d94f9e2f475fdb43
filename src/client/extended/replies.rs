//! The ordered record of what the server owes the client, for the statement mapping.
//!
//! Every request the server will answer gets an [`Expect`] entry, in order. Server messages
//! complete entries by tag; pgsluice's own replies wait in the queue for their turn, its
//! hidden requests' replies are swallowed, and an ErrorResponse skips to the next Sync as
//! the server does, taking back what pgsluice had answered for skipped messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::super::session::Session;
use crate::prepare::Statement;
use crate::protocol::{be, fe};

pub(in crate::client) const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
pub(in crate::client) const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";

/// Which server message ends the answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::client) enum Done {
    Parse,
    Bind,
    Close,
    Describe,
    Execute,
    /// Sync, Query and FunctionCall end with ReadyForQuery.
    Ready,
}

impl Done {
    pub(in crate::client) fn for_tag(tag: u8) -> Option<Done> {
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
pub(in crate::client) enum Act {
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
    /// pgsluice's own `PREPARE` Query of an SQL-level statement before the client's
    /// `EXECUTE`: hide everything up to its ReadyForQuery.
    HiddenQuery { stmt: Arc<Statement> },
}

/// How to take back a synthesised answer the server would never have given.
#[derive(Debug)]
pub(in crate::client) enum Undo {
    /// A Parse mapped this name: forget it (if still mapped to this statement).
    Forget(String, u64),
    /// A Close removed this name: map it again.
    Restore(String, Arc<Statement>),
}

#[derive(Debug)]
pub(in crate::client) struct Expect {
    pub done: Done,
    pub act: Act,
}

/// What a server message means for the entries.
pub(in crate::client) enum Verdict {
    /// Not the end of anything we track: forward.
    Pass,
    /// Forward it.
    Forward,
    /// Hide it from the client.
    Swallow,
}

impl Session {
    /// Answers the client with `msg` once everything before it has been answered.
    pub(in crate::client) fn synthesize(&mut self, msg: &'static [u8], undo: Undo) {
        if self.ext.expect.is_empty() {
            self.cout.push(Bytes::from_static(msg));
        } else {
            self.ext.expect.push_back(Expect {
                done: Done::Parse,
                act: Act::Synth(msg, undo),
            });
        }
    }

    pub(in crate::client) fn front_is_synth(&self) -> bool {
        matches!(
            self.ext.expect.front(),
            Some(Expect {
                act: Act::Synth(..),
                ..
            })
        )
    }

    /// Whether a server message with `tag` ends (or fails) the request at the head.
    pub(in crate::client) fn completes_front(&self, tag: u8) -> bool {
        self.ext.expect.front().is_some_and(|f| {
            (tag == be::ERROR_RESPONSE && f.done != Done::Ready) || f.done.completed_by(tag)
        })
    }

    /// Sends every synthesised answer now at the head of the queue.
    pub(in crate::client) fn emit_synths(&mut self) {
        while let Some(Expect {
            act: Act::Synth(msg, _),
            ..
        }) = self.ext.expect.front()
        {
            self.cout.push(Bytes::from_static(msg));
            self.ext.expect.pop_front();
        }
    }

    /// Whether the head of the queue is a hidden Query, all of whose answer is hidden.
    pub(in crate::client) fn front_is_hidden_query(&self) -> bool {
        matches!(
            self.ext.expect.front(),
            Some(Expect {
                act: Act::HiddenQuery { .. },
                ..
            })
        )
    }

    /// One message of a hidden Query's answer: an error means the statement is not
    /// there; ReadyForQuery ends it.
    pub(in crate::client) fn hidden_query_frame(&mut self, tag: u8) {
        let Some(Expect {
            act: Act::HiddenQuery { stmt },
            ..
        }) = self.ext.expect.front()
        else {
            return;
        };
        let id = stmt.id;
        match tag {
            be::ERROR_RESPONSE => self.forget_on_server(id),
            be::READY_FOR_QUERY => {
                if let Some(Expect {
                    act: Act::HiddenQuery { stmt },
                    ..
                }) = self.ext.expect.pop_front()
                    && self
                        .server
                        .as_ref()
                        .is_some_and(|s| s.statements.contains(stmt.id))
                {
                    stmt.validated.store(true, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    /// Decides what a server message with `tag` means for the entries.
    pub(in crate::client) fn expected_server_frame(&mut self, tag: u8) -> Verdict {
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
            Act::HiddenQuery { .. } => Verdict::Swallow,
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
                Act::HiddenQuery { stmt } => self.forget_on_server(stmt.id),
                Act::Forward => {}
            }
        }
        // Messages the client sends before its Sync are ignored by the server too.
        self.ext.skipping = true;
    }

    pub(in crate::client) fn forget_on_server(&mut self, id: u64) {
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
}
