//! A connection to a PostgreSQL server: connecting and authenticating, the parameters it
//! reported, the session settings applied to it, and the queries pgsluice runs on it itself.

mod connect;
mod state;
mod statements;
pub mod varcache;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::ServerStream;

use crate::protocol::{self, ErrorFields, be};
pub use connect::{ServerTarget, connect};
pub use state::ServerState;
pub use statements::{Own, ServerStatements};

/// Largest message pgsluice accepts in answer to its own queries (the monitor's row, a
/// setting, an LSN): a server that declares more is broken, and nothing is reserved for it.
const MAX_OWN_ANSWER: usize = 1 << 20;

/// Why talking to a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not connect to server {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to server {0}")]
    ConnectTimeout(String),
    #[error("server connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("server protocol error: {0}")]
    Protocol(String),
    #[error("server authentication: {0}")]
    Auth(String),
    /// SCRAM pass-through could not log in: the server's verifier is not pgsluice's.
    #[error("server authentication: {0}")]
    PassThrough(String),
    #[error("server TLS: {0}")]
    Tls(String),
    #[error("{}", .0.message)]
    Db(ErrorFields),
}

impl ServerError {
    /// The SQLSTATE to report to a client for this failure.
    pub fn sqlstate(&self) -> &str {
        match self {
            ServerError::Db(f) if !f.code.is_empty() => &f.code,
            ServerError::Auth(_) => "28000",
            ServerError::PassThrough(_) => "28P01",
            ServerError::Protocol(_) => "08P01",
            ServerError::Connect { .. } | ServerError::ConnectTimeout(_) => "08006",
            _ => "08006",
        }
    }
}

/// Why pgsluice closed a server connection; shown in logs and the admin console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Lifetime,
    IdleTimeout,
    Broken,
    ClientGoneMidQuery,
    IdleInTransaction,
    ResetFailed,
    PoolRemoved,
    Shutdown,
    UnexpectedData,
    /// KILL or PAUSE in the admin console.
    Admin,
    /// Its holder went away without saying the connection was clean.
    Abandoned,
    /// Its holder panicked.
    Panic,
    /// `query_timeout` cancelled a query on it (a late cancel must not reach another
    /// client's query).
    QueryTimeout,
    /// `transaction_timeout` ended its client's transaction.
    TransactionTimeout,
    /// It holds custom-setting placeholders that its next client never set.
    ForeignPlaceholders,
}

/// The columns of a DataRow body as text (`None` for NULL).
fn data_row_text(body: &[u8]) -> Result<Vec<Option<String>>, ServerError> {
    let bad = || ServerError::Protocol("malformed DataRow".into());
    let mut b = body;
    let n = b.get(..2).ok_or_else(bad)?;
    let n = u16::from_be_bytes([n[0], n[1]]) as usize;
    b = &b[2..];
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let len = b.get(..4).ok_or_else(bad)?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        b = &b[4..];
        if len < 0 {
            cols.push(None);
            continue;
        }
        let v = b.get(..len as usize).ok_or_else(bad)?;
        cols.push(Some(String::from_utf8_lossy(v).into_owned()));
        b = &b[len as usize..];
    }
    Ok(cols)
}

/// One authenticated server connection.
///
/// It is owned by exactly one place at a time: a pool's idle list or the client session
/// using it, so no locking is needed to use it.
#[derive(Debug)]
pub struct ServerConn {
    pub stream: ServerStream,
    /// The server's address (for a Unix socket: 0.0.0.0 and the port; see `unix`).
    pub addr: SocketAddr,
    /// The socket path, when the server is reached over a Unix-domain socket.
    pub unix: Option<Arc<str>>,
    /// pgsluice's port on the connection (the backend's `client_port`), for the admin
    /// console. Only the port: a larger field would make every move of a connection (a
    /// few per transaction) copy more.
    pub local_port: u16,
    /// The server's own cancel key.
    pub backend_pid: u32,
    pub backend_secret: u32,
    /// Parameters the server reported with ParameterStatus at startup.
    pub params: Arc<BTreeMap<String, String>>,
    pub created: Instant,
    pub last_used: Instant,
    /// The worker thread whose event loop watches this socket.
    pub worker: usize,
    /// Its protocol state: what the session core reads and changes (buffer, status,
    /// settings, statements).
    pub state: ServerState,
    /// What the client list shows of it, and where a cancel goes, while a client uses it.
    pub link: Arc<ServerLink>,
}

