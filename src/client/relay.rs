//! The hot path: moving bytes between a client and its server.
//!
//! Frames are found by their 5-byte headers and forwarded untouched, in batches, as
//! `Bytes` split off the read buffer (no copy). Only the frames policy needs are examined
//! whole: the client's Query and Parse (session state), the server's ReadyForQuery,
//! ErrorResponse and, when a SET is pending, CommandComplete. Everything else — DataRow,
//! CopyData, large Bind messages — streams through, so a big message never has to fit in
//! memory at once. Both directions progress in the same poll, so neither side can stall the
//! other, and each stops reading when the opposite socket is backed up (backpressure).

use std::task::{Context, Poll};

use crate::net::ClientStream;

use super::extended::{SqlStep, Verdict, may_be_sql_prepared};
use super::retry::RetryStep;
use super::route::Unit;
use super::session::{Event, Session};
use super::state::{Pin as PinReason, SessionState};
use crate::config::PoolMode;
use crate::protocol::{self, be, fe};

/// Stop reading a side while this much is queued for the other.
const HIGH_WATER: usize = 256 * 1024;
/// Room to make before each read.
const READ_CHUNK: usize = 16 * 1024;

impl Session {
    /// Advances the relay until something needs the session loop's attention.
    pub(super) fn poll_relay(
        &mut self,
        client: &mut ClientStream,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        loop {
            if let Poll::Ready(Err(_)) = self.cout.poll_flush(client, cx) {
                return Poll::Ready(Event::ClientGone);
            }
            if let Some(server) = &mut self.server
                && let Poll::Ready(Err(e)) = self.sout.poll_flush(&mut server.stream, cx)
            {
                return Poll::Ready(Event::ServerGone(e.to_string()));
            }
            if let Some(ev) = self.check_idle(cx) {
                return Poll::Ready(ev);
            }
            if self.server.is_some() && self.cout.len() < HIGH_WATER {
                match self.read_server(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(ev) = self.scan_server() {
                            // The answer goes out before the server is given back, not
                            // after (a failed write shows on the next poll).
                            let _ = self.cout.poll_flush(client, cx);
                            return Poll::Ready(ev);
                        }
                        continue;
                    }
                    Poll::Ready(Err(why)) => return Poll::Ready(Event::ServerGone(why)),
                    Poll::Pending => {}
                }
            }
            if !self.cin.is_empty() && self.c_need <= self.cin.len() {
                let before = self.sout.len();
                if let Some(ev) = self.scan_client() {
                    return Poll::Ready(ev);
                }
                if self.sout.len() != before {
                    continue;
                }
            }
            if self.sout.len() < HIGH_WATER && !(self.held && self.cin.len() >= HIGH_WATER) {
                match self.read_client(client, cx) {
                    Poll::Ready(true) => {
                        if let Some(ev) = self.scan_client() {
                            return Poll::Ready(ev);
                        }
                        continue;
                    }
                    Poll::Ready(false) => return Poll::Ready(Event::ClientGone),
                    Poll::Pending => {}
                }
            }
            return Poll::Pending;
        }
    }

    /// Events that come from waiting rather than from bytes: drain, idle-in-transaction.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        if self.draining && self.at_boundary() {
            return Some(Event::Drain);
        }
        if self.idle_txn_armed
            && let Some(timer) = &mut self.idle_txn_timer
            && timer.as_mut().poll(cx).is_ready()
        {
            self.idle_txn_armed = false;
            return Some(Event::IdleInTransaction);
        }
        None
    }

    /// Between transactions, with nothing in flight.
    fn at_boundary(&self) -> bool {
        let idle = self.outstanding == 0 && !self.batch_open && self.c_pass == 0;
        match &self.server {
            None => self.cin.is_empty(),
            Some(_) => idle && self.status == b'I' && self.cin.is_empty() && self.cout.is_empty(),
        }
    }

    /// Reads what the client sent. `Ready(false)` on EOF or error.
    ///
    /// The buffer is allocated only once data is waiting, so an idle client holds none.
    /// Reads go through `poll_read`, which clears the socket's readiness after a short
    /// read, saving the extra `recv` that would only return `EWOULDBLOCK`.
    fn read_client(&mut self, client: &mut ClientStream, cx: &mut Context<'_>) -> Poll<bool> {
        if client.poll_read_ready(cx).is_pending() {
            return Poll::Pending;
        }
        let want = self.c_need.saturating_sub(self.cin.len()).max(READ_CHUNK);
        if self.cin.capacity() == 0 {
            self.cin = super::buffers::take(want);
        } else if self.cin.capacity() - self.cin.len() < READ_CHUNK / 2 {
            self.cin.reserve(want);
        }
        match client.poll_read_buf(cx, &mut self.cin) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(false),
            Poll::Ready(Ok(n)) => {
                self.tally.bytes_in += n as u64;
                Poll::Ready(true)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn read_server(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let Some(server) = &mut self.server else {
            return Poll::Pending;
        };
        if server.buf.capacity() - server.buf.len() < READ_CHUNK / 2 {
            server.buf.reserve(READ_CHUNK);
        }
        match server.stream.poll_read_buf(cx, &mut server.buf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err("server closed the connection".into())),
            Poll::Ready(Ok(n)) => {
                self.tally.bytes_out += n as u64;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.to_string())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Forwards whole or streamable client frames to the server. Without a server, asks for
    /// one as soon as a first frame is complete.
    fn scan_client(&mut self) -> Option<Event> {
        let mut fwd = 0;
        self.c_need = 0;
        // The head of the buffer must wait for more client bytes, or for the server.
        let mut wait_for_client = false;
        let mut wait_for_server = false;
        let event = loop {
            let rest = &self.cin[fwd..];
            if rest.is_empty() {
                break None;
            }
            if self.c_pass > 0 {
                let n = self.c_pass.min(rest.len());
                fwd += n;
                self.c_pass -= n;
                continue;
            }
            let h = match protocol::header(rest, self.max_message) {
                Ok(Some(h)) => h,
                Ok(None) => break None,
                Err(e) => break Some(Event::ClientProtocol(e.to_string())),
            };
            let have = rest.len();
            let may_rewrite =
                self.rewrite && matches!(h.tag, fe::PARSE | fe::BIND | fe::DESCRIBE | fe::CLOSE);
            let whole = may_rewrite || matches!(h.tag, fe::QUERY | fe::PARSE);
            if whole && have < h.frame_len {
                self.c_need = fwd + h.frame_len;
                break None;
            }
            // Messages about the unnamed statement pass in the batch, as they are.
            let rewrite_this =
                may_rewrite && names_statement(h.tag, &self.cin[fwd..fwd + h.frame_len]);
            if h.tag == fe::QUERY
                && self.track
                && let Some((name, value)) = ours(&self.cin[fwd..fwd + h.frame_len])
            {
                if self.outstanding > 0 || self.batch_open {
                    // Answer it in order, once what is in flight has been answered.
                    wait_for_server = true;
                    break None;
                }
                if fwd > 0 {
                    self.sout.push(self.cin.split_to(fwd).freeze());
                    fwd = 0;
                }
                let _ = self.cin.split_to(h.frame_len);
                self.answer_ours(&name, value.as_deref());
                continue;
            }
            if self.server.is_none() {
                if self.rewrite
                    && h.tag == fe::PARSE
                    && fwd == 0
                    && let Some(used) = super::extended::local_parse(
                        &mut self.ext,
                        &self.shared.statements,
                        &mut self.cout,
                        self.status,
                        &self.cin,
                        h.frame_len,
                    )
                {
                    let _ = self.cin.split_to(used);
                    continue;
                }
                if h.tag == fe::TERMINATE {
                    break Some(Event::Terminate);
                }
                if !self.route_ready() {
                    wait_for_client = true;
                    break None;
                }
                break Some(Event::NeedServer);
            }
            if !self.batch_open
                && let Some(r) = &mut self.route
                && !std::mem::take(&mut r.first_unit_checked)
                && r.watching()
                && !matches!(
                    h.tag,
                    fe::SYNC
                        | fe::FLUSH
                        | fe::TERMINATE
                        | fe::COPY_DATA
                        | fe::COPY_DONE
                        | fe::COPY_FAIL
                )
            {
                let reading = r.reading;
                match self.unit_at(fwd) {
                    Unit::Incomplete => {
                        wait_for_client = true;
                        break None;
                    }
                    Unit::Read => {}
                    Unit::Write if reading => {
                        if self.outstanding > 0 {
                            // A write behind reads on a replica: once they are answered the
                            // replica goes back and the write starts on the primary.
                            wait_for_server = true;
                            break None;
                        }
                        // Inside a transaction on the replica: it stays there, as the
                        // transaction must (a read-only transaction refuses writes).
                    }
                    Unit::Write => {
                        if let Some(r) = &mut self.route {
                            r.wrote = true;
                        }
                    }
                }
            }
            if self.rewrite
                && h.tag == fe::QUERY
                && may_be_sql_prepared(protocol::body(&self.cin[fwd..fwd + h.frame_len]))
            {
                if fwd > 0 {
                    self.sout.push(self.cin.split_to(fwd).freeze());
                    fwd = 0;
                }
                let in_flight = self.outstanding > 0 || self.batch_open;
                match self.sql_prepared(h.frame_len, in_flight) {
                    SqlStep::Done => {
                        self.idle_txn_armed = false;
                        continue;
                    }
                    SqlStep::DoneRelease => break Some(Event::Release),
                    SqlStep::Hold => {
                        wait_for_server = true;
                        break None;
                    }
                    SqlStep::NotOurs | SqlStep::NeedServer => {}
                }
            }
            self.idle_txn_armed = false;
            if self
                .route
                .as_ref()
                .is_some_and(|r| r.reading || r.retry.is_some())
            {
                self.arm_retry(h.tag);
            }
            self.tally.client_frame(&self.info);
            match h.tag {
                fe::TERMINATE => break Some(Event::Terminate),
                fe::QUERY => self.outstanding += 1,
                fe::SYNC | fe::FUNCTION_CALL => {
                    self.outstanding += 1;
                    self.batch_open = false;
                }
                fe::FLUSH | fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {}
                _ => self.batch_open = true,
            }
            if whole {
                self.observe_text(h.tag, fwd, h.frame_len);
                let mut forgets_prepared = false;
                if self.track && matches!(h.tag, fe::QUERY | fe::PARSE) {
                    let frame = &self.cin[fwd..fwd + h.frame_len];
                    let pin_named = self.mode == PoolMode::Transaction && !self.rewrite;
                    forgets_prepared = inspect_text(&mut self.state, pin_named, h.tag, frame);
                }
                if forgets_prepared {
                    self.forget_all_statements();
                }
                if rewrite_this {
                    // Earlier frames go first, then this one as rewritten.
                    if fwd > 0 {
                        self.sout.push(self.cin.split_to(fwd).freeze());
                        fwd = 0;
                    }
                    let msg = self.cin.split_to(h.frame_len).freeze();
                    self.extended_client(h.tag, msg);
                    continue;
                }
                if self.rewrite && h.tag == fe::QUERY && self.may_deallocate(fwd, h.frame_len) {
                    if fwd > 0 {
                        self.sout.push(self.cin.split_to(fwd).freeze());
                        fwd = 0;
                    }
                    let msg = self.cin.split_to(h.frame_len).freeze();
                    let query = self.client_deallocate(&msg).unwrap_or(msg);
                    self.forward(query, fe::QUERY);
                    continue;
                }
                if self.rewrite {
                    self.expect_answer(h.tag, super::extended::Act::Forward);
                }
                if let Some(retry) = self.route.as_mut().and_then(|r| r.retry.as_mut())
                    && retry.query.is_empty()
                    && h.tag == fe::QUERY
                {
                    // Kept for a retry: the same bytes, shared, not copied.
                    if fwd > 0 {
                        self.sout.push(self.cin.split_to(fwd).freeze());
                        fwd = 0;
                    }
                    let query = self.cin.split_to(h.frame_len).freeze();
                    self.sout.push(query.clone());
                    retry.query = query;
                    continue;
                }
                fwd += h.frame_len;
            } else {
                if self.rewrite {
                    self.expect_answer(h.tag, super::extended::Act::Forward);
                }
                let n = h.frame_len.min(have);
                fwd += n;
                self.c_pass = h.frame_len - n;
            }
        };
        if fwd > 0 {
            self.sout.push(self.cin.split_to(fwd).freeze());
        }
        if wait_for_client || wait_for_server {
            // Not examined again until more arrives (or, when held, the server answers).
            self.c_need = self.cin.len() + 1;
            self.held = wait_for_server;
        }
        event
    }

    /// Forwards server frames to the client, watching ReadyForQuery to know when the
    /// server can go back to the pool.
    fn scan_server(&mut self) -> Option<Event> {
        let mut fwd = 0;
        let mut event = None;
        while let Some(server) = &self.server {
            let rest = &server.buf[fwd..];
            if rest.is_empty() {
                break;
            }
            if self.s_pass > 0 {
                let n = self.s_pass.min(rest.len());
                fwd += n;
                self.s_pass -= n;
                continue;
            }
            let h = match protocol::header(rest, usize::MAX) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    event = Some(Event::ServerGone(e.to_string()));
                    break;
                }
            };
            let have = rest.len();
            let body_first = rest.get(protocol::HEADER_LEN).copied().unwrap_or(0);
            if self
                .route
                .as_ref()
                .is_some_and(|r| r.retry.as_ref().is_some_and(|t| !t.query.is_empty()))
            {
                match self.watch_retry(h.tag, h.frame_len, &mut fwd) {
                    RetryStep::Wait => break,
                    RetryStep::Taken => continue,
                    RetryStep::Retry => {
                        event = Some(Event::Retry);
                        break;
                    }
                    RetryStep::Pass => {}
                }
            }
            let mut tracked = false;
            if self.front_is_hidden_query() {
                if have < h.frame_len {
                    break;
                }
                self.forward_server_bytes(&mut fwd);
                if let Some(server) = &mut self.server {
                    let _ = server.buf.split_to(h.frame_len);
                    if h.tag == be::READY_FOR_QUERY {
                        server.status = body_first;
                    }
                }
                self.hidden_query_frame(h.tag);
                self.emit_synths();
                continue;
            }
            if !self.ext.expect.is_empty() {
                if self.front_is_synth() {
                    self.forward_server_bytes(&mut fwd);
                    self.emit_synths();
                }
                if self.completes_front(h.tag) {
                    if have < h.frame_len {
                        break;
                    }
                    tracked = true;
                    if let Verdict::Swallow = self.expected_server_frame(h.tag) {
                        self.forward_server_bytes(&mut fwd);
                        if let Some(server) = &mut self.server {
                            let _ = server.buf.split_to(h.frame_len);
                        }
                        self.emit_synths();
                        continue;
                    }
                }
            }
            let examine = match h.tag {
                be::READY_FOR_QUERY | be::ERROR_RESPONSE => true,
                be::COMMAND_COMPLETE => self.state.wants_tags(),
                _ => false,
            };
            if !examine {
                let n = h.frame_len.min(have);
                fwd += n;
                self.s_pass = h.frame_len - n;
            } else if have < h.frame_len {
                break;
            } else {
                fwd += h.frame_len;
                match h.tag {
                    be::ERROR_RESPONSE => {
                        self.state.error_seen = true;
                        if let Some(s) = &self.server {
                            let frame = &s.buf[fwd - h.frame_len..fwd];
                            self.tally.error(protocol::body(frame));
                        }
                    }
                    be::COMMAND_COMPLETE => {
                        if self.last_frame_starts_with(fwd, h.frame_len, b"ROLLBACK") {
                            self.state.rolled_back = true;
                        }
                    }
                    _ => {
                        if let Some(ev) = self.on_ready(body_first) {
                            if matches!(ev, Event::StatementModeTransaction) {
                                fwd -= h.frame_len;
                            }
                            if matches!(ev, Event::ReleaseReportingLsn) {
                                // The client's ReadyForQuery follows the write LSN.
                                fwd -= h.frame_len;
                                self.forward_server_bytes(&mut fwd);
                                if let Some(server) = &mut self.server {
                                    let _ = server.buf.split_to(h.frame_len);
                                }
                            }
                            event = Some(ev);
                            break;
                        }
                    }
                }
            }
            if tracked && self.front_is_synth() {
                self.forward_server_bytes(&mut fwd);
                self.emit_synths();
            }
        }
        self.forward_server_bytes(&mut fwd);
        event
    }

    /// Answers `SET pgsluice.*` / `RESET pgsluice.*` itself.
    fn answer_ours(&mut self, name: &str, value: Option<&str>) {
        let mut buf = bytes::BytesMut::new();
        match self.set_ours(name, value) {
            Ok(()) => {
                let tag = if value.is_some() { "SET" } else { "RESET" };
                crate::protocol::build::command_complete(&mut buf, tag);
            }
            Err(msg) => crate::protocol::build::error(&mut buf, "ERROR", "22023", &msg),
        }
        crate::protocol::build::ready_for_query(&mut buf, self.status);
        self.cout.push(buf.freeze());
    }

    /// Whether a simple Query may be a `DEALLOCATE` of a mapped statement (a cheap prefix
    /// test, so ordinary queries are never copied).
    fn may_deallocate(&self, at: usize, len: usize) -> bool {
        let text = protocol::body(&self.cin[at..at + len]);
        let start = text
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        text[start..]
            .get(..10)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"deallocate"))
    }

    /// Moves the first `fwd` bytes of the server buffer to the client queue.
    pub(super) fn forward_server_bytes(&mut self, fwd: &mut usize) {
        if *fwd > 0
            && let Some(server) = &mut self.server
        {
            self.cout.push(server.buf.split_to(*fwd).freeze());
        }
        *fwd = 0;
    }

    /// Whether the frame of `len` bytes ending at `end` in the server buffer has a body
    /// starting with `prefix`.
    fn last_frame_starts_with(&self, end: usize, len: usize, prefix: &[u8]) -> bool {
        self.server
            .as_ref()
            .is_some_and(|s| protocol::body(&s.buf[end - len..end]).starts_with(prefix))
    }

    /// Handles a ReadyForQuery: session-state bookkeeping and whether to release.
    fn on_ready(&mut self, status: u8) -> Option<Event> {
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.held {
            self.held = false;
            self.c_need = 0;
        }
        self.status = status;
        self.settle_sql_prepares(self.state.error_seen);
        if let Some(server) = &mut self.server {
            server.status = status;
            if self.track
                && let Some(gucs) = self.state.on_ready(status)
            {
                server.gucs = gucs;
            }
        }
        self.observe_ready(status);
        let quiet = self.outstanding == 0
            && !self.batch_open
            && self.c_pass == 0
            && self.ext.expect.is_empty();
        match self.mode {
            PoolMode::Statement if status != b'I' => Some(Event::StatementModeTransaction),
            PoolMode::Transaction | PoolMode::Statement
                if status == b'I' && quiet && !self.state.is_pinned() =>
            {
                let report = self
                    .route
                    .as_ref()
                    .is_some_and(|r| r.needs_write_lsn() && r.db.policy.load().report_write_lsn);
                Some(if report {
                    Event::ReleaseReportingLsn
                } else {
                    Event::Release
                })
            }
            _ => {
                if status != b'I' && quiet {
                    self.arm_idle_timer();
                }
                None
            }
        }
    }

    fn arm_idle_timer(&mut self) {
        let Some(limit) = self.idle_txn_limit else {
            return;
        };
        let deadline = tokio::time::Instant::now() + limit;
        match &mut self.idle_txn_timer {
            Some(t) => t.as_mut().reset(deadline),
            None => self.idle_txn_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.idle_txn_armed = true;
    }
}

