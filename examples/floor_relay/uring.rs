//! `--runtime uring`: the same relay on io_uring instead of epoll, to measure what the
//! other I/O model the issue names would leave of a pooler's kernel time. One ring per
//! process (one thread, as the other forms): every socket always has a receive queued in
//! the ring, and a send when it has bytes to go; one `io_uring_enter` per turn submits
//! what the last turn's completions queued and waits for the next completion. No readiness
//! step and no `recv`/`send` system calls of their own: the kernel receives into each
//! connection's buffer when bytes arrive (a receive that finds none waits on the socket
//! inside the kernel) and reports it in the completion queue. The ring is set up for one
//! issuer with its deferred work run only when the thread asks for completions
//! (`IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`), where the kernel has them.
//!
//! `--runtime uring-multishot` keeps one multishot receive per socket instead (armed once,
//! it reports every arrival until it fails), the kernel choosing each arrival's buffer from
//! a ring of provided buffers that the relay hands back after use: no receive is queued
//! again per transaction.
//!
//! Connections are never reused (a slot per client for the process's life): a measuring
//! tool, not a pooler.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::{Args, CHUNK, Frames, connect, greeting, take_startup};

/// What a completion is for: the operation in the low byte, the connection above it.
const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;

fn tag(op: u64, id: usize) -> u64 {
    ((id as u64) << 8) | op
}

/// A server connection (ids below the server count) or a client.
struct Conn {
    sock: TcpStream,
    open: bool,
    /// Where the kernel receives (its length is the buffer's; a receive is always queued).
    rbuf: Vec<u8>,
    /// Bytes the kernel is sending (not touched until their completion), how many went.
    sending: Vec<u8>,
    sent: usize,
    /// Bytes that wait for the send in flight.
    out: Vec<u8>,
    send_busy: bool,
    // A client's:
    logged_in: bool,
    server: Option<usize>,
    pending: Vec<u8>,
    queued: bool,
    // A server's:
    client: Option<usize>,
    frame: Frames,
}

impl Conn {
    fn new(sock: TcpStream, logged_in: bool) -> Conn {
        Conn {
            sock,
            open: true,
            rbuf: vec![0; CHUNK],
            sending: Vec::new(),
            sent: 0,
            out: Vec::new(),
            send_busy: false,
            logged_in,
            server: None,
            pending: Vec::new(),
            queued: false,
            client: None,
            frame: Frames::default(),
        }
    }
}

/// Provided buffers of the multishot form: `COUNT` buffers of `SIZE` bytes and the ring
/// that hands them to the kernel (`IORING_REGISTER_PBUF_RING`, group `GROUP`).
struct Provided {
    ring: *mut types::BufRingEntry,
    bufs: Vec<u8>,
    /// The ring's tail as the relay last published it.
    tail: u16,
    /// Bytes of the buffer in hand (copied out, so that the buffer goes back at once).
    scratch: Vec<u8>,
}

impl Provided {
    const COUNT: u16 = 1024;
    const SIZE: usize = 4096;
    const GROUP: u16 = 0;

    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(
            Self::COUNT as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .expect("a valid layout")
    }

