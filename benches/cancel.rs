//! Cancel keys, kept in the client list: a client's login and logout (register, remove)
//! and the lookup a CancelRequest makes, among 10,000 logged-in clients.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgsluice::registry::clients::{ClientInfo, ClientMeta, Registry, ServerLink};

const CLIENTS: usize = 10_000;

fn client(id: u32) -> ClientInfo {
    ClientInfo::new(
        id,
        "user".into(),
        "db".into(),
        Some(0),
        ClientMeta::default(),
        None,
    )
}

/// A list of `CLIENTS` clients, each on a server (so a lookup finds a target), and the
/// clients' entries.
fn populated() -> (Registry, Vec<Arc<ClientInfo>>) {
    let registry = Registry::default();
    let addr: SocketAddr = "127.0.0.1:5432".parse().expect("address");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let info = registry.register(client);
            info.set_server(Arc::new(ServerLink {
                id: i as u64,
                backend_pid: 10_000 + i as u32,
                backend_secret: i as u32,
                local_port: 1,
                addr,
                unix: None,
                created: std::time::Instant::now(),
            }));
            info
        })
        .collect();
    (registry, clients)
}

fn bench_cancel(c: &mut Criterion) {
    let (registry, clients) = populated();
    let mut g = c.benchmark_group("cancel");
    g.throughput(Throughput::Elements(1));
    g.bench_function("register_remove/10k_registered", |b| {
        b.iter(|| {
            let info = registry.register(client);
            registry.remove(black_box(info.id));
        })
    });
    // Keys in a scattered order, so consecutive lookups touch different entries.
    let keys: Vec<(u32, u32)> = (0..CLIENTS)
        .map(|i| &clients[i * 7_919 % CLIENTS])
        .map(|c| (c.id, c.secret))
        .collect();
    let mut next = 0;
    g.bench_function("lookup_hit/10k_registered", |b| {
        b.iter(|| {
            let (id, secret) = keys[next];
            next = (next + 1) % keys.len();
            registry.cancel_target(black_box(id), black_box(secret))
        })
    });
    let (id, secret) = keys[0];
    assert!(registry.cancel_target(id, secret).is_some());
    assert!(registry.cancel_target(id, secret.wrapping_add(1)).is_none());
    g.bench_function("lookup_wrong_secret/10k_registered", |b| {
        b.iter(|| registry.cancel_target(black_box(id), black_box(secret.wrapping_add(1))))
    });
    g.finish();
}

criterion_group!(benches, bench_cancel);
criterion_main!(benches);
