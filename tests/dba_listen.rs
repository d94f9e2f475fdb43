//! LISTEN without pinning (issue 16): in transaction mode a client's LISTEN is served by
//! one listening server connection per (database, user), every listener receives exactly
//! the notifications of its channels, in order, while other clients (pgbench) use the
//! pool; a listening connection that dies is reopened and its listeners told; and
//! `pg_listening_channels()` lists a client's channels as a direct connection does
//! (issue 17, C20).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::pg::{Pg, pg_connect, run_async, within};
use common::pgbench::{pgbench_init, pgbench_through};
use common::{
    Cluster, Pooler, psql_args_stdin, psql_ok, server_activity, server_conns, wait_until,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

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

/// The statements compared, each sent as one simple Query; `EXT` runs the rest through
/// the extended protocol (a prepared statement, as drivers do).
const CHANNEL_STEPS: &[&str] = &[
    "SELECT pg_listening_channels()",
    "LISTEN b",
    "LISTEN \"Mixed \"\"Q\"\" €\"",
    "LISTEN a",
    "LISTEN b",
    "SELECT pg_listening_channels()",
    "SELECT * FROM pg_listening_channels()",
    "SELECT * FROM pg_catalog.pg_listening_channels() WITH ORDINALITY",
    "SELECT c FROM pg_listening_channels() c ORDER BY 1",
    "SELECT 'a' IN (SELECT pg_listening_channels()), 'zz' IN (SELECT pg_listening_channels())",
    "SELECT x FROM (VALUES ('a'), ('q'), ('b')) v(x) WHERE x IN (SELECT pg_listening_channels())",
    "SELECT count(*) FROM pg_listening_channels()",
    "SELECT pg_listening_channels()::text, 1 AS one",
    "EXT SELECT pg_listening_channels()",
    "EXT SELECT * FROM pg_listening_channels() WHERE pg_listening_channels <> $1",
    "UNLISTEN b",
    "SELECT pg_listening_channels()",
    "LISTEN b",
    "SELECT pg_listening_channels()",
    // A LISTEN inside a transaction block that rolls back adds nothing.
    "BEGIN",
    "LISTEN rolled_back",
    "ROLLBACK",
    "SELECT pg_listening_channels()",
    // One that commits is listed last.
    "BEGIN",
    "LISTEN committed",
    "COMMIT",
    "SELECT pg_listening_channels()",
    "UNLISTEN *",
    "SELECT pg_listening_channels()",
    "LISTEN d",
    "SELECT pg_listening_channels()",
    "DISCARD ALL",
    "SELECT pg_listening_channels()",
];

/// What a statement returned, as text: column names, rows and command tags, or the
/// error's SQLSTATE.
async fn render(c: &tokio_postgres::Client, step: &str) -> String {
    if let Some(sql) = step.strip_prefix("EXT ") {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = if sql.contains("$1") {
            vec![&"a"]
        } else {
            vec![]
        };
        return match within(sql, c.query(sql, &params)).await {
            Ok(rows) => rows
                .iter()
                .map(|r| {
                    let cols: Vec<&str> = r.columns().iter().map(|c| c.name()).collect();
                    format!("{}={}", cols.join(","), r.get::<_, String>(0))
                })
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("ERROR {:?}", e.code()),
        };
    }
    match within(step, c.simple_query(step)).await {
        Ok(msgs) => msgs
            .iter()
            .map(|m| match m {
                SimpleQueryMessage::RowDescription(cols) => format!(
                    "[{}]",
                    cols.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
                ),
                SimpleQueryMessage::Row(r) => (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join("|"),
                SimpleQueryMessage::CommandComplete(n) => format!("({n})"),
                _ => "?".to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("ERROR {:?}", e.code()),
    }
}

/// Runs the steps on a connection to `url`, then checks which notifications it gets
/// after the DISCARD ALL: `notify` (a direct connection) sends on `d` (listened before
/// the DISCARD ALL) and then on `e` (listened after it).
async fn channel_steps(url: &str, notify: &Pg) -> Vec<String> {
    let (c, mut rx) = pg_connect(url).await;
    let mut out = Vec::new();
    for step in CHANNEL_STEPS {
        out.push(format!("{step} -> {}", render(&c, step).await));
    }
    c.batch_execute("LISTEN e").await.expect("listen e");
    notify.q("NOTIFY d, 'one'; NOTIFY e, 'two'").await;
    // `e`'s comes second: anything on `d` would arrive before it.
    loop {
        c.batch_execute("SELECT 1").await.expect("select");
        match next(&mut rx).await {
            AsyncMessage::Notification(n) => {
                out.push(format!("notified on {}", n.channel()));
                if n.channel() == "e" {
                    break;
                }
            }
            other => out.push(format!("{other:?}")),
        }
    }
    out
}

#[test]
fn pg_listening_channels_lists_the_clients_channels_as_a_direct_connection_does() {
    let cluster = Cluster::start(0);
    let transaction = Pooler::start(&cluster.pooler_config("transaction", "trust", 2));
    let session = Pooler::start(&cluster.pooler_config("session", "trust", 2));
    let direct = cluster.node_url("primary", "app", "app_pw", "app");
    run_async(120, async {
        let notify = Pg::connect(&cluster.primary_url("app")).await;
        let expect = channel_steps(&direct, &notify).await;
        // PostgreSQL's own answer: the order listened, a rolled-back LISTEN left out.
        assert!(
            expect.contains(
                &"SELECT pg_listening_channels() -> [pg_listening_channels] \
                  Mixed \"Q\" € a b committed (4)"
                    .to_string()
            ),
            "{expect:#?}"
        );
        for (mode, pooler) in [("transaction", &transaction), ("session", &session)] {
            let got = channel_steps(&pooler.url("app", "", "app"), &notify).await;
            for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
                assert_eq!(g, e, "{mode} mode, step {i}");
            }
            assert_eq!(got.len(), expect.len(), "{mode} mode: {got:#?}");
        }
        notify.close().await;
    });
    // psql, as pg_regress runs it: one statement per Query, with headers.
    let script = b"LISTEN fid_chan;\nLISTEN \"Other\";\nSELECT pg_listening_channels();\n\
        SELECT * FROM pg_listening_channels() ORDER BY 1;\nUNLISTEN fid_chan;\n\
        SELECT pg_listening_channels();\nDISCARD ALL;\nSELECT pg_listening_channels();\n";
    let psql = |url: &str| {
        let out = psql_args_stdin(url, &["-P", "tuples_only=off"], script);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expect = psql(&direct);
    assert!(
        expect.contains("pg_listening_channels\nfid_chan\nOther\n(2 rows)"),
        "{expect}"
    );
    assert_eq!(psql(&transaction.url("app", "", "app")), expect);
}
