//! The driver's server side: taking a server from the pool for the core, giving it back
//! as the core says, and cancelling what runs on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use super::Driver;
use crate::client::core::{AttachError, Detached, Release};
use crate::pool::{Checkout, Lease, Pool, PoolError, Queued, Slow};

/// A checkout the pool could not finish at once: the core's client input waits on it.
pub(super) struct ServerWait {
    node: usize,
    on: On,
}

/// How a PAUSE's wait ended: `Err((SQLSTATE, message))` for the client.
type Held = Result<(), (String, String)>;

enum On {
    /// PAUSE: the client waits for RESUME before it takes a server (rare: boxed).
    Hold(Pin<Box<dyn Future<Output = Held> + Send>>),
    /// A place in the pool's queue (no allocation of its own).
    Queued(Queued),
    /// A connect or a server check (rare: boxed by the pool).
    Slow(Slow),
}

/// What a [`ServerWait`] ended with.
pub(super) enum Done {
    Held(Held),
    Next(Result<Checkout, PoolError>),
}

impl ServerWait {
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<(usize, Done)> {
        let done = match &mut self.on {
            On::Hold(f) => Done::Held(ready!(f.as_mut().poll(cx))),
            On::Queued(q) => Done::Next(ready!(q.poll(cx))),
            On::Slow(f) => Done::Next(ready!(f.as_mut().poll(cx)).map(Checkout::Ready)),
        };
        Poll::Ready((self.node, done))
    }
}

impl Driver {
    /// Takes a server on `node` for the core (waiting out a PAUSE first). What cannot be
    /// had at once is waited on in [`Driver::poll_waiting`].
    pub(super) fn checkout(&mut self, node: usize, now: Instant) {
        if self.core.observe().info.held() {
            let info = self.core.observe().info.clone();
            let (shared, wait) = (self.reg.shared.clone(), self.core.limits().wait_timeout);
            let hold = async move { crate::client::hold::hold(&shared, &info, wait).await };
            self.wait_on(node, On::Hold(Box::pin(hold)));
            return;
        }
        self.take_server(node, now);
    }

    /// What a wait for a server ended with.
    pub(super) fn checkout_done(&mut self, node: usize, done: Done, now: Instant) {
        match done {
            Done::Held(Ok(())) => self.take_server(node, now),
            Done::Held(Err((code, msg))) => {
                self.core
                    .attach_failed(node, AttachError::Other(code, msg), now);
            }
            Done::Next(next) => self.checkout_next(node, next, now),
        }
    }

    fn wait_on(&mut self, node: usize, on: On) {
        self.waiting = Some(super::Waiting::Server(ServerWait { node, on }));
    }

    /// The pool's part of a checkout.
    fn take_server(&mut self, node: usize, now: Instant) {
        // The pool is borrowed from `pools` (not cloned) for the checkout: a transaction
        // touches the pool's reference count only in its lease.
        if !self.ensure_pool(node) {
            let msg = format!(
                "node {node} of database \"{}\" is no longer configured",
                self.core.observe().info.database
            );
            self.core
                .attach_failed(node, AttachError::Other("3D000".into(), msg), now);
            return;
        }
        let Some(pool) = self.pools.get(node) else {
            return;
        };
        let shared = &self.reg.shared;
        self.core
            .observe()
            .switch_node(node, || shared.metrics.pool(&pool.key));
        // Made on the session's first wait, and kept for the others.
        let handoff = self.handoff.get_or_insert_with(Default::default);
        let next = pool.start_checkout(self.core.limits().wait_timeout, handoff, now);
        self.checkout_next(node, next, now);
    }

    fn checkout_next(&mut self, node: usize, next: Result<Checkout, PoolError>, now: Instant) {
        match next {
            Ok(Checkout::Ready(lease)) => self.attach(node, lease, now),
            Ok(Checkout::Queued(q)) => self.wait_on(node, On::Queued(q)),
            Ok(Checkout::Slow(f)) => self.wait_on(node, On::Slow(f)),
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
                            self.core.observe().info.database
                        ),
                    ),
                };
                self.core.attach_failed(node, err, now);
            }
        }
    }

    /// Hands a checked-out server to the core.
    fn attach(&mut self, node: usize, mut lease: Lease, now: Instant) {
        // Until it is given back explicitly, nobody can vouch for its state.
        lease.set_clean(false);
        let link = lease.link.clone();
        let lease = self.lease.insert(lease);
        self.core.attach_from(&mut lease.state, node, link, now);
    }

    /// Sends a cancel request for the query running on the held server.
    pub(super) fn cancel_query(&mut self) {
        if let Some(lease) = &self.lease {
            tokio::spawn(crate::client::cancel::send_cancel(lease.cancel_target()));
        }
    }

    /// Gives the server back as the core says.
    pub(super) fn release(&mut self, server: Detached, how: Release, now: Instant) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        if std::mem::take(&mut self.lowat) {
            lease.stream.set_recv_lowat(1);
        }
        self.core.restore(server, &mut lease.state);
        match how {
            Release::Clean => {
                lease.set_clean(true);
                lease.checkin_at(now);
            }
            Release::Close(reason) => lease.discard(reason),
            Release::CloseAndCancel(reason) => {
                tokio::spawn(crate::client::cancel::send_cancel(lease.cancel_target()));
                lease.discard(reason);
            }
        }
        // The read buffer goes back with the rings when the client parks (in this same
        // poll, unless it has more to do).
    }

    /// Whether `node` has a pool in `pools`, made on first use (`false`: the node is no
    /// longer configured).
    fn ensure_pool(&mut self, node: usize) -> bool {
        if self.pools.get(node).is_some() {
            return true;
        }
        let info = &self.core.observe().info;
        let config = &self.reg.shared.snapshot.load().config;
        let Some(pool) = self
            .reg
            .shared
            .pools
            .get(config, &info.database, &info.user, node)
        else {
            return false;
        };
        self.pools.set(node, pool);
        true
    }
}

/// Each node's pool a session drew from, fetched on first use: node 0's (where every
/// session starts) inline, the others' made on a session's first use of another node
/// (a vector per session was an allocation per idle client).
#[derive(Default)]
pub(super) struct NodePools {
    first: Option<Arc<Pool>>,
    /// Node `n`'s at `n - 1`.
    rest: Box<[Option<Arc<Pool>>]>,
}

impl NodePools {
    pub(super) fn get(&self, node: usize) -> Option<&Arc<Pool>> {
        match node {
            0 => self.first.as_ref(),
            n => self.rest.get(n - 1)?.as_ref(),
        }
    }

    pub(super) fn set(&mut self, node: usize, pool: Arc<Pool>) {
        if node == 0 {
            self.first = Some(pool);
            return;
        }
        if self.rest.len() < node {
            let mut rest = std::mem::take(&mut self.rest).into_vec();
            rest.resize(node, None);
            self.rest = rest.into_boxed_slice();
        }
        if let Some(slot) = self.rest.get_mut(node - 1) {
            *slot = Some(pool);
        }
    }
}
