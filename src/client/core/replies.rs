//! The ordered record of what the server owes the client, for the statement mapping.
//!
//! Every request the server will answer gets an [`Expect`] entry, in order. Server messages
//! complete entries by tag; pgsluice's own replies wait in the queue for their turn, its
//! hidden requests' replies are swallowed, and an ErrorResponse skips to the next Sync as
//! the server does, taking back what pgsluice had answered for skipped messages.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::statements::Names;
use crate::client::outq::OutQueue;
use crate::prepare::Statement;
use crate::protocol::{be, fe};
use crate::server::ServerStatements;

pub const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
pub const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";

/// Which server message ends the answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    Parse,
    Bind,
    Close,
    Describe,
    Execute,
    /// Sync, Query and FunctionCall end with ReadyForQuery.
    Ready,
}

impl Done {
    pub fn for_tag(tag: u8) -> Option<Done> {
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
pub enum Act {
    /// The client's own request: pass the answer on.
    Forward,
    /// The client's request, rewritten to name a server-side statement: an error in its
    /// answer names the client's statement and points into the client's text.
    Translated(Box<Translation>),
    /// The client's named Parse, sent to the server: on failure the name is forgotten.
    ForwardParse { stmt: Arc<Statement>, name: String },
    /// Answered by pgsluice: send this message when its turn comes. If an earlier error
    /// makes the server skip it, the client's names are put back as they were.
    Synth(&'static [u8], Undo),
    /// pgsluice's own Parse before a Bind or Describe: hide the ParseComplete.
    Hidden { stmt: Arc<Statement> },
    /// pgsluice's own Parse of the client's unnamed statement, re-sent on a server that
    /// lacks it: hide the ParseComplete (an error goes to the client, as the Parse's would).
    HiddenUnnamed,
    /// pgsluice's own Close of an evicted statement: hide the CloseComplete.
    Evict { id: u64 },
    /// pgsluice's own Query (an SQL-level `PREPARE` before the client's `EXECUTE`, say)
    /// or Parse + Sync: hide everything up to its ReadyForQuery. `confirmed`: the server
    /// said it prepared `stmt` (a server skipping to a Sync answers a skipped Parse with
    /// nothing at all).
    HiddenQuery {
        stmt: Option<Arc<Statement>>,
        confirmed: bool,
    },
    /// The client's `DEALLOCATE name` of a protocol-level statement, rewritten to its
    /// server-side name (the client's name already forgotten): the server's record
    /// forgets the statement once the Query succeeded; if it failed (an aborted
    /// transaction, say), both are as before, as on PostgreSQL.
    Deallocate {
        stmt: Arc<Statement>,
        name: String,
        failed: bool,
    },
}

/// How an error in the answer to a rewritten request is put back in the client's terms.
#[derive(Debug)]
pub struct Translation {
    /// The server-side statement name pgsluice put in the text.
    pub server_name: String,
    /// The client's own name for it.
    pub client_name: String,
    /// Characters the rewrite added before the rest of the text (negative: removed),
    /// and where in the client's text (characters, 1-based) that difference starts.
    pub shift: i64,
    pub after: i64,
    /// Characters before the client's name in its text.
    pub name_start: i64,
}

/// How to take back a synthesised answer the server would never have given.
#[derive(Debug)]
pub enum Undo {
    /// A Parse mapped this name: forget it (if still mapped to this statement).
    Forget(String, u64),
    /// A Close removed this name: map it again.
    Restore(String, Arc<Statement>),
}

/// One expected answer. A plain [`Act::Forward`] (almost every entry) is `None`, so an
/// entry is two words, pushed and popped without drop glue; the rest are boxed.
#[derive(Debug)]
struct Expect {
    done: Done,
    act: Option<Box<Act>>,
}

impl Expect {
    fn new(done: Done, act: Act) -> Expect {
        let act = match act {
            Act::Forward => None,
            other => Some(Box::new(other)),
        };
        Expect { done, act }
    }

    fn act(&self) -> Option<&Act> {
        self.act.as_deref()
    }
}

/// What a server message means for the entries.
pub enum Verdict {
    /// Not the end of anything tracked: forward.
    Pass,
    /// Forward it.
    Forward,
    /// Forward it rewritten (an error translated back to the client's names).
    Rewrite(Bytes),
    /// Hide it from the client.
    Swallow,
}

/// An empty ring of expected answers, kept while its session is idle (see `spare.rs`).
#[derive(Debug, Default)]
pub struct Ring(VecDeque<Expect>);

/// The queue of expected answers.
#[derive(Debug, Default)]
pub struct Replies {
    expect: VecDeque<Expect>,
    /// The server reported an error and ignores messages until the next Sync.
    pub skipping: bool,
}

impl Replies {
    pub fn is_empty(&self) -> bool {
        self.expect.is_empty()
    }

    /// Takes the ring when nothing is expected (an idle client keeps none), for reuse
    /// ([`Replies::lend_ring`]).
    pub fn take_ring(&mut self) -> Ring {
        Ring(if self.expect.is_empty() {
            std::mem::take(&mut self.expect)
        } else {
            VecDeque::new()
        })
    }

    /// Gives a queue without a ring an empty one to fill.
    pub fn lend_ring(&mut self, ring: Ring) {
        if self.expect.capacity() == 0 && ring.0.is_empty() {
            // Nothing to drop in the ring replaced (no allocation, no element).
            std::mem::forget(std::mem::replace(&mut self.expect, ring.0));
        }
    }

    pub fn clear(&mut self) {
        self.expect.clear();
        self.skipping = false;
    }

    /// Records that a forwarded message will be answered (none while the server skips).
    pub fn expect(&mut self, tag: u8, act: Act) {
        if let Some(done) = self.answered(tag) {
            self.expect.push_back(Expect::new(done, act));
        }
    }

    /// [`Replies::expect`] of the client's own request, passed on as it is (most frames):
    /// no [`Act`] is made, moved or dropped.
    #[inline]
    pub fn expect_forward(&mut self, tag: u8) {
        if let Some(done) = self.answered(tag) {
            self.expect.push_back(Expect { done, act: None });
        }
    }

    /// What ends the answer to a message with `tag`, if one will come and be tracked.
    #[inline]
    fn answered(&mut self, tag: u8) -> Option<Done> {
        let done = Done::for_tag(tag)?;
        if done == Done::Ready {
            self.skipping = false;
        } else if self.skipping {
            return None;
        }
        Some(done)
    }

    /// Records pgsluice's own re-sent Parse of the client's unnamed statement.
    pub fn expect_hidden_unnamed(&mut self) {
        if !self.skipping {
            self.expect
                .push_back(Expect::new(Done::Parse, Act::HiddenUnnamed));
        }
    }

    /// Records pgsluice's own Query whose whole answer is hidden.
    pub fn expect_hidden_query(&mut self, stmt: Option<Arc<Statement>>) {
        self.expect.push_back(Expect::new(
            Done::Ready,
            Act::HiddenQuery {
                stmt,
                confirmed: false,
            },
        ));
    }

    /// Answers the client with `msg` once everything before it has been answered.
    pub fn synthesize(&mut self, cout: &mut OutQueue, msg: &'static [u8], undo: Undo) {
        if self.expect.is_empty() {
            cout.push(Bytes::from_static(msg));
        } else {
            self.expect
                .push_back(Expect::new(Done::Parse, Act::Synth(msg, undo)));
        }
    }

    pub fn front_is_synth(&self) -> bool {
        matches!(
            self.expect.front().and_then(Expect::act),
            Some(Act::Synth(..))
        )
    }

    pub fn front_is_hidden_query(&self) -> bool {
        matches!(
            self.expect.front().and_then(Expect::act),
            Some(Act::HiddenQuery { .. })
        )
    }

    /// Whether the head is the client's rewritten request (its errors are translated).
    pub fn front_translates(&self) -> bool {
        matches!(
            self.expect.front().and_then(Expect::act),
            Some(Act::Translated(_))
        )
    }

    /// Whether a server message with `tag` ends (or fails) the request at the head.
    pub fn completes_front(&self, tag: u8) -> bool {
        self.expect.front().is_some_and(|f| {
            (tag == be::ERROR_RESPONSE
                && (f.done != Done::Ready || matches!(f.act(), Some(Act::Deallocate { .. }))))
                || f.done.completed_by(tag)
        })
    }

    /// Whether an answer still due for an earlier unit (one whose Sync or Query was sent)
    /// may take back what is recorded for the client's statement `name` or the statement
    /// `id`: an error there makes the server skip that unit's Parse or Close, and
    /// [`Replies::skip_to_sync`] undoes it in the record. (Within one unit there is no
    /// such doubt: an error skips the rest of it too.) `id` `None`: any statement.
    pub fn unsettled(&self, name: &str, id: Option<u64>) -> bool {
        let Some(last_unit) = self.expect.iter().rposition(|e| e.done == Done::Ready) else {
            return false;
        };
        // A unit's own end counts too: a `DEALLOCATE` Query is a whole unit.
        let last_unit = last_unit + 1;
        let same = |i: u64| id.is_none_or(|id| id == i);
        let about = |n: &str, i: u64| n == name || same(i);
        self.expect.iter().take(last_unit).any(|e| match e.act() {
            Some(Act::ForwardParse { stmt, name }) => about(name, stmt.id),
            Some(Act::Synth(_, Undo::Forget(name, i))) => about(name, *i),
            Some(Act::Synth(_, Undo::Restore(name, stmt))) => about(name, stmt.id),
            Some(Act::Hidden { stmt }) => same(stmt.id),
            Some(Act::Evict { id: i }) => same(*i),
            Some(Act::Deallocate { stmt, name, .. }) => about(name, stmt.id),
            // pgsluice's own `PREPARE` (or Parse + Sync): if it fails, the statement is
            // not there after all.
            Some(Act::HiddenQuery {
                stmt: Some(stmt), ..
            }) => same(stmt.id),
            None
            | Some(
                Act::Forward
                | Act::Translated(_)
                | Act::HiddenUnnamed
                | Act::HiddenQuery { stmt: None, .. },
            ) => false,
        })
    }

    /// Sends every synthesised answer now at the head of the queue.
    pub fn emit_synths(&mut self, cout: &mut OutQueue) {
        while let Some(Act::Synth(msg, _)) = self.expect.front().and_then(Expect::act) {
            cout.push(Bytes::from_static(msg));
            self.expect.pop_front();
        }
    }

    /// One message of a hidden Query's answer: an error means the statement is not
    /// there; ReadyForQuery ends it.
    pub fn hidden_query_frame(&mut self, tag: u8, server: &mut ServerStatements) {
        let Some(Act::HiddenQuery { stmt, confirmed }) =
            self.expect.front_mut().and_then(|e| e.act.as_deref_mut())
        else {
            return;
        };
        match (tag, stmt) {
            (be::ERROR_RESPONSE, Some(stmt)) => server.remove(stmt.id),
            (be::PARSE_COMPLETE | be::COMMAND_COMPLETE, _) => *confirmed = true,
            (be::READY_FOR_QUERY, stmt) => {
                if let Some(stmt) = stmt {
                    if !*confirmed {
                        // Skipped: not prepared there after all.
                        server.remove(stmt.id);
                    } else if server.contains(stmt.id) {
                        stmt.validated.store(true, Ordering::Relaxed);
                    }
                }
                self.expect.pop_front();
            }
            _ => {}
        }
    }

    /// An ErrorResponse inside the answer to the client's rewritten request: the same
    /// error in the client's terms.
    pub fn translate_error(&self, frame: &[u8]) -> Option<Bytes> {
        let Some(Act::Translated(t)) = self.expect.front().and_then(Expect::act) else {
            return None;
        };
        super::translate::error(frame, t)
    }

    /// Decides what a server message with `tag` means for the entries.
    pub fn on_server_frame(
        &mut self,
        tag: u8,
        names: &mut Names,
        server: &mut ServerStatements,
    ) -> Verdict {
        let Some(front) = self.expect.front() else {
            return Verdict::Pass;
        };
        let error = tag == be::ERROR_RESPONSE && front.done != Done::Ready;
        if !error && !front.done.completed_by(tag) {
            if tag == be::ERROR_RESPONSE
                && let Some(Act::Deallocate { failed, .. }) =
                    self.expect.front_mut().and_then(|e| e.act.as_deref_mut())
            {
                *failed = true;
            }
            return Verdict::Pass;
        }
        let Some(entry) = self.expect.pop_front() else {
            return Verdict::Pass;
        };
        if error {
            // The messages after it are undone first: it came before them.
            self.skip_to_sync(names, server);
        }
        let Some(act) = entry.act else {
            // A plain forward.
            return Verdict::Forward;
        };
        match *act {
            Act::Hidden { stmt } if error => {
                server.remove(stmt.id);
                Verdict::Forward
            }
            Act::ForwardParse { stmt, name } if error => {
                names.forget_parse(stmt.id, &name, server);
                Verdict::Forward
            }
            Act::Evict { id } if error => {
                server.insert(id);
                Verdict::Forward
            }
            Act::Hidden { stmt } => {
                stmt.validated.store(true, Ordering::Relaxed);
                Verdict::Swallow
            }
            Act::HiddenUnnamed if error => Verdict::Forward,
            Act::HiddenUnnamed => Verdict::Swallow,
            Act::ForwardParse { stmt, .. } => {
                stmt.validated.store(true, Ordering::Relaxed);
                Verdict::Forward
            }
            Act::Evict { .. } | Act::HiddenQuery { .. } => Verdict::Swallow,
            Act::Deallocate { stmt, name, failed } => {
                if !failed {
                    server.remove(stmt.id);
                } else if !names.stmts.contains_key(&name) {
                    names.restore(name, stmt);
                }
                Verdict::Forward
            }
            Act::Forward | Act::Synth(..) | Act::Translated(_) => Verdict::Forward,
        }
    }

    /// After an error the server ignores everything up to Sync: so do the entries. What
    /// the skipped messages did to the record is undone last first, so that a statement
    /// a skipped Close made room for and a skipped Parse then took ends as it was.
    fn skip_to_sync(&mut self, names: &mut Names, server: &mut ServerStatements) {
        // The client's Sync may be on its way already: the server stops skipping there.
        let skipped = match self.expect.iter().position(|e| e.done == Done::Ready) {
            Some(sync) => sync,
            None => self.expect.len(),
        };
        let skipped: Vec<Expect> = self.expect.drain(..skipped).collect();
        for entry in skipped.into_iter().rev() {
            let Some(act) = entry.act else {
                continue;
            };
            match *act {
                Act::Hidden { stmt }
                | Act::HiddenQuery {
                    stmt: Some(stmt), ..
                } => server.remove(stmt.id),
                Act::ForwardParse { stmt, name } => names.forget_parse(stmt.id, &name, server),
                Act::Evict { id } => server.insert(id),
                Act::Synth(_, Undo::Forget(name, id)) => names.forget_if(&name, id),
                Act::Synth(_, Undo::Restore(name, stmt)) => names.restore(name, stmt),
                Act::Forward
                | Act::Translated(_)
                | Act::HiddenUnnamed
                | Act::HiddenQuery { stmt: None, .. }
                | Act::Deallocate { .. } => {}
            }
        }
        if self.expect.is_empty() {
            // Messages the client sends before its Sync are ignored by the server too.
            self.skipping = true;
        }
    }
}
