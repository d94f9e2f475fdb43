//! `--runtime core`: the mio relay's loop and pool, with pgsluice's session core
//! ([`pgsluice::client::core::Core`]) between each client and its server.
//!
//! What it measures: pgsluice's per-frame work (framing, the statement and settings
//! policies, statistics, the client list) on top of the cheapest relay, with none of the
//! product's glue: no tokio, no driver future, no pool of its own beyond the floor's idle
//! list and queue, no timers. The gap between this floor and `mio` is what the policies
//! cost; the gap between pgsluice and this floor is what its driver, runtime and pool cost.
//!
//! Each client gets a core as pgsluice builds one for the benchmark's configuration
//! (transaction mode, statistics on, slow-query threshold 100 ms, 200 prepared statements
//! per server, no routing, the function allowlist watched). Its startup parameters that
//! the floor's greeting does not report become its settings (interned, as pgsluice does
//! per pool), so a server is brought in line once by the core's own `SET`s and then
//! matches every client like it. `--runtime core-nostats` builds the cores with statistics
//! off (pgsluice's `[metrics] enabled = false`).
//!
//! Not handled, as a benchmark tool may leave them: a cancel request, LISTEN, a server the
//! core gives back unclean or a client closed holding one (each ends the relay with an
//! error), deadlines (the cores are never ticked).

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use pgsluice::client::core::{Action, Core, Limits, Mapping, Observe, Release, SessionState};
use pgsluice::client::outq::OutQueue;
use pgsluice::config::{General, PoolMode};
use pgsluice::metrics::Metrics;
use pgsluice::metrics::pool::PoolMetrics;
use pgsluice::pool::PoolKey;
use pgsluice::prepare::Registry;
use pgsluice::registry::clients::{ClientInfo, ClientMeta};
use pgsluice::router::{Allowlist, Classifier};
use pgsluice::server::varcache::Gucs;
use pgsluice::server::{ServerLink, ServerState};

use super::{Args, LISTENER};

/// A client's startup parameters, as sent.
type Params = Vec<(String, String)>;

/// Room a read needs in the buffer before it is grown.
const READ_ROOM: usize = 2048;
/// What a buffer grows by.
const GROW: usize = 8 * 1024;

struct Client {
    sock: TcpStream,
    /// Set once the startup packet is answered.
    core: Option<Box<Core>>,
    /// The startup packet as it arrives.
    startup: Vec<u8>,
    /// The server it holds (index into `servers`).
    server: Option<usize>,
    queued: bool,
    addr: std::net::SocketAddr,
}

struct Server {
    sock: TcpStream,
    state: ServerState,
    link: Arc<ServerLink>,
    client: Option<usize>,
}

struct Relay {
    registry: mio::Registry,
    clients: Vec<Option<Client>>,
    free_slots: Vec<usize>,
    servers: Vec<Server>,
    idle: Vec<usize>,
    queue: VecDeque<usize>,
    greeting: Vec<u8>,
    limits: Arc<Limits>,
    statements: Arc<Registry>,
    pool: Arc<PoolMetrics>,
    allow: Arc<Allowlist>,
    user: Arc<str>,
    database: Arc<str>,
    /// Settings by startup parameters (pgsluice interns them per pool).
    interned: Vec<(Params, Arc<Gucs>)>,
    next_id: u32,
    /// The loop's clock, read once per turn (as pgsluice's session loop does).
    now: Instant,
    /// Sessions to drive once the current one is done (a server handed over).
    ready: Vec<usize>,
    scratch: Vec<u8>,
    /// Statistics on (see [`run`]).
    stats: bool,
}

