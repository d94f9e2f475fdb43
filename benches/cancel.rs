//! The cancel-key registry: a client's login and logout (register, remove) and the lookup
//! a CancelRequest makes, among 10,000 logged-in clients.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgsluice::client::cancel::{CancelRegistry, CancelSlot};
use pgsluice::registry::clients::{ClientInfo, ClientMeta, ServerLink};

const CLIENTS: usize = 10_000;

/// A registry with `CLIENTS` clients, each on a server (so a lookup finds a target).
/// The registry's slots hold their clients' entries; the caller keeps the slots.
fn populated() -> (CancelRegistry, Vec<Arc<CancelSlot>>) {
    let registry = CancelRegistry::default();
    let addr: SocketAddr = "127.0.0.1:5432".parse().expect("address");
    let slots: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let slot = registry.register();
            let info = ClientInfo::new(
                slot.pid,
                "user".into(),
                "db".into(),
                Some(0),
                ClientMeta::default(),
                None,
            );
            info.set_server(Arc::new(ServerLink {
                id: i as u64,
                backend_pid: 10_000 + i as u32,
                backend_secret: i as u32,
                local_port: 1,
                addr,
                unix: None,
                created: std::time::Instant::now(),
            }));
            slot.bind(Arc::new(info));
            slot
        })
        .collect();
    (registry, slots)
}

fn bench_cancel(c: &mut Criterion) {
    let (registry, slots) = populated();
    let mut g = c.benchmark_group("cancel");
    g.throughput(Throughput::Elements(1));
    g.bench_function("register_remove/10k_registered", |b| {
        b.iter(|| {
            let slot = registry.register();
            registry.remove(black_box(slot.pid));
        })
    });
    // Keys in a scattered order, so consecutive lookups touch different slots.
    let keys: Vec<(u32, u32)> = (0..CLIENTS)
        .map(|i| &slots[i * 7_919 % CLIENTS])
        .map(|s| (s.pid, s.secret))
        .collect();
    let mut next = 0;
    g.bench_function("lookup_hit/10k_registered", |b| {
        b.iter(|| {
            let (pid, secret) = keys[next];
            next = (next + 1) % keys.len();
            registry.lookup(black_box(pid), black_box(secret))
        })
    });
    let (pid, secret) = keys[0];
    assert!(registry.lookup(pid, secret).is_some());
    assert!(registry.lookup(pid, secret.wrapping_add(1)).is_none());
    g.bench_function("lookup_wrong_secret/10k_registered", |b| {
        b.iter(|| registry.lookup(black_box(pid), black_box(secret.wrapping_add(1))))
    });
    g.finish();
}

criterion_group!(benches, bench_cancel);
criterion_main!(benches);
