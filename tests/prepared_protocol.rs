//! Transaction-mode prepared statements (issue 3) on the raw protocol: protocol-level
//! named statements mapped to pooler-wide `sluice_<id>` names, as PostgreSQL answers them
//! (a failed Parse, Close and reuse of a name, 42P05 for a name in use, what follows an
//! error in a batch, Flush without Sync), re-preparing on a server that lacks a
//! statement, unnamed statements and pipelined batches whose names mean different queries
//! on different clients.
//!
//! Pools are small so clients really move between server connections. Every
//! test starts its own cluster and pgsluice (client auth md5, so the raw client can log
//! in); every wait is bounded; nothing asserts timings.

mod common;

use common::pg::{join_all, sq1};
use common::wire::{
    Raw, bind, close, data, describe, err_code, execute, flush, parse, query_msg, status, sync,
    tags,
};
use common::{app_url, pg_connect, run_async, setup_with, sq};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ------------------------------------------------------------------ protocol semantics

#[test]
fn failed_parse_reports_error_and_leaves_no_statement() {
    let (_cluster, pooler) = setup_with("transaction", "md5", 2, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await.replies_only();

        // Parse of invalid SQL: the server's 42601, then ReadyForQuery.
        let r = a.batch(&[parse("bad", "SELEC 1", &[]), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("EZ", Some("42601")),
            "{r:?}"
        );
        assert_eq!(status(&r), 'I');
        // The name is unknown afterwards: Bind and Describe give 26000.
        let r = a.batch(&[bind("bad", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("EZ", Some("26000")),
            "{r:?}"
        );
        let r = a.batch(&[describe(b'S', "bad"), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("EZ", Some("26000")),
            "{r:?}"
        );
        // The same name with valid SQL works.
        let r = a
            .batch(&[
                parse("bad", "SELECT 42", &[]),
                bind("bad", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(tags(&r), "12DCZ", "{r:?}");
        assert_eq!(data(&r), ["42"]);

        // In one pipeline: a good Parse, a bad one, a Bind of the bad one. The
        // error comes where PostgreSQL puts it (after the first ParseComplete),
        // the rest up to Sync is skipped, and the good statement exists.
        let r = a
            .batch(&[
                parse("good1", "SELECT 1", &[]),
                parse("bad2", "SELECT FROM WHERE", &[]),
                bind("bad2", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("1EZ", Some("42601")),
            "{r:?}"
        );
        let r = a.batch(&[bind("good1", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("2DCZ", vec!["1".to_string()]),
            "{r:?}"
        );
        let r = a.batch(&[bind("bad2", &[]), execute(), sync()]).await;
        assert_eq!(err_code(&r).as_deref(), Some("26000"), "{r:?}");

        // A semantic error (42703), found by the server's analysis: its error too.
        let r = a
            .batch(&[parse("sem", "SELECT no_such_column", &[]), sync()])
            .await;
        assert_eq!(err_code(&r).as_deref(), Some("42703"), "{r:?}");

        // Parse + Flush (no Sync): the error arrives after the Flush, before any Sync.
        a.send(&[parse("fl", "SELEC 1", &[]), flush()].concat())
            .await;
        let m = a.recv().await;
        assert_eq!(
            (m.tag, m.field(b'C').as_deref()),
            (b'E', Some("42601")),
            "{m:?}"
        );
        let r = a.batch(&[sync()]).await;
        assert_eq!(tags(&r), "Z", "{r:?}");
        // Parse + Flush of a valid statement: ParseComplete before any Sync.
        a.send(&[parse("fl", "SELECT 7", &[]), flush()].concat())
            .await;
        let m = a.recv().await;
        assert_eq!(m.tag, b'1', "{m:?}");
        let r = a.batch(&[bind("fl", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("2DCZ", vec!["7".to_string()]),
            "{r:?}"
        );
        // The same text from another client (already on the server): ParseComplete after Flush too.
        let mut b = Raw::app(&pooler).await.replies_only();
        b.send(&[parse("other", "SELECT 7", &[]), flush()].concat())
            .await;
        let m = b.recv().await;
        assert_eq!(m.tag, b'1', "{m:?}");
        let r = b.batch(&[bind("other", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("2DCZ", vec!["7".to_string()]),
            "{r:?}"
        );

        // Inside an explicit transaction: the failed Parse fails the transaction
        // (status E); after ROLLBACK the name is still unknown.
        let r = a.batch(&[query_msg("BEGIN")]).await;
        assert_eq!(status(&r), 'T');
        let r = a.batch(&[parse("txbad", "SELEC 2", &[]), sync()]).await;
        assert_eq!(
            (err_code(&r).as_deref(), status(&r)),
            (Some("42601"), 'E'),
            "{r:?}"
        );
        let r = a.batch(&[query_msg("ROLLBACK")]).await;
        assert_eq!(status(&r), 'I');
        let r = a.batch(&[bind("txbad", &[]), execute(), sync()]).await;
        assert_eq!(err_code(&r).as_deref(), Some("26000"), "{r:?}");
        let r = a
            .batch(&[
                parse("txbad", "SELECT 'ok'", &[]),
                bind("txbad", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["ok"], "{r:?}");
    });
}

#[test]
fn close_and_reuse_of_statement_names() {
    // Pool of 1: both clients share one server, so a Close acting on more than
    // the client's own name would show.
    let (_cluster, pooler) = setup_with("transaction", "md5", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await.replies_only();
        let mut b = Raw::app(&pooler).await.replies_only();
        let r = a
            .batch(&[
                parse("s1", "SELECT 1", &[]),
                bind("s1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("12DCZ", vec!["1".to_string()]),
            "{r:?}"
        );
        // B prepares the same text under another name (shared on the server).
        let r = b
            .batch(&[
                parse("x", "SELECT 1", &[]),
                bind("x", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["1"], "{r:?}");

        // Close, then the name is gone; B's statement with the same text is not.
        let r = a.batch(&[close(b'S', "s1"), sync()]).await;
        assert_eq!(tags(&r), "3Z", "{r:?}");
        let r = a.batch(&[bind("s1", &[]), execute(), sync()]).await;
        assert_eq!(err_code(&r).as_deref(), Some("26000"), "{r:?}");
        let r = b.batch(&[bind("x", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("2DCZ", vec!["1".to_string()]),
            "{r:?}"
        );

        // The name reused for another query returns the new query's results.
        let r = a
            .batch(&[
                parse("s1", "SELECT 'two'::text", &[]),
                bind("s1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("12DCZ", vec!["two".to_string()]),
            "{r:?}"
        );
        // Close + Parse of the same name + Bind in one batch.
        let r = a
            .batch(&[
                close(b'S', "s1"),
                parse("s1", "SELECT 3", &[]),
                bind("s1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("312DCZ", vec!["3".to_string()]),
            "{r:?}"
        );
        let r = a.batch(&[bind("s1", &[]), execute(), sync()]).await;
        assert_eq!(data(&r), ["3"], "{r:?}");
        // Close of a name that never existed: CloseComplete, no error (as PostgreSQL).
        let r = a.batch(&[close(b'S', "never_prepared"), sync()]).await;
        assert_eq!(tags(&r), "3Z", "{r:?}");
        // B closes x: A's s1 and B's own later statements are unaffected.
        let r = b.batch(&[close(b'S', "x"), sync()]).await;
        assert_eq!(tags(&r), "3Z", "{r:?}");
        let r = a.batch(&[bind("s1", &[]), execute(), sync()]).await;
        assert_eq!(data(&r), ["3"], "{r:?}");
        let r = b
            .batch(&[
                parse("x", "SELECT 3", &[]),
                bind("x", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["3"], "{r:?}");
        let r = b.batch(&[bind("x", &[]), execute(), sync()]).await;
        assert_eq!(data(&r), ["3"], "{r:?}");
    });
}

#[test]
fn parse_of_an_existing_name_is_refused_with_42p05() {
    // As on PostgreSQL: a second Parse under a name in use fails with 42P05
    // ("prepared statement ... already exists") and the first statement stays.
    // Three ways pgsluice may handle that Parse: the text is new to the server
    // (forwarded), already on this server (answered in-line), or already
    // validated and followed by Sync (answered without a server).
    let (_cluster, pooler) = setup_with("transaction", "md5", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await.replies_only();
        let mut b = Raw::app(&pooler).await.replies_only();
        // Texts B puts on the (only) server first.
        let r = b
            .batch(&[
                parse("b2", "SELECT 2", &[]),
                parse("b3", "SELECT 3", &[]),
                sync(),
            ])
            .await;
        assert_eq!(tags(&r), "11Z", "{r:?}");
        let r = a
            .batch(&[
                parse("s1", "SELECT 1", &[]),
                bind("s1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["1"], "{r:?}");
        for (what, msgs) in [
            ("new text", vec![parse("s1", "SELECT 1 + 1", &[]), sync()]),
            (
                "text on the server, then Bind",
                vec![
                    parse("s1", "SELECT 2", &[]),
                    bind("s1", &[]),
                    execute(),
                    sync(),
                ],
            ),
            (
                "text on the server, then Sync",
                vec![parse("s1", "SELECT 3", &[]), sync()],
            ),
            (
                "same text again",
                vec![parse("s1", "SELECT 1", &[]), sync()],
            ),
        ] {
            let r = a.batch(&msgs).await;
            assert_eq!(
                (tags(&r).as_str(), err_code(&r).as_deref()),
                ("EZ", Some("42P05")),
                "Parse of the existing name s1 ({what}): {r:?}"
            );
            let r = a.batch(&[bind("s1", &[]), execute(), sync()]).await;
            assert_eq!(
                data(&r),
                ["1"],
                "s1 after the refused Parse ({what}): {r:?}"
            );
        }
    });
}

#[test]
fn messages_after_an_error_in_the_same_batch_are_skipped() {
    // After an error, PostgreSQL ignores everything up to Sync: a Parse there
    // creates no statement and a Close closes nothing, even when pgsluice could
    // answer them itself (text already on the server, Close of a client name).
    // Every case is checked; the failures are reported together.
    let (_cluster, pooler) = setup_with("transaction", "md5", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await.replies_only();
        let mut problems: Vec<String> = Vec::new();
        for name in ["k1", "k5"] {
            let r = a
                .batch(&[
                    parse(name, "SELECT 11", &[]),
                    bind(name, &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["11"], "{r:?}");
        }

        // The error from a Bind of an unknown name.
        let r = a
            .batch(&[
                bind("nope", &[]),
                execute(),
                parse("k2", "SELECT 11", &[]), // text already on the server
                parse("k3", "SELECT 12", &[]), // new text
                close(b'S', "k1"),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("EZ", Some("26000")),
            "{r:?}"
        );
        for (name, what) in [("k2", "text already on the server"), ("k3", "new text")] {
            let r = a.batch(&[bind(name, &[]), execute(), sync()]).await;
            if err_code(&r).as_deref() != Some("26000") {
                problems.push(format!(
                    "Parse {name} ({what}) after the error created a statement: Bind {name} gave {r:?}"
                ));
            }
        }
        let r = a.batch(&[bind("k1", &[]), execute(), sync()]).await;
        if data(&r) != ["11"] {
            problems.push(format!(
                "Close k1 after the error closed it: Bind k1 gave {r:?}"
            ));
        }

        // The error from an Execute (division by zero, not folded at Bind: random()
        // is volatile): what came before it stays.
        let r = a
            .batch(&[
                parse("z", "SELECT 1 / ($1::int + 0 * random()::int)", &[]),
                bind("z", &["0"]),
                execute(),
                parse("k4", "SELECT 11", &[]),
                close(b'S', "k5"),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("12EZ", Some("22012")),
            "{r:?}"
        );
        let r = a.batch(&[bind("z", &["4"]), execute(), sync()]).await;
        if data(&r) != ["0"] {
            problems.push(format!("z, parsed before the error, is gone: {r:?}"));
        }
        let r = a.batch(&[bind("k4", &[]), execute(), sync()]).await;
        if err_code(&r).as_deref() != Some("26000") {
            problems.push(format!(
                "Parse k4 (text on the server) after an Execute error created a statement: {r:?}"
            ));
        }
        let r = a.batch(&[bind("k5", &[]), execute(), sync()]).await;
        if data(&r) != ["11"] {
            problems.push(format!("Close k5 after an Execute error closed it: {r:?}"));
        }
        assert!(
            problems.is_empty(),
            "unlike PostgreSQL:\n{}",
            problems.join("\n")
        );
    });
}

#[test]
fn bind_and_describe_on_a_server_lacking_the_statement() {
    // Pool of 2, and two other clients holding transactions to steer which
    // server raw client B gets.
    let (_cluster, pooler) = setup_with("transaction", "md5", 2, "");
    run_async(60, async {
        let url = app_url(&pooler);
        let (c, _) = pg_connect(&url).await;
        let (d, _) = pg_connect(&url).await;
        sq(&c, "BEGIN").await;
        let pid_c = sq1(&c, "SELECT pg_backend_pid()").await;

        // B prepares d1 and d2 on the other server (the only one free).
        let mut b = Raw::app(&pooler).await.replies_only();
        let r = b
            .batch(&[
                parse("d1", "SELECT pg_backend_pid(), $1::int4 + 1 AS next", &[]),
                describe(b'S', "d1"),
                parse("d2", "SELECT $1::text || '!', pg_backend_pid()", &[25]),
                sync(),
            ])
            .await;
        assert_eq!(tags(&r), "1tT1Z", "{r:?}");
        assert_eq!(r[1].param_oids(), [23]);
        let r = b.batch(&[bind("d1", &["5"]), execute(), sync()]).await;
        assert_eq!(tags(&r), "2DCZ", "{r:?}");
        let row = r[1].texts();
        let pid_b = row[0].clone();
        assert_eq!(row[1], "6");
        assert_ne!(
            pid_b, pid_c,
            "B ran on C's server while C was in a transaction"
        );

        // D takes that server; C's ends: B's next transactions run on C's old
        // server, which has never seen d1 or d2.
        sq(&d, "BEGIN").await;
        assert_eq!(sq1(&d, "SELECT pg_backend_pid()").await, pid_b);
        sq(&c, "COMMIT").await;

        // Describe: exactly ParameterDescription + RowDescription (no extra ParseComplete).
        let r = b.batch(&[describe(b'S', "d1"), sync()]).await;
        assert_eq!(tags(&r), "tTZ", "{r:?}");
        assert_eq!(r[0].param_oids(), [23]);
        let r = b.batch(&[bind("d1", &["41"]), execute(), sync()]).await;
        assert_eq!(tags(&r), "2DCZ", "{r:?}");
        assert_eq!(r[1].texts(), [pid_c.clone(), "42".to_string()]);
        // Bind first (no Describe before it) of d2 there.
        let r = b
            .batch(&[bind("d2", &["hey"]), describe(b'P', ""), execute(), sync()])
            .await;
        assert_eq!(tags(&r), "2TDCZ", "{r:?}");
        assert_eq!(r[2].texts(), ["hey!".to_string(), pid_c.clone()]);
        sq(&d, "COMMIT").await;

        // And many times over, wherever B lands.
        for i in 0..20 {
            let r = b
                .batch(&[
                    bind("d1", &[&i.to_string()]),
                    execute(),
                    bind("d2", &["z"]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(tags(&r), "2DC2DCZ", "{r:?}");
            assert_eq!(r[1].texts()[1], (i + 1).to_string());
            assert_eq!(r[4].texts()[0], "z!");
        }
    });
}

#[test]
fn unnamed_statements_in_one_sync_batch() {
    let (_cluster, pooler) = setup_with("transaction", "md5", 2, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await.replies_only();
        let r = a
            .batch(&[
                parse("", "SELECT 1::int", &[]),
                bind("", &[]),
                execute(),
                parse("", "SELECT 'b'::text", &[]),
                bind("", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("12DC12DCZ", vec![String::from("1"), String::from("b")]),
            "{r:?}"
        );
        // Unnamed, named and unnamed again, with a Describe and a rebind of the named one.
        let r = a
            .batch(&[
                parse("", "SELECT 10", &[]),
                describe(b'S', ""),
                bind("", &[]),
                execute(),
                parse("n1", "SELECT 20", &[]),
                bind("n1", &[]),
                execute(),
                parse("", "SELECT $1::int + 1", &[23]),
                bind("", &["29"]),
                execute(),
                bind("n1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(tags(&r), "1tT2DC12DC12DC2DCZ", "{r:?}");
        assert_eq!(data(&r), ["10", "20", "30", "20"]);
        // Another client doing the same at the same time on the other server.
        let mut b = Raw::app(&pooler).await.replies_only();
        for i in 0..10 {
            let q1 = format!("SELECT {i}");
            let q2 = format!("SELECT {}", i * 2);
            let batch = [
                parse("", &q1, &[]),
                bind("", &[]),
                execute(),
                parse("", &q2, &[]),
                bind("", &[]),
                execute(),
                sync(),
            ];
            let (ra, rb) = tokio::join!(a.batch(&batch), b.batch(&batch));
            assert_eq!(data(&ra), [i.to_string(), (i * 2).to_string()], "{ra:?}");
            assert_eq!(data(&rb), [i.to_string(), (i * 2).to_string()], "{rb:?}");
        }
    });
}

/// Raw client `t`: named statements p1..p3 whose queries depend on `t` (so
/// the same names mean different queries on different clients), first in one
/// pipelined Parse/Bind/Execute×3 + Sync write, then rounds of three Syncs in
/// one write.
async fn pipelined_client(port: u16, t: i64) -> Result<(), String> {
    let mut a = Raw::connect(port, "app", "app_pw", "app")
        .await
        .0
        .replies_only();
    let mut rng = StdRng::seed_from_u64(0xb1b0 + t as u64);
    let q1 = format!("SELECT $1::int8 + {t}");
    let q2 = format!("SELECT $1::text || '-{t}'");
    let q3 = format!("SELECT $1::int8 * {}", t + 2);
    let r = a
        .batch(&[
            parse("p1", &q1, &[]),
            bind("p1", &["1"]),
            execute(),
            parse("p2", &q2, &[]),
            bind("p2", &["a"]),
            execute(),
            parse("p3", &q3, &[]),
            bind("p3", &["21"]),
            execute(),
            sync(),
        ])
        .await;
    let want = vec![
        (1 + t).to_string(),
        format!("a-{t}"),
        (21 * (t + 2)).to_string(),
    ];
    if tags(&r) != "12DC12DC12DCZ" || data(&r) != want {
        return Err(format!("client {t}: first batch {r:?}, want rows {want:?}"));
    }
    for round in 0..20 {
        let x: i64 = rng.gen_range(-1_000_000..1_000_000);
        let s = format!("r{round}");
        let xs = x.to_string();
        a.send(
            &[
                bind("p1", &[&xs]),
                execute(),
                sync(),
                bind("p2", &[&s]),
                execute(),
                sync(),
                bind("p3", &[&xs]),
                execute(),
                sync(),
            ]
            .concat(),
        )
        .await;
        let wants = [
            (x + t).to_string(),
            format!("{s}-{t}"),
            (x * (t + 2)).to_string(),
        ];
        for want in wants {
            let r = a.until_ready().await;
            if tags(&r) != "2DCZ" || data(&r) != [want.clone()] {
                return Err(format!("client {t} round {round}: {r:?}, want {want:?}"));
            }
        }
        // Every few rounds, one more pipelined batch of all three in one Sync.
        if round % 4 == 3 {
            let r = a
                .batch(&[
                    bind("p3", &["1"]),
                    execute(),
                    bind("p1", &["1"]),
                    execute(),
                    bind("p2", &["q"]),
                    execute(),
                    sync(),
                ])
                .await;
            let want = vec![(t + 2).to_string(), (1 + t).to_string(), format!("q-{t}")];
            if tags(&r) != "2DC2DC2DCZ" || data(&r) != want {
                return Err(format!(
                    "client {t} round {round} batch: {r:?}, want {want:?}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn pipelined_named_batches_same_names_different_queries() {
    let (_cluster, pooler) = setup_with("transaction", "md5", 2, "");
    run_async(120, async {
        let handles = (0..8i64)
            .map(|t| tokio::spawn(pipelined_client(pooler.port, t)))
            .collect();
        join_all("pipelined raw clients", handles).await;
    });
}
