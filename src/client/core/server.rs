//! Server frames: forwarded to the client in batches, with the few the policies need
//! examined whole — ReadyForQuery (transaction boundaries: release, session state),
//! ErrorResponse, ParameterStatus and CommandComplete while settings are pending, and
//! whatever the statement mapping or a retry is waiting for.

use std::time::Instant;

use bytes::Bytes;

use super::replies::Verdict;
use super::retry::Step;
use super::{Core, Phase};
use crate::config::PoolMode;
use crate::protocol::{self, be};

/// Largest server message pgsluice reserves room for before it has arrived; a bigger
/// one streams through in pieces (only messages policy examines whole are bounded by it).
pub const MAX_SERVER_MESSAGE: usize = 1 << 30;

/// The `len` bytes at `at` of the held server's buffer.
fn server_frame(server: &Option<Box<super::Attached>>, at: usize, len: usize) -> &[u8] {
    server
        .as_ref()
        .and_then(|a| a.state.buf.get(at..at + len))
        .unwrap_or_default()
}

impl Core {
    /// Forwards server frames to the client, watching what the policies need.
    pub(super) fn scan_server(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Chore(_)) {
            self.chore_frames(now);
            return;
        }
        if matches!(self.phase, Phase::Probe(_)) {
            self.probe_frames(now);
            return;
        }
        // A probe sent ahead of the unit answers first (`ryw.rs`).
        if self.ahead_unanswered() && !self.ahead_frames(now) {
            return;
        }
        let mut fwd = 0;
        while let Some(rest) = self.server.as_ref().and_then(|a| a.state.buf.get(fwd..)) {
            if rest.is_empty() {
                break;
            }
            if self.flow.s_pass > 0 {
                let n = self.flow.s_pass.min(rest.len());
                fwd += n;
                self.flow.s_pass -= n;
                continue;
            }
            let h = match protocol::header(rest, MAX_SERVER_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    self.forward_server_bytes(&mut fwd);
                    self.server_lost(&format!("server protocol error: {e}"), now);
                    return;
                }
            };
            let have = rest.len();
            // A message policy must see whole is held in memory until it is: one larger
            // than max_message_size is refused, not buffered.
            let waits_whole = have < h.frame_len;
            if waits_whole && h.frame_len > self.limits.max_message && self.holds_whole(h.tag) {
                self.forward_server_bytes(&mut fwd);
                let why = format!(
                    "server message '{}' of {} bytes exceeds max_message_size",
                    h.tag.escape_ascii(),
                    h.frame_len
                );
                self.server_lost(&why, now);
                return;
            }
            let body_first = rest.get(protocol::HEADER_LEN).copied().unwrap_or(0);
            // Retry: while a read may still go elsewhere, its answer is watched (and the
            // client's output held, see retry.rs).
            if let Some(retry) = &mut self.retry {
                let mut step = retry.step(h.tag, h.frame_len, None);
                if step == Step::NeedWhole {
                    if have < h.frame_len {
                        break;
                    }
                    step = retry.step(h.tag, h.frame_len, rest.get(..h.frame_len));
                }
                match step {
                    Step::Keep | Step::NeedWhole => {}
                    Step::Disarm => self.kept_unit_answered(),
                    Step::Drop | Step::Retry => {
                        if have < h.frame_len {
                            break;
                        }
                        self.forward_server_bytes(&mut fwd);
                        let _ = self.take_server_frame(h.frame_len);
                        if step == Step::Retry {
                            // The unit's ReadyForQuery says where the replica is.
                            if let Some(att) = &mut self.server {
                                att.state.status = body_first;
                            }
                            self.retry_refused(now);
                            return;
                        }
                        continue;
                    }
                }
            }
            // The statement mapping: pgsluice's hidden requests and its own answers.
            if self.map.replies.front_is_hidden_query() {
                if have < h.frame_len {
                    break;
                }
                self.forward_server_bytes(&mut fwd);
                let _ = self.take_server_frame(h.frame_len);
                if let Some(att) = &mut self.server {
                    if h.tag == be::READY_FOR_QUERY {
                        att.state.status = body_first;
                    }
                    self.map
                        .replies
                        .hidden_query_frame(h.tag, &mut att.state.statements);
                }
                self.map.replies.emit_synths(&mut self.cout);
                continue;
            }
            let mut tracked = false;
            // An error about a rewritten request, in the client's terms (taken before the
            // request's entry is settled).
            let mut translated = None;
            if !self.map.replies.is_empty() {
                if self.map.replies.front_is_synth() {
                    self.forward_server_bytes(&mut fwd);
                    self.map.replies.emit_synths(&mut self.cout);
                }
                if self.map.replies.completes_front(h.tag) {
                    if have < h.frame_len {
                        break;
                    }
                    tracked = true;
                    if h.tag == be::ERROR_RESPONSE {
                        translated = self.map.replies.translate_error(server_frame(
                            &self.server,
                            fwd,
                            h.frame_len,
                        ));
                    }
                    let verdict = match &mut self.server {
                        Some(att) => self.map.replies.on_server_frame(
                            h.tag,
                            &mut self.map.names,
                            &mut att.state.statements,
                        ),
                        None => Verdict::Pass,
                    };
                    if let Verdict::Swallow = verdict {
                        self.forward_server_bytes(&mut fwd);
                        let _ = self.take_server_frame(h.frame_len);
                        self.map.replies.emit_synths(&mut self.cout);
                        continue;
                    }
                }
            }
            let examine = match h.tag {
                be::READY_FOR_QUERY | be::ERROR_RESPONSE => true,
                be::COMMAND_COMPLETE => self.state.wants_tags() || self.map.drop_in_flight,
                be::PARAMETER_STATUS => self.state.wants_tags(),
                _ => false,
            };
            if !examine {
                let n = h.frame_len.min(have);
                fwd += n;
                self.flow.s_pass = h.frame_len - n;
            } else if have < h.frame_len {
                break;
            } else {
                match h.tag {
                    be::ERROR_RESPONSE => {
                        self.state.error_seen = true;
                        let frame = server_frame(&self.server, fwd, h.frame_len);
                        self.observe.error(protocol::body(frame));
                        let translated = translated
                            .or_else(|| self.map.replies.translate_error(frame))
                            .or_else(|| {
                                self.seq.hint.then(|| {
                                    super::translate::with_hint(
                                        frame,
                                        "55000",
                                        "not yet defined in this session",
                                        super::sequences::HINT,
                                    )
                                })?
                            });
                        if let Some(translated) = translated {
                            self.forward_server_bytes(&mut fwd);
                            let _ = self.take_server_frame(h.frame_len);
                            self.cout.push(translated);
                        } else {
                            fwd += h.frame_len;
                        }
                    }
                    be::COMMAND_COMPLETE => {
                        let frame = server_frame(&self.server, fwd, h.frame_len);
                        let tag = protocol::body(frame);
                        if tag.starts_with(b"ROLLBACK") {
                            self.state.rolled_back = true;
                        }
                        if self.map.drop_in_flight
                            && (tag.starts_with(b"DISCARD ALL")
                                || tag.starts_with(b"DEALLOCATE ALL"))
                            && let Some(att) = &mut self.server
                        {
                            self.map.dropped(&mut att.state.statements);
                        }
                        fwd += h.frame_len;
                    }
                    be::PARAMETER_STATUS => {
                        let frame = server_frame(&self.server, fwd, h.frame_len);
                        if let Some((name, rest)) = protocol::cstr(protocol::body(frame))
                            && let Some((value, _)) = protocol::cstr(rest)
                        {
                            self.state.on_reported(name, value);
                        }
                        fwd += h.frame_len;
                    }
                    _ => {
                        fwd += h.frame_len;
                        self.next_kept_unit(body_first, &mut fwd);
                        if self.on_ready(body_first, &mut fwd, h.frame_len, now) {
                            return;
                        }
                    }
                }
            }
            if tracked && self.map.replies.front_is_synth() {
                self.forward_server_bytes(&mut fwd);
                self.map.replies.emit_synths(&mut self.cout);
            }
        }
        self.forward_server_bytes(&mut fwd);
    }

    /// Whether a server message with `tag` may have to be held whole (rather than streamed).
    fn holds_whole(&self, tag: u8) -> bool {
        // (A retry needs only an ErrorResponse whole, as every error is.)
        matches!(tag, be::READY_FOR_QUERY | be::ERROR_RESPONSE)
            || self.map.replies.completes_front(tag)
            || self.map.replies.front_is_hidden_query()
            || (self.state.wants_tags()
                && matches!(tag, be::COMMAND_COMPLETE | be::PARAMETER_STATUS))
            || (self.map.drop_in_flight && tag == be::COMMAND_COMPLETE)
    }

    /// Moves the first `fwd` bytes of the server buffer to the client queue.
    pub(super) fn forward_server_bytes(&mut self, fwd: &mut usize) {
        if *fwd > 0
            && let Some(att) = &mut self.server
        {
            self.cout.push(att.state.buf.split_to(*fwd).freeze());
        }
        *fwd = 0;
    }

    /// Takes the whole frame of `len` bytes at the head of the server buffer.
    pub(super) fn take_server_frame(&mut self, len: usize) -> Bytes {
        match &mut self.server {
            Some(att) => att
                .state
                .buf
                .split_to(len.min(att.state.buf.len()))
                .freeze(),
            None => Bytes::new(),
        }
    }

    /// Handles a ReadyForQuery (already counted in `*fwd`): session-state bookkeeping and
    /// whether the server goes back. True when the scan must stop (the server is
    /// released, or pgsluice's own statements now run).
    fn on_ready(&mut self, status: u8, fwd: &mut usize, len: usize, now: Instant) -> bool {
        self.flow.outstanding = self.flow.outstanding.saturating_sub(1);
        self.map.drop_in_flight &= self.flow.outstanding > 0;
        if self.flow.held {
            self.flow.held = false;
            self.flow.c_need = 0;
        }
        self.status = status;
        let failed = self.state.error_seen;
        if let Some(att) = &mut self.server {
            att.state.status = status;
            self.map
                .settle_sql_prepares(failed, Some(&mut att.state.statements));
            let applied = self.state.on_ready(status);
            if applied.changed || !applied.server_lacks.is_empty() {
                att.state.gucs = self.state.server_record(&applied);
            }
            if applied.unlistened {
                self.unlisten_everything();
            }
        }
        self.observe.ready(
            status,
            self.flow.outstanding,
            self.state.pins(),
            &self.map.names,
            now,
        );
        if self.take_write_lsn_behind(now) {
            // The write-LSN read sent behind this statement answers next (`write_lsn.rs`),
            // perhaps in the bytes already here.
            self.forward_server_bytes(fwd);
            self.chore_frames(now);
            return true;
        }
        let quiet = self.flow.outstanding == 0
            && !self.flow.batch_open
            && self.flow.c_pass == 0
            && self.map.replies.is_empty();
        match self.limits.mode {
            PoolMode::Statement if status != b'I' => {
                // The ReadyForQuery of the BEGIN never reaches the client.
                *fwd -= len;
                self.forward_server_bytes(fwd);
                let _ = self.take_server_frame(len);
                let msg = "transaction blocks are not allowed in statement pooling mode";
                self.fatal("0A000", msg);
                self.end_session(msg.to_string(), now);
                true
            }
            PoolMode::Transaction | PoolMode::Statement
                if status == b'I' && quiet && !self.state.is_pinned() =>
            {
                let needs_lsn = self.route.as_ref().is_some_and(|r| r.needs_write_lsn());
                if needs_lsn {
                    let report = self.route.as_ref().is_some_and(|r| r.reports_write_lsn());
                    if report {
                        // The client's ReadyForQuery follows the write LSN.
                        *fwd -= len;
                        self.forward_server_bytes(fwd);
                        let _ = self.take_server_frame(len);
                    } else {
                        self.forward_server_bytes(fwd);
                    }
                    self.start_write_lsn(report, now);
                    return true;
                }
                // The answer goes out before the server is given back.
                self.forward_server_bytes(fwd);
                self.give_back(now);
                true
            }
            _ => {
                if status != b'I' && quiet {
                    self.idle_txn_deadline = self.limits.idle_txn.map(|d| now + d);
                }
                false
            }
        }
    }
}