/// The server connection a client holds: for the console, and where a cancel request
/// with the client's key goes. Made once per connection ([`ServerConn::link`]); a client's
/// entry in the client list holds a reference while it uses the connection.
#[derive(Clone, Debug)]
pub struct ServerLink {
    pub id: u64,
    pub backend_pid: u32,
    pub backend_secret: u32,
    pub local_port: u16,
    pub addr: SocketAddr,
    /// The socket path when the server is reached over a Unix-domain socket.
    pub unix: Option<Arc<str>>,
    pub created: Instant,
}

impl ServerLink {
    /// Where a cancel request for the query running on the server goes.
    pub fn cancel_target(&self) -> CancelTarget {
        CancelTarget {
            addr: self.addr,
            pid: self.backend_pid,
            secret: self.backend_secret,
            unix: self.unix.clone(),
        }
    }
}

/// Where a cancel request for a server connection goes (what a client's cancel key
/// leads to while it uses the connection).
#[derive(Clone, Debug)]
pub struct CancelTarget {
    pub addr: SocketAddr,
    pub pid: u32,
    pub secret: u32,
    /// The socket path when the server is reached over a Unix-domain socket.
    pub unix: Option<Arc<str>>,
}

impl ServerConn {
    /// Where a cancel request for this connection's running query goes.
    pub fn cancel_target(&self) -> CancelTarget {
        self.link.cancel_target()
    }