/// Runs the relay; `stats`: the cores keep statistics (pgsluice's default, `[metrics]
/// enabled`), or not (`--runtime core-nostats`: what they cost).
pub(super) fn run(args: &Args, stats: bool) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let now = Instant::now();
    let servers = super::open_servers(args, poll.registry())?
        .into_iter()
        .enumerate()
        .map(|(i, sock)| {
            let id = i as u64 + 1;
            let local_port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
            Server {
                sock,
                state: ServerState::new(id),
                link: Arc::new(ServerLink {
                    id,
                    backend_pid: 0,
                    backend_secret: 0,
                    local_port,
                    addr: args.server,
                    unix: None,
                    created: now,
                }),
                client: None,
            }
        })
        .collect::<Vec<_>>();
    let mut listener = TcpListener::bind(args.listen).map_err(|e| e.to_string())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let g = General::default();
    let limits = Limits {
        mode: PoolMode::Transaction,
        max_message: g.max_message_size,
        idle_txn: None,
        reset_query: Arc::from(g.server_reset_query.as_str()),
        rewrite: g.max_prepared_statements > 0,
        timeouts: None,
        listen_here: g.listen_without_pinning,
        wait_timeout: pgsluice::config::secs(g.query_wait_timeout),
        park_after: None,
    };
    let key = PoolKey {
        database: args.database.as_str().into(),
        user: args.user.as_str().into(),
        node: 0,
    };
    let mut relay = Relay {
        registry: poll.registry().try_clone().map_err(|e| e.to_string())?,
        clients: Vec::new(),
        free_slots: Vec::new(),
        idle: (0..servers.len()).rev().collect(),
        servers,
        queue: VecDeque::new(),
        greeting: super::greeting(),
        limits: Arc::new(limits),
        statements: Arc::new(Registry::default()),
        pool: Metrics::new(1).pool(&key),
        allow: Arc::new(Allowlist::new(&[])),
        user: args.user.as_str().into(),
        database: args.database.as_str().into(),
        interned: Vec::new(),
        next_id: 1,
        now,
        ready: Vec::new(),
        scratch: vec![0; 16 * 1024],
        stats,
    };
    eprintln!("floor_relay (core): listening on {}", args.listen);
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e.to_string());
        }
        relay.now = Instant::now();
        for event in events.iter() {
            match event.token() {
                LISTENER => relay.accept(&listener),
                Token(t) if t < relay.servers.len() => relay.server_event(t)?,
                Token(t) => relay.client_event(t - relay.servers.len())?,
            }
        }
    }
}

/// What one `recv` into a buffer's spare room gave.
enum Got {
    Data { n: usize, more: bool },
    Drained,
    Closed,
}

/// Reads into `buf`'s spare room (grown first when short), as pgsluice's sessions do.
fn recv_into(fd: i32, buf: &mut BytesMut) -> Got {
    if buf.capacity() - buf.len() < READ_ROOM {
        buf.reserve(GROW);
    }
    let spare = buf.chunk_mut();
    let room = spare.len();
    loop {
        // SAFETY: `spare` is `room` writable bytes owned by `buf`; `recv` writes at most
        // `room` of them, and exactly the `n` it returns are marked filled below.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr() as *mut libc::c_void, room, 0) };
        if n > 0 {
            let n = n as usize;
            // SAFETY: `recv` initialised the first `n` bytes of the spare room.
            unsafe { buf.advance_mut(n) };
            return Got::Data { n, more: n == room };
        }
        if n == 0 {
            return Got::Closed;
        }
        match std::io::Error::last_os_error().kind() {
            ErrorKind::WouldBlock => return Got::Drained,
            ErrorKind::Interrupted => continue,
            _ => return Got::Closed,
        }
    }
}

