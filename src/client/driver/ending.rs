//! How a session ends: its last words to the client (at once, or for a few seconds at
//! most), why it ended logged, and its buffers left to the worker's next session.

use std::task::Context;
use std::time::Duration;

use super::Driver;
use crate::client::io;
use crate::net::ClientStream;

/// Longest pgsluice tries to deliver a client's last words (a FATAL error) before closing.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(5);

impl Driver {
    /// Ends the session here if its last words (a FATAL error, what was queued) go out
    /// without waiting, or the client is gone: true if so. Otherwise [`Driver::end`] has
    /// to wait for the client.
    pub fn try_end(&mut self, client: &mut ClientStream, reason: &str) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if io::poll_flush(&mut self.core.cout, client, &mut cx).is_pending() {
            return false;
        }
        self.log_end(reason);
        self.stow();
        true
    }

    /// Ends the session: its last words delivered (for a few seconds at most), why it
    /// ended logged, its buffers left to the worker.
    pub async fn end(mut self: Box<Self>, client: ClientStream, reason: String) {
        // Boxed: the farewell's timer would otherwise size every client's task.
        let farewell = Box::pin(self.farewell(client, reason));
        farewell.await;
        self.stow();
    }

    /// The session's rings and read buffer go to the worker's next session, as when a
    /// client goes idle (a connection per transaction would otherwise allocate them again
    /// at each login).
    pub(super) fn stow(&mut self) {
        let mut buf = std::mem::take(self.core.client_buf());
        buf.clear();
        crate::client::buffers::stow(self.core.stow(), Some(buf));
    }

    /// Delivers what is queued for a client that is being closed, for a few seconds at
    /// most, and logs why it ends.
    async fn farewell(&mut self, mut client: ClientStream, reason: String) {
        let flush = io::flush(&mut self.core.cout, &mut client);
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, flush).await;
        self.log_end(&reason);
    }

    pub(super) fn log_end(&mut self, reason: &str) {
        let id = self.core.id;
        let info = &self.core.observe().info;
        // Plain strings, as at login (a `Debug` of the pool key cost a tenth of a login's
        // instructions in the formatter).
        tracing::info!(
            client = id,
            user = &*info.user,
            database = &*info.database,
            "client disconnected: {reason}"
        );
    }
}
