//! Framing: walking 5-byte headers over buffers the relay sees, and building the few
//! messages pgsluice writes itself.
//!
//! The walk does what the relay does for a frame it only forwards: read the header, note
//! ReadyForQuery's status byte, skip to the next frame.

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgsluice::protocol::{self, HEADER_LEN, be, build, fe};

/// One frame: tag, length (counting itself), body.
fn frame(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

/// What PostgreSQL answers to pgbench `-S -M simple`'s
/// `SELECT abalance FROM pgbench_accounts WHERE aid = 4711;`.
fn pgbench_select_reply() -> Vec<u8> {
    let mut out = Vec::new();
    let mut rd = BytesMut::new();
    rd.put_i16(1);
    rd.put_slice(b"abalance\0");
    rd.put_u32(16_396); // table OID
    rd.put_i16(3); // column number
    rd.put_u32(23); // int4
    rd.put_i16(4);
    rd.put_i32(-1);
    rd.put_i16(0);
    frame(&mut out, be::ROW_DESCRIPTION, &rd);
    let mut dr = BytesMut::new();
    dr.put_i16(1);
    dr.put_i32(4);
    dr.put_slice(b"-123");
    frame(&mut out, be::DATA_ROW, &dr);
    frame(&mut out, be::COMMAND_COMPLETE, b"SELECT 1\0");
    frame(&mut out, be::READY_FOR_QUERY, b"I");
    out
}

/// pgbench `-S -M extended`'s client batch: Parse (unnamed), Bind one text parameter,
/// Describe portal, Execute, Sync.
fn pgbench_extended_batch() -> Vec<u8> {
    let mut out = Vec::new();
    let mut parse = BytesMut::new();
    parse.put_slice(b"\0SELECT abalance FROM pgbench_accounts WHERE aid = $1;\0");
    parse.put_i16(0);
    frame(&mut out, fe::PARSE, &parse);
    let mut bind = BytesMut::new();
    bind.put_slice(b"\0\0");
    bind.put_i16(0); // parameter formats: all text
    bind.put_i16(1);
    bind.put_i32(4);
    bind.put_slice(b"4711");
    bind.put_i16(0); // result formats: all text
    frame(&mut out, fe::BIND, &bind);
    frame(&mut out, fe::DESCRIBE, b"P\0");
    frame(&mut out, fe::EXECUTE, b"\0\0\0\0\0");
    frame(&mut out, fe::SYNC, b"");
    out
}

/// Walks every frame header in `buf`: (frames, status of the last ReadyForQuery).
fn walk(mut buf: &[u8]) -> (usize, u8) {
    let mut frames = 0;
    let mut status = 0;
    while let Ok(Some(h)) = protocol::header(buf, usize::MAX) {
        if h.tag == be::READY_FOR_QUERY {
            status = buf.get(HEADER_LEN).copied().unwrap_or(0);
        }
        frames += 1;
        buf = &buf[h.frame_len.min(buf.len())..];
    }
    (frames, status)
}

fn bench_walk(c: &mut Criterion) {
    let reply = pgbench_select_reply();
    let batch = pgbench_extended_batch();
    // (name, buffer, frames in it)
    let cases = [
        ("server_reply/pgbench_S", reply.clone(), 4),
        ("server_reply/pgbench_S_x100", reply.repeat(100), 400),
        ("client_batch/pgbench_S_extended", batch.clone(), 5),
        (
            "client_batch/pgbench_S_extended_x100",
            batch.repeat(100),
            500,
        ),
    ];
    let mut g = c.benchmark_group("framing/walk");
    for (name, buf, frames) in &cases {
        assert_eq!(
            walk(buf).0,
            *frames,
            "{name}: the fixture is not whole frames"
        );
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(*name, |b| b.iter(|| walk(black_box(buf))));
    }
    g.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing/build");
    g.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(256);
    g.bench_function("error", |b| {
        b.iter(|| {
            buf.clear();
            build::error(
                &mut buf,
                "ERROR",
                "25006",
                black_box("cannot execute UPDATE in a read-only transaction"),
            );
            black_box(buf.len())
        })
    });
    g.bench_function("ready_for_query", |b| {
        b.iter(|| {
            buf.clear();
            build::ready_for_query(&mut buf, black_box(b'I'));
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_walk, bench_build);
criterion_main!(benches);
