//! LISTEN without pinning (issue 16): in transaction mode a client's LISTEN is served by
//! one listening server connection per (database, user), every listener receives exactly
//! the notifications of its channels, in order, while other clients (pgbench) use the
//! pool; a listening connection that dies is reopened and its listeners told.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::pg::{Pg, pg_connect, run_async};
use common::pgbench::{pgbench_init, pgbench_through};
use common::{Cluster, Pooler, psql_ok, server_activity, server_conns, wait_until};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::AsyncMessage;

const CLIENTS: usize = 500;
const CHANNELS: usize = 50;
const NOTIFIES: usize = 10_000;
const SENDERS: usize = 5;
const POOL: u32 = 5;

/// The channels client `i` listens on: two of the fifty.
fn channels_of(i: usize) -> Vec<usize> {
    let mut v = vec![i % CHANNELS, (i * 7 + 3) % CHANNELS];
    v.sort();
    v.dedup();
    v
}

/// Backends of user app whose last statement was a LISTEN or UNLISTEN: pgsluice's
/// listening connections (no client's statement of that kind reaches a server).
fn listening_backends(c: &Cluster) -> String {
    psql_ok(
        &c.primary_url("postgres"),
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' \
         AND backend_type = 'client backend' AND (query LIKE 'LISTEN %' OR query LIKE 'UNLISTEN %')",
    )
}

/// The cluster's config in transaction mode, trust (500 logins stay cheap), pool of
/// `pool`, with console user postgres.
fn config(c: &Cluster, pool: u32) -> String {
    c.pooler_config("transaction", "trust", pool).replacen(
        "[auth]\ntype = \"trust\"\n",
        "[auth]\ntype = \"trust\"\nadmin_users = [\"postgres\"]\n",
        1,
    )
}

/// The next async message within 20 s.
async fn next(rx: &mut UnboundedReceiver<AsyncMessage>) -> AsyncMessage {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a message in time")
        .expect("connection open")
}

/// Sender `s` owns ten channels and sends its share of the NOTIFYs in batches of 20
/// statements, half as NOTIFY and half as pg_notify (some inside an explicit
/// transaction), each payload carrying the channel's own sequence number; then `end` on
/// each of its channels. Returns how many it sent per channel.
async fn send(url: String, s: usize) -> Vec<usize> {
    let pg = Pg::connect(&url).await;
    let per_sender = NOTIFIES / SENDERS;
    let own = CHANNELS / SENDERS;
    let mut seq = vec![0usize; CHANNELS];
    let mut batch = Vec::new();
    for n in 0..per_sender {
        let ch = s * own + n % own;
        let k = seq[ch];
        seq[ch] += 1;
        batch.push(if n % 2 == 0 {
            format!("NOTIFY ch{ch}, 'ch{ch}:{k}:payload-{n}'")
        } else {
            format!("SELECT pg_notify('ch{ch}', 'ch{ch}:{k}:payload-{n}')")
        });
        if batch.len() == 20 || n + 1 == per_sender {
            let sql = batch.join("; ");
            if n % 40 == 39 {
                pg.q(&format!("BEGIN; {sql}; COMMIT")).await;
            } else {
                pg.q(&sql).await;
            }
            batch.clear();
        }
    }
    for i in 0..own {
        pg.q(&format!("NOTIFY ch{}, 'end'", s * own + i)).await;
    }
    pg.close().await;
    seq
}

/// Reads client `i`'s notifications until each of its channels said `end`.
async fn receive(
    i: usize,
    rx: &mut UnboundedReceiver<AsyncMessage>,
) -> BTreeMap<String, Vec<String>> {
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ended = 0;
    while ended < channels_of(i).len() {
        let msg = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("client {i}: notifications stopped after {got:?}"))
            .unwrap_or_else(|| panic!("client {i}: connection closed"));
        match msg {
            AsyncMessage::Notification(n) if n.payload() == "end" => ended += 1,
            AsyncMessage::Notification(n) => got
                .entry(n.channel().to_string())
                .or_default()
                .push(n.payload().to_string()),
            other => panic!("client {i}: unexpected {other:?}"),
        }
    }
    got
}

