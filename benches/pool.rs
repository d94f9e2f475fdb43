//! Pool checkout and checkin of an idle server connection, alone and with waiters.
//!
//! The pool opens its connections itself, with `server::connect`, to a stand-in server on
//! loopback that answers the startup (AuthenticationOk, ParameterStatus, BackendKeyData,
//! ReadyForQuery) and then stays silent, as an idle PostgreSQL backend does. Checkout and
//! checkin of an idle connection do no I/O, so what is measured is the real `Pool` code:
//! the lock, the idle list, the expiry and unexpected-data checks, the waiters' hand-off.
//!
//! Runs on a current-thread runtime, as each pgsluice worker does.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgsluice::pool::{Pool, PoolKey, PoolSettings};
use pgsluice::protocol::build;
use pgsluice::server::ServerTarget;
use tokio::runtime::Runtime;

/// Starts the stand-in server; returns its port. Its threads live as long as the process.
fn stand_in_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || serve(stream, n as u32 + 1));
        }
    });
    port
}

/// Reads the StartupMessage, greets, then reads until the client closes.
fn serve(mut stream: std::net::TcpStream, pid: u32) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut startup = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    stream.read_exact(&mut startup)?;
    let mut out = BytesMut::new();
    build::auth_ok(&mut out);
    build::parameter_status(&mut out, "server_version", "15.0");
    build::parameter_status(&mut out, "client_encoding", "UTF8");
    build::backend_key_data(&mut out, pid, 0x5eed);
    build::ready_for_query(&mut out, b'I');
    stream.write_all(&out)?;
    let mut sink = [0u8; 64];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

/// A pool of `size` with pgsluice's default timeouts, its connections opened and idle.
fn pool(rt: &Runtime, port: u16, size: usize) -> Arc<Pool> {
    let settings = PoolSettings {
        target: ServerTarget {
            host: "127.0.0.1".into(),
            port,
            database: "bench".into(),
            user: "bench".into(),
            password: None,
            tls: Arc::new(pgsluice::tls::Connector::disabled()),
            passthrough: Default::default(),
            keepalive: None,
        },
        size,
        min_size: 0,
        connect_timeout: Some(Duration::from_secs(15)),
        idle_timeout: Some(Duration::from_secs(600)),
        reserve: 0,
        reserve_timeout: None,
        check: None,
        lifetime: Some(Duration::from_secs(3600)),
    };
    let key = PoolKey {
        database: "bench".into(),
        user: "bench".into(),
        node: 0,
    };
    let pool = Arc::new(Pool::new(key, settings, Arc::new(AtomicU64::new(1))));
    rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..size {
            conns.push(pool.checkout(None).await.expect("connect to the stand-in"));
        }
        conns.into_iter().for_each(|c| c.checkin());
    });
    let snap = pool.snapshot();
    assert_eq!((snap.idle, snap.total), (size, size));
    pool
}

/// `ops` checkouts and checkins spread over `tasks` tasks, each holding its connection
/// across one yield (so the others find the pool empty and queue up).
async fn contend(pool: Arc<Pool>, tasks: u64, ops: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let pool = pool.clone();
            let share = ops / tasks + u64::from(t < ops % tasks);
            tokio::spawn(async move {
                for _ in 0..share {
                    let conn = pool.checkout(None).await.expect("checkout");
                    tokio::task::yield_now().await;
                    conn.checkin();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    start.elapsed()
}

fn bench_pool(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let port = stand_in_server();
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(1));

    let idle = pool(&rt, port, 20);
    g.bench_function("checkout_checkin/idle_of_20", |b| {
        b.to_async(&rt).iter(|| async {
            let conn = idle.checkout(None).await.expect("checkout");
            conn.checkin();
        })
    });

    let one = pool(&rt, port, 1);
    for tasks in [1, 8] {
        let name = format!("held_across_yield/size_1_{tasks}_tasks");
        g.bench_function(&name, |b| {
            b.to_async(&rt)
                .iter_custom(|ops| contend(one.clone(), tasks, ops))
        });
    }
    g.finish();
    let snap = one.snapshot();
    assert_eq!(
        (snap.idle, snap.waiting),
        (1, 0),
        "every connection came back"
    );
}

criterion_group!(benches, bench_pool);
criterion_main!(benches);
