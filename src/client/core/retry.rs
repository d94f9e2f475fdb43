//! Self-healing reads: a unit of work sent to a replica as a transaction of its own — one
//! simple Query, or extended-protocol messages (Parse, Bind, Describe, Execute, Close)
//! up to Sync — is kept until the replica's answer shows it ran there. Until then everything
//! the session would send the client is held back ([`OutQueue::hold`]), whichever
//! policy produced it (the replica's ParseComplete, BindComplete and RowDescription, the
//! ParseComplete pgsluice answers itself for a statement the server already has). If the
//! replica refuses the unit as a write (SQLSTATE 25006) or is lost before a row or a
//! completion reached the client, the held output is dropped and the unit goes again:
//! after a refusal to the primary, after a loss to another node. The client sees one
//! answer, as if the first attempt had never been. The answer itself (rows, command tags)
//! is held too, whole up to [`MAX_HELD_ANSWER`], so that a replica lost while sending it
//! leaves the read free to go again; a larger answer streams from the row past that.
//!
//! Prepared statements replay with the unit: with statement mapping (transaction and
//! statement mode) the next server gets each statement the unit binds prepared first, as
//! any server would; names the unit's own Parses defined are forgotten first so that the
//! Parses go again. A unit that binds a statement the session prepared on the lost server
//! itself (no mapping) is not armed: another server would not know the name. A Close
//! goes again as it is (pgsluice answers a mapped one itself; a server closing what it
//! lacks answers as if it had had it).
//!
//! Whole read units the client pipelines behind a kept one, to the same server, are kept
//! behind it ([`Retry::behind`]); each is kept in its turn once the answer before it ended
//! with the server idle. A frame that cannot be kept (COPY data, a frame pgsluice rewrote
//! or answers through its own statement) ends the chance of every unit kept.
//!
//! [`OutQueue::hold`]: crate::client::outq::OutQueue::hold

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Core, Release};
use crate::config::PoolMode;
use crate::protocol::{self, be, fe};
use crate::router::route::unit_len;
use crate::server::CloseReason;

/// A unit larger than this is not kept for a replay.
pub(super) const MAX_UNIT: usize = 64 * 1024;

/// A read's answer up to this size is held whole until its ReadyForQuery. A replica that
/// stops in the middle of a statement flushes what it has (rows included) with its
/// "terminating connection" warning before it closes: rows forwarded as they came would
/// make a read that lost its replica unable to go elsewhere. A larger answer streams from
/// the row that passes this (and can then no longer be replayed).
pub(super) const MAX_HELD_ANSWER: usize = 64 * 1024;

/// A read that can still be sent elsewhere.
#[derive(Debug, Default)]
pub struct Retry {
    /// The client's unit, as the client sent it, followed by the units pipelined behind
    /// it (`behind`).
    pub unit: Bytes,
    /// Bytes of the last unit that have not yet gone past the policies (its own later
    /// frames do not end the chance; anything after them starts a unit behind or ends it).
    pub left: usize,
    /// Names the unit's Parses defined: forgotten before a replay.
    pub parsed: Vec<String>,
    /// Whole read units the client pipelined behind this one, to the same server: each is
    /// kept in turn when the one before it is answered.
    pub behind: Vec<Behind>,
    /// A row or an error of the unit reached the client: it cannot go again, but the
    /// units behind it still may.
    pub spent: bool,
    /// A 25006 refusal is retried on the primary (not on a read-only endpoint, where the
    /// refusal is the answer).
    pub on_refusal: bool,
    /// The unit uses the extended protocol.
    pub extended: bool,
    /// The replica refused (or a probe sent ahead missed, `ryw.rs`); its messages up to
    /// ReadyForQuery are dropped.
    pub discarding: bool,
    /// An ErrorResponse was among the dropped messages.
    pub dropped_error: bool,
    /// Bytes of the unit's answer (rows, command tags) held so far.
    pub answer: usize,
}

/// A unit pipelined behind the one a [`Retry`] keeps.
#[derive(Debug, Default)]
pub struct Behind {
    /// Its length, at the end of [`Retry::unit`].
    pub len: usize,
    /// Names its Parses defined.
    pub parsed: Vec<String>,
}