/// A Query frame that is `SET pgsluice.x = v` or `RESET pgsluice.x`, parsed; cheap to
/// reject anything else.
fn ours(frame: &[u8]) -> Option<(String, Option<String>)> {
    let body = protocol::body(frame);
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &body[start..];
    // Every SELECT passes here: reject on bytes, before any UTF-8 check or parse.
    let verb = if rest.len() > 4 && rest[..3].eq_ignore_ascii_case(b"set") {
        3
    } else if rest.len() > 6 && rest[..5].eq_ignore_ascii_case(b"reset") {
        5
    } else {
        return None;
    };
    let name_at = rest[verb..].iter().position(|b| !b.is_ascii_whitespace())?;
    let name = rest.get(verb + name_at..verb + name_at + 9)?;
    if name_at == 0 || !name.eq_ignore_ascii_case(b"pgsluice.") {
        return None;
    }
    let sql = protocol::cstr(body)?.0;
    super::route::parse_ours(sql)
}

/// Whether a whole Parse, Bind, Describe or Close frame names a prepared statement (not
/// the unnamed one), so that the name must be mapped. True for a malformed frame too: the
/// extended-protocol code deals with it.
fn names_statement(tag: u8, frame: &[u8]) -> bool {
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

/// Looks at the SQL of a Query or Parse for session-state effects. True when the text
/// drops every prepared statement (DISCARD ALL, DEALLOCATE ALL).
fn inspect_text(state: &mut SessionState, pin_named: bool, tag: u8, frame: &[u8]) -> bool {
    let body = protocol::body(frame);
    let sql = if tag == fe::PARSE {
        protocol::cstr_bytes(body).and_then(|(name, rest)| {
            if !name.is_empty() && pin_named {
                state.pin(PinReason::ProtocolPrepare);
            }
            protocol::cstr_bytes(rest).map(|(q, _)| q)
        })
    } else {
        protocol::cstr_bytes(body).map(|(q, _)| q)
    };
    // Most statements have no session effect: the byte prefilter settles them before any
    // UTF-8 check.
    sql.filter(|sql| super::inspect::may_have_effects(sql))
        .and_then(|sql| std::str::from_utf8(sql).ok())
        .is_some_and(|sql| state.on_statement(sql))
}
