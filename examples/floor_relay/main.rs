//! The floor of a transaction-mode pooler on epoll: the least work a pooler can do per
//! `pgbench -S` transaction with the system calls pgsluice and PgBouncer make (a `recv` and a
//! `send` on each side, readiness from one epoll set per thread), for issue 14's CPU row.
//!
//! Not a pooler: no authentication (every client is told `AuthenticationOk`), no parameters
//! of its own, no routing, no statistics, no timeouts, no error handling beyond closing. It
//! opens `--servers` connections to PostgreSQL (trust authentication) at start, greets each
//! client itself, and then moves bytes: a client's bytes go to the server it holds, or take
//! a free one (or wait in a queue for one); a server's bytes go to its client, and a
//! `ReadyForQuery` with status idle at the end of what was read gives the server back to the
//! next waiting client. Client messages are not decoded at all (a `Terminate` on a client
//! without a server closes it). Reads stop at a short read (the socket is drained: an
//! edge-triggered epoll reports the next bytes), as tokio's do.
//!
//! `--runtime tokio` runs the same relay as a task per client on tokio's current-thread
//! runtime (as pgsluice runs its sessions), a server handed to a waiting client's task
//! through a oneshot channel: the two side by side price the runtime's task model.
//! `--runtime nested` runs the mio loop as one task on tokio's runtime, its epoll set
//! watched by tokio's (as pgsluice's lot of idle clients is): a readiness loop that keeps
//! tokio for everything else.
//! `--runtime core` (`with_core.rs`) is the mio loop with pgsluice's session core between
//! each client and its server: pgsluice's per-frame work without its driver, runtime or
//! pool, to tell what the policies cost from what the glue around them costs.
//!
//! What each costs per transaction, against PgBouncer and pgsluice on the same cluster, is
//! what `integration/floor.py` measures: whatever a pooler on this I/O model adds to it is
//! its own work.
//!
//! ```text
//! cargo build --release --example floor_relay
//! target/release/examples/floor_relay --listen 127.0.0.1:6433 --server 127.0.0.1:5432 \
//!     --user postgres --database app --servers 20 [--runtime mio|nested|tokio|uring|uring-multishot|core|core-nostats]
//! ```

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};

mod uring;
mod with_core;
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// Read size (a `pgbench -S` answer is under 200 bytes).
const CHUNK: usize = 16 * 1024;

struct Args {
    listen: SocketAddr,
    server: SocketAddr,
    user: String,
    database: String,
    servers: usize,
    /// `mio` (one readiness loop), `nested` (that loop as one tokio task), `tokio` (a
    /// task per client, current-thread runtime), `uring` or `uring-multishot` (io_uring,
    /// `uring.rs`), `core` (the mio loop with pgsluice's session core, `with_core.rs`),
    /// `core-nostats` (the same, the cores' statistics off).
    runtime: String,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut listen, mut server, mut user, mut database, mut servers) =
        (None, None, None, None, 20);
    let mut runtime = "mio".to_string();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} wants a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| format!("--listen: {e}"))?),
            "--server" => server = Some(value.parse().map_err(|e| format!("--server: {e}"))?),
            "--user" => user = Some(value),
            "--database" => database = Some(value),
            "--servers" => servers = value.parse().map_err(|e| format!("--servers: {e}"))?,
            "--runtime"
                if [
                    "mio",
                    "tokio",
                    "nested",
                    "uring",
                    "uring-multishot",
                    "core",
                    "core-nostats",
                ]
                .contains(&value.as_str()) =>
            {
                runtime = value
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        server: server.ok_or("--server is required")?,
        user: user.unwrap_or_else(|| "postgres".into()),
        database: database.ok_or("--database is required")?,
        servers,
        runtime,
    })
}

/// A client's place in its startup, then in the relay.
enum Phase {
    /// Waiting for (the rest of) its startup packet.
    Startup,
    Relay,
}

struct Client {
    sock: TcpStream,
    phase: Phase,
    /// The server it holds (index into `servers`).
    server: Option<usize>,
    /// Bytes read that no server has taken yet (startup packet, or a request that waits).
    pending: Vec<u8>,
    /// Bytes for the client that its socket did not take.
    out: Vec<u8>,
    queued: bool,
}

struct Server {
    sock: TcpStream,
    client: Option<usize>,
    out: Vec<u8>,
    frame: Frames,
}

/// Where the server's stream is in its messages: enough to see a final `ReadyForQuery`.
#[derive(Default)]
struct Frames {
    head: [u8; 5],
    head_len: usize,
    /// Bytes left of the current message's body.
    left: usize,
    ready: bool,
    idle: bool,
}

