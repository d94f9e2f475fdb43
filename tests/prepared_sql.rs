//! Transaction-mode prepared statements (issue 3) made and dropped with SQL: PREPARE and
//! EXECUTE under names that mean different queries on different clients, mapped rather
//! than pinned; DEALLOCATE of a protocol-level statement; DEALLOCATE ALL and DISCARD ALL,
//! which drop the client's own statements and no other client's.
//!
//! Pools are small so clients really move between server connections. Every
//! test starts its own cluster and pgsluice (client auth md5, so the raw client can log
//! in); every wait is bounded; nothing asserts timings.

mod common;

use common::pg::sqlstate;
use common::wire::{Raw, bind, data, err_code, execute, parse, query_msg, sync};
use common::{app_url, pg_connect, run_async, setup_with, sq, sq1};

// ------------------------------------------------------------------ SQL PREPARE / EXECUTE

#[test]
fn sql_prepare_same_name_different_queries_two_clients() {
    let (_cluster, pooler) = setup_with("transaction", "md5", 2, "");
    run_async(60, async {
        let url = app_url(&pooler);
        let (a, _) = pg_connect(&url).await;
        let (b, _) = pg_connect(&url).await;
        sq(&a, "PREPARE q AS SELECT 1").await;
        sq(&b, "PREPARE q AS SELECT 2").await;
        sq(&a, "PREPARE q2(int) AS SELECT $1 + 100").await;
        sq(&b, "PREPARE q2(int) AS SELECT $1 * 100").await;
        for i in 0..10 {
            assert_eq!(sq1(&a, "EXECUTE q").await, "1");
            assert_eq!(sq1(&b, "EXECUTE q").await, "2");
            assert_eq!(
                sq1(&b, &format!("EXECUTE q2({i})")).await,
                (i * 100).to_string()
            );
            assert_eq!(
                sq1(&a, &format!("EXECUTE q2({i})")).await,
                (i + 100).to_string()
            );
        }
        // Inside transactions too.
        sq(&a, "BEGIN").await;
        sq(&b, "BEGIN").await;
        assert_eq!(sq1(&a, "EXECUTE q").await, "1");
        assert_eq!(sq1(&b, "EXECUTE q").await, "2");
        sq(&a, "COMMIT").await;
        sq(&b, "COMMIT").await;
        // DEALLOCATE by one client: its q is gone, the other's is not.
        sq(&a, "DEALLOCATE q").await;
        let e = a.simple_query("EXECUTE q").await.unwrap_err();
        assert_eq!(sqlstate(&e), "26000");
        assert_eq!(sq1(&b, "EXECUTE q").await, "2");
        sq(&a, "PREPARE q AS SELECT 3").await;
        assert_eq!(sq1(&a, "EXECUTE q").await, "3");
        assert_eq!(sq1(&b, "EXECUTE q").await, "2");
        assert_eq!(sq1(&a, "EXECUTE q2(7)").await, "107");
        assert_eq!(sq1(&b, "EXECUTE q2(7)").await, "700");
        // A quoted name needs no blank around it; the server's name does (it went out
        // as `PREPARE sluice_1AS ...`, a syntax error).
        sq(&a, "PREPARE\"Quoted\"AS SELECT 5").await;
        assert_eq!(sq1(&a, "EXECUTE\"Quoted\"").await, "5");
        sq(&b, "PREPARE \"Quoted\"(int)AS SELECT $1").await;
        assert_eq!(sq1(&b, "EXECUTE \"Quoted\"(6)").await, "6");
    });
}

/// SQL PREPARE no longer pins: on a pool of ONE server, two clients preparing the same
/// names for different queries take turns on it, each EXECUTE finding its own statement
/// (prepared on demand, hidden from the client), and the server holds one shared
/// statement per distinct text.
#[test]
fn sql_prepare_is_mapped_not_pinned_on_a_pool_of_one() {
    let (_cluster, pooler) = setup_with("transaction", "md5", 1, "query_wait_timeout = 5");
    run_async(120, async {
        let url = app_url(&pooler);
        let clients: Vec<_> = futures_util::future::join_all((0..4).map(|_| pg_connect(&url)))
            .await
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        for (k, c) in clients.iter().enumerate() {
            sq(c, &format!("PREPARE q (int) AS SELECT $1 * {}", k + 1)).await;
            sq(c, "PREPARE same AS SELECT 'shared'").await;
        }
        for i in 0..50 {
            for (k, c) in clients.iter().enumerate() {
                assert_eq!(
                    sq1(c, &format!("EXECUTE q({i})")).await,
                    (i * (k as i32 + 1)).to_string()
                );
                assert_eq!(sq1(c, "EXECUTE same").await, "shared");
            }
        }
        // A transaction holding the only server, then the others again.
        sq(&clients[0], "BEGIN").await;
        assert_eq!(sq1(&clients[0], "EXECUTE q(3)").await, "3");
        sq(&clients[0], "COMMIT").await;
        assert_eq!(sq1(&clients[3], "EXECUTE q(3)").await, "12");
        // A failed PREPARE leaves no name; a client cannot run pgsluice's own names.
        let e = clients[1]
            .simple_query("PREPARE bad AS SELECT * FROM no_such_table")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42P01");
        let e = clients[1].simple_query("EXECUTE bad").await.unwrap_err();
        assert_eq!(sqlstate(&e), "26000");
        let e = clients[1]
            .simple_query("EXECUTE sluice_1")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "26000");
    });
    // The server's own view (quoted, so pgsluice does not rewrite it into the client's):
    // ask through the pooler's server.
    run_async(30, async {
        let (c, _) = pg_connect(&app_url(&pooler)).await;
        let names = sq(
            &c,
            "SELECT name FROM pg_catalog.\"pg_prepared_statements\" ORDER BY name",
        )
        .await;
        assert!(
            names.iter().all(|n| n.starts_with("sluice_")),
            "client names reached the server: {names:?}"
        );
        assert!(
            names.len() <= 6,
            "one statement per distinct text: {names:?}"
        );
    });
}