/// What [`Retry::step`] makes of a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The read can no longer be retried: release what was held, then handle this
    /// message as usual.
    Disarm,
    /// Handle it as usual; the client's output stays held.
    Keep,
    /// Drop it (the answer of a refused unit).
    Drop,
    /// The replica refused the read, and its answer is over: retry on the primary.
    Retry,
    /// The whole message is needed to decide.
    NeedWhole,
}

impl Retry {
    /// Whether the read may still go elsewhere: nothing of its answer reached the client.
    pub fn possible(&self) -> bool {
        !self.discarding && !self.spent && !self.unit.is_empty()
    }

    /// The unit's answer is over: the first unit behind it is kept in its place.
    fn next_unit(&mut self) {
        let next = self.behind.remove(0);
        let rest: usize = self.behind.iter().map(|b| b.len).sum::<usize>() + next.len;
        self.unit = self.unit.slice(self.unit.len().saturating_sub(rest)..);
        self.parsed = next.parsed;
        self.spent = false;
        self.answer = 0;
    }

    /// Looks at one server message of the read's answer, `len` bytes long; `frame` is the
    /// whole message, or `None` when only its header has arrived.
    pub fn step(&mut self, tag: u8, len: usize, frame: Option<&[u8]>) -> Step {
        if self.discarding {
            self.dropped_error |= tag == be::ERROR_RESPONSE;
            return if tag == be::READY_FOR_QUERY {
                Step::Retry
            } else {
                Step::Drop
            };
        }
        if self.spent {
            // The answer goes on to the client; the next unit is kept at its end.
            return Step::Keep;
        }
        match tag {
            // What comes before a statement runs (or before its first row).
            be::ROW_DESCRIPTION
            | be::NOTICE_RESPONSE
            | be::PARSE_COMPLETE
            | be::BIND_COMPLETE
            | be::PARAMETER_DESCRIPTION
            | be::NO_DATA
            | be::PARAMETER_STATUS => Step::Keep,
            // The answer itself, held whole while it is small (see `MAX_HELD_ANSWER`;
            // with units behind, each answer goes on as it comes, as before).
            be::DATA_ROW
            | be::COMMAND_COMPLETE
            | be::EMPTY_QUERY_RESPONSE
            | be::PORTAL_SUSPENDED
                if self.behind.is_empty() && self.answer + len <= MAX_HELD_ANSWER =>
            {
                self.answer += len;
                Step::Keep
            }
            // The units behind are kept from the end of this one's answer.
            be::READY_FOR_QUERY if !self.behind.is_empty() => Step::Keep,
            // (Units behind would have to go to the primary too: a refusal is the answer.)
            be::ERROR_RESPONSE if self.on_refusal && self.behind.is_empty() => {
                let Some(frame) = frame else {
                    return Step::NeedWhole;
                };
                if protocol::error_fields(protocol::body(frame)).code != "25006" {
                    return Step::Disarm;
                }
                self.discarding = true;
                Step::Drop
            }
            _ => Step::Disarm,
        }
    }
}

/// Whether every named statement the unit binds was prepared in the unit itself.
pub(super) fn binds_own_statements(unit: &[u8]) -> bool {
    let mut parsed: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    while let Ok(Some(h)) = protocol::header(unit.get(pos..).unwrap_or_default(), usize::MAX) {
        let body = unit
            .get(pos + protocol::HEADER_LEN..pos + h.frame_len)
            .unwrap_or_default();
        match h.tag {
            fe::PARSE => {
                if let Some((name, _)) = protocol::cstr_bytes(body) {
                    parsed.push(name);
                }
            }
            fe::BIND => {
                let stmt = protocol::cstr_bytes(body)
                    .and_then(|(_, rest)| protocol::cstr_bytes(rest))
                    .map(|(n, _)| n);
                match stmt {
                    Some(n) if n.is_empty() || parsed.contains(&n) => {}
                    _ => return false,
                }
            }
            _ => {}
        }
        pos += h.frame_len;
    }
    true
}

