//! Opening a server connection: TCP connect, StartupMessage, authentication (trust,
//! cleartext, md5, SCRAM-SHA-256) and the parameters the server reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ServerConn, ServerError};
use crate::protocol::ErrorFields;

/// Where and as whom to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
}

impl ServerTarget {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Connects and authenticates, giving up after `timeout`.
pub async fn connect(
    target: &ServerTarget,
    id: u64,
    timeout: Option<Duration>,
) -> Result<Box<ServerConn>, ServerError> {
    let fut = connect_inner(target, id);
    match timeout {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| ServerError::ConnectTimeout(target.addr()))?,
        None => fut.await,
    }
}

async fn connect_inner(target: &ServerTarget, id: u64) -> Result<Box<ServerConn>, ServerError> {
    let addr = target.addr();
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| ServerError::Connect {
            addr: addr.clone(),
            source,
        })?;
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let local_port = stream.local_addr().map_or(0, |a| a.port());
    let mut hs = Handshake {
        stream,
        buf: BytesMut::with_capacity(4096),
        out: BytesMut::new(),
    };
    let params = [
        ("user", target.user.as_str()),
        ("database", target.database.as_str()),
    ];
    frontend::startup_message(params.iter().copied(), &mut hs.out)
        .map_err(|e| ServerError::Protocol(e.to_string()))?;
    hs.flush().await?;
    hs.authenticate(target).await?;
    let (params, pid, secret) = hs.read_until_ready().await?;
    let now = Instant::now();
    // Boxed for its whole life: the pool and sessions move it a few times per
    // transaction, and a pointer is cheaper to move than the connection.
    let mut state = super::ServerState::new(id);
    state.buf = hs.buf;
    Ok(Box::new(ServerConn {
        stream: hs.stream,
        addr: peer,
        local_port,
        backend_pid: pid,
        backend_secret: secret,
        params: Arc::new(params),
        created: now,
        last_used: now,
        worker: crate::current_worker(),
        state,
    }))
}

struct Handshake {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
}

fn db_error(body: &postgres_protocol::message::backend::ErrorResponseBody) -> ServerError {
    use fallible_iterator::FallibleIterator;
    let mut f = ErrorFields::default();
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'S' => f.severity = value,
            b'C' => f.code = value,
            b'M' => f.message = value,
            _ => {}
        }
    }
    ServerError::Db(f)
}

impl Handshake {
    async fn flush(&mut self) -> Result<(), ServerError> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    async fn next(&mut self) -> Result<Message, ServerError> {
        loop {
            if let Some(msg) =
                Message::parse(&mut self.buf).map_err(|e| ServerError::Protocol(e.to_string()))?
            {
                return Ok(msg);
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ServerError::Closed);
            }
        }
    }

    fn password<'a>(&self, target: &'a ServerTarget) -> Result<&'a str, ServerError> {
        target.password.as_deref().ok_or_else(|| {
            ServerError::Auth(format!(
                "server asks a password for user {:?} and none is configured",
                target.user
            ))
        })
    }

    async fn authenticate(&mut self, target: &ServerTarget) -> Result<(), ServerError> {
        loop {
            match self.next().await? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    let pw = self.password(target)?;
                    frontend::password_message(pw.as_bytes(), &mut self.out)?;
                    self.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let pw = self.password(target)?;
                    let hash = md5_hash(target.user.as_bytes(), pw.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.out)?;
                    self.flush().await?;
                }
                Message::AuthenticationSasl(body) => self.scram(target, body).await?,
                Message::ErrorResponse(body) => return Err(db_error(&body)),
                _ => {
                    return Err(ServerError::Protocol(
                        "unexpected message during authentication".into(),
                    ));
                }
            }
        }
    }

    async fn scram(
        &mut self,
        target: &ServerTarget,
        body: postgres_protocol::message::backend::AuthenticationSaslBody,
    ) -> Result<(), ServerError> {
        use fallible_iterator::FallibleIterator;
        let mut mechs = body.mechanisms();
        let mut found = false;
        while let Ok(Some(m)) = mechs.next() {
            found |= m == sasl::SCRAM_SHA_256;
        }
        if !found {
            return Err(ServerError::Auth(
                "server offers no SASL mechanism we support".into(),
            ));
        }
        let pw = self.password(target)?;
        let mut scram = sasl::ScramSha256::new(pw.as_bytes(), sasl::ChannelBinding::unsupported());
        frontend::sasl_initial_response(sasl::SCRAM_SHA_256, scram.message(), &mut self.out)?;
        self.flush().await?;
        match self.next().await? {
            Message::AuthenticationSaslContinue(b) => scram.update(b.data())?,
            Message::ErrorResponse(b) => return Err(db_error(&b)),
            _ => return Err(ServerError::Protocol("expected SASLContinue".into())),
        }
        frontend::sasl_response(scram.message(), &mut self.out)?;
        self.flush().await?;
        match self.next().await? {
            Message::AuthenticationSaslFinal(b) => scram
                .finish(b.data())
                .map_err(|e| ServerError::Auth(format!("server signature: {e}"))),
            Message::ErrorResponse(b) => Err(db_error(&b)),
            _ => Err(ServerError::Protocol("expected SASLFinal".into())),
        }
    }

    async fn read_until_ready(
        &mut self,
    ) -> Result<(BTreeMap<String, String>, u32, u32), ServerError> {
        let mut params = BTreeMap::new();
        let (mut pid, mut secret) = (0, 0);
        loop {
            match self.next().await? {
                Message::ParameterStatus(b) => {
                    let name = b.name().map_err(ServerError::Io)?.to_string();
                    let value = b.value().map_err(ServerError::Io)?.to_string();
                    params.insert(name, value);
                }
                Message::BackendKeyData(b) => {
                    pid = b.process_id() as u32;
                    secret = b.secret_key() as u32;
                }
                Message::ReadyForQuery(_) => return Ok((params, pid, secret)),
                Message::ErrorResponse(b) => return Err(db_error(&b)),
                Message::NoticeResponse(_) => {}
                _ => {
                    return Err(ServerError::Protocol(
                        "unexpected message after authentication".into(),
                    ));
                }
            }
        }
    }
}
