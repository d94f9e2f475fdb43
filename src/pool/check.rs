//! The server check (`server_check_query`, `server_check_delay`): a connection idle longer
//! than the delay runs the query before it is handed out, and is closed instead when the
//! query fails or does not answer in time.

use std::time::{Duration, Instant};

use super::Pool;
use crate::server::{CloseReason, ServerConn};

/// Longest the check query may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl Pool {
    /// `conn`, checked first when it was idle longer than the delay; `None` when the
    /// check failed (the connection is closed and its slot freed).
    pub(super) async fn checked(
        &self,
        mut conn: Box<ServerConn>,
        check: Option<(String, Duration)>,
    ) -> Option<Box<ServerConn>> {
        let Some((query, delay)) = check else {
            return Some(conn);
        };
        if conn.last_used.elapsed() < delay {
            return Some(conn);
        }
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, conn.simple_query(&query)).await;
        match outcome {
            Ok(Ok(None)) if conn.state.status == b'I' && conn.state.buf.is_empty() => {
                conn.last_used = Instant::now();
                Some(conn)
            }
            other => {
                let why = match other {
                    Ok(Ok(Some(e))) => e.message,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer in time".into(),
                    Ok(Ok(None)) => "not idle after the check".into(),
                };
                tracing::info!(pool = ?self.key, server = conn.state.id, "server check failed, closing the connection: {why}");
                self.discard(conn, CloseReason::Broken);
                None
            }
        }
    }
}
