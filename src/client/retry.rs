//! Self-healing reads: a simple Query sent to a replica as a transaction of its own is
//! kept (by reference) until the replica's answer shows it ran there. If the replica
//! refuses it as a write (SQLSTATE 25006) or dies before any row reached the client, its
//! answer is dropped and the Query is put back at the head of the client's input, to go
//! to the primary.

use bytes::BytesMut;

use super::session::Session;
use crate::protocol::{self, be, fe};

/// A simple Query sent to a replica as a transaction of its own, kept until the replica's
/// answer shows whether it ran there. If the replica refuses it as a write (SQLSTATE
/// 25006) or dies before any row reached the client, it is sent again to the primary.
pub(super) struct Retry {
    /// The client's Query message (empty until the relay sends it).
    pub query: bytes::Bytes,
    /// Answer messages held back until the first row or completion (RowDescription,
    /// notices), so that a retry leaves no trace.
    pub held: Vec<bytes::Bytes>,
    /// The replica refused; its messages up to ReadyForQuery are dropped.
    pub discarding: bool,
}

/// What [`Session::watch_retry`] did with a server message.
pub(super) enum RetryStep {
    /// Not held: handle it as usual.
    Pass,
    /// Held back or dropped.
    Taken,
    /// Need the whole message first.
    Wait,
    /// The replica refused the read: retry it on the primary.
    Retry,
}

impl Session {
    /// Keeps a copy of a Query about to go to a replica as a transaction of its own, so
    /// that it can be retried on the primary. Any other message sent meanwhile ends the
    /// chance (the held answers go to the client).
    pub(super) fn arm_retry(&mut self, tag: u8) {
        let Some(r) = &mut self.route else {
            return;
        };
        if let Some(retry) = r.retry.take() {
            for m in retry.held {
                self.cout.push(m);
            }
            return;
        }
        if r.reading
            && tag == fe::QUERY
            && self.outstanding == 0
            && self.status == b'I'
            && r.db.policy.load().retry_read_only_errors
        {
            r.retry = Some(Retry {
                query: bytes::Bytes::new(),
                held: Vec::new(),
                discarding: false,
            });
        }
    }

    /// Stops watching for a retry; held answers go to the client.
    pub(super) fn disarm_retry(&mut self) {
        if let Some(retry) = self.route.as_mut().and_then(|r| r.retry.take()) {
            for m in retry.held {
                self.cout.push(m);
            }
        }
    }

    /// Whether the read in flight may be sent again elsewhere: nothing of its answer
    /// reached the client.
    pub(super) fn retry_possible(&self) -> bool {
        self.route.as_ref().is_some_and(|r| {
            r.retry
                .as_ref()
                .is_some_and(|t| !t.discarding && !t.query.is_empty())
        })
    }

    /// Puts the Query that failed on a replica back at the head of the client's input,
    /// to be sent to the primary (after `dead`, the replica is also left out of reads).
    pub(super) fn requeue_retry(&mut self, dead: Option<String>) {
        let Some(r) = &mut self.route else {
            return;
        };
        let Some(retry) = r.retry.take() else {
            return;
        };
        if retry.query.is_empty() {
            return;
        }
        let node = r.node;
        r.db.nodes[node]
            .retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &dead {
            Some(why) => {
                r.db.report_unreachable(node, why);
                tracing::warn!(client = self.id(), "replica lost mid-read; retrying: {why}");
            }
            None => {
                r.primary_once = true;
                tracing::info!(
                    client = self.id(),
                    "replica refused a statement as a write (25006); retrying on the primary"
                );
            }
        }
        let mut cin = BytesMut::with_capacity(retry.query.len() + self.cin.len());
        cin.extend_from_slice(&retry.query);
        cin.extend_from_slice(&self.cin);
        self.cin = cin;
        self.c_need = 0;
        self.outstanding = 0;
        self.batch_open = false;
        self.s_pass = 0;
        self.ext.expect.clear();
        self.ext.skipping = false;
    }

    /// While a read on a replica may still be retried: holds back the first answer
    /// messages, and drops everything after a 25006 refusal up to its ReadyForQuery.
    pub(super) fn watch_retry(&mut self, tag: u8, len: usize, fwd: &mut usize) -> RetryStep {
        let discarding = self
            .route
            .as_ref()
            .and_then(|r| r.retry.as_ref())
            .is_some_and(|t| t.discarding);
        let have = self.server.as_ref().map_or(0, |s| s.buf.len() - *fwd);
        let hold = matches!(
            tag,
            be::ROW_DESCRIPTION | be::NOTICE_RESPONSE | be::ERROR_RESPONSE | be::READY_FOR_QUERY
        );
        if !discarding && !hold {
            self.disarm_retry();
            return RetryStep::Pass;
        }
        if have < len {
            return RetryStep::Wait;
        }
        self.forward_server_bytes(fwd);
        let Some(server) = &mut self.server else {
            return RetryStep::Pass;
        };
        if !discarding && tag == be::ERROR_RESPONSE {
            let code = protocol::error_fields(protocol::body(&server.buf[..len])).code;
            if code != "25006" {
                self.disarm_retry();
                return RetryStep::Pass;
            }
        }
        if !discarding && tag == be::READY_FOR_QUERY {
            self.disarm_retry();
            return RetryStep::Pass;
        }
        let frame = server.buf.split_to(len).freeze();
        let Some(retry) = self.route.as_mut().and_then(|r| r.retry.as_mut()) else {
            return RetryStep::Pass;
        };
        match tag {
            be::READY_FOR_QUERY => {
                // The refused Query is over; the replica is idle and clean again.
                server.status = b'I';
                RetryStep::Retry
            }
            be::ERROR_RESPONSE if !discarding => {
                retry.discarding = true;
                retry.held.clear();
                RetryStep::Taken
            }
            _ if discarding => RetryStep::Taken,
            _ => {
                retry.held.push(frame);
                RetryStep::Taken
            }
        }
    }
}