/// The names of the unit's named Parses.
fn parse_names(unit: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut pos = 0;
    while let Ok(Some(h)) = protocol::header(unit.get(pos..).unwrap_or_default(), usize::MAX) {
        if h.tag == fe::PARSE
            && let Some((name, _)) = unit
                .get(pos + protocol::HEADER_LEN..pos + h.frame_len)
                .and_then(protocol::cstr)
            && !name.is_empty()
        {
            names.push(name.to_string());
        }
        pos += h.frame_len;
    }
    names
}

impl Core {
    /// A client frame of `len` bytes at `at` in the client buffer is about to go to the
    /// server. At the start of a read unit on a replica, keeps the unit for a replay and
    /// holds the client's output; a frame past the kept unit ends the chance.
    pub(super) fn arm_retry(&mut self, at: usize, len: usize) {
        if let Some(retry) = &mut self.retry {
            if retry.left >= len {
                retry.left -= len;
                return;
            }
            if !self.keep_behind(at, len) {
                self.disarm_retry();
            }
            return;
        }
        if !self.route.as_ref().is_some_and(|r| r.reading) {
            return;
        }
        let between = self.flow.outstanding == 0 && !self.flow.batch_open && self.status == b'I';
        if !between || self.limits.mode == PoolMode::Session || self.flow.c_pass > 0 {
            return;
        }
        let Some(retry) = self.new_retry(at) else {
            return;
        };
        self.retry = Some(Box::new(Retry {
            left: retry.left.saturating_sub(len),
            ..retry
        }));
        self.cout.hold();
    }

    /// A retry keeping the unit at `at` in the client buffer, none of it yet past the
    /// policies; `None` when it cannot be replayed.
    pub(super) fn new_retry(&self, at: usize) -> Option<Retry> {
        let route = self.route.as_ref()?;
        let rest = self.cin.get(at..).unwrap_or_default();
        let n = unit_len(rest, self.limits.max_message).filter(|n| *n <= MAX_UNIT)?;
        let unit = rest.get(..n)?;
        let extended = unit.first() != Some(&fe::QUERY);
        if extended && !self.limits.rewrite && !binds_own_statements(unit) {
            return None;
        }
        let parsed = if extended {
            let mut names = parse_names(unit);
            names.retain(|n| !self.map.names.stmts.contains_key(n));
            names
        } else {
            Vec::new()
        };
        Some(Retry {
            unit: Bytes::copy_from_slice(unit),
            left: n,
            parsed,
            on_refusal: route.retries_refusals(),
            extended,
            ..Retry::default()
        })
    }

    /// A frame past the kept units, at `at` in the client buffer, starts a unit pipelined
    /// behind them: kept too when it is whole and could be replayed (false: the chance
    /// ends).
    fn keep_behind(&mut self, at: usize, len: usize) -> bool {
        let Some(retry) = &self.retry else {
            return false;
        };
        let route = self.route.as_ref();
        if retry.left != 0
            || retry.discarding
            || self.flow.c_pass > 0
            || !route.is_some_and(|r| r.reading && r.ahead.is_none())
        {
            return false;
        }
        let Some(next) = self.new_retry(at) else {
            return false;
        };
        let Some(retry) = self.retry.as_mut() else {
            return false;
        };
        if retry.unit.len() + next.unit.len() > MAX_UNIT {
            return false;
        }
        let mut unit = BytesMut::with_capacity(retry.unit.len() + next.unit.len());
        unit.extend_from_slice(&retry.unit);
        unit.extend_from_slice(&next.unit);
        retry.unit = unit.freeze();
        retry.left = next.left.saturating_sub(len);
        retry.extended |= next.extended;
        retry.behind.push(Behind {
            len: next.unit.len(),
            parsed: next.parsed,
        });
        true
    }

    /// Whether a client frame of `len` bytes must wait because the replica refused the
    /// kept read and its answer is being dropped: the read goes again first (to the
    /// primary), and what the client sent after it follows it there.
    pub(super) fn refusal_holds(&self, len: usize) -> bool {
        self.retry
            .as_ref()
            .is_some_and(|r| r.discarding && r.left < len)
    }