impl Frames {
    /// Follows `data`; true when it ends with a `ReadyForQuery` whose status is idle.
    fn ends_idle(&mut self, data: &[u8]) -> bool {
        let mut i = 0;
        while i < data.len() {
            if self.left == 0 {
                let take = (5 - self.head_len).min(data.len() - i);
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[i..i + take]);
                self.head_len += take;
                i += take;
                if self.head_len == 5 {
                    self.head_len = 0;
                    let len = u32::from_be_bytes([
                        self.head[1],
                        self.head[2],
                        self.head[3],
                        self.head[4],
                    ]) as usize;
                    self.left = len.saturating_sub(4);
                    self.ready = self.head[0] == b'Z';
                    self.idle = false;
                }
            } else {
                let take = self.left.min(data.len() - i);
                if self.ready && self.left == 1 {
                    self.idle = data[i] == b'I';
                }
                self.left -= take;
                i += take;
            }
        }
        self.idle && self.left == 0 && self.head_len == 0
    }
}

struct Relay {
    registry: mio::Registry,
    clients: Vec<Option<Client>>,
    free_slots: Vec<usize>,
    servers: Vec<Server>,
    idle_servers: Vec<usize>,
    queue: VecDeque<usize>,
    buf: Vec<u8>,
    greeting: Vec<u8>,
}

fn message(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

fn greeting() -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, b'R', &0u32.to_be_bytes());
    for (name, value) in [
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        let body = [name.as_bytes(), b"\0", value.as_bytes(), b"\0"].concat();
        message(&mut out, b'S', &body);
    }
    message(&mut out, b'K', &[0, 0, 0, 1, 0, 0, 0, 2]);
    message(&mut out, b'Z', b"I");
    out
}

/// A logged-in server connection (trust authentication), non-blocking.
fn connect(args: &Args) -> std::io::Result<std::net::TcpStream> {
    let mut s = std::net::TcpStream::connect(args.server)?;
    s.set_nodelay(true)?;
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", &args.user), ("database", &args.database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = (body.len() as u32 + 4).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    s.write_all(&packet)?;
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body)?;
        match head[0] {
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                return Err(std::io::Error::other("the server wants a password"));
            }
            b'E' => return Err(std::io::Error::other("the server refused the login")),
            b'Z' => break,
            _ => {}
        }
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Takes the startup packets at the front of `pending` and appends their answers to `out`
/// (an SSL or GSS request refused, a startup packet greeted). `Some(true)`: the client is
/// logged in (what follows in `pending` is its first request); `Some(false)`: more bytes
/// are needed; `None`: not a client this relay serves (close it).
fn take_startup(pending: &mut Vec<u8>, out: &mut Vec<u8>, greeting: &[u8]) -> Option<bool> {
    while pending.len() >= 8 {
        let len = u32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
        if !(8..=10_000).contains(&len) {
            return None;
        }
        if pending.len() < len {
            return Some(false);
        }
        let code = u32::from_be_bytes([pending[4], pending[5], pending[6], pending[7]]);
        pending.drain(..len);
        match code {
            80877103 | 80877104 => out.push(b'N'),
            196608 => {
                out.extend_from_slice(greeting);
                return Some(true);
            }
            _ => return None,
        }
    }
    Some(false)
}

/// Writes what `sock` takes of `data`, keeping the rest in `out`; false on a broken socket.
fn send(sock: &mut TcpStream, out: &mut Vec<u8>, data: &[u8]) -> bool {
    if !out.is_empty() {
        out.extend_from_slice(data);
        return flush(sock, out);
    }
    let Some(done) = write_some(sock, data) else {
        return false;
    };
    out.extend_from_slice(&data[done..]);
    true
}

fn flush(sock: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    let Some(done) = write_some(sock, out) else {
        return false;
    };
    out.drain(..done);
    true
}

