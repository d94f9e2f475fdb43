//! pgsluice's own statements on the client's server, run between the client's units of
//! work while the client's input waits: bringing the server's settings in line with the
//! client's, reading the writer's WAL position after a write, and cleaning a server up
//! when its client leaves. The server's whole answer belongs to the chore (the client
//! sees at most the ParameterStatus messages that describe its own settings).

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};

use super::statements::frame;
use super::{CHORE_TIMEOUT, Core, Phase, Release};
use crate::protocol::{self, ErrorFields, be, build, fe};
use crate::server::CloseReason;
use crate::server::varcache::Gucs;

/// One of pgsluice's own exchanges with the server.
#[derive(Debug)]
pub enum Chore {
    /// Settings replay: one Query per statement, each with the setting it changes.
    Replay {
        steps: Vec<Option<String>>,
        done: usize,
        failed: Vec<(Option<String>, ErrorFields)>,
        from: Arc<Gucs>,
        target: Arc<Gucs>,
    },
    /// The writer's WAL insert position after a transaction that wrote; with `report`,
    /// the client's held-back ReadyForQuery follows it. `behind`: the read was sent right
    /// behind the client's statement ([`Core::write_lsn_fits_behind`]).
    WriteLsn {
        report: bool,
        lsn: Option<u64>,
        behind: bool,
        /// The read prepares its statement (`Some`), and the Parse was confirmed (`true`).
        parse: Option<bool>,
    },
    /// The session-level settings, read back after PL code may have changed them, behind
    /// `skip` deallocations of the client's statements under their own names (`kept`:
    /// one failed other than for being gone already, so the statement may be there still).
    ReadSettings {
        rows: Vec<(String, String)>,
        skip: usize,
        kept: bool,
    },
    /// Cleanup after the client left: ROLLBACK and/or the reset query.
    Cleanup {
        left: usize,
        failed: bool,
        reset: bool,
        reason: String,
    },
}

impl Chore {
    /// Takes one message of the server's answer (tag, body): true when the chore is over.
    fn answer(&mut self, tag: u8, body: &[u8]) -> bool {
        match (self, tag) {
            (
                Chore::Replay {
                    failed,
                    done,
                    steps,
                    ..
                },
                be::ERROR_RESPONSE,
            ) => {
                let name = steps.get(*done).cloned().flatten();
                failed.push((name, protocol::error_fields(body)));
                false
            }
            (Chore::Replay { done, steps, .. }, be::READY_FOR_QUERY) => {
                *done += 1;
                *done >= steps.len()
            }
            (Chore::WriteLsn { lsn, .. }, be::DATA_ROW) => {
                *lsn = super::probe_sql::first_column_lsn(body);
                false
            }
            (
                Chore::WriteLsn {
                    parse: Some(done), ..
                },
                be::PARSE_COMPLETE,
            ) => {
                *done = true;
                false
            }
            (Chore::Cleanup { failed, .. }, be::ERROR_RESPONSE) => {
                *failed = true;
                false
            }
            (Chore::Cleanup { left, .. }, be::READY_FOR_QUERY) => {
                *left = left.saturating_sub(1);
                *left == 0
            }
            (Chore::WriteLsn { .. }, be::READY_FOR_QUERY) => true,
            (Chore::ReadSettings { rows, skip: 0, .. }, be::DATA_ROW) => {
                if let Some(row) = two_columns(body) {
                    rows.push(row);
                }
                false
            }
            (Chore::ReadSettings { skip, kept, .. }, be::ERROR_RESPONSE) if *skip > 0 => {
                *kept |= protocol::error_fields(body).code != "26000";
                false
            }
            (Chore::ReadSettings { skip, .. }, be::READY_FOR_QUERY) if *skip > 0 => {
                *skip -= 1;
                false
            }
            (Chore::ReadSettings { .. }, be::READY_FOR_QUERY) => true,
            _ => false,
        }
    }
}

impl Core {
    /// Whether the held server's settings differ from the client's.
    pub(super) fn settings_differ(&self) -> bool {
        self.server.as_ref().is_some_and(|att| {
            !Arc::ptr_eq(&att.state.gucs, &self.state.gucs) && *att.state.gucs != *self.state.gucs
        })
    }

    /// Whether the held server has a custom-setting placeholder this client never set
    /// (`ServerState::placeholders`): no replay can take it away.
    pub(super) fn placeholders_foreign(&self) -> bool {
        self.server.as_ref().is_some_and(|att| {
            att.state
                .rare
                .iter()
                .flat_map(|r| r.placeholders.iter())
                .any(|n| self.state.gucs.get(n).is_none())
        })
    }

