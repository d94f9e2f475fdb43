//! LISTEN and UNLISTEN in transaction and statement mode: answered by pgsluice once its
//! listener ([`crate::listen`]) has the channel, never sent to the client's server (so
//! they pin nothing); notifications come back through the driver
//! ([`Core::notification`]) and reach the client between its transactions, in order.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::channels::Channels;
use super::{Action, Core, Phase, Pin};
use crate::listen::Request;
use crate::protocol::{self, build};

/// The client's side of its LISTENs: notifications waiting for the client to be between
/// transactions, and the channels the listener holds for it.
#[derive(Debug, Default)]
pub(super) struct Pending {
    queue: VecDeque<Bytes>,
    /// The statement being applied by the listener (its CommandComplete tag, and what it
    /// does to `channels` once confirmed).
    asked: Option<Request>,
    /// The channels the listener confirmed, in the order the client listened.
    pub(super) channels: Channels,
    /// Requests pgsluice handed to the listener on its own (after a `DISCARD ALL` or
    /// an `UNLISTEN *` the server ran), whose answers come before the answer to the
    /// client's next request and are not the client's.
    pub(super) silent: u32,
}

impl Core {
    /// Whether a Query with this body is a LISTEN/UNLISTEN pgsluice serves. Every query
    /// passes here: most are rejected on their first bytes.
    pub(super) fn listen_request(&self, body: &[u8]) -> Option<Request> {
        // Inside a transaction block PostgreSQL applies LISTEN at COMMIT and forgets it at
        // ROLLBACK: there it goes to the server, which pins the client, as before.
        if !self.limits.listen_here || self.status != b'I' {
            return None;
        }
        let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
        let head = body.get(start..start + 6)?;
        if !head.eq_ignore_ascii_case(b"listen") && !head.eq_ignore_ascii_case(b"unlist") {
            return None;
        }
        let request = crate::listen::parse(protocol::cstr(body)?.0)?;
        // A client pinned by a LISTEN its server ran (inside a transaction block) has
        // its server run UNLISTEN * too; once it ran, the listener's channels go as well
        // (`channels.rs`).
        if request == Request::UnlistenAll && self.state.pins().contains(&Pin::Listen) {
            return None;
        }
        Some(request)
    }

    /// Hands a LISTEN/UNLISTEN (the Query of `len` bytes at the head) to the driver;
    /// client input waits for [`Core::listen_done`].
    pub(super) fn ask_listener(&mut self, request: Request, len: usize) {
        let _ = self.cin.split_to(len);
        self.notes.get_or_insert_default().asked = Some(request.clone());
        self.phase = Phase::Listening;
        self.actions.push_back(Action::Listen(request));
    }

    /// The listener applied the request (or says why not): the client gets its answer.
    pub fn listen_done(&mut self, result: Result<(), String>, now: Instant) {
        if let Some(notes) = &mut self.notes
            && notes.silent > 0
        {
            notes.silent -= 1;
            return;
        }
        if !matches!(self.phase, Phase::Listening) {
            return;
        }
        self.phase = Phase::Relay;
        let asked = self.notes.as_mut().and_then(|n| n.asked.take());
        let mut buf = BytesMut::new();
        match result {
            Ok(()) => {
                let tag = match &asked {
                    Some(Request::Listen(_)) | None => "LISTEN",
                    Some(_) => "UNLISTEN",
                };
                if let (Some(notes), Some(request)) = (&mut self.notes, &asked) {
                    notes.channels.apply(request);
                }
                build::command_complete(&mut buf, tag)
            }
            Err(msg) => build::error(&mut buf, "ERROR", "55000", &msg),
        }
        build::ready_for_query(&mut buf, self.status);
        self.cout.push(buf.freeze());
        self.step(now);
    }

    /// A notification (or a notice about them) from the listener: sent now if the client
    /// is between transactions, else once it is.
    pub fn notification(&mut self, frame: Bytes) {
        self.notes.get_or_insert_default().queue.push_back(frame);
        self.deliver_notifications();
    }

    /// Sends the waiting notifications when the client is between transactions with
    /// nothing in flight (and never inside a frame being relayed). Every step asks; a
    /// session that never listened answers inline.
    #[inline]
    pub(super) fn deliver_notifications(&mut self) {
        if self.notes.is_some() {
            self.deliver_pending_notifications();
        }
    }