/// Writes what `sock` takes of `data` now: how much, or `None` on a broken socket.
fn write_some(sock: &mut TcpStream, data: &[u8]) -> Option<usize> {
    let mut done = 0;
    while done < data.len() {
        match sock.write(&data[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(done)
}

/// What one read gave.
enum Read1 {
    /// `n` bytes; `more`: the buffer was filled, read again.
    Data {
        n: usize,
        more: bool,
    },
    Drained,
    Closed,
}

fn read1(sock: &mut TcpStream, buf: &mut [u8]) -> Read1 {
    loop {
        return match sock.read(buf) {
            Ok(0) => Read1::Closed,
            Ok(n) => Read1::Data {
                n,
                more: n == buf.len(),
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => Read1::Drained,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => Read1::Closed,
        };
    }
}

/// Accepts every pending connection into a free slot of `clients` (`free` lists them),
/// registered for readiness at token `base + slot`.
fn accept_all<C>(
    listener: &TcpListener,
    registry: &mio::Registry,
    base: usize,
    clients: &mut Vec<Option<C>>,
    free: &mut Vec<usize>,
    make: impl Fn(TcpStream, SocketAddr) -> C,
    sock: impl Fn(&mut C) -> &mut TcpStream,
) {
    loop {
        let Ok((stream, addr)) = listener.accept() else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let id = free.pop().unwrap_or_else(|| {
            clients.push(None);
            clients.len() - 1
        });
        let mut client = make(stream, addr);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if registry
            .register(sock(&mut client), Token(base + id), interest)
            .is_ok()
        {
            clients[id] = Some(client);
        } else {
            free.push(id);
        }
    }
}

/// Opens `args.servers` logged-in server connections, each registered for readiness at
/// its index as token.
fn open_servers(args: &Args, registry: &mio::Registry) -> Result<Vec<TcpStream>, String> {
    let mut servers = Vec::with_capacity(args.servers);
    for i in 0..args.servers {
        let std = connect(args).map_err(|e| format!("server {i}: {e}"))?;
        let mut sock = TcpStream::from_std(std);
        let interest = Interest::READABLE | Interest::WRITABLE;
        registry
            .register(&mut sock, Token(i), interest)
            .map_err(|e| e.to_string())?;
        servers.push(sock);
    }
    Ok(servers)
}

impl Relay {
    fn accept(&mut self, listener: &TcpListener) {
        let make = |sock, _| Client {
            sock,
            phase: Phase::Startup,
            server: None,
            pending: Vec::new(),
            out: Vec::new(),
            queued: false,
        };
        let base = self.servers.len();
        accept_all(
            listener,
            &self.registry,
            base,
            &mut self.clients,
            &mut self.free_slots,
            make,
            |c| &mut c.sock,
        );
    }

    fn close_client(&mut self, id: usize) {
        let Some(mut client) = self.clients[id].take() else {
            return;
        };
        let _ = self.registry.deregister(&mut client.sock);
        if client.queued {
            self.queue.retain(|&c| c != id);
        }
        if let Some(s) = client.server {
            // Mid-transaction: what the server still sends is dropped with the link.
            self.servers[s].client = None;
            self.release(s);
        }
        self.free_slots.push(id);
    }

    fn client_event(&mut self, id: usize) {
        let Some(client) = self.clients[id].as_mut() else {
            return;
        };
        if !client.out.is_empty() && !flush(&mut client.sock, &mut client.out) {
            return self.close_client(id);
        }
        loop {
            let client = match self.clients[id].as_mut() {
                Some(c) => c,
                None => return,
            };
            let (n, more) = match read1(&mut client.sock, &mut self.buf) {
                Read1::Data { n, more } => (n, more),
                Read1::Drained => return,
                Read1::Closed => return self.close_client(id),
            };
            if !self.client_bytes(id, n) {
                return self.close_client(id);
            }
            if !more {
                return;
            }
        }
    }

    /// `self.buf[..n]` came from client `id`; false to close it.
    fn client_bytes(&mut self, id: usize, n: usize) -> bool {
        let Some(client) = self.clients[id].as_mut() else {
            return false;
        };
        if let Phase::Startup = client.phase {
            client.pending.extend_from_slice(&self.buf[..n]);
            return self.startup(id);
        }
        if let Some(s) = client.server {
            let server = &mut self.servers[s];
            return send(&mut server.sock, &mut server.out, &self.buf[..n]);
        }
        client.pending.extend_from_slice(&self.buf[..n]);
        if client.pending.first() == Some(&b'X') {
            return false;
        }
        if client.queued {
            return true;
        }
        match self.idle_servers.pop() {
            Some(s) => self.attach(id, s),
            None => {
                client.queued = true;
                self.queue.push_back(id);
                true
            }
        }
    }

    /// Answers the startup packets in `pending`: SSL refused, then the greeting.
    fn startup(&mut self, id: usize) -> bool {
        let Some(client) = self.clients[id].as_mut() else {
            return false;
        };
        let mut answer = Vec::new();
        let Some(relay) = take_startup(&mut client.pending, &mut answer, &self.greeting) else {
            return false;
        };
        if relay {
            client.phase = Phase::Relay;
        }
        send(&mut client.sock, &mut client.out, &answer) && (!relay || client.pending.is_empty())
    }

    /// Gives server `s` to client `id` and sends it what the client has waiting.
    fn attach(&mut self, id: usize, s: usize) -> bool {
        let Some(client) = self.clients[id].as_mut() else {
            self.idle_servers.push(s);
            return true;
        };
        client.server = Some(s);
        client.queued = false;
        let server = &mut self.servers[s];
        server.client = Some(id);
        let ok = send(&mut server.sock, &mut server.out, &client.pending);
        client.pending.clear();
        ok
    }

    /// Server `s` is done with its client: the next waiting client takes it.
    fn release(&mut self, s: usize) {
        if let Some(c) = self.servers[s].client.take()
            && let Some(client) = self.clients[c].as_mut()
        {
            client.server = None;
        }
        while let Some(next) = self.queue.pop_front() {
            if self.clients[next].is_some() {
                if !self.attach(next, s) {
                    self.close_client(next);
                }
                return;
            }
        }
        self.idle_servers.push(s);
    }

    fn server_event(&mut self, s: usize) -> Result<(), String> {
        let server = &mut self.servers[s];
        if !server.out.is_empty() && !flush(&mut server.sock, &mut server.out) {
            return Err(format!("server {s} lost"));
        }
        loop {
            let server = &mut self.servers[s];
            let (n, more) = match read1(&mut server.sock, &mut self.buf) {
                Read1::Data { n, more } => (n, more),
                Read1::Drained => return Ok(()),
                Read1::Closed => return Err(format!("server {s} closed")),
            };
            let idle = server.frame.ends_idle(&self.buf[..n]);
            if let Some(c) = server.client {
                let ok = match self.clients[c].as_mut() {
                    Some(client) => send(&mut client.sock, &mut client.out, &self.buf[..n]),
                    None => true,
                };
                if !ok {
                    self.close_client(c);
                }
            }
            if idle {
                self.release(s);
            }
            if !more {
                return Ok(());
            }
        }
    }
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("floor_relay: {e}");
            std::process::exit(2);
        }
    };
    let ran = match args.runtime.as_str() {
        "tokio" => on_tokio::run(&args),
        "uring" => uring::run(&args, false),
        "uring-multishot" => uring::run(&args, true),
        "core" => with_core::run(&args, true),
        "core-nostats" => with_core::run(&args, false),
        _ => run(&args),
    };
    if let Err(e) = ran {
        eprintln!("floor_relay: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let poll = Poll::new().map_err(|e| e.to_string())?;
    let servers = open_servers(args, poll.registry())?
        .into_iter()
        .map(|sock| Server {
            sock,
            client: None,
            out: Vec::new(),
            frame: Frames::default(),
        })
        .collect::<Vec<_>>();
    let mut listener = TcpListener::bind(args.listen).map_err(|e| e.to_string())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let mut relay = Relay {
        registry: poll.registry().try_clone().map_err(|e| e.to_string())?,
        clients: Vec::new(),
        free_slots: Vec::new(),
        idle_servers: (0..servers.len()).rev().collect(),
        servers,
        queue: VecDeque::new(),
        buf: vec![0; CHUNK],
        greeting: greeting(),
    };
    eprintln!(
        "floor_relay ({}): listening on {}",
        args.runtime, args.listen
    );
    let mut events = Events::with_capacity(1024);
    if args.runtime == "nested" {
        return nested(poll, relay, listener, events);
    }
    let mut poll = poll;
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e.to_string());
        }
        relay.dispatch(&listener, &events)?;
    }
}

impl Relay {
    fn dispatch(&mut self, listener: &TcpListener, events: &Events) -> Result<(), String> {
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept(listener),
                Token(t) if t < self.servers.len() => self.server_event(t)?,
                Token(t) => self.client_event(t - self.servers.len()),
            }
        }
        Ok(())
    }
}