    /// If the server's settings differ from the client's, starts the replay and returns
    /// true (client input waits for it).
    pub(super) fn sync_settings(&mut self, now: Instant) -> bool {
        let Some(att) = &mut self.server else {
            return false;
        };
        if Arc::ptr_eq(&att.state.gucs, &self.state.gucs) {
            return false;
        }
        if *att.state.gucs == *self.state.gucs {
            att.state.gucs = self.state.gucs.clone();
            return false;
        }
        let steps = Gucs::replay(&att.state.gucs, &self.state.gucs);
        if !steps.is_empty()
            && let Some(kept) = &mut self.unnamed
        {
            // A simple Query drops the unnamed statement (see `unnamed_dropped`).
            kept.1 = None;
        }
        let mut names = Vec::with_capacity(steps.len());
        for (name, sql) in steps {
            self.sout.push(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]));
            names.push(name);
        }
        self.phase = Phase::Chore(Box::new(Chore::Replay {
            steps: names,
            done: 0,
            failed: Vec::new(),
            from: att.state.gucs.clone(),
            target: self.state.gucs.clone(),
        }));
        self.chore_deadline = Some(now + CHORE_TIMEOUT);
        true
    }

    /// The client's transaction ended idle: the server goes back, after its settings are
    /// read back when the transaction ran PL code that may have changed them.
    pub(super) fn give_back(&mut self, now: Instant) {
        if self.state.take_opaque() {
            self.start_read_settings(now);
        } else {
            self.release(Release::Clean);
        }
    }

    /// After a transaction that ran PL code (a `DO` block, a procedure, a function outside
    /// the allowlist): reads the session-level settings back before the server goes to
    /// anyone else. The client keeps what its PL code set, and the next client gets a
    /// server whose record is true. Costs one round trip, only after such transactions.
    pub(super) fn start_read_settings(&mut self, now: Instant) {
        let sql = "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'";
        self.unnamed_dropped();
        let names = self
            .server
            .as_deref_mut()
            .map(|att| att.state.take_own_names())
            .unwrap_or_default();
        for dealloc in super::own_names::deallocations(&names) {
            self.sout
                .push(frame(fe::QUERY, &[dealloc.as_bytes(), b"\0"]));
        }
        self.sout.push(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]));
        self.phase = Phase::Chore(Box::new(Chore::ReadSettings {
            rows: Vec::new(),
            skip: names.len(),
            kept: false,
        }));
        self.chore_deadline = Some(now + CHORE_TIMEOUT);
    }

    /// The client left: runs `statements` (ROLLBACK, the reset query) before the server
    /// goes back; `reset` says the reset query is among them.
    pub(super) fn start_cleanup(
        &mut self,
        statements: Vec<String>,
        reset: bool,
        reason: String,
        now: Instant,
    ) {
        for sql in &statements {
            self.sout.push(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]));
        }
        self.phase = Phase::Chore(Box::new(Chore::Cleanup {
            left: statements.len(),
            failed: false,
            reset,
            reason,
        }));
        self.chore_deadline = Some(now + CHORE_TIMEOUT);
    }

    /// Consumes the server's answers to the running chore.
    ///
    /// Frames are read where they are and passed over (only a ParameterStatus the client
    /// may see is split off the buffer): the write-LSN read's answer, four messages after
    /// every writing transaction, takes no handle on the buffer.
    pub(super) fn chore_frames(&mut self, now: Instant) {
        loop {
            let Some(att) = &mut self.server else { return };
            let h = match protocol::header(&att.state.buf, self.limits.max_message) {
                Ok(Some(h)) if att.state.buf.len() >= h.frame_len => h,
                Ok(_) => return,
                Err(e) => return self.server_lost(&format!("server protocol error: {e}"), now),
            };
            let Phase::Chore(chore) = &mut self.phase else {
                return;
            };
            if h.tag == be::PARAMETER_STATUS {
                // The server now reports the client's own setting: the client may know it.
                let frame = att.state.buf.split_to(h.frame_len).freeze();
                if matches!(**chore, Chore::Replay { .. }) {
                    self.cout.push(frame);
                }
                continue;
            }
            let body = att
                .state
                .buf
                .get(protocol::HEADER_LEN..h.frame_len)
                .unwrap_or_default();
            let finished = chore.answer(h.tag, body);
            if h.tag == be::READY_FOR_QUERY {
                att.state.status = body.first().copied().unwrap_or(b'E');
            }
            att.state.buf.advance(h.frame_len);
            if finished {
                self.chore_deadline = None;
                let Phase::Chore(chore) = std::mem::replace(&mut self.phase, Phase::Relay) else {
                    return;
                };
                self.chore_done(*chore, now);
                return;
            }
        }
    }

    fn chore_done(&mut self, chore: Chore, now: Instant) {
        match chore {
            Chore::Replay {
                failed,
                from,
                target,
                ..
            } => self.replay_done(failed, &from, target, now),
            Chore::WriteLsn {
                report,
                lsn,
                behind,
                parse,
            } => {
                self.write_lsn_parse_answered(parse);
                let status = self.server.as_ref().map_or(b'E', |a| a.state.status);
                let lsn = lsn.filter(|_| status == b'I');
                if behind {
                    self.write_lsn_behind_done(lsn, status, now);
                } else {
                    self.write_lsn_done(report, lsn, now);
                }
                self.step(now);
            }
            Chore::ReadSettings { rows, kept, .. } => {
                let ok = !kept && self.server.as_ref().is_some_and(|a| a.state.status == b'I');
                if ok {
                    let gucs = self.state.adopt_server_settings(&rows);
                    if let Some(att) = &mut self.server {
                        att.state.gucs = gucs;
                    }
                    self.release(Release::Clean);
                } else {
                    self.release(Release::Close(CloseReason::ResetFailed));
                }
                self.step(now);
            }
            Chore::Cleanup {
                failed,
                reset,
                reason,
                ..
            } => {
                let ok = !failed && self.server.as_ref().is_some_and(|a| a.state.status == b'I');
                if ok {
                    if reset && let Some(att) = &mut self.server {
                        att.state.keep_placeholders();
                        att.state.gucs = Arc::default();
                        att.state.statements.clear();
                        self.map.unsure = false;
                    }
                    self.release(Release::Clean);
                } else {
                    self.release(Release::Close(CloseReason::ResetFailed));
                }
                self.finish(reason);
            }
        }
    }

    fn replay_done(
        &mut self,
        mut failed: Vec<(Option<String>, ErrorFields)>,
        from: &Gucs,
        target: Arc<Gucs>,
        now: Instant,
    ) {
        // Resetting a setting the server no longer knows (a placeholder dropped when its
        // extension loaded) leaves the server as wanted: not this client's error.
        failed.retain(|(name, e)| {
            let reset = name.as_deref().is_some_and(|n| target.get(n).is_none());
            !(reset && matches!(e.code.as_str(), "42704" | "42602"))
        });
        let Some((name, first)) = failed.first() else {
            if let Some(att) = &mut self.server {
                att.state.gucs = target;
            }
            self.step(now);
            return;
        };
        let unknown = failed.iter().any(|(n, _)| n.is_none());
        let names: Vec<String> = failed.iter().filter_map(|(n, _)| n.clone()).collect();
        tracing::warn!(
            client = self.id,
            setting = name.as_deref().unwrap_or("session authorization"),
            "cannot restore a session setting on the server: {}",
            first.message
        );
        let message = format!(
            "cannot restore session setting {} on the server connection: {}; the setting is \
             cleared for this session",
            name.as_deref().unwrap_or("session_authorization"),
            first.message
        );
        let code = if first.code.is_empty() {
            "08006"
        } else {
            first.code.as_str()
        }
        .to_string();
        if unknown {
            self.state
                .drop_settings(&["session_authorization".to_string(), "role".to_string()]);
            self.release(Release::Close(CloseReason::ResetFailed));
        } else {
            self.state.drop_settings(&names);
            if let Some(att) = &mut self.server {
                att.state.gucs = Arc::new(target.with_from(from, &names));
            }
        }
        if !self.refuse_unit(&code, &message) {
            self.fatal(&code, &message);
            self.release(Release::Close(CloseReason::ResetFailed));
            return self.finish(message);
        }
        let idle = self.quiet() && self.status == b'I' && !self.state.is_pinned();
        if idle && self.limits.mode != crate::config::PoolMode::Session {
            self.release(Release::Clean);
        }
        self.step(now);
    }

    /// pgsluice's own statements got no answer (`why`: in time, or the server was lost):
    /// the server is closed; the client, which has its own answers, goes on where it can.
    pub(super) fn chore_failed(&mut self, why: &str, now: Instant) {
        let Phase::Chore(chore) = std::mem::replace(&mut self.phase, Phase::Relay) else {
            return;
        };
        tracing::warn!(
            client = self.id,
            "server failed during pgsluice's own statements: {why}"
        );
        self.release(Release::Close(CloseReason::Broken));
        match *chore {
            Chore::Cleanup { reason, .. } => return self.finish(reason),
            Chore::WriteLsn { report, behind, .. } => {
                if let Some(r) = &mut self.route {
                    r.wrote_up_to(None);
                }
                if report {
                    let mut buf = BytesMut::with_capacity(6);
                    build::ready_for_query(&mut buf, b'I');
                    self.cout.push(buf.freeze());
                }
                if behind && !self.quiet() {
                    // The client sent more behind the read (whole units, or the start of
                    // one): it will not be answered, and the rest cannot follow it.
                    let msg = format!("server connection lost: {why}");
                    self.fatal("08006", &msg);
                    return self.finish(msg);
                }
            }
            Chore::ReadSettings { .. } => {}
            Chore::Replay { .. } => {
                // The unit the replay was for fails; the ones pipelined behind it go on.
                let msg = "the server did not answer while session settings were restored";
                if !self.refuse_unit("08006", msg) {
                    self.fatal("08006", msg);
                    return self.finish(msg.to_string());
                }
            }
        }
        self.step(now);
    }
}

/// The first two columns of a DataRow body as text (`None` for a NULL or malformed row).
fn two_columns(body: &[u8]) -> Option<(String, String)> {
    let mut at = 2;
    let mut cols = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        at += 4;
        cols.push(String::from_utf8_lossy(body.get(at..at + len)?).into_owned());
        at += len;
    }
    let value = cols.pop()?;
    Some((cols.pop()?, value))
}