    /// Stops watching for a retry, for every unit kept; the held output goes to the
    /// client.
    pub(super) fn disarm_retry(&mut self) {
        if self.retry.take().is_some() {
            self.cout.release_held();
        }
    }

    /// The kept unit's answer reached the client ([`Step::Disarm`]): its chance ends, and
    /// the held output goes to the client. Units pipelined behind it keep theirs.
    pub(super) fn kept_unit_answered(&mut self) {
        match &mut self.retry {
            Some(retry) if !retry.behind.is_empty() => retry.spent = true,
            Some(_) => self.retry = None,
            None => return,
        }
        self.cout.release_held();
    }

    /// A ReadyForQuery of the client's (its bytes counted in `*fwd`, `status` its
    /// transaction status) ended the kept unit's answer. With units pipelined behind it,
    /// that answer goes to the client and the next unit is kept, its answer held from
    /// here; unless the unit left a transaction open: the units behind run inside it and
    /// could not go elsewhere alone, so the chance ends.
    pub(super) fn next_kept_unit(&mut self, status: u8, fwd: &mut usize) {
        if !self
            .retry
            .as_ref()
            .is_some_and(|r| !r.behind.is_empty() && !r.discarding)
        {
            return;
        }
        if status != b'I' {
            self.retry = None;
            self.cout.release_held();
            return;
        }
        self.forward_server_bytes(fwd);
        self.cout.release_held();
        if let Some(retry) = &mut self.retry {
            retry.next_unit();
        }
        self.cout.hold();
    }

    /// The replica refused the unit (25006), or a probe sent ahead of it missed (`ryw.rs`),
    /// and its answer is over: the replica goes back and the unit goes to the primary.
    pub(super) fn retry_refused(&mut self, now: Instant) {
        let (extended, error) = self
            .retry
            .as_ref()
            .map_or((false, false), |r| (r.extended, r.dropped_error));
        let missed = self
            .route
            .as_ref()
            .and_then(|r| r.ahead.as_ref())
            .is_some_and(|a| a.missed);
        // The unit is over (its ReadyForQuery read); the replica is idle unless the unit
        // left a transaction open (a `BEGIN` behind a missed probe ran) or aborted: then
        // it is closed, not handed on.
        let idle = self.server.as_ref().is_some_and(|a| a.state.status == b'I');
        // After an extended unit that failed, the server's record of its prepared
        // statements may count a Parse the error made it skip: it is closed rather than
        // trusted. (A refusal is an error; the unit behind a missed probe usually ran.)
        self.release(if !idle || (extended && (error || !missed)) {
            Release::Close(CloseReason::Broken)
        } else {
            Release::Clean
        });
        if missed {
            self.ahead_to_primary(now);
        } else {
            self.requeue_retry(None, now);
        }
    }