/// The mio loop as one task on tokio's current-thread runtime, its epoll set watched by
/// tokio's (the shape of pgsluice's lot of idle clients, `src/client/lot.rs`): what the
/// runtime costs a readiness loop that lives inside it.
fn nested(
    poll: Poll,
    mut relay: Relay,
    listener: TcpListener,
    mut events: Events,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // As in src/client/lot.rs: the epoll set is owned by the `Poll` the `AsyncFd` owns.
        #[allow(deprecated)]
        let mut epoll =
            tokio::io::unix::AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)
                .map_err(|e| e.to_string())?;
        loop {
            let mut guard = epoll.readable_mut().await.map_err(|e| e.to_string())?;
            loop {
                events.clear();
                match guard
                    .get_inner_mut()
                    .poll(&mut events, Some(std::time::Duration::ZERO))
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.to_string()),
                }
                if events.is_empty() {
                    guard.clear_ready();
                    break;
                }
                relay.dispatch(&listener, &events)?;
            }
        }
    })
}

/// The same relay as a task per client on tokio's current-thread runtime, the way pgsluice
/// runs: a client's task reads its request, takes an idle server (or waits for one in a
/// queue, handed over by the task that gives one back), writes, relays the answer until
/// its final idle `ReadyForQuery`, and gives the server back.
mod on_tokio {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::oneshot;