    /// Makes the buffers and registers their ring with `ring`.
    fn new(ring: &IoUring) -> io::Result<Provided> {
        // SAFETY: the layout's size is not zero.
        let base = unsafe { std::alloc::alloc_zeroed(Self::layout()) } as *mut types::BufRingEntry;
        if base.is_null() {
            return Err(io::Error::other("no memory for the buffer ring"));
        }
        let mut p = Provided {
            ring: base,
            bufs: vec![0; Self::COUNT as usize * Self::SIZE],
            tail: 0,
            scratch: Vec::with_capacity(Self::SIZE),
        };
        for bid in 0..Self::COUNT {
            p.give_back(bid);
        }
        // SAFETY: the ring's memory is page-aligned, `COUNT` entries long, and lives as
        // long as the relay (which never drops it: the process ends with the loop).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                base as u64,
                Self::COUNT,
                Self::GROUP,
                0,
            )?;
        }
        Ok(p)
    }

    /// Hands buffer `bid` (back) to the kernel.
    fn give_back(&mut self, bid: u16) {
        let index = (self.tail & (Self::COUNT - 1)) as usize;
        // SAFETY: `index` is within the ring's `COUNT` entries; the entry at the tail is
        // the relay's to write until the tail is published past it.
        unsafe {
            let entry = &mut *self.ring.add(index);
            entry.set_addr(self.bufs.as_ptr().add(bid as usize * Self::SIZE) as u64);
            entry.set_len(Self::SIZE as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field lives in the ring's first entry; the kernel reads it with
        // acquire ordering, so the release store publishes the entry written above.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    /// Copies `len` bytes of buffer `bid` to `scratch` and hands the buffer back.
    fn take(&mut self, bid: u16, len: usize) {
        let at = bid as usize * Self::SIZE;
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&self.bufs[at..at + len.min(Self::SIZE)]);
        self.give_back(bid);
    }
}

struct Relay {
    ring: IoUring,
    /// The multishot form's buffers (`None`: one receive at a time into `rbuf`).
    provided: Option<Provided>,
    listener: TcpListener,
    conns: Vec<Conn>,
    servers: usize,
    idle_servers: Vec<usize>,
    queue: VecDeque<usize>,
    greeting: Vec<u8>,
}

pub fn run(args: &Args, multishot: bool) -> Result<(), String> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(4096)
        .or_else(|_| IoUring::new(4096))
        .map_err(|e| format!("io_uring: {e}"))?;
    let mut conns = Vec::with_capacity(args.servers);
    for i in 0..args.servers {
        let sock = connect(args).map_err(|e| format!("server {i}: {e}"))?;
        conns.push(Conn::new(sock, true));
    }
    let listener = TcpListener::bind(args.listen).map_err(|e| e.to_string())?;
    let provided = if multishot {
        Some(Provided::new(&ring).map_err(|e| format!("provided buffers: {e}"))?)
    } else {
        None
    };
    let mut relay = Relay {
        ring,
        provided,
        listener,
        conns,
        servers: args.servers,
        idle_servers: (0..args.servers).rev().collect(),
        queue: VecDeque::new(),
        greeting: greeting(),
    };
    eprintln!(
        "floor_relay ({}): listening on {}",
        args.runtime, args.listen
    );
    for s in 0..relay.servers {
        relay.arm_recv(s);
    }
    relay.arm_accept();
    let mut done = Vec::with_capacity(1024);
    loop {
        match relay.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(format!("io_uring_enter: {e}")),
        }
        done.clear();
        done.extend(
            relay
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(data, result, flags) in &done {
            let id = (data >> 8) as usize;
            match data & 0xff {
                ACCEPT => relay.accepted(result),
                RECV => relay.received(id, result, flags)?,
                _ => relay.sent(id, result)?,
            }
        }
    }
}

