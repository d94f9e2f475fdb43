//! Client frames: framed once, each handed to the policies in the core's order, and
//! forwarded untouched in batches wherever no policy changes them.
//!
//! Only the frames policy needs are examined whole (Query, Parse, and with statement
//! mapping Bind, Describe and Close); anything else — CopyData, large Binds without
//! mapping — streams through, so a big message never has to fit in memory at once.

use std::time::Instant;

use bytes::BytesMut;

use super::ours::ours;
use super::prepared_view::ViewStep;
use super::sql_prepare::{SqlStep, may_be_sql_prepared};
use super::statements::{Out, names_statement};
use super::text::{Text, calls_unlisted, inspect_text};
use super::{Core, Phase, Release};
use crate::config::PoolMode;
use crate::protocol::{self, build, fe};

/// Why the scan of client frames stopped before the buffer's end.
#[derive(PartialEq, Eq)]
pub(super) enum Stop {
    /// Everything there was handled, or the head frame is not whole yet.
    Drained,
    /// The head must wait for more client bytes.
    ForClient,
    /// The head must wait until the server answered what is in flight.
    ForServer,
    /// Something else now runs (a chore, a checkout, the end of the session).
    Yield,
}

impl Core {
    /// Forwards whole or streamable client frames to the server. Without a server, asks
    /// for one as soon as a first unit is complete.
    pub(super) fn scan_client(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Relay) {
            return;
        }
        let mut fwd = 0;
        self.flow.c_need = 0;
        let stop = loop {
            let Some(rest) = self.cin.get(fwd..) else {
                break Stop::Drained;
            };
            if rest.is_empty() {
                break Stop::Drained;
            }
            if self.flow.c_pass > 0 {
                let n = self.flow.c_pass.min(rest.len());
                fwd += n;
                self.flow.c_pass -= n;
                continue;
            }
            let mut h = match protocol::header(rest, self.limits.max_message) {
                Ok(Some(h)) => h,
                Ok(None) => break Stop::Drained,
                Err(e) => {
                    self.flush_client_bytes(&mut fwd);
                    self.protocol_violation(&e.to_string(), now);
                    break Stop::Yield;
                }
            };
            let mut have = rest.len();
            let may_rewrite = self.limits.rewrite
                && matches!(h.tag, fe::PARSE | fe::BIND | fe::DESCRIBE | fe::CLOSE);
            let whole = may_rewrite || matches!(h.tag, fe::QUERY | fe::PARSE);
            if whole && have < h.frame_len {
                // The `fwd` bytes before it leave the buffer below: it is then at the head.
                self.flow.c_need = h.frame_len;
                break Stop::Drained;
            }
            // 0. What extended-protocol drivers send after their Parse passes at once.
            if self.passes_mid_unit(h.tag, rest, h.frame_len) {
                self.pass_mid_unit(&mut fwd, h.tag, h.frame_len, have, now);
                continue;
            }
            // 1. pgsluice's own settings.
            if h.tag == fe::QUERY
                && let Some(o) = ours(
                    rest.get(protocol::HEADER_LEN..h.frame_len)
                        .unwrap_or_default(),
                )
            {
                if self.flow.outstanding > 0 || self.flow.batch_open {
                    // Answer it in order, once what is in flight has been answered.
                    break Stop::ForServer;
                }
                self.flush_client_bytes(&mut fwd);
                let _ = self.cin.split_to(h.frame_len);
                self.answer_ours(o);
                continue;
            }
            // 1. LISTEN/UNLISTEN, served by pgsluice's listener (see `listen.rs`).
            if h.tag == fe::QUERY
                && let Some(request) = self.listen_request(
                    rest.get(protocol::HEADER_LEN..h.frame_len)
                        .unwrap_or_default(),
                )
            {
                if self.flow.outstanding > 0 || self.flow.batch_open {
                    break Stop::ForServer;
                }
                self.flush_client_bytes(&mut fwd);
                self.ask_listener(request, h.frame_len);
                break Stop::Yield;
            }
            // 2. Without a server: answer a Parse here, or ask for a server.
            if self.server.is_none() {
                if self.limits.rewrite && h.tag == fe::PARSE && fwd == 0 {
                    let status = self.status;
                    if let Some(used) =
                        self.map
                            .local_parse(&mut self.cout, status, &self.cin, h.frame_len)
                    {
                        let _ = self.cin.split_to(used);
                        continue;
                    }
                }
                if h.tag == fe::TERMINATE {
                    self.flush_client_bytes(&mut fwd);
                    self.finish("client terminated".into());
                    break Stop::Yield;
                }
                // COPY data, done or fail with no COPY running (none runs without a
                // server: its unit was refused, say): PostgreSQL ignores them, so no
                // server is asked for them.
                if fwd == 0 && matches!(h.tag, fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL) {
                    if have < h.frame_len {
                        self.flow.c_need = h.frame_len;
                        break Stop::Drained;
                    }
                    let _ = self.cin.split_to(h.frame_len);
                    continue;
                }
                match self.ask_for_server(fwd, now) {
                    Some(stop) => break stop,
                    // No node can serve it: the unit was answered with an error.
                    None => continue,
                }
            }
            // 2. Behind a probe sent ahead of the unit (`ryw.rs`), only the unit's own
            // frames go until the probe has answered.
            if self.ahead_holds(h.frame_len) {
                break Stop::ForServer;
            }
            // 2. Behind a read the replica refused, nothing goes until it is sent again.
            if self.refusal_holds(h.frame_len) {
                break Stop::ForServer;
            }
            // 2. At the start of a unit on a server: the route watches it.
            let unit_start = !self.flow.batch_open
                && !matches!(
                    h.tag,
                    fe::SYNC
                        | fe::FLUSH
                        | fe::TERMINATE
                        | fe::COPY_DATA
                        | fe::COPY_DONE
                        | fe::COPY_FAIL
                );
            // What follows a DISCARD ALL or DEALLOCATE ALL waits while it is unanswered:
            // only the server's answer says whether it ran (see `Mapping::dropped`).
            if self.map.drop_in_flight
                && self.flow.outstanding > 0
                && !matches!(h.tag, fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL)
            {
                break Stop::ForServer;
            }
            if unit_start && let Some(stop) = self.watch_unit(fwd) {
                break stop;
            }
            // 3. The server's settings must be the client's before a unit starts.
            if unit_start && self.settings_differ() {
                if self.flow.outstanding > 0 {
                    break Stop::ForServer;
                }
                self.flush_client_bytes(&mut fwd);
                if self.sync_settings(now) {
                    break Stop::Yield;
                }
            }
            // 4. A statement the mapping rewrites waits while the answers to earlier units
            // may still take back what is recorded for it (see `Replies::unsettled`).
            if may_rewrite
                && let Some(att) = &self.server
                && self.map.must_wait(
                    h.tag,
                    self.cin.get(fwd..fwd + h.frame_len),
                    &att.state.statements,
                )
            {
                break Stop::ForServer;
            }
            // The text of a Query or Parse is scanned once for every policy below.
            let mut facts = self.text_facts(fwd, h.tag, h.frame_len);
            let mut rewritten = false;
            // 4b. `pg_prepared_statements` in the client's terms (`prepared_view.rs`).
            if self.limits.rewrite && matches!(h.tag, fe::QUERY | fe::PARSE) {
                let view = facts.map(|f| f.view);
                match self.prepared_view(&mut fwd, h.tag, h.frame_len, view) {
                    ViewStep::Pass => {}
                    ViewStep::Hold => break Stop::ForServer,
                    ViewStep::Rewritten(len) => {
                        rewritten = true;
                        h.frame_len = len;
                        have = self.cin.len();
                        facts = self.text_facts(fwd, h.tag, h.frame_len);
                    }
                }
            }
            // 4c. `pg_listening_channels()` in the client's terms (`channels.rs`).
            if self.limits.listen_here
                && matches!(h.tag, fe::QUERY | fe::PARSE)
                && let Some(len) =
                    self.listening_channels(&mut fwd, h.tag, h.frame_len, facts.map(|f| f.channels))
            {
                rewritten = true;
                h.frame_len = len;
                have = self.cin.len();
                facts = self.text_facts(fwd, h.tag, h.frame_len);
            }
            // 4d. SQL-level prepared statements.
            if self.limits.rewrite
                && h.tag == fe::QUERY
                && may_be_sql_prepared(
                    self.cin
                        .get(fwd + protocol::HEADER_LEN..fwd + h.frame_len)
                        .unwrap_or_default(),
                )
            {
                self.flush_client_bytes(&mut fwd);
                match self.sql_prepared(h.frame_len, now) {
                    Some(Stop::Drained) => continue,
                    Some(stop) => break stop,
                    None => {}
                }
            }
            self.idle_txn_deadline = None;
            // 5. A read on a replica is kept for a retry, as the client sent it: a unit
            // with a frame pgsluice rewrote is not (nor any kept before it, which it
            // follows).
            if rewritten {
                self.disarm_retry();
            } else if self.route.as_ref().is_some_and(|r| r.reading) || self.retry.is_some() {
                self.arm_retry(fwd, h.frame_len);
            }
            self.observe.client_frame(now);
            // 5b. Sequence values another client set are not this client's.
            if self.seq_may_matter(h.tag) {
                let len = h.frame_len.min(have);
                self.seq_before(&mut fwd, h.tag, len, unit_start, facts.as_ref());
            }
            let starts_unit = !self.flow.batch_open;
            // 5c. The write-LSN read may go in the same write as the statement (`write_lsn.rs`).
            let lsn_behind = h.tag == fe::QUERY && self.write_lsn_fits_behind(facts.as_ref());
            match h.tag {
                fe::TERMINATE => {
                    self.flush_client_bytes(&mut fwd);
                    // Nothing after a Terminate is read (its body need not even be whole).
                    self.cin.clear();
                    self.client_left = true;
                    self.end_session("client terminated".into(), now);
                    break Stop::Yield;
                }
                fe::QUERY => self.flow.outstanding += 1,
                fe::SYNC | fe::FUNCTION_CALL => {
                    self.flow.outstanding += 1;
                    self.flow.batch_open = false;
                }
                fe::FLUSH | fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {}
                _ => self.flow.batch_open = true,
            }
            if whole {
                let f = facts.as_ref();
                self.whole_frame(&mut fwd, h.tag, h.frame_len, may_rewrite, starts_unit, f);
                if lsn_behind {
                    self.flush_client_bytes(&mut fwd);
                    self.write_lsn_behind();
                }
            } else {
                if self.limits.rewrite {
                    self.map.replies.expect_forward(h.tag);
                }
                let n = h.frame_len.min(have);
                fwd += n;
                self.flow.c_pass = h.frame_len - n;
            }
        };
        self.flush_client_bytes(&mut fwd);
        if matches!(stop, Stop::ForClient | Stop::ForServer) {
            // Not examined again until more arrives (or, when held, the server answers).
            self.flow.c_need = self.cin.len() + 1;
            self.flow.held = stop == Stop::ForServer;
        }
    }

    /// A whole Query, Parse, Bind, Describe or Close at `*fwd` goes to the server: session
    /// state, the statement mapping and the retry see it.
    fn whole_frame(
        &mut self,
        fwd: &mut usize,
        tag: u8,
        len: usize,
        may_rewrite: bool,
        starts_unit: bool,
        facts: Option<&crate::sql::TextFacts>,
    ) {
        let mut at = *fwd;
        let Some(frame) = self.cin.get(at..at + len) else {
            return;
        };
        if tag == fe::QUERY
            && let Some(f) = &self.failpoints
        {
            f.check_query(frame);
        }
        self.observe.text(tag, frame, self.limits.rewrite);
        // 6. Session-state effects. (Whether this frame runs code pgsluice cannot see into
        // is told apart from an earlier frame's.)
        let opaque_before = self.state.take_opaque();
        let pin_named = self.limits.mode == PoolMode::Transaction && !self.limits.rewrite;
        if matches!(tag, fe::QUERY | fe::PARSE) {
            let text = inspect_text(&mut self.state, pin_named, tag, frame, facts);
            if self.limits.rewrite && text != Text::Plain {
                self.map.drop_sent(tag, text == Text::NamesOurs);
            }
        }
        if let Some(check) = &self.opaque_check
            && matches!(tag, fe::QUERY | fe::PARSE)
            && let Some(frame) = self.cin.get(at..at + len)
            && calls_unlisted(check, tag, frame, facts)
        {
            self.state.mark_opaque();
        }
        let opaque_here = self.state.is_opaque();
        if opaque_before {
            self.state.mark_opaque();
        }
        // 6b. Code on the server may name the client's SQL-level statements.
        if self.limits.rewrite && starts_unit && opaque_here {
            self.own_names_before(fwd, tag);
            at = *fwd;
        }
        let rewrite_this = may_rewrite
            && self
                .cin
                .get(at..at + len)
                .is_some_and(|f| names_statement(tag, f));
        if self.limits.rewrite && !rewrite_this && self.unnamed_policy(fwd, tag, len, starts_unit) {
            return;
        }
        if rewrite_this {
            // Earlier frames go first, then this one as rewritten.
            self.flush_client_bytes(fwd);
            let msg = self.cin.split_to(len).freeze();
            if let Some(att) = &mut self.server {
                let out = Out {
                    sout: &mut self.sout,
                    cout: &mut self.cout,
                };
                self.map
                    .client_message(tag, msg, out, &mut att.state.statements);
            }
            return;
        }
        if self.limits.rewrite && tag == fe::QUERY && self.may_deallocate(at, len) {
            self.flush_client_bytes(fwd);
            let msg = self.cin.split_to(len).freeze();
            match &mut self.server {
                Some(att) => self
                    .map
                    .deallocate(msg, &mut self.sout, &mut att.state.statements),
                None => self.map.forward(msg, fe::QUERY, &mut self.sout),
            }
            return;
        }
        if self.limits.rewrite {
            self.map.replies.expect_forward(tag);
        }
        *fwd += len;
    }

    /// The facts of the text of the Query or Parse of `len` bytes at `at` (`None` for
    /// other frames, or a Parse without its text).
    fn text_facts(&self, at: usize, tag: u8, len: usize) -> Option<crate::sql::TextFacts> {
        let text = || {
            self.cin
                .get(at..at + len)
                .and_then(|f| super::sequences::text_of(tag, f))
        };
        match tag {
            fe::QUERY => text().map(crate::sql::TextFacts::of),
            // A Parse's text comes again (see `TextFacts::of_repeated`).
            fe::PARSE => text().map(crate::sql::TextFacts::of_repeated),
            _ => None,
        }
    }

    /// Moves the first `fwd` bytes of the client buffer to the server's queue.
    pub(super) fn flush_client_bytes(&mut self, fwd: &mut usize) {
        if *fwd > 0 {
            self.sout.push(self.cin.split_to(*fwd).freeze());
        }
        *fwd = 0;
    }

    /// A Query that may be an SQL-level `PREPARE`/`EXECUTE`/`DEALLOCATE` at the head of the
    /// buffer. `None`: not one of ours, go on as with any Query.
    fn sql_prepared(&mut self, len: usize, now: Instant) -> Option<Stop> {
        let text = self
            .cin
            .get(protocol::HEADER_LEN..len)
            .and_then(|b| protocol::cstr(b))
            .map(|(q, _)| q.to_string())?;
        let in_flight = self.flow.outstanding > 0 || self.flow.batch_open;
        let server = self.server.as_mut().map(|s| &mut s.state.statements);
        match self.map.sql_query(
            &text,
            server,
            &mut self.sout,
            in_flight,
            self.flow.outstanding,
        ) {
            SqlStep::NotOurs | SqlStep::NeedServer => None,
            SqlStep::Hold => Some(Stop::ForServer),
            SqlStep::Forward(query, act) => {
                // Past a unit kept for a retry, the retry ends: it could not replay this
                // Query too (what goes out is pgsluice's, and the mapping acts on it).
                self.disarm_retry();
                if self.opaque_check.is_some() {
                    self.seq_before(&mut 0, fe::QUERY, len, !self.flow.batch_open, None);
                }
                let frame = self.cin.split_to(len);
                self.idle_txn_deadline = None;
                self.observe.client_frame(now);
                // A mapped statement is no session state of the server's, but what a
                // `CREATE TEMP TABLE ... AS EXECUTE p` creates is.
                let creates = text
                    .trim_start()
                    .get(..6)
                    .is_some_and(|w| w.eq_ignore_ascii_case("create"));
                if creates {
                    inspect_text(&mut self.state, false, fe::QUERY, &frame, None);
                }
                self.observe.text(fe::QUERY, &frame, true);
                self.flow.outstanding += 1;
                self.sout.push(query);
                self.map.replies.expect(fe::QUERY, act);
                Some(Stop::Drained)
            }
            SqlStep::Answer(result) => {
                let _ = self.cin.split_to(len);
                let mut buf = BytesMut::new();
                match result {
                    Ok(tag) => build::command_complete(&mut buf, tag),
                    Err((code, msg)) => build::error(&mut buf, "ERROR", code, &msg),
                }
                build::ready_for_query(&mut buf, self.status);
                self.cout.push(buf.freeze());
                let idle = self.server.is_some()
                    && self.flow.outstanding == 0
                    && !self.flow.batch_open
                    && self.status == b'I'
                    && !self.state.is_pinned()
                    && self.limits.mode != PoolMode::Session;
                if idle {
                    // What follows it asks for a server again.
                    self.release(Release::Clean);
                }
                Some(Stop::Drained)
            }
        }
    }

    /// The client broke the protocol: it is told and the session ends.
    fn protocol_violation(&mut self, why: &str, now: Instant) {
        self.fatal("08P01", why);
        if self.quiet() {
            self.end_session(why.to_string(), now);
        } else {
            self.release(Release::CloseAndCancel(
                crate::server::CloseReason::ClientGoneMidQuery,
            ));
            self.finish(why.to_string());
        }
    }
}