    /// Runs `sql` with the simple query protocol and reads every response up to
    /// ReadyForQuery. Returns the first error the server reported, if any.
    ///
    /// Used for pgsluice's own queries (setting replay, reset); the client sees nothing.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Option<ErrorFields>, ServerError> {
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut out)
            .map_err(|e| ServerError::Protocol(e.to_string()))?;
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let mut first_error = None;
        loop {
            let frame = self.read_frame().await?;
            match frame[0] {
                be::ERROR_RESPONSE if first_error.is_none() => {
                    first_error = Some(protocol::error_fields(protocol::body(&frame)));
                }
                be::READY_FOR_QUERY => {
                    self.state.status = frame.get(5).copied().unwrap_or(b'I');
                    return Ok(first_error);
                }
                _ => {}
            }
        }
    }

    /// Runs `sql` and returns the text values of its first row (`Ok(Err(..))` when the
    /// server reported an error). For pgsluice's own queries: the node monitor, LSNs.
    pub async fn query_row(
        &mut self,
        sql: &str,
    ) -> Result<Result<Vec<Option<String>>, ErrorFields>, ServerError> {
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut out)
            .map_err(|e| ServerError::Protocol(e.to_string()))?;
        self.first_row(&out).await
    }

    /// [`ServerConn::query_row`] with text parameters `$1..`, over the extended protocol
    /// (for `auth_query`: the user name is never spliced into SQL text).
    pub async fn query_row_params(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<Result<Vec<Option<String>>, ErrorFields>, ServerError> {
        use postgres_protocol::IsNull;
        use postgres_protocol::message::frontend;
        let mut out = BytesMut::new();
        let proto = |e: std::io::Error| ServerError::Protocol(e.to_string());
        frontend::parse("", sql, std::iter::empty(), &mut out).map_err(proto)?;
        frontend::bind(
            "",
            "",
            std::iter::empty::<i16>(),
            params.iter(),
            |p, buf| {
                buf.extend_from_slice(p.as_bytes());
                Ok::<_, Box<dyn std::error::Error + Sync + Send>>(IsNull::No)
            },
            std::iter::empty::<i16>(),
            &mut out,
        )
        .map_err(|e| match e {
            frontend::BindError::Conversion(e) => ServerError::Protocol(e.to_string()),
            frontend::BindError::Serialization(e) => proto(e),
        })?;
        frontend::execute("", 1, &mut out).map_err(proto)?;
        frontend::sync(&mut out);
        self.first_row(&out).await
    }

    /// Runs `sql` and returns the text values of every row (`Ok(Err(..))` when the server
    /// reported an error). For pgsluice's own catalog reads (the router's functions).
    pub async fn query_rows(
        &mut self,
        sql: &str,
    ) -> Result<Result<Vec<Vec<Option<String>>>, ErrorFields>, ServerError> {
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut out)
            .map_err(|e| ServerError::Protocol(e.to_string()))?;
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = self.read_frame().await?;
            match frame[0] {
                be::DATA_ROW => rows.push(data_row_text(protocol::body(&frame))?),
                be::ERROR_RESPONSE if error.is_none() => {
                    error = Some(protocol::error_fields(protocol::body(&frame)));
                }
                be::READY_FOR_QUERY => {
                    self.state.status = frame.get(5).copied().unwrap_or(b'I');
                    return Ok(match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    });
                }
                _ => {}
            }
        }
    }

    /// Sends `out` and returns the first DataRow (or the first error) up to ReadyForQuery.
    async fn first_row(
        &mut self,
        out: &[u8],
    ) -> Result<Result<Vec<Option<String>>, ErrorFields>, ServerError> {
        self.stream.write_all(out).await?;
        self.stream.flush().await?;
        let mut row = None;
        let mut error = None;
        loop {
            let frame = self.read_frame().await?;
            match frame[0] {
                be::DATA_ROW if row.is_none() => row = Some(data_row_text(protocol::body(&frame))?),
                be::ERROR_RESPONSE if error.is_none() => {
                    error = Some(protocol::error_fields(protocol::body(&frame)));
                }
                be::READY_FOR_QUERY => {
                    self.state.status = frame.get(5).copied().unwrap_or(b'I');
                    return Ok(match (error, row) {
                        (Some(e), _) => Err(e),
                        (None, r) => Ok(r.unwrap_or_default()),
                    });
                }
                _ => {}
            }
        }
    }

    /// Reads one whole frame, for pgsluice's own exchanges (not the relay path).
    pub(crate) async fn read_frame(&mut self) -> Result<BytesMut, ServerError> {
        loop {
            let buf = &mut self.state.buf;
            if let Some(h) = protocol::header(buf, MAX_OWN_ANSWER)
                .map_err(|e| ServerError::Protocol(e.to_string()))?
            {
                if buf.len() >= h.frame_len {
                    return Ok(buf.split_to(h.frame_len));
                }
                buf.reserve((h.frame_len - buf.len()).min(64 * 1024));
            } else {
                buf.reserve(4096);
            }
            if self.stream.read_buf(buf).await? == 0 {
                return Err(ServerError::Closed);
            }
        }
    }

    /// True when the server sent something (or closed) while nobody was waiting for it.
    ///
    /// An idle connection in the pool should be silent; data there is usually a FATAL
    /// before the server closes it. Tokio records readiness from the event loop whether or
    /// not anyone polls, so a quiet socket is recognised without a system call; a socket
    /// marked readable is confirmed with one `recv` (readiness can be stale after a read
    /// that happened to fill the buffer exactly). Consuming a byte is harmless: a
    /// connection with data waiting is closed anyway.
    pub fn has_unexpected_data(&mut self) -> bool {
        !self.state.buf.is_empty() || self.stream.has_unexpected_data()
    }

    /// Sends Terminate and drops the connection.
    pub fn close(mut self: Box<Self>) {
        self.stream.write_now_and_close(&[b'X', 0, 0, 0, 4]);
        self.state.buf.advance(self.state.buf.len());
    }
}
