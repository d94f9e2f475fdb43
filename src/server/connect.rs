//! Opening a server connection: TCP connect, TLS (SSLRequest, then the node's connector),
//! StartupMessage, authentication (trust, cleartext, md5, SCRAM-SHA-256 with channel binding
//! over TLS, and md5/SCRAM pass-through) and the parameters the server reports.

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
use crate::auth::passthrough::{Credentials, PassThrough};
use crate::auth::scram_client::ScramKeyClient;
use crate::config::ServerTlsMode;
use crate::net::ServerStream;
use crate::protocol::ErrorFields;
use crate::tls::Connector;

/// Where and as whom to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// The plaintext password, when the config has one for the server.
    pub password: Option<String>,
    /// TLS to this node.
    pub tls: Arc<Connector>,
    /// Where pass-through credentials are found when there is no password.
    pub passthrough: Arc<Credentials>,
    /// TCP keepalives on the connection (`tcp_keepalive` and its times).
    pub keepalive: Option<crate::config::Keepalive>,
}

impl ServerTarget {
    /// The socket file when `host` is a directory (`/var/run/postgresql:5432`), as libpq
    /// reads a host that starts with `/`.
    pub fn unix_path(&self) -> Option<String> {
        self.host
            .starts_with('/')
            .then(|| format!("{}/.s.PGSQL.{}", self.host.trim_end_matches('/'), self.port))
    }

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
    let (stream, peer, local_port, unix) = match target.unix_path() {
        Some(path) => {
            // As libpq: no TLS over a Unix-domain socket.
            let s = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|source| ServerError::Connect {
                    addr: path.clone(),
                    source,
                })?;
            let peer = std::net::SocketAddr::from(([0, 0, 0, 0], target.port));
            (ServerStream::Unix(s), peer, 0, Some(Arc::from(path)))
        }
        None => {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|source| ServerError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            tcp.set_nodelay(true)?;
            if let Some(k) = &target.keepalive
                && let Err(e) = k.apply(socket2::SockRef::from(&tcp))
            {
                tracing::debug!(server = addr, "cannot set TCP keepalive: {e}");
            }
            let peer = tcp.peer_addr()?;
            let local_port = tcp.local_addr().map_or(0, |a| a.port());
            (negotiate_tls(tcp, target).await?, peer, local_port, None)
        }
    };
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
    let link = Arc::new(super::ServerLink {
        id,
        backend_pid: pid,
        backend_secret: secret,
        local_port,
        addr: peer,
        unix: unix.clone(),
        created: now,
    });
    Ok(Box::new(ServerConn {
        link,
        stream: hs.stream,
        addr: peer,
        unix,
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

/// Asks the server for TLS (SSLRequest) unless the mode is `disable`, and runs the
/// handshake when it agrees. A server that answers `N` is used in plain text only under
/// `prefer`.
async fn negotiate_tls(
    mut tcp: TcpStream,
    target: &ServerTarget,
) -> Result<ServerStream, ServerError> {
    let mode = target.tls.mode();
    if mode == ServerTlsMode::Disable {
        return Ok(ServerStream::Plain(tcp));
    }
    let mut req = BytesMut::new();
    frontend::ssl_request(&mut req);
    tcp.write_all(&req).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => target
            .tls
            .handshake(tcp, &target.host)
            .await
            .map_err(|e| ServerError::Tls(format!("TLS handshake with {}: {e}", target.addr()))),
        b'N' if mode == ServerTlsMode::Prefer => Ok(ServerStream::Plain(tcp)),
        b'N' => Err(ServerError::Tls(format!(
            "server {} does not accept TLS, and server_tls = {mode:?} requires it",
            target.addr()
        ))),
        other => Err(ServerError::Protocol(format!(
            "unexpected answer {other:#04x} to SSLRequest"
        ))),
    }
}

struct Handshake {
    stream: ServerStream,
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
        self.stream.flush().await?;
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
                "server asks a password for user {:?} and none is configured (pass-through \
                 needs an md5 hash, or a SCRAM verifier and a client that logged in with SCRAM)",
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
                    let hash = match (&target.password, target.passthrough.get(&target.user)) {
                        (None, Some(PassThrough::Md5(stored))) => {
                            crate::auth::md5::client_response(&stored, body.salt())
                        }
                        _ => {
                            let pw = self.password(target)?;
                            md5_hash(target.user.as_bytes(), pw.as_bytes(), body.salt())
                        }
                    };
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
        let (mut found, mut plus) = (false, false);
        while let Ok(Some(m)) = mechs.next() {
            found |= m == sasl::SCRAM_SHA_256;
            plus |= m == sasl::SCRAM_SHA_256_PLUS;
        }
        if !found {
            return Err(ServerError::Auth(
                "server offers no SASL mechanism we support".into(),
            ));
        }
        // Bind to the TLS channel when the server offers it and we can hash its certificate.
        let cert_hash = if plus {
            self.stream.server_cert_hash()
        } else {
            None
        };
        if target.password.is_none()
            && let Some(pass) = target.passthrough.get(&target.user)
        {
            return self.scram_passthrough(target, pass, cert_hash).await;
        }
        let pw = self.password(target)?;
        let (mechanism, cbind) = match cert_hash {
            Some(h) => (
                sasl::SCRAM_SHA_256_PLUS,
                sasl::ChannelBinding::tls_server_end_point(h),
            ),
            None => (sasl::SCRAM_SHA_256, sasl::ChannelBinding::unsupported()),
        };
        let mut scram = sasl::ScramSha256::new(pw.as_bytes(), cbind);
        frontend::sasl_initial_response(mechanism, scram.message(), &mut self.out)?;
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

    /// SCRAM with the ClientKey a client revealed (see `auth::scram_client`).
    async fn scram_passthrough(
        &mut self,
        target: &ServerTarget,
        pass: PassThrough,
        cert_hash: Option<Vec<u8>>,
    ) -> Result<(), ServerError> {
        let PassThrough::Scram {
            verifier,
            client_key,
        } = pass
        else {
            return Err(ServerError::Auth(format!(
                "server asks SCRAM for user {:?} and pgsluice has only its md5 hash",
                target.user
            )));
        };
        let mut scram = ScramKeyClient::new(client_key, verifier, cert_hash);
        frontend::sasl_initial_response(scram.mechanism(), &scram.client_first(), &mut self.out)?;
        self.flush().await?;
        let mismatch = |e: crate::auth::AuthError| {
            tracing::warn!(
                user = target.user,
                server = target.addr(),
                "SCRAM pass-through failed: {e}; the server's verifier for this role must be \
                 the one pgsluice has"
            );
            ServerError::PassThrough(e.to_string())
        };
        let final_msg = match self.next().await? {
            Message::AuthenticationSaslContinue(b) => {
                scram.server_first(b.data()).map_err(mismatch)?
            }
            Message::ErrorResponse(b) => return Err(db_error(&b)),
            _ => return Err(ServerError::Protocol("expected SASLContinue".into())),
        };
        frontend::sasl_response(&final_msg, &mut self.out)?;
        self.flush().await?;
        match self.next().await? {
            Message::AuthenticationSaslFinal(b) => scram.server_final(b.data()).map_err(mismatch),
            Message::ErrorResponse(b) => {
                let e = db_error(&b);
                if e.sqlstate() == "28P01" {
                    return Err(mismatch(crate::auth::AuthError::VerifierMismatch(
                        "the server refused the proof made from pgsluice's verifier".into(),
                    )));
                }
                Err(e)
            }
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
