//! Inputs of the session core's fuzz targets (`fuzz_tests.rs`) and of their regression
//! tests: statements and extended-protocol batches a client sends, their encoding, the
//! driver's events, the servers' attach plans and the session setups, as proptest
//! strategies.

use std::time::Duration;

use proptest::prelude::*;

use super::Limits;
use super::fuzz_harness::{Attach, Event, Routing, Setup};
use crate::config::PoolMode;
use crate::fuzz;

/// Statements a client sends: transactions, settings, pins, SQL-level prepared
/// statements, pgsluice's own settings, COPY out, and a few oddities.
const QUERIES: &[&str] = &[
    "SELECT 1",
    "SELECT * FROM t",
    "INSERT INTO t VALUES (1)",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "BEGIN READ ONLY",
    "START TRANSACTION",
    "END",
    "ABORT",
    "SET work_mem = '8MB'",
    "SET datestyle TO ymd",
    "SET application_name = 'a'",
    "RESET work_mem",
    "RESET ALL",
    "DISCARD ALL",
    "SET LOCAL work_mem = '1MB'",
    "SET ROLE r",
    "RESET ROLE",
    "SET x.y = 1",
    "SET TIME ZONE 'UTC'",
    "SET SESSION AUTHORIZATION u",
    "RESET SESSION AUTHORIZATION",
    "SET default_transaction_read_only = on",
    "SHOW work_mem",
    "PREPARE p1(int) AS SELECT $1",
    "PREPARE p2 AS INSERT INTO t VALUES (1)",
    "PREPARE \"P3\" AS SELECT 3",
    "EXECUTE p1(1)",
    "EXECUTE p2",
    "EXECUTE \"P3\"",
    "EXPLAIN EXECUTE p1(2)",
    "CREATE TABLE x AS EXECUTE p1(3)",
    "DEALLOCATE p1",
    "DEALLOCATE PREPARE p2",
    "DEALLOCATE ALL",
    "DEALLOCATE s1",
    "DEALLOCATE sluice_1",
    "EXECUTE sluice_1",
    "LISTEN ch",
    "UNLISTEN *",
    "LISTEN \"Ch 2\"",
    "UNLISTEN ch",
    "SELECT pg_listening_channels()",
    "SELECT * FROM pg_listening_channels() WITH ORDINALITY",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_advisory_unlock_all()",
    "CREATE TEMP TABLE tt (a int)",
    "DISCARD TEMP",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "CLOSE ALL",
    "SELECT set_config('a.b', 'c', false)",
    "SET pgsluice.route = primary",
    "SET pgsluice.route = replica",
    "RESET pgsluice.route",
    "SET pgsluice.min_lsn = '0/100'",
    "SET pgsluice.route = bogus",
    "SET pgsluice.nothing = 1",
    "SELECT nextval('s')",
    "/* pgsluice: primary */ SELECT 1",
    "SELECT 1; SELECT 2",
    "",
    ";",
    "COPY t TO STDOUT",
    "SELECT pg_sleep(1)",
    "UPDATE t SET a = 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "DO $$ BEGIN EXECUTE 'execute p1(1)'; END $$",
    "CALL pr()",
    "SELECT f(1)",
    "LOAD 'plpgsql'",
    "SET app.tenant = 'a'",
];

/// Statement texts for Parse.
const STATEMENTS: &[&str] = &[
    "SELECT 1",
    "SELECT $1",
    "INSERT INTO t VALUES ($1)",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET work_mem = '2MB'",
    "DISCARD ALL",
    "SELECT nextval('s')",
    "",
    "DEALLOCATE ALL",
    "PREPARE q AS SELECT 1",
];

const NAMES: &[&str] = &["", "s1", "s2", "S3", "sluice_1"];
const PORTALS: &[&str] = &["", "c1"];

/// A message of an extended-protocol batch.
#[derive(Debug, Clone)]
pub(super) enum Ext {
    Parse(&'static str, String),
    Bind(&'static str, &'static str),
    Describe(u8, &'static str),
    Execute(&'static str),
    Close(u8, &'static str),
    Flush,
}

/// One unit of a well-formed conversation.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Query(String),
    /// Extended-protocol messages, then Sync.
    Batch(Vec<Ext>),
    /// `COPY t FROM STDIN`, rows, then CopyDone (or CopyFail).
    Copy(u8, bool),
    FunctionCall,
    Terminate,
}

pub(super) fn sql() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(QUERIES).prop_map(str::to_string),
        1 => fuzz::sql_soup(8),
    ]
}

pub(super) fn ext() -> impl Strategy<Value = Ext> {
    let name = prop::sample::select(NAMES);
    let portal = prop::sample::select(PORTALS);
    let kind = prop::sample::select(&b"SP"[..]);
    let text = prop_oneof![
        4 => prop::sample::select(STATEMENTS).prop_map(str::to_string),
        1 => fuzz::sql_soup(6),
    ];
    prop_oneof![
        3 => (name.clone(), text).prop_map(|(n, t)| Ext::Parse(n, t)),
        3 => (portal.clone(), name.clone()).prop_map(|(p, n)| Ext::Bind(p, n)),
        1 => (kind.clone(), name.clone()).prop_map(|(k, n)| Ext::Describe(k, n)),
        3 => portal.prop_map(Ext::Execute),
        1 => (kind, name).prop_map(|(k, n)| Ext::Close(k, n)),
        1 => Just(Ext::Flush),
    ]
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => sql().prop_map(Step::Query),
        6 => prop::collection::vec(ext(), 0..6).prop_map(Step::Batch),
        1 => (0u8..3, any::<bool>()).prop_map(|(n, ok)| Step::Copy(n, ok)),
        1 => Just(Step::FunctionCall),
        1 => Just(Step::Terminate),
    ]
}

