//! PAUSE as a session sees it: a client whose database is paused waits here before it
//! takes a server.

use std::time::Duration;

use crate::registry::clients::ClientInfo;
use crate::registry::control::killed;
use crate::shared::{Phase, Shared};

/// Holds a client whose database is paused until RESUME, at most `limit`. Errors are
/// `(SQLSTATE, message)` for the client: killed, shutting down, or waited too long.
pub(super) async fn hold(
    shared: &Shared,
    info: &ClientInfo,
    limit: Option<Duration>,
) -> Result<(), (String, String)> {
    let Some(db) = info.db.clone() else {
        return Ok(());
    };
    let mut changed = db.subscribe();
    let mut phase = shared.drain.subscribe();
    let wait = async {
        loop {
            if info.killed() {
                return Err(killed(&db.name));
            }
            if *phase.borrow_and_update() != Phase::Running {
                return Err(("57P01".into(), "pgsluice is shutting down".into()));
            }
            if !db.paused() {
                return Ok(());
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { std::future::pending::<()>().await },
                r = phase.changed() => if r.is_err() { std::future::pending::<()>().await },
            }
        }
    };
    match limit {
        Some(l) => tokio::time::timeout(l, wait).await.unwrap_or_else(|_| {
            Err((
                "57014".into(),
                format!(
                    "database \"{}\" is paused: no server connection within query_wait_timeout ({}s)",
                    db.name,
                    l.as_secs_f64()
                ),
            ))
        }),
        None => wait.await,
    }
}
