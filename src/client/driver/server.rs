//! The driver's server side: taking a server from the pool for the core, giving it back
//! as the core says, and cancelling what runs on it.

use std::time::Instant;

use super::Driver;
use crate::client::core::{AttachError, Release};
use crate::pool::{PoolError, PoolKey};
use crate::registry::clients::ServerLink;
use crate::server::ServerState;

impl Driver {
    /// Takes a server on `node` for the core (waiting out a PAUSE first).
    pub(super) async fn checkout(&mut self, node: usize) {
        if self.core.observe().info.held() {
            let info = self.core.observe().info.clone();
            // Boxed: the hold's state would otherwise enlarge every checkout's future.
            let hold = Box::pin(crate::client::hold::hold(
                &self.shared,
                &info,
                self.wait_timeout,
            ));
            let held = hold.await;
            if let Err((code, msg)) = held {
                self.core
                    .attach_failed(node, AttachError::Other(code, msg), Instant::now());
                return;
            }
        }
        // The pool is borrowed from `pools` (not cloned) for the checkout: a transaction
        // touches the pool's reference count only in its lease.
        if !self.ensure_pool(node) {
            let msg = format!(
                "node {node} of database \"{}\" is no longer configured",
                self.database
            );
            self.core.attach_failed(
                node,
                AttachError::Other("3D000".into(), msg),
                Instant::now(),
            );
            return;
        }
        let Some(pool) = self.pools.get(node).and_then(Option::as_ref) else {
            return;
        };
        let shared = &self.shared;
        self.core
            .observe()
            .switch_node(node, || shared.metrics.pool(&pool.key));
        let checkout = pool.checkout(self.wait_timeout).await;
        let now = Instant::now();
        let mut lease = match checkout {
            Ok(lease) => lease,
            Err(e) => {
                let err = match e {
                    PoolError::Timeout(d) => AttachError::Other(
                        "57014".into(),
                        format!(
                            "no server connection available within query_wait_timeout ({}s)",
                            d.as_secs_f64()
                        ),
                    ),
                    PoolError::Server(e) => {
                        AttachError::Unreachable(e.sqlstate().to_string(), e.to_string())
                    }
                    PoolError::Removed => AttachError::Other(
                        "3D000".into(),
                        format!(
                            "database \"{}\" was removed from the configuration",
                            self.database
                        ),
                    ),
                };
                self.core.attach_failed(node, err, now);
                return;
            }
        };
        // Until it is given back explicitly, nobody can vouch for its state.
        lease.set_clean(false);
        let id = lease.state.id;
        let state = std::mem::replace(&mut lease.state, ServerState::lent(id));
        let link = ServerLink {
            id: state.id,
            backend_pid: lease.backend_pid,
            addr: lease.addr,
            local_port: lease.local_port,
            created: lease.created,
        };
        self.cancel.set(Some(lease.cancel_target()));
        self.lease = Some(lease);
        self.core.attached(state, node, link, now);
    }

    /// Sends a cancel request for the query running on the held server.
    pub(super) fn cancel_query(&mut self) {
        if let Some(lease) = &self.lease {
            tokio::spawn(crate::client::cancel::send_cancel(lease.cancel_target()));
        }
    }

    /// Gives the server back as the core says.
    pub(super) fn release(&mut self, state: ServerState, how: Release) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        self.cancel.set(None);
        lease.state = state;
        match how {
            Release::Clean => {
                lease.set_clean(true);
                lease.checkin();
            }
            Release::Close(reason) => lease.discard(reason),
            Release::CloseAndCancel(reason) => {
                tokio::spawn(crate::client::cancel::send_cancel(lease.cancel_target()));
                lease.discard(reason);
            }
        }
        if let Some(buf) = self.core.take_idle_buffer() {
            // An idle client keeps no buffer; the next active one of this worker reuses it.
            crate::client::buffers::give_back(buf);
        }
    }

    /// Whether `node` has a pool in `pools`, made on first use (`false`: the node is no
    /// longer configured).
    fn ensure_pool(&mut self, node: usize) -> bool {
        if self.pools.get(node).is_some_and(Option::is_some) {
            return true;
        }
        let key = PoolKey {
            database: self.database.clone(),
            user: self.user.clone(),
            node,
        };
        let Some(pool) = self
            .shared
            .pools
            .get(&self.shared.snapshot.load().config, key)
        else {
            return false;
        };
        if self.pools.len() <= node {
            self.pools.resize(node + 1, None);
        }
        if let Some(slot) = self.pools.get_mut(node) {
            *slot = Some(pool);
        }
        true
    }
}