pub(super) fn frame(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend(((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstrs(parts: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(p.as_bytes());
        b.push(0);
    }
    b
}

/// The conversation's bytes, how many answers it asks for (Query, Sync, FunctionCall),
/// and whether it ends with Terminate.
pub(super) fn encode(steps: &[Step]) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut asked = 0;
    for s in steps {
        match s {
            Step::Query(q) => {
                frame(&mut out, b'Q', &cstrs(&[q]));
                asked += 1;
            }
            Step::Batch(msgs) => {
                for m in msgs {
                    encode_ext(&mut out, m);
                }
                frame(&mut out, b'S', b"");
                asked += 1;
            }
            Step::Copy(rows, done) => {
                frame(&mut out, b'Q', &cstrs(&["COPY t FROM STDIN"]));
                for _ in 0..*rows {
                    frame(&mut out, b'd', b"1\n");
                }
                match done {
                    true => frame(&mut out, b'c', b""),
                    false => frame(&mut out, b'f', &cstrs(&["stop"])),
                }
                asked += 1;
            }
            Step::FunctionCall => {
                frame(&mut out, b'F', &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
                asked += 1;
            }
            Step::Terminate => {
                frame(&mut out, b'X', b"");
                return (out, asked, true);
            }
        }
    }
    (out, asked, false)
}

fn encode_ext(out: &mut Vec<u8>, m: &Ext) {
    match m {
        Ext::Parse(name, sql) => {
            let mut b = cstrs(&[name, sql]);
            b.extend([0, 0]);
            frame(out, b'P', &b);
        }
        Ext::Bind(portal, name) => {
            let mut b = cstrs(&[portal, name]);
            b.extend([0, 0, 0, 0, 0, 0]);
            frame(out, b'B', &b);
        }
        Ext::Describe(kind, name) => {
            let mut b = vec![*kind];
            b.extend(cstrs(&[name]));
            frame(out, b'D', &b);
        }
        Ext::Execute(portal) => {
            let mut b = cstrs(&[portal]);
            b.extend([0, 0, 0, 0]);
            frame(out, b'E', &b);
        }
        Ext::Close(kind, name) => {
            let mut b = vec![*kind];
            b.extend(cstrs(&[name]));
            frame(out, b'C', &b);
        }
        Ext::Flush => frame(out, b'H', b""),
    }
}

pub(super) fn event() -> impl Strategy<Value = Event> {
    let size = prop_oneof![4 => 1usize..24, 1 => Just(1 << 20)];
    prop_oneof![
        30 => size.clone().prop_map(Event::Client),
        30 => size.prop_map(Event::Server),
        6 => prop::sample::select(&[10u64, 3_000, 6_000, 11_000][..]).prop_map(Event::Tick),
        1 => Just(Event::ServerLost),
        1 => Just(Event::ClientGone),
        1 => Just(Event::Drain),
        1 => Just(Event::Kill),
    ]
}

pub(super) fn attach_plan() -> impl Strategy<Value = Vec<Attach>> {
    let a = prop_oneof![
        6 => Just(Attach::Reuse),
        2 => Just(Attach::Fresh),
        1 => Just(Attach::Unreachable),
        1 => Just(Attach::Timeout),
    ];
    prop::collection::vec(a, 1..5)
}

pub(super) fn setup(routed: bool) -> impl Strategy<Value = Setup> {
    let mode = prop_oneof![
        6 => Just((PoolMode::Transaction, true)),
        1 => Just((PoolMode::Transaction, false)),
        2 => Just((PoolMode::Session, false)),
        2 => Just((PoolMode::Statement, true)),
    ];
    let startup = prop::sample::subsequence(
        vec![
            ("datestyle".to_string(), "Postgres, MDY".to_string()),
            ("application_name".to_string(), "fuzz".to_string()),
            ("search_path".to_string(), "a, b".to_string()),
        ],
        0..3,
    );
    let routing = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(ryw, report_lsn, retry, never_primary)| Routing {
            ryw,
            report_lsn,
            retry,
            never_primary,
        });
    let routing = if routed {
        routing.prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    let rate = prop::sample::select(&[0u8, 0, 16, 64][..]);
    let input = (
        mode,
        startup,
        1usize..4,
        routing,
        rate,
        any::<u64>(),
        any::<bool>(),
    );
    input.prop_map(
        |((mode, rewrite), startup, max_prepared, routing, error_rate, seed, reset)| {
            Setup {
                limits: Limits {
                    mode,
                    max_message: 1 << 16,
                    idle_txn: Some(Duration::from_secs(10)),
                    reset_query: if reset {
                        "DISCARD ALL".into()
                    } else {
                        "".into()
                    },
                    rewrite,
                    timeouts: None,
                    wait_timeout: None,
                    park_after: None,
                    // pgsluice's listener serves LISTEN (and `pg_listening_channels()`
                    // is rewritten) in half the pooled sessions, as by default.
                    listen_here: mode != PoolMode::Session && seed & 4 != 0,
                },
                startup,
                max_prepared: if max_prepared == 3 { 200 } else { max_prepared },
                // Routing sends a session's units to two nodes: route only in transaction
                // and statement mode, as the product does.
                routing: routing.filter(|_| mode != PoolMode::Session),
                error_rate,
                seed,
            }
        },
    )
}