/// Writes what `sock` takes of `q`; false on a broken socket.
fn flush(sock: &mut TcpStream, q: &mut OutQueue) -> bool {
    while !q.is_empty() {
        let wrote = match q.single() {
            Some(one) => sock.write(one),
            None => {
                let mut slices = [IoSlice::new(&[]); 8];
                let k = q.slices(&mut slices);
                sock.write_vectored(&slices[..k])
            }
        };
        match wrote {
            Ok(n) => q.advance(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// The startup packets at the front of `pending`: the answers to SSL or GSS requests go
/// to `out`; `Ok(Some(params))` once the startup packet is whole, `Ok(None)` while more
/// bytes are needed, `Err` for anything else.
fn take_startup(pending: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<Option<Params>, ()> {
    while pending.len() >= 8 {
        let len = u32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
        if !(8..=10_000).contains(&len) {
            return Err(());
        }
        if pending.len() < len {
            return Ok(None);
        }
        let code = u32::from_be_bytes([pending[4], pending[5], pending[6], pending[7]]);
        let packet: Vec<u8> = pending.drain(..len).collect();
        match code {
            80877103 | 80877104 => out.push(b'N'),
            196608 => {
                let mut parts = packet[8..].split(|&b| b == 0).map(String::from_utf8_lossy);
                let mut params = Vec::new();
                while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                    if k.is_empty() {
                        break;
                    }
                    params.push((k.into_owned(), v.into_owned()));
                }
                return Ok(Some(params));
            }
            _ => return Err(()),
        }
    }
    Ok(None)
}

impl Relay {
    fn accept(&mut self, listener: &TcpListener) {
        let make = |sock, addr| Client {
            sock,
            core: None,
            startup: Vec::new(),
            server: None,
            queued: false,
            addr,
        };
        let base = self.servers.len();
        let (clients, free) = (&mut self.clients, &mut self.free_slots);
        super::accept_all(listener, &self.registry, base, clients, free, make, |c| {
            &mut c.sock
        });
    }

    /// The settings of a client with these startup parameters (those the greeting does
    /// not report as they are), one copy per distinct set.
    fn settings(&mut self, params: &[(String, String)]) -> Arc<Gucs> {
        let kept: Params = params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "options"))
            .filter(|(k, v)| {
                !(matches!(k.as_str(), "client_encoding") && v.eq_ignore_ascii_case("UTF8"))
            })
            .cloned()
            .collect();
        if let Some((_, g)) = self.interned.iter().find(|(p, _)| *p == kept) {
            return g.clone();
        }
        let mut g = Gucs::default();
        for (k, v) in &kept {
            g.set_value(k, v);
        }
        let g = Arc::new(g);
        self.interned.push((kept, g.clone()));
        g
    }

    fn new_core(&mut self, params: &[(String, String)], addr: std::net::SocketAddr) -> Core {
        let id = self.next_id;
        self.next_id += 1;
        let app = params
            .iter()
            .find(|(k, _)| k == "application_name")
            .map_or("", |(_, v)| v.as_str());
        let info = Arc::new(ClientInfo::new(
            id,
            self.user.clone(),
            self.database.clone(),
            Some(0),
            ClientMeta::new(Some(addr), None, app),
            None,
        ));
        let slow = self.stats.then_some(Duration::from_millis(100));
        let tally = pgsluice::metrics::Tally::new(self.pool.clone(), self.stats, slow);
        let mut core = Core::new(
            id,
            self.limits.clone(),
            SessionState::new(self.settings(params)),
            Mapping::new(self.statements.clone(), 200),
            None,
            Observe::new(info, tally),
        );
        core.set_opaque_check(Classifier::new(self.allow.clone()));
        core
    }

    fn close_client(&mut self, id: usize) -> Result<(), String> {
        let Some(mut client) = self.clients[id].take() else {
            return Ok(());
        };
        let _ = self.registry.deregister(&mut client.sock);
        if client.queued {
            self.queue.retain(|&c| c != id);
        }
        if let Some(s) = client.server {
            // The core did not give its server back: the relay cannot tell what state
            // it is in, and has no way to replace it.
            self.servers[s].client = None;
            return Err(format!("client {id} closed holding server {s}"));
        }
        self.free_slots.push(id);
        Ok(())
    }

    fn client_event(&mut self, id: usize) -> Result<(), String> {
        let Some(client) = self.clients[id].as_mut() else {
            return Ok(());
        };
        if client.core.is_none() {
            return self.startup(id);
        }
        loop {
            let Some(client) = self.clients[id].as_mut() else {
                return Ok(());
            };
            let Some(core) = client.core.as_mut() else {
                return Ok(());
            };
            if !core.cout.is_empty() && !flush(&mut client.sock, &mut core.cout) {
                core.client_gone(self.now);
                return self.drive(id);
            }
            if !core.wants_client_bytes() {
                return Ok(());
            }
            let fd = client.sock.as_raw_fd();
            let more = match recv_into(fd, core.client_buf()) {
                Got::Data { n, more } => {
                    core.observe().tally.bytes_in += n as u64;
                    core.client_data(self.now);
                    more
                }
                Got::Drained => return Ok(()),
                Got::Closed => {
                    core.client_gone(self.now);
                    false
                }
            };
            self.drive(id)?;
            if !more {
                return Ok(());
            }
        }
    }

    fn startup(&mut self, id: usize) -> Result<(), String> {
        let Some(client) = self.clients[id].as_mut() else {
            return Ok(());
        };
        let n = match client.sock.read_some(&mut self.scratch) {
            Ok(Some(0)) | Err(_) => return self.close_client(id),
            Ok(Some(n)) => n,
            Ok(None) => return Ok(()),
        };
        client.startup.extend_from_slice(&self.scratch[..n]);
        let mut answer = Vec::new();
        let params = match take_startup(&mut client.startup, &mut answer) {
            Err(()) => return self.close_client(id),
            Ok(p) => p,
        };
        let Some(params) = params else {
            let _ = client.sock.write_all(&answer);
            return Ok(());
        };
        answer.extend_from_slice(&self.greeting);
        let addr = client.addr;
        let mut core = self.new_core(&params, addr);
        let Some(client) = self.clients[id].as_mut() else {
            return Ok(());
        };
        if client.sock.write_all(&answer).is_err() {
            return self.close_client(id);
        }
        let rest = std::mem::take(&mut client.startup);
        let has_rest = !rest.is_empty();
        core.client_buf().extend_from_slice(&rest);
        client.core = Some(Box::new(core));
        if has_rest && let Some(core) = client.core.as_mut() {
            core.client_data(self.now);
        }
        self.drive(id)?;
        // Whatever else the socket holds (edge-triggered: no second event for it).
        self.client_event(id)
    }

    fn server_event(&mut self, s: usize) -> Result<(), String> {
        loop {
            let server = &mut self.servers[s];
            let Some(c) = server.client else {
                // Nothing is expected from an idle server; its bytes are dropped (the
                // floor's relay has no use for a late ParameterStatus).
                return match server.sock.read_some(&mut self.scratch) {
                    Ok(Some(0)) | Err(_) => Err(format!("server {s} closed")),
                    Ok(_) => Ok(()),
                };
            };
            let Some(core) = self.clients[c].as_mut().and_then(|cl| cl.core.as_mut()) else {
                return Err(format!("server {s} held by a client that is gone"));
            };
            if !core.sout.is_empty() && !flush(&mut server.sock, &mut core.sout) {
                return Err(format!("server {s} lost"));
            }
            if !core.wants_server_bytes() {
                return Ok(());
            }
            let fd = server.sock.as_raw_fd();
            let Some(buf) = core.server_buf() else {
                return Ok(());
            };
            let more = match recv_into(fd, buf) {
                Got::Data { n, more } => {
                    core.observe().tally.bytes_out += n as u64;
                    core.server_data(self.now);
                    more
                }
                Got::Drained => return Ok(()),
                Got::Closed => return Err(format!("server {s} closed")),
            };
            self.drive(c)?;
            if !more {
                return Ok(());
            }
        }
    }

    /// Does what client `id`'s core asks, writes its output, and does the same for every
    /// client a server was handed to meanwhile.
    fn drive(&mut self, id: usize) -> Result<(), String> {
        self.ready.push(id);
        while let Some(id) = self.ready.pop() {
            self.drive_one(id)?;
        }
        Ok(())
    }

    fn drive_one(&mut self, id: usize) -> Result<(), String> {
        let now = self.now;
        loop {
            let Some(client) = self.clients[id].as_mut() else {
                return Ok(());
            };
            let Some(core) = client.core.as_mut() else {
                return Ok(());
            };
            match core.next_action(now) {
                Some(Action::Release(detached, how)) => {
                    // The answer first, as pgsluice's driver does.
                    if !core.client_left() {
                        let _ = flush(&mut client.sock, &mut core.cout);
                    }
                    let Some(s) = client.server.take() else {
                        return Err(format!("client {id} released a server it does not hold"));
                    };
                    core.restore(detached, &mut self.servers[s].state);
                    self.servers[s].client = None;
                    if how != Release::Clean {
                        return Err(format!("server {s} given back unclean: {how:?}"));
                    }
                    self.hand_over(s);
                }
                Some(Action::NeedServer { node: _ }) => match self.idle.pop() {
                    Some(s) => self.attach(id, s),
                    None => {
                        client.queued = true;
                        self.queue.push_back(id);
                    }
                },
                Some(Action::Close { .. }) => {
                    let _ = flush(&mut client.sock, &mut core.cout);
                    return self.close_client(id);
                }
                Some(Action::Cancel) | Some(Action::Listen(_)) => {
                    return Err(format!("client {id}: an action this floor does not serve"));
                }
                None => break,
            }
        }
        let Some(client) = self.clients[id].as_mut() else {
            return Ok(());
        };
        let Some(core) = client.core.as_mut() else {
            return Ok(());
        };
        if core.client_left() {
            core.cout.clear();
        } else if !flush(&mut client.sock, &mut core.cout) {
            core.client_gone(now);
            self.ready.push(id);
            return Ok(());
        }
        if let Some(s) = client.server
            && !flush(&mut self.servers[s].sock, &mut core.sout)
        {
            return Err(format!("server {s} lost"));
        }
        Ok(())
    }

    /// Server `s` goes to the next waiting client, or back to the idle list.
    fn hand_over(&mut self, s: usize) {
        while let Some(next) = self.queue.pop_front() {
            if self.clients[next].is_some() {
                self.attach(next, s);
                self.ready.push(next);
                return;
            }
        }
        self.idle.push(s);
    }

    fn attach(&mut self, id: usize, s: usize) {
        let Some(client) = self.clients[id].as_mut() else {
            self.idle.push(s);
            return;
        };
        let Some(core) = client.core.as_mut() else {
            self.idle.push(s);
            return;
        };
        client.queued = false;
        client.server = Some(s);
        let server = &mut self.servers[s];
        server.client = Some(id);
        core.attach_from(&mut server.state, 0, server.link.clone(), self.now);
    }
}

/// One non-blocking read into `buf`: `Ok(Some(n))` (0 at EOF), `Ok(None)` when nothing
/// is there now.
trait ReadSome {
    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>>;
}

impl ReadSome for TcpStream {
    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        use std::io::Read;
        loop {
            match self.read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::take_startup;

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut p = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn startup_parameters_after_a_refused_ssl_request() {
        let startup = packet(196608, b"user\0app\0application_name\0pgbench\0\0");
        let mut pending = [packet(80877103, b""), startup.clone(), b"Q".to_vec()].concat();
        let mut out = Vec::new();
        let params = take_startup(&mut pending, &mut out).expect("a valid startup");
        assert_eq!(out, b"N");
        let params = params.expect("the whole startup packet");
        assert_eq!(
            params,
            [
                ("user".to_string(), "app".to_string()),
                ("application_name".to_string(), "pgbench".to_string())
            ]
        );
        assert_eq!(pending, b"Q", "what follows the startup packet is left");
        let mut part = startup[..10].to_vec();
        assert_eq!(take_startup(&mut part, &mut out), Ok(None), "cut short");
        let mut bad = packet(1234, b"");
        assert!(take_startup(&mut bad, &mut out).is_err(), "unknown code");
    }
}
