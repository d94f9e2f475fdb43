//! One hub's task: the listening server connection of a (database, user), its channels
//! and their subscribers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{Command, Request, Sink, quote};
use crate::protocol::{self, be, build};
use crate::server::{ServerConn, ServerError, ServerTarget};

/// Longest a connect to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Subscribers by channel, in the order they listened.
type Subs = BTreeMap<String, Vec<(u32, Sink)>>;

/// What the hub holds besides its subscribers.
struct Link {
    key: (String, String),
    target_of: Arc<dyn Fn() -> Option<ServerTarget> + Send + Sync>,
    conn: Option<Box<ServerConn>>,
    /// Channels LISTENed on `conn`.
    listening: HashSet<String>,
    /// The connection was lost with channels listened: subscribers get a NOTICE once it
    /// is back.
    lost: bool,
    backoff: Duration,
    connects: Arc<AtomicU64>,
}

pub(super) async fn run(
    key: (String, String),
    mut rx: mpsc::UnboundedReceiver<Command>,
    target_of: Arc<dyn Fn() -> Option<ServerTarget> + Send + Sync>,
    connects: Arc<AtomicU64>,
) {
    let mut subs = Subs::new();
    let mut link = Link {
        key,
        target_of,
        conn: None,
        listening: HashSet::new(),
        lost: false,
        backoff: Duration::from_millis(100),
        connects,
    };
    loop {
        let reconnect = link.conn.is_none() && !subs.is_empty();
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(c) => link.command(c, &mut subs).await,
                None => return,
            },
            frame = next_frame(&mut link.conn) => match frame {
                Ok(f) => dispatch(&subs, f.freeze()),
                Err(e) => link.drop_conn(&e.to_string()),
            },
            () = tokio::time::sleep(link.backoff), if reconnect => link.reopen(&subs).await,
        }
    }
}

async fn next_frame(conn: &mut Option<Box<ServerConn>>) -> Result<BytesMut, ServerError> {
    match conn {
        Some(c) => c.read_frame().await,
        None => std::future::pending().await,
    }
}

/// Hands a NotificationResponse to every subscriber of its channel.
fn dispatch(subs: &Subs, frame: Bytes) {
    if frame.first() != Some(&be::NOTIFICATION_RESPONSE) {
        return;
    }
    let body = protocol::body(&frame);
    let Some((channel, _)) = body.get(4..).and_then(protocol::cstr) else {
        return;
    };
    for (_, sink) in subs.get(channel).into_iter().flatten() {
        let _ = sink.send(frame.clone());
    }
}

impl Link {
    async fn command(&mut self, cmd: Command, subs: &mut Subs) {
        match cmd {
            Command::Apply {
                client,
                request,
                sink,
                done,
            } => {
                let result = match request {
                    Request::Listen(ch) => self.listen(client, ch, sink, subs).await,
                    Request::Unlisten(ch) => {
                        self.unsubscribe(client, Some(&ch), subs).await;
                        Ok(())
                    }
                    Request::UnlistenAll => {
                        self.unsubscribe(client, None, subs).await;
                        Ok(())
                    }
                };
                let _ = done.send(result);
            }
            Command::Leave { client } => self.unsubscribe(client, None, subs).await,
        }
    }

    async fn listen(
        &mut self,
        client: u32,
        channel: String,
        sink: Sink,
        subs: &mut Subs,
    ) -> Result<(), String> {
        if !self.listening.contains(&channel) {
            if self.conn.is_none() {
                self.connect().await?;
            }
            self.run(&format!("LISTEN {}", quote(&channel)), subs)
                .await?;
            self.listening.insert(channel.clone());
        }
        let list = subs.entry(channel).or_default();
        if !list.iter().any(|(c, _)| *c == client) {
            list.push((client, sink));
        }
        Ok(())
    }

