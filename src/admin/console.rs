//! An admin console session: the simple query protocol, one or more commands per Query.
//! The extended protocol is answered with an error (and the rest of that batch skipped up
//! to its Sync), as PgBouncer's console does not support it either.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::ClientStream;

use super::command::{self, Command};
use super::{Role, act, role, show};
use crate::config::Config;
use crate::protocol::{self, build, fe};
use crate::registry::clients::{ClientInfo, ClientMeta, ClientState};
use crate::shared::{Phase, Shared};

/// Writes `out` and flushes it (through the TLS layer, for a TLS client).
async fn send(stream: &mut ClientStream, out: &[u8]) -> std::io::Result<()> {
    stream.write_all(out).await?;
    stream.flush().await
}

/// Largest message the console accepts.
const MAX_MESSAGE: usize = 1 << 20;

/// One admin console client.
pub struct Console {
    shared: Arc<Shared>,
    role: Role,
    info: Arc<ClientInfo>,
    out: BytesMut,
    /// An extended-protocol message was refused; skip until Sync.
    skipping: bool,
}

/// Admits an authenticated `user` to the console, or says why not (FATAL 42501).
pub fn login(
    shared: &Arc<Shared>,
    config: &Config,
    user: String,
    database: String,
    meta: ClientMeta,
) -> Result<Console, (String, String)> {
    let Some(role) = role(&config.auth, &user) else {
        return Err((
            "42501".into(),
            format!(
                "permission denied for the admin console: user \"{user}\" is in neither \
                 auth.admin_users nor auth.stats_users"
            ),
        ));
    };
    let info = shared
        .admin
        .clients
        .register(|id| ClientInfo::new(id, Arc::from(user), Arc::from(database), None, meta, None));
    info.set_state(ClientState::Active);
    tracing::info!(
        user = &*info.user,
        database = &*info.database,
        client = info.id,
        ?role,
        "admin console client logged in"
    );
    let mut c = Console {
        shared: shared.clone(),
        role,
        info,
        out: BytesMut::with_capacity(512),
        skipping: false,
    };
    c.greet();
    Ok(c)
}

impl Console {
    fn greet(&mut self) {
        let out = &mut self.out;
        build::auth_ok(out);
        let version = format!("pgsluice {}", env!("CARGO_PKG_VERSION"));
        for (k, v) in [
            ("server_version", version.as_str()),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("application_name", self.info.meta.application_name()),
            ("session_authorization", &*self.info.user),
            ("is_superuser", "off"),
        ] {
            build::parameter_status(out, k, v);
        }
        build::backend_key_data(out, self.info.id, self.info.secret);
        build::ready_for_query(out, b'I');
    }

    /// Serves the client until it leaves, breaks the protocol, or pgsluice shuts down;
    /// `buf` holds what it sent after logging in.
    pub async fn run(mut self, mut stream: ClientStream, mut buf: BytesMut) {
        let mut phase = self.shared.drain.subscribe();
        buf.reserve(1024);
        let reason = loop {
            if !self.out.is_empty() {
                if send(&mut stream, &self.out).await.is_err() {
                    break "client disconnected".to_string();
                }
                self.out.clear();
            }
            if *phase.borrow_and_update() != Phase::Running {
                self.error("FATAL", "57P01", "pgsluice is shutting down");
                let _ = send(&mut stream, &self.out).await;
                break "shutdown".to_string();
            }
            match self.next_frames(&mut buf).await {
                Ok(true) => break "client terminated".to_string(),
                Ok(false) => {}
                Err(why) => {
                    self.error("FATAL", "08P01", &why);
                    let _ = send(&mut stream, &self.out).await;
                    break why;
                }
            }
            if !self.out.is_empty() {
                continue;
            }
            tokio::select! {
                r = stream.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => break "client disconnected".to_string(),
                    Ok(_) => {}
                },
                r = phase.changed() => if r.is_err() { break "shutdown".to_string() },
            }
        };
        tracing::info!(
            client = self.info.id,
            user = &*self.info.user,
            "admin console client disconnected: {reason}"
        );
    }

    /// Handles every whole message in `buf`. `Ok(true)` on Terminate.
    async fn next_frames(&mut self, buf: &mut BytesMut) -> Result<bool, String> {
        loop {
            let Some(h) = protocol::header(buf, MAX_MESSAGE).map_err(|e| e.to_string())? else {
                return Ok(false);
            };
            if buf.len() < h.frame_len {
                buf.reserve(h.frame_len - buf.len());
                return Ok(false);
            }
            let frame = buf.split_to(h.frame_len);
            match h.tag {
                fe::TERMINATE => return Ok(true),
                fe::QUERY => {
                    let text = protocol::cstr(protocol::body(&frame))
                        .map(|(s, _)| s.to_string())
                        .ok_or("malformed Query message")?;
                    self.query(&text).await;
                    build::ready_for_query(&mut self.out, b'I');
                }
                fe::SYNC => {
                    self.skipping = false;
                    build::ready_for_query(&mut self.out, b'I');
                }
                fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE | fe::FLUSH => {
                    if !self.skipping {
                        self.skipping = true;
                        self.error(
                            "ERROR",
                            "0A000",
                            "the admin console supports only the simple query protocol",
                        );
                    }
                }
                other => {
                    return Err(format!(
                        "unexpected message type {:?} on the admin console",
                        other as char
                    ));
                }
            }
        }
    }

    /// Runs every command of one Query; stops at the first error, as PostgreSQL does.
    async fn query(&mut self, text: &str) {
        let stmts = command::split(text);
        if stmts.is_empty() {
            build::command_complete(&mut self.out, "");
            return;
        }
        for stmt in stmts {
            let cmd = match command::parse(stmt) {
                Ok(c) => c,
                Err(e) => {
                    self.error("ERROR", "42601", &e.0);
                    return;
                }
            };
            if self.role == Role::Stats && !cmd.read_only() {
                self.error(
                    "ERROR",
                    "42501",
                    &format!(
                        "permission denied for {}: user \"{}\" is a stats user (auth.stats_users); \
                         only SHOW commands are allowed, the others need auth.admin_users",
                        cmd.name(),
                        self.info.user
                    ),
                );
                return;
            }
            let result = match cmd {
                Command::Show(what) => {
                    show::show(&self.shared, what, &mut self.out);
                    Ok(())
                }
                other => {
                    tracing::info!(
                        client = self.info.id,
                        user = &*self.info.user,
                        "admin console: {stmt}"
                    );
                    act::run(&self.shared, other, &mut self.out).await
                }
            };
            if let Err((code, message)) = result {
                self.error("ERROR", &code, &message);
                return;
            }
        }
    }

    fn error(&mut self, severity: &str, code: &str, message: &str) {
        build::error(&mut self.out, severity, code, message);
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.shared.admin.clients.remove(self.info.id);
    }
}