impl Relay {
    /// Queues `entry`, making room by submitting what is queued when the ring is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry names (a connection's `rbuf` or `sending`)
            // stays allocated and untouched until the entry's completion: connections are
            // never dropped, `rbuf` is only read after its receive completed and is put
            // back before the next one is queued, and `sending` changes only after its
            // send's completion.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                eprintln!("floor_relay (uring): submit: {e}");
            }
        }
    }

    fn arm_accept(&mut self) {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut());
        self.push(entry.build().user_data(tag(ACCEPT, 0)));
    }

    fn arm_recv(&mut self, id: usize) {
        let c = &mut self.conns[id];
        if self.provided.is_some() {
            let entry = opcode::RecvMulti::new(types::Fd(c.sock.as_raw_fd()), Provided::GROUP);
            return self.push(entry.build().user_data(tag(RECV, id)));
        }
        let entry = opcode::Recv::new(
            types::Fd(c.sock.as_raw_fd()),
            c.rbuf.as_mut_ptr(),
            c.rbuf.len() as u32,
        );
        self.push(entry.build().user_data(tag(RECV, id)));
    }

    /// Sends what waits in `out` of connection `id`, unless a send is in flight.
    fn start_send(&mut self, id: usize) {
        let c = &mut self.conns[id];
        if c.send_busy || c.out.is_empty() || !c.open {
            return;
        }
        c.sending.clear();
        std::mem::swap(&mut c.sending, &mut c.out);
        c.sent = 0;
        c.send_busy = true;
        self.send_rest(id);
    }

    fn send_rest(&mut self, id: usize) {
        let c = &mut self.conns[id];
        let rest = &c.sending[c.sent..];
        let entry = opcode::Send::new(
            types::Fd(c.sock.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL);
        self.push(entry.build().user_data(tag(SEND, id)));
    }

    fn queue_send(&mut self, id: usize, data: &[u8]) {
        self.conns[id].out.extend_from_slice(data);
        self.start_send(id);
    }

    fn accepted(&mut self, result: i32) {
        self.arm_accept();
        if result < 0 {
            return;
        }
        // SAFETY: a completed accept's result is a new descriptor that nothing else owns.
        let sock = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(result) };
        let _ = sock.set_nodelay(true);
        self.conns.push(Conn::new(sock, false));
        self.arm_recv(self.conns.len() - 1);
    }

    fn sent(&mut self, id: usize, result: i32) -> Result<(), String> {
        let c = &mut self.conns[id];
        if result < 0 {
            c.send_busy = false;
            if id < self.servers {
                return Err(format!(
                    "server {id}: send: {}",
                    io::Error::from_raw_os_error(-result)
                ));
            }
            self.close_client(id);
            return Ok(());
        }
        c.sent += result as usize;
        if c.sent < c.sending.len() {
            self.send_rest(id);
        } else {
            c.send_busy = false;
            self.start_send(id);
        }
        Ok(())
    }

    fn received(&mut self, id: usize, result: i32, flags: u32) -> Result<(), String> {
        if let Some(p) = self.provided.as_mut() {
            if let Some(bid) = cqueue::buffer_select(flags) {
                p.take(bid, result.max(0) as usize);
            }
            let more = cqueue::more(flags);
            if !self.conns[id].open {
                return Ok(());
            }
            if result == -libc::ENOBUFS {
                // Every buffer was in use: the buffers are back now, and so is the receive.
                self.arm_recv(id);
                return Ok(());
            }
            if result > 0 {
                let data = std::mem::take(&mut self.provided.as_mut().expect("provided").scratch);
                self.take_bytes(id, &data);
                if let Some(p) = self.provided.as_mut() {
                    p.scratch = data;
                }
                if !more && self.conns[id].open {
                    self.arm_recv(id);
                }
                return Ok(());
            }
            return self.ended(id, result);
        }
        if !self.conns[id].open {
            return Ok(());
        }
        if result <= 0 {
            return self.ended(id, result);
        }
        let buf = std::mem::take(&mut self.conns[id].rbuf);
        self.take_bytes(id, &buf[..result as usize]);
        self.conns[id].rbuf = buf;
        if self.conns[id].open {
            self.arm_recv(id);
        }
        Ok(())
    }

    /// A receive on `id` ended with end of stream or an error.
    fn ended(&mut self, id: usize, result: i32) -> Result<(), String> {
        if id < self.servers {
            return Err(format!("server {id} closed ({result})"));
        }
        self.close_client(id);
        Ok(())
    }

    /// Bytes received on connection `id`.
    fn take_bytes(&mut self, id: usize, data: &[u8]) {
        if id < self.servers {
            self.server_bytes(id, data);
        } else if !self.client_bytes(id, data) {
            self.close_client(id);
        }
    }

    fn server_bytes(&mut self, s: usize, data: &[u8]) {
        let idle = self.conns[s].frame.ends_idle(data);
        if let Some(c) = self.conns[s].client
            && self.conns[c].open
        {
            self.queue_send(c, data);
        }
        if idle {
            self.release(s);
        }
    }

    /// `data` came from client `id`; false to close it.
    fn client_bytes(&mut self, id: usize, data: &[u8]) -> bool {
        let c = &mut self.conns[id];
        if !c.logged_in {
            c.pending.extend_from_slice(data);
            let mut answer = Vec::new();
            let Some(relay) = take_startup(&mut c.pending, &mut answer, &self.greeting) else {
                return false;
            };
            c.logged_in = relay;
            let extra = relay && !c.pending.is_empty();
            self.queue_send(id, &answer);
            return !extra;
        }
        if let Some(s) = c.server {
            self.queue_send(s, data);
            return true;
        }
        c.pending.extend_from_slice(data);
        if c.pending.first() == Some(&b'X') {
            return false;
        }
        if c.queued {
            return true;
        }
        match self.idle_servers.pop() {
            Some(s) => self.attach(id, s),
            None => {
                c.queued = true;
                self.queue.push_back(id);
            }
        }
        true
    }

    /// Gives server `s` to client `id` and sends it what the client has waiting.
    fn attach(&mut self, id: usize, s: usize) {
        let c = &mut self.conns[id];
        c.server = Some(s);
        c.queued = false;
        let pending = std::mem::take(&mut c.pending);
        self.conns[s].client = Some(id);
        self.queue_send(s, &pending);
        self.conns[id].pending = pending;
        self.conns[id].pending.clear();
    }

    /// Server `s` is done with its client: the next waiting client takes it.
    fn release(&mut self, s: usize) {
        if let Some(c) = self.conns[s].client.take() {
            self.conns[c].server = None;
        }
        while let Some(next) = self.queue.pop_front() {
            if self.conns[next].open {
                return self.attach(next, s);
            }
        }
        self.idle_servers.push(s);
    }

    fn close_client(&mut self, id: usize) {
        let c = &mut self.conns[id];
        if !c.open {
            return;
        }
        c.open = false;
        // Ends the receive still queued on it; the descriptor stays open (and its slot
        // taken) for the process's life.
        let _ = c.sock.shutdown(Shutdown::Both);
        if c.queued {
            self.queue.retain(|&q| q != id);
        }
        if let Some(s) = self.conns[id].server.take() {
            // Mid-transaction: what the server still sends is dropped with the link.
            self.conns[s].client = None;
            self.release(s);
        }
    }
}