    /// Puts the unit that failed on a replica back at the head of the client's input, to
    /// be sent again (after `dead`, the replica is also left out of reads).
    pub(super) fn requeue_retry(&mut self, dead: Option<&str>, now: Instant) {
        let Some(retry) = self.retry.take() else {
            return;
        };
        self.cout.drop_held();
        if retry.unit.is_empty() {
            return;
        }
        if let Some(r) = &mut self.route {
            let node = r.node;
            if let Some(n) = r.db.nodes.get(node) {
                n.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            match dead {
                Some(why) => {
                    r.db.report_unreachable(node, why);
                    tracing::warn!(client = self.id, "replica lost mid-read; retrying: {why}");
                }
                None => {
                    r.primary_once = true;
                    tracing::info!(
                        client = self.id,
                        "replica refused a statement as a write (25006); retrying on the primary"
                    );
                }
            }
        }
        self.put_back(&retry);
        self.step(now);
    }

    /// Puts the frames of `retry`'s unit that went to the server back at the head of the
    /// client's input, and forgets what the server owed for them.
    pub(super) fn put_back(&mut self, retry: &Retry) {
        let behind = retry.behind.iter().flat_map(|b| &b.parsed);
        for name in retry.parsed.iter().chain(behind) {
            self.map.names.stmts.remove(name);
        }
        // The unit's frames not yet past the policies are still at the head of the input.
        let sent = retry.unit.len().saturating_sub(retry.left);
        let mut cin = BytesMut::with_capacity(sent + self.cin.len());
        cin.extend_from_slice(retry.unit.get(..sent).unwrap_or_default());
        cin.extend_from_slice(&self.cin);
        self.cin = cin;
        self.flow.c_need = 0;
        self.flow.outstanding = 0;
        self.flow.batch_open = false;
        self.flow.s_pass = 0;
        self.flow.held = false;
        self.map.replies.clear();
        self.status = b'I';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn armed() -> Retry {
        Retry {
            unit: Bytes::from_static(b"Q"),
            on_refusal: true,
            ..Retry::default()
        }
    }

    #[test]
    fn a_read_only_refusal_is_retried_and_leaves_no_trace() {
        let mut r = armed();
        assert!(r.possible());
        assert_eq!(r.step(b'N', 20, None), Step::Keep);
        assert_eq!(r.step(b'1', 5, None), Step::Keep);
        assert_eq!(r.step(b'E', 40, None), Step::NeedWhole);
        let err = msg(b'E', b"SERROR\0C25006\0Mread-only\0\0");
        assert_eq!(r.step(b'E', err.len(), Some(&err)), Step::Drop);
        assert!(!r.possible());
        assert_eq!(r.step(b'C', 14, None), Step::Drop);
        assert_eq!(r.step(b'Z', 6, None), Step::Retry);
    }

    /// A small answer is held whole, so that a replica lost while sending it leaves the
    /// read free to go elsewhere; its ReadyForQuery releases it.
    #[test]
    fn a_small_answer_is_held_until_its_end() {
        let mut r = armed();
        assert_eq!(r.step(b'T', 30, None), Step::Keep);
        assert_eq!(r.step(b'D', 20, None), Step::Keep);
        assert_eq!(r.step(b'C', 14, None), Step::Keep);
        assert!(r.possible());
        assert_eq!(r.step(b'Z', 6, None), Step::Disarm);
        // A multi-statement answer and an empty query are answers too.
        let mut r = armed();
        for (tag, len) in [(b'T', 30), (b'D', 20), (b'C', 14), (b'I', 5), (b's', 5)] {
            assert_eq!(r.step(tag, len, None), Step::Keep, "{}", tag as char);
        }
        assert!(r.possible());
    }

    #[test]
    fn a_large_answer_or_another_error_ends_the_chance() {
        let mut r = armed();
        assert_eq!(r.step(b'T', 30, None), Step::Keep);
        assert_eq!(r.step(b'D', MAX_HELD_ANSWER - 10, None), Step::Keep);
        assert_eq!(r.step(b'D', 20, None), Step::Disarm);
        // With units pipelined behind, each answer goes on as it comes.
        let mut r = Retry {
            behind: vec![Behind::default()],
            ..armed()
        };
        assert_eq!(r.step(b'D', 20, None), Step::Disarm);
        let mut r = armed();
        let err = msg(b'E', b"SERROR\0C42P01\0Mno table\0\0");
        assert_eq!(r.step(b'E', err.len(), Some(&err)), Step::Disarm);
        // On a read-only endpoint the refusal is the answer.
        let mut r = Retry {
            on_refusal: false,
            ..armed()
        };
        assert_eq!(r.step(b'E', 40, None), Step::Disarm);
    }

    #[test]
    fn units_that_bind_foreign_statements_are_not_replayable_without_mapping() {
        let parse = |name: &str| msg(b'P', format!("{name}\0SELECT 1\0\0\0").as_bytes());
        let bind = |name: &str| msg(b'B', format!("\0{name}\0\0\0\0\0\0\0").as_bytes());
        let mut u = parse("a");
        u.extend(bind("a"));
        u.extend(bind(""));
        assert!(binds_own_statements(&u));
        assert_eq!(parse_names(&u), ["a"]);
        let mut u = bind("elsewhere");
        u.extend(msg(b'S', b""));
        assert!(!binds_own_statements(&u));
    }
}