    fn deliver_pending_notifications(&mut self) {
        let Some(notes) = &mut self.notes else {
            return;
        };
        if notes.queue.is_empty() || self.client_left {
            return;
        }
        let between = self.status == b'I'
            && self.flow.outstanding == 0
            && !self.flow.batch_open
            && self.flow.s_pass == 0
            && matches!(self.phase, Phase::Relay | Phase::Checkout);
        if between {
            for frame in notes.queue.drain(..) {
                self.cout.push(frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use crate::listen::Request;

    fn notify(channel: &str, payload: &str) -> Vec<u8> {
        let mut body = 42u32.to_be_bytes().to_vec();
        body.extend_from_slice(format!("{channel}\0{payload}\0").as_bytes());
        msg(b'A', &body)
    }

    #[test]
    fn listen_is_answered_here_and_pins_nothing() {
        let mut r = rig(PoolMode::Transaction, &[]);
        r.client(&query("LISTEN jobs"));
        match r.action() {
            Some(Action::Listen(Request::Listen(ch))) => assert_eq!(ch, "jobs"),
            other => panic!("expected Listen, got {other:?}"),
        }
        r.client(&query("SELECT 1"));
        assert!(r.action().is_none(), "input waits for the listener");
        r.core.listen_done(Ok(()), r.now);
        assert_eq!(tags(&r.sent_to_client()), "CZ");
        r.expect_checkout();
        assert_eq!(r.sent_to_server(), query("SELECT 1"));
        assert!(r.core.pins().is_empty());
        // A notification during the query waits for its ReadyForQuery.
        r.core.notification(notify("jobs", "1").into());
        assert!(r.sent_to_client().is_empty());
        let mut answer = complete("SELECT 1");
        answer.extend(ready(b'I'));
        r.server(&answer);
        let (_, how) = r.expect_release();
        assert_eq!(how, Release::Clean);
        assert_eq!(tags(&r.sent_to_client()), "CZA");
        // Idle without a server: at once.
        r.core.notification(notify("jobs", "2").into());
        assert_eq!(tags(&r.sent_to_client()), "A");
    }

    #[test]
    fn notifications_wait_for_the_end_of_a_transaction() {
        let mut r = rig(PoolMode::Transaction, &[]);
        r.client(&query("BEGIN"));
        r.expect_checkout();
        let mut answer = complete("BEGIN");
        answer.extend(ready(b'T'));
        r.server(&answer);
        r.sent_to_client();
        r.core.notification(notify("a", "1").into());
        r.core.notification(notify("a", "2").into());
        assert!(r.sent_to_client().is_empty());
        r.client(&query("COMMIT"));
        let mut answer = complete("COMMIT");
        answer.extend(ready(b'I'));
        r.server(&answer);
        assert_eq!(tags(&r.sent_to_client()), "CZAA");
    }

    #[test]
    fn inside_a_transaction_block_listen_goes_to_the_server() {
        let mut r = rig(PoolMode::Transaction, &[]);
        r.client(&query("BEGIN"));
        r.expect_checkout();
        r.sent_to_server();
        let mut answer = complete("BEGIN");
        answer.extend(ready(b'T'));
        r.server(&answer);
        r.sent_to_client();
        r.client(&query("LISTEN jobs"));
        assert_eq!(r.sent_to_server(), query("LISTEN jobs"));
        assert!(r.action().is_none(), "not for pgsluice's listener");
    }

    #[test]
    fn session_mode_and_failures() {
        let mut r = rig(PoolMode::Session, &[]);
        std::sync::Arc::make_mut(&mut r.core.limits).listen_here = false;
        r.client(&query("LISTEN jobs"));
        r.expect_checkout();
        assert_eq!(r.sent_to_server(), query("LISTEN jobs"));
        let mut r = rig(PoolMode::Transaction, &[]);
        r.client(&query("UNLISTEN *"));
        assert!(matches!(
            r.action(),
            Some(Action::Listen(Request::UnlistenAll))
        ));
        r.core.listen_done(Err("no".into()), r.now);
        let out = r.sent_to_client();
        assert_eq!(tags(&out), "EZ");
    }
}
