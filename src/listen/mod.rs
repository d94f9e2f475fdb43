//! LISTEN without pinning: in transaction and statement mode a client's `LISTEN` and
//! `UNLISTEN` are served by one listening server connection per (database, user) that
//! pgsluice keeps (a [`Hub`]), and each notification is handed to every client listening
//! on its channel, in the server's order. The session core holds a notification back
//! until its client is between transactions, as PostgreSQL does.
//!
//! A listening connection that drops is opened again and its channels listened again;
//! each subscribed client then gets a NOTICE that notifications may have been missed.
//!
//! # Concurrency note
//! Each hub is one task that owns its server connection and its subscriber table; clients
//! talk to it over a channel (commands in order, each LISTEN confirmed once the server
//! has answered it, so a notification committed after the client's LISTEN returned
//! reaches it). Notifications go to each client over its own unbounded channel: a client
//! that does not read lets its queue grow, as PostgreSQL's own queue does.

mod hub;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::server::ServerTarget;

/// What a client asks of its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Listen(String),
    Unlisten(String),
    UnlistenAll,
}

/// Where a client's notifications (and notices about them) go: whole protocol frames.
pub type Sink = mpsc::UnboundedSender<Bytes>;

enum Command {
    Apply {
        client: u32,
        request: Request,
        sink: Sink,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// The client left.
    Leave { client: u32 },
}

/// One (database, user)'s listening connection, as clients see it.
pub struct Hub {
    tx: mpsc::UnboundedSender<Command>,
    /// How many server connections this hub has opened (for tests and the console).
    pub connects: Arc<std::sync::atomic::AtomicU64>,
}

impl Hub {
    /// Applies a client's LISTEN/UNLISTEN; returns once the server has it (or why not).
    pub async fn apply(&self, client: u32, request: Request, sink: Sink) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Apply {
                client,
                request,
                sink,
                done,
            })
            .map_err(|_| "the listener has stopped".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the listener has stopped".to_string()))
    }

    /// The client left: its channels are dropped (and unlistened when nobody else has them).
    pub fn leave(&self, client: u32) {
        let _ = self.tx.send(Command::Leave { client });
    }
}

/// Every hub, by (database, user).
#[derive(Default)]
pub struct Listeners {
    map: Mutex<HashMap<(String, String), Arc<Hub>>>,
}

impl Listeners {
    /// The hub of (database, user), started on first use; `target` says how to reach
    /// the primary (re-read by the hub from `target_of` whenever it reconnects).
    pub fn hub(
        &self,
        database: &str,
        user: &str,
        target_of: Arc<dyn Fn() -> Option<ServerTarget> + Send + Sync>,
    ) -> Arc<Hub> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (database.to_string(), user.to_string());
        if let Some(h) = map.get(&key)
            && !h.tx.is_closed()
        {
            return h.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let connects = Arc::default();
        let hub = Arc::new(Hub {
            tx,
            connects: Arc::clone(&connects),
        });
        tokio::spawn(hub::run(key.clone(), rx, target_of, connects));
        map.insert(key, hub.clone());
        hub
    }

    /// Listening server connections opened so far, by (database, user).
    pub fn connects(&self) -> Vec<((String, String), u64)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map
            .iter()
            .map(|(k, h)| {
                (
                    k.clone(),
                    h.connects.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        v.sort();
        v
    }
}

/// `LISTEN ch`, `UNLISTEN ch` or `UNLISTEN *` as a whole query (an optional `;`), with
/// the channel name as PostgreSQL folds it; `None` for anything else.
pub fn parse(sql: &str) -> Option<Request> {
    let s = sql.trim().trim_end_matches(';').trim();
    let (verb, rest) = s.split_once(char::is_whitespace)?;
    let rest = rest.trim();
    let listen = if verb.eq_ignore_ascii_case("listen") {
        true
    } else if verb.eq_ignore_ascii_case("unlisten") {
        false
    } else {
        return None;
    };
    if !listen && rest == "*" {
        return Some(Request::UnlistenAll);
    }
    let name = truncate(identifier(rest)?);
    Some(if listen {
        Request::Listen(name)
    } else {
        Request::Unlisten(name)
    })
}

/// One SQL identifier making up all of `s`: quoted (`""` escapes a quote) or plain
/// (folded to lower case).
fn identifier(s: &str) -> Option<String> {
    if let Some(inner) = s.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        if inner.is_empty() || inner.replace("\"\"", "").contains('"') {
            return None;
        }
        return Some(inner.replace("\"\"", "\""));
    }
    // As PostgreSQL's scanner: letters, `_` and any non-ASCII character start a name;
    // digits and `$` may follow.
    let start = |c: char| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii();
    let ok = s.chars().next().is_some_and(start)
        && s.chars()
            .all(|c| start(c) || c.is_ascii_digit() || c == '$');
    ok.then(|| s.to_ascii_lowercase())
}

/// Longest identifier PostgreSQL keeps, in bytes (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER: usize = 63;

/// `name` cut as PostgreSQL cuts an identifier: to 63 bytes, on a character boundary
/// (the server notifies under the cut name).
fn truncate(mut name: String) -> String {
    if name.len() > MAX_IDENTIFIER {
        let mut end = MAX_IDENTIFIER;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// `name` as a quoted identifier, for the hub's own statements.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        assert_eq!(parse("LISTEN jobs"), Some(Request::Listen("jobs".into())));
        assert_eq!(
            parse(" listen Jobs ; "),
            Some(Request::Listen("jobs".into()))
        );
        assert_eq!(
            parse("LISTEN \"Mixed \"\"Case\"\"\""),
            Some(Request::Listen("Mixed \"Case\"".into()))
        );
        assert_eq!(parse("unlisten x"), Some(Request::Unlisten("x".into())));
        assert_eq!(parse("UNLISTEN *"), Some(Request::UnlistenAll));
        assert_eq!(parse("LISTEN *"), None);
        assert_eq!(parse("LISTEN a; SELECT 1"), None);
        assert_eq!(parse("LISTEN a b"), None);
        assert_eq!(parse("LISTEN \"a\"b\""), None);
        assert_eq!(parse("LISTENING a"), None);
        assert_eq!(parse("LISTEN"), None);
        assert_eq!(parse("LISTEN €"), Some(Request::Listen("€".into())));
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        // Cut to 63 bytes, as PostgreSQL cuts identifiers, never inside a character.
        let long = format!("LISTEN {}", "x".repeat(70));
        assert_eq!(parse(&long), Some(Request::Listen("x".repeat(63))));
        let wide = format!("LISTEN {}", "€".repeat(30));
        assert_eq!(parse(&wide), Some(Request::Listen("€".repeat(21))));
    }
}
