//! LISTEN/UNLISTEN served by pgsluice's listener: the session's subscription to its
//! (database, user)'s hub, made on its first LISTEN.

use std::sync::Arc;

use super::{Driver, Waiting};
use crate::pool::PoolKey;

/// A client's subscription to its (database, user)'s listener.
pub(super) struct Listening {
    /// The session's client id, under which the hub knows it.
    id: u32,
    pub(super) hub: Arc<crate::listen::Hub>,
    pub(super) sink: crate::listen::Sink,
    pub(super) rx: tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

impl Driver {
    /// Hands a LISTEN/UNLISTEN to the listener of the session's (database, user); its
    /// answer is awaited in [`Driver::poll_waiting`].
    pub(super) fn listen(&mut self, request: crate::listen::Request) {
        let l = match &mut self.listen {
            Some(l) => l,
            None => {
                let shared = self.reg.shared.clone();
                let info = self.core.observe().info.clone();
                let key = PoolKey {
                    database: info.database.to_string(),
                    user: info.user.to_string(),
                    node: 0,
                };
                let target_of = Arc::new(move || {
                    let snap = shared.snapshot.load();
                    shared.pools.settings(&snap.config, &key).map(|s| s.target)
                });
                let hub = self
                    .reg
                    .shared
                    .listeners
                    .hub(&info.database, &info.user, target_of);
                let (sink, rx) = tokio::sync::mpsc::unbounded_channel();
                let id = self.core.id;
                // Subscribed until it ends (`Listening` goes with the session): the
                // sweeper need not wake it to park (`lot::sweep`).
                info.set_never_parks();
                self.listen
                    .insert(Box::new(Listening { id, hub, sink, rx }))
            }
        };
        let (hub, sink, id) = (l.hub.clone(), l.sink.clone(), self.core.id);
        self.waiting = Some(Waiting::Listen(Box::pin(async move {
            hub.apply(id, request, sink).await
        })));
    }
}