// ------------------------------------------------------------------ DEALLOCATE

#[test]
fn sql_deallocate_of_a_protocol_level_statement() {
    // As on PostgreSQL, SQL DEALLOCATE removes a statement made by a protocol
    // Parse (the client's own name; others' statements of the same text stay).
    let (_cluster, pooler) = setup_with("transaction", "md5", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await.replies_only();
        let mut b = Raw::app(&pooler).await.replies_only();
        for c in [&mut a, &mut b] {
            let r = c
                .batch(&[
                    parse("d1", "SELECT 21", &[]),
                    bind("d1", &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["21"], "{r:?}");
        }
        let r = a.batch(&[query_msg("DEALLOCATE d1")]).await;
        assert!(
            err_code(&r).is_none(),
            "DEALLOCATE d1 of A's protocol-level statement: {r:?}"
        );
        let r = a.batch(&[bind("d1", &[]), execute(), sync()]).await;
        assert_eq!(
            err_code(&r).as_deref(),
            Some("26000"),
            "A's d1 after DEALLOCATE: {r:?}"
        );
        let r = b.batch(&[bind("d1", &[]), execute(), sync()]).await;
        assert_eq!(data(&r), ["21"], "B's d1 after A's DEALLOCATE: {r:?}");
        let r = a
            .batch(&[
                parse("d1", "SELECT 22", &[]),
                bind("d1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["22"], "{r:?}");
        // DEALLOCATE PREPARE <name> is the same command.
        let r = b.batch(&[query_msg("DEALLOCATE PREPARE d1")]).await;
        assert!(err_code(&r).is_none(), "{r:?}");
        let r = b.batch(&[bind("d1", &[]), execute(), sync()]).await;
        assert_eq!(err_code(&r).as_deref(), Some("26000"), "B's d1: {r:?}");
    });
}

// ------------------------------------------------------------------ DEALLOCATE ALL / DISCARD ALL

#[test]
fn deallocate_all_and_discard_all_do_not_disturb_other_clients() {
    // Pool of 1: A's commands run on the very server B's statement is on.
    let (_cluster, pooler) = setup_with("transaction", "md5", 1, "");
    run_async(60, async {
        let url = app_url(&pooler);
        let (a, _) = pg_connect(&url).await;
        let (b, _) = pg_connect(&url).await;
        let sb = b.prepare("SELECT $1::int + 7").await.unwrap();
        let exec_b = |x: i32| {
            let (b, sb) = (&b, &sb);
            async move {
                let got: i32 = b
                    .query_one(sb, &[&x])
                    .await
                    .unwrap_or_else(|e| {
                        panic!("B's statement after A's command: {e} ({})", sqlstate(&e))
                    })
                    .get(0);
                assert_eq!(got, x + 7);
            }
        };
        exec_b(1).await;
        let sa = a.prepare("SELECT $1::int + 7").await.unwrap(); // same text: shared server-side
        let _: i32 = a.query_one(&sa, &[&1]).await.unwrap().get(0);

        sq(&a, "DEALLOCATE ALL").await;
        exec_b(2).await;
        sq(&a, "DISCARD ALL").await;
        exec_b(3).await;
        sq(&a, "BEGIN").await;
        sq(&a, "DEALLOCATE ALL").await;
        sq(&a, "COMMIT").await;
        exec_b(4).await;
        // A can prepare and use statements again afterwards.
        let sa2 = a.prepare("SELECT $1::int + 7").await.unwrap();
        let got: i32 = a.query_one(&sa2, &[&10]).await.unwrap().get(0);
        assert_eq!(got, 17);
        sq(&a, "DISCARD ALL").await;
        exec_b(5).await;
        let sa3 = a.prepare("SELECT $1::text").await.unwrap();
        let got: String = a.query_one(&sa3, &[&"x"]).await.unwrap().get(0);
        assert_eq!(got, "x");
        exec_b(6).await;
    });
}

#[test]
fn deallocate_all_drops_the_clients_own_protocol_statements() {
    // As on PostgreSQL: DEALLOCATE ALL / DISCARD ALL remove the session's
    // protocol-level statements too (the client's own names only).
    let (_cluster, pooler) = setup_with("transaction", "md5", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await.replies_only();
        let mut b = Raw::app(&pooler).await.replies_only();
        for (cmd, name) in [("DEALLOCATE ALL", "pa"), ("DISCARD ALL", "pb")] {
            let r = a
                .batch(&[
                    parse(name, "SELECT 5", &[]),
                    bind(name, &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["5"], "{r:?}");
            let r = b
                .batch(&[
                    parse(name, "SELECT 5", &[]),
                    bind(name, &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["5"], "{r:?}");
            let r = a.batch(&[query_msg(cmd)]).await;
            assert!(err_code(&r).is_none(), "{cmd}: {r:?}");
            let r = a.batch(&[bind(name, &[]), execute(), sync()]).await;
            assert_eq!(
                err_code(&r).as_deref(),
                Some("26000"),
                "A's {name} after its own {cmd}: {r:?}"
            );
            let r = b.batch(&[bind(name, &[]), execute(), sync()]).await;
            assert_eq!(data(&r), ["5"], "B's {name} after A's {cmd}: {r:?}");
            // A may reuse the name at once.
            let r = a
                .batch(&[
                    parse(name, "SELECT 6", &[]),
                    bind(name, &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["6"], "{r:?}");
        }
    });
}