    use super::{Args, CHUNK, Frames};

    #[derive(Default)]
    struct Servers {
        idle: RefCell<Vec<TcpStream>>,
        waiting: RefCell<VecDeque<oneshot::Sender<TcpStream>>>,
    }

    impl Servers {
        async fn take(&self) -> Option<TcpStream> {
            if let Some(s) = self.idle.borrow_mut().pop() {
                return Some(s);
            }
            let (tx, rx) = oneshot::channel();
            self.waiting.borrow_mut().push_back(tx);
            rx.await.ok()
        }

        fn give_back(&self, mut server: TcpStream) {
            loop {
                let next = self.waiting.borrow_mut().pop_front();
                match next {
                    Some(tx) => match tx.send(server) {
                        Ok(()) => return,
                        Err(s) => server = s,
                    },
                    None => break,
                }
            }
            self.idle.borrow_mut().push(server);
        }
    }

    pub(super) fn run(args: &Args) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let servers = Rc::new(Servers::default());
            for i in 0..args.servers {
                let std = super::connect(args).map_err(|e| format!("server {i}: {e}"))?;
                let sock = TcpStream::from_std(std).map_err(|e| e.to_string())?;
                servers.idle.borrow_mut().push(sock);
            }
            let listener = TcpListener::bind(args.listen)
                .await
                .map_err(|e| e.to_string())?;
            let greeting: Rc<[u8]> = super::greeting().into();
            eprintln!("floor_relay (tokio): listening on {}", args.listen);
            loop {
                let (sock, _) = listener.accept().await.map_err(|e| e.to_string())?;
                let _ = sock.set_nodelay(true);
                let (servers, greeting) = (servers.clone(), greeting.clone());
                tokio::task::spawn_local(async move {
                    let _ = client(sock, &servers, &greeting).await;
                });
            }
        })
    }

    async fn client(
        mut sock: TcpStream,
        servers: &Servers,
        greeting: &[u8],
    ) -> std::io::Result<()> {
        startup(&mut sock, greeting).await?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = sock.read(&mut buf).await?;
            if n == 0 || buf[0] == b'X' {
                return Ok(());
            }
            let Some(mut server) = servers.take().await else {
                return Ok(());
            };
            server.write_all(&buf[..n]).await?;
            let mut frames = Frames::default();
            loop {
                let m = server.read(&mut buf).await?;
                if m == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                let idle = frames.ends_idle(&buf[..m]);
                sock.write_all(&buf[..m]).await?;
                if idle {
                    break;
                }
            }
            servers.give_back(server);
        }
    }

    /// SSL refused, then the greeting for the startup packet.
    async fn startup(sock: &mut TcpStream, greeting: &[u8]) -> std::io::Result<()> {
        loop {
            let len = sock.read_u32().await? as usize;
            if !(8..=10_000).contains(&len) {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            let mut body = vec![0u8; len - 4];
            sock.read_exact(&mut body).await?;
            match u32::from_be_bytes([body[0], body[1], body[2], body[3]]) {
                80877103 | 80877104 => sock.write_all(b"N").await?,
                196608 => return sock.write_all(greeting).await,
                _ => return Err(std::io::ErrorKind::InvalidData.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Frames;

    #[test]
    fn a_final_idle_ready_for_query_is_seen_across_reads() {
        let answer = [&b"C\0\0\0\x0dSELECT 1\0"[..], &b"Z\0\0\0\x05I"[..]].concat();
        for cut in 0..answer.len() {
            let mut f = Frames::default();
            let first = f.ends_idle(&answer[..cut]);
            let second = f.ends_idle(&answer[cut..]);
            assert!(!first || cut == answer.len(), "cut at {cut}");
            assert!(second, "cut at {cut}");
        }
        let mut f = Frames::default();
        assert!(!f.ends_idle(b"Z\0\0\0\x05T"), "in a transaction");
    }
}