#[test]
fn five_hundred_listeners_through_a_pool_of_five_get_exactly_their_notifications_in_order() {
    let cluster = Cluster::start(0);
    pgbench_init(&cluster);
    let pooler = Pooler::start(&config(&cluster, POOL));
    let url = pooler.url("app", "", "app");
    let console = pooler.url("postgres", "", "pgsluice");
    let superuser = cluster.primary_url("postgres");

    let (received, sent) = std::thread::scope(|scope| {
        // pgbench runs through the same pool the whole time.
        let bench = scope
            .spawn(|| pgbench_through(&pooler, &["-n", "-c", "4", "-j", "2", "-T", "20"], 120));
        let out = run_async(300, async {
            let mut listeners = Vec::with_capacity(CLIENTS);
            for i in 0..CLIENTS {
                let (client, rx) = pg_connect(&url).await;
                for ch in channels_of(i) {
                    client
                        .batch_execute(&format!("LISTEN ch{ch}"))
                        .await
                        .unwrap_or_else(|e| panic!("client {i}: LISTEN ch{ch}: {e}"));
                }
                listeners.push((client, rx));
            }
            // Listening holds no server: no pin, one listening connection, and the app
            // user's server connections stay within the pool (plus that one).
            let admin = Pg::connect(&console).await;
            let pins = admin.show("SHOW PINS").await;
            assert!(
                pins.rows.iter().all(|r| !r
                    .get("pins")
                    .and_then(|p| p.as_deref())
                    .unwrap_or("")
                    .contains("listen")),
                "SHOW PINS lists listen: {pins:?}"
            );
            assert_eq!(
                listening_backends(&cluster),
                "1",
                "{}",
                server_activity(&superuser, "app")
            );
            let senders: Vec<_> = (0..SENDERS)
                .map(|s| tokio::spawn(send(url.clone(), s)))
                .collect();
            // Every listener reads while the senders send.
            let readers: Vec<_> = listeners
                .into_iter()
                .enumerate()
                .map(|(i, (client, mut rx))| {
                    tokio::spawn(async move {
                        let got = receive(i, &mut rx).await;
                        (client, got)
                    })
                })
                .collect();
            let (total, _) = server_conns(&superuser, "app");
            assert!(
                total <= POOL + 1,
                "{total} server connections for a pool of {POOL} and one listener: {}",
                server_activity(&superuser, "app")
            );
            let mut sent = vec![0usize; CHANNELS];
            for s in senders {
                for (ch, n) in s.await.expect("sender").into_iter().enumerate() {
                    sent[ch] += n;
                }
            }
            assert_eq!(sent.iter().sum::<usize>(), NOTIFIES);
            let mut clients = Vec::with_capacity(CLIENTS);
            let mut received = Vec::with_capacity(CLIENTS);
            for r in readers {
                let (client, got) = r.await.expect("reader");
                clients.push(client);
                received.push(got);
            }
            assert_eq!(
                listening_backends(&cluster),
                "1",
                "still one listening connection"
            );
            drop(clients);
            admin.close().await;
            (received, sent)
        });
        bench.join().expect("pgbench thread");
        out
    });
    for (i, got) in received.iter().enumerate() {
        let mine: Vec<String> = channels_of(i).iter().map(|c| format!("ch{c}")).collect();
        let mut channels: Vec<&String> = got.keys().collect();
        channels.sort();
        let mut expect: Vec<&String> = mine.iter().collect();
        expect.sort();
        assert_eq!(channels, expect, "client {i}: the channels it got");
        for (ch, payloads) in got {
            let c: usize = ch[2..].parse().expect("channel number");
            assert_eq!(payloads.len(), sent[c], "client {i}, {ch}: how many");
            for (k, p) in payloads.iter().enumerate() {
                assert!(
                    p.starts_with(&format!("{ch}:{k}:payload-")),
                    "client {i}, {ch}: notification {k} is {p:?} (out of order or lost)"
                );
            }
        }
    }
}

#[test]
fn a_lost_listening_connection_is_reopened_and_listeners_are_told() {
    let cluster = Cluster::start(0);
    let pooler = Pooler::start(&cluster.pooler_config("transaction", "scram-sha-256", 2));
    let url = pooler.url("app", "app_pw", "app");
    run_async(120, async {
        let (a, mut a_rx) = pg_connect(&url).await;
        let (b, mut b_rx) = pg_connect(&url).await;
        a.batch_execute("LISTEN jobs").await.expect("listen a");
        b.batch_execute("LISTEN \"Other Jobs\"")
            .await
            .expect("listen b");
        let sender = Pg::connect(&url).await;
        sender.q("NOTIFY jobs, 'one'").await;
        sender.q("SELECT pg_notify('Other Jobs', 'two')").await;
        match next(&mut a_rx).await {
            AsyncMessage::Notification(n) => {
                assert_eq!((n.channel(), n.payload()), ("jobs", "one"))
            }
            other => panic!("{other:?}"),
        }
        match next(&mut b_rx).await {
            AsyncMessage::Notification(n) => {
                assert_eq!((n.channel(), n.payload()), ("Other Jobs", "two"))
            }
            other => panic!("{other:?}"),
        }
        // The listening connection's backend is terminated.
        let killed = psql_ok(
            &cluster.primary_url("postgres"),
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'app' \
             AND query LIKE 'LISTEN %'",
        );
        assert_eq!(killed, "1");
        for rx in [&mut a_rx, &mut b_rx] {
            match next(rx).await {
                AsyncMessage::Notice(n) => assert!(
                    n.message().contains("may have been missed"),
                    "{}",
                    n.message()
                ),
                other => panic!("expected a NOTICE, got {other:?}"),
            }
        }
        assert!(
            wait_until(Duration::from_secs(10), || listening_backends(&cluster)
                == "1"),
            "the listener is back"
        );
        sender.q("NOTIFY jobs, 'three'").await;
        match next(&mut a_rx).await {
            AsyncMessage::Notification(n) => assert_eq!(n.payload(), "three"),
            other => panic!("{other:?}"),
        }
        // A notification sent while a client is inside a transaction waits for its end.
        a.batch_execute("BEGIN").await.expect("begin");
        sender.q("NOTIFY jobs, 'in-txn'").await;
        a.batch_execute("SELECT 1").await.expect("select");
        assert!(a_rx.try_recv().is_err(), "delivered inside a transaction");
        a.batch_execute("COMMIT").await.expect("commit");
        match next(&mut a_rx).await {
            AsyncMessage::Notification(n) => assert_eq!(n.payload(), "in-txn"),
            other => panic!("{other:?}"),
        }
        // UNLISTEN *: nothing more for a; the listener keeps b's channel only.
        a.batch_execute("UNLISTEN *").await.expect("unlisten");
        sender
            .q("NOTIFY jobs, 'four'; NOTIFY \"Other Jobs\", 'five'")
            .await;
        match next(&mut b_rx).await {
            AsyncMessage::Notification(n) => assert_eq!(n.payload(), "five"),
            other => panic!("{other:?}"),
        }
        a.batch_execute("SELECT 1").await.expect("select");
        assert!(a_rx.try_recv().is_err(), "a unlistened");
        sender.close().await;
        drop((a, b));
    });
}