    /// Drops `client` from `channel` (every channel with `None`); a channel nobody
    /// listens on any more is unlistened, and with none left the connection is closed.
    async fn unsubscribe(&mut self, client: u32, channel: Option<&str>, subs: &mut Subs) {
        let mut emptied = Vec::new();
        for (ch, list) in subs.iter_mut() {
            if channel.is_none_or(|c| c == ch) {
                list.retain(|(c, _)| *c != client);
                if list.is_empty() {
                    emptied.push(ch.clone());
                }
            }
        }
        for ch in emptied {
            subs.remove(&ch);
            if self.listening.remove(&ch) && self.conn.is_some() {
                let _ = self.run(&format!("UNLISTEN {}", quote(&ch)), subs).await;
            }
        }
        if subs.is_empty()
            && let Some(conn) = self.conn.take()
        {
            conn.close();
            self.listening.clear();
            self.lost = false;
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let target = (self.target_of)().ok_or_else(|| {
            format!(
                "database \"{}\" is no longer configured for user \"{}\"",
                self.key.0, self.key.1
            )
        })?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        let conn = crate::server::connect(&target, 0, Some(CONNECT_TIMEOUT))
            .await
            .map_err(|e| format!("cannot open the listening connection: {e}"))?;
        tracing::info!(
            database = self.key.0,
            user = self.key.1,
            "listening connection opened"
        );
        self.conn = Some(conn);
        Ok(())
    }

    /// Runs one of the hub's own statements, passing on notifications that arrive
    /// meanwhile. An error answer is returned; a lost connection is dropped.
    async fn run(&mut self, sql: &str, subs: &Subs) -> Result<(), String> {
        let Some(conn) = &mut self.conn else {
            return Err("no listening connection".into());
        };
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut out)
            .map_err(|e| format!("cannot build {sql:?}: {e}"))?;
        let result = async {
            conn.stream.write_all(&out).await?;
            conn.stream.flush().await?;
            let mut error = None;
            loop {
                let frame = conn.read_frame().await?;
                match frame.first().copied() {
                    Some(be::NOTIFICATION_RESPONSE) => dispatch(subs, frame.freeze()),
                    Some(be::ERROR_RESPONSE) => {
                        error = Some(protocol::error_fields(protocol::body(&frame)).message);
                    }
                    Some(be::READY_FOR_QUERY) => return Ok::<_, ServerError>(error),
                    _ => {}
                }
            }
        }
        .await;
        match result {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(e) => {
                self.drop_conn(&e.to_string());
                Err(format!("the listening connection was lost: {e}"))
            }
        }
    }

    fn drop_conn(&mut self, why: &str) {
        if self.conn.take().is_some() {
            tracing::warn!(
                database = self.key.0,
                user = self.key.1,
                "listening connection lost, reopening it: {why}"
            );
        }
        self.lost |= !self.listening.is_empty();
        self.listening.clear();
    }

    /// Opens the connection again, listens on every channel again, and tells each
    /// subscriber that notifications may have been missed.
    async fn reopen(&mut self, subs: &Subs) {
        if let Err(e) = self.connect().await {
            tracing::warn!(database = self.key.0, user = self.key.1, "{e}");
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            return;
        }
        for ch in subs.keys() {
            if self
                .run(&format!("LISTEN {}", quote(ch)), subs)
                .await
                .is_err()
            {
                return;
            }
            self.listening.insert(ch.clone());
        }
        self.backoff = Duration::from_millis(100);
        if std::mem::take(&mut self.lost) {
            let mut buf = BytesMut::new();
            build::notice(
                &mut buf,
                "pgsluice's listening connection to the server was lost and has been \
                 reopened: notifications sent meanwhile may have been missed",
            );
            let notice = buf.freeze();
            let mut told = HashSet::new();
            for (client, sink) in subs.values().flatten() {
                if told.insert(*client) {
                    let _ = sink.send(notice.clone());
                }
            }
        }
    }
}
