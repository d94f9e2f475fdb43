//! Transaction-mode prepared statements (issue 3) with real drivers: pgbench -M prepared,
//! tokio-postgres, sqlx and psycopg 3, many clients over small pools; the per-server LRU
//! (`general.max_prepared_statements`) under an eviction stress test, one server-side
//! statement per distinct text and parameter types, and `max_prepared_statements = 0`.
//! What is really prepared on the servers is asked of them (`pg_catalog."pg_prepared_statements"`
//! through pgsluice: quoted, the view is the server's own, not rewritten into the client's).
//!
//! Pools are small so clients really move between server connections. Every
//! test starts its own cluster and pgsluice (client auth md5, so the raw client can log
//! in); every wait is bounded; nothing asserts timings.
//!
//! Note on driver statement names: tokio-postgres names statements `s<N>`
//! from a process-wide counter, so its names never collide between clients of
//! one process; sqlx (`sqlx_s_<n>`), psycopg (`_pg3_<n>`) and pgbench (`P0_<n>`)
//! count per connection, and the raw-protocol tests (tests/prepared_protocol.rs) reuse
//! names on purpose, so name collisions for different queries are covered there.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::pg::{join_all, on_every_server, sqlstate, superuser, try_pg_connect};
use common::pgbench::{pgbench_init, pgbench_through};
use common::{Pooler, app_url, pg_connect, run_async, setup_with, sq, sq1};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio_postgres::Statement;
use tokio_postgres::types::Type;

// ------------------------------------------------------------------ pgbench -M prepared

/// `pgbench -i -s 1` directly on the primary (as app, who then owns the tables).
/// `pgbench -n -M prepared ARGS` through pgsluice (90 s bound), its report checked.
fn pgbench_prepared(pooler: &Pooler, args: &[&str]) {
    pgbench_through(pooler, &[&["-n", "-M", "prepared"][..], args].concat(), 90);
}

#[test]
fn pgbench_prepared_select_only_50_clients_pool_5() {
    let (cluster, pooler) = setup_with("transaction", "md5", 5, "");
    pgbench_init(&cluster);
    pgbench_prepared(&pooler, &["-S", "-c", "50", "-j", "2", "-T", "5"]);
    // 50 clients prepared the same SELECT (as P0_1 each): one server-side
    // statement per server connection, under pgsluice's name.
    run_async(60, async {
        for (pid, rows) in on_every_server(
            &app_url(&pooler),
            5,
            "SELECT name FROM pg_catalog.\"pg_prepared_statements\" WHERE statement LIKE '%pgbench_accounts%'",
        )
        .await
        {
            assert!(
                rows.len() <= 1 && rows.iter().all(|n| n.starts_with("sluice_")),
                "server {pid}: pgbench's SELECT prepared as {rows:?}"
            );
        }
    });
}

#[test]
fn pgbench_prepared_tpcb_20_clients_pool_5() {
    let (cluster, pooler) = setup_with("transaction", "md5", 5, "");
    pgbench_init(&cluster);
    pgbench_prepared(&pooler, &["-c", "20", "-j", "2", "-T", "5"]);
}

// ------------------------------------------------------------------ tokio-postgres

const TP_SQL: [&str; 3] = [
    "SELECT $1::int * 2",
    "SELECT $1::text || 'x'",
    "SELECT count(*) FROM t WHERE id < $1",
];

/// One tokio-postgres client: prepares the three statements in a random
/// order, then 30 rounds of all three (random order, random arguments), every
/// fifth round inside BEGIN/COMMIT when `transactions`.
async fn tp_client(url: String, id: u64, transactions: bool) -> Result<usize, String> {
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + id);
    let client = try_pg_connect(&url)
        .await
        .map_err(|e| format!("client {id}: {e}"))?;
    let mut order = [0usize, 1, 2];
    order.shuffle(&mut rng);
    let mut stmts: [Option<Statement>; 3] = [None, None, None];
    for &k in &order {
        let s = client
            .prepare(TP_SQL[k])
            .await
            .map_err(|e| format!("client {id}: prepare {:?}: {e}", TP_SQL[k]))?;
        let want = [Type::INT4, Type::TEXT, Type::INT4][k].clone();
        if s.params() != [want.clone()] {
            return Err(format!(
                "client {id}: {:?} described with params {:?}, want [{want}]",
                TP_SQL[k],
                s.params()
            ));
        }
        stmts[k] = Some(s);
    }
    let stmts: Vec<Statement> = stmts.into_iter().map(Option::unwrap).collect();
    let mut checked = 0;
    for round in 0..30 {
        let in_tx = transactions && round % 5 == 4;
        if in_tx {
            client
                .simple_query("BEGIN")
                .await
                .map_err(|e| format!("client {id} round {round}: BEGIN: {e}"))?;
        }
        let mut ks = [0usize, 1, 2];
        ks.shuffle(&mut rng);
        for k in ks {
            let err = |e: tokio_postgres::Error| {
                format!(
                    "client {id} round {round}: {:?}: {e} ({})",
                    TP_SQL[k],
                    sqlstate(&e)
                )
            };
            match k {
                0 => {
                    let x: i32 = rng.gen_range(-1_000_000..1_000_000);
                    let got: i32 = client
                        .query_one(&stmts[0], &[&x])
                        .await
                        .map_err(err)?
                        .get(0);
                    if got != x * 2 {
                        return Err(format!("client {id}: {x}*2 returned {got}"));
                    }
                }
                1 => {
                    let s = format!("c{id}-{}", rng.gen_range(0..1_000_000));
                    let got: String = client
                        .query_one(&stmts[1], &[&s])
                        .await
                        .map_err(err)?
                        .get(0);
                    if got != format!("{s}x") {
                        return Err(format!("client {id}: {s:?} || 'x' returned {got:?}"));
                    }
                }
                _ => {
                    let n: i32 = rng.gen_range(-5..1200);
                    let got: i64 = client
                        .query_one(&stmts[2], &[&n])
                        .await
                        .map_err(err)?
                        .get(0);
                    let want = (n as i64 - 1).clamp(0, 1000);
                    if got != want {
                        return Err(format!(
                            "client {id}: count(id < {n}) returned {got}, want {want}"
                        ));
                    }
                }
            }
            checked += 1;
        }
        if in_tx {
            client
                .simple_query("COMMIT")
                .await
                .map_err(|e| format!("client {id} round {round}: COMMIT: {e}"))?;
        }
    }
    Ok(checked)
}

fn tokio_postgres_many_tasks(mode: &str) {
    let (cluster, pooler) = setup_with(mode, "md5", 3, "");
    run_async(180, async {
        superuser(&cluster)
            .await
            .batch_execute(
                "CREATE TABLE t (id int PRIMARY KEY); \
                 INSERT INTO t SELECT generate_series(1, 1000); ALTER TABLE t OWNER TO app",
            )
            .await
            .unwrap();
        let url = app_url(&pooler);
        let handles = (0..40u64)
            .map(|id| tokio::spawn(tp_client(url.clone(), id, mode == "transaction")))
            .collect();
        let checked: usize = join_all("tokio-postgres clients", handles)
            .await
            .into_iter()
            .sum();
        assert_eq!(checked, 40 * 30 * 3);
    });
}

#[test]
fn tokio_postgres_prepared_40_tasks_pool_3_transaction_mode() {
    tokio_postgres_many_tasks("transaction");
}

#[test]
fn tokio_postgres_prepared_40_tasks_pool_3_statement_mode() {
    tokio_postgres_many_tasks("statement");
}

// ------------------------------------------------------------------ sqlx

#[test]
fn sqlx_pool_of_10_over_pool_of_3() {
    use sqlx::Row;
    let (_cluster, pooler) = setup_with("transaction", "md5", 3, "");
    run_async(180, async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&app_url(&pooler))
            .await
            .expect("sqlx connect through pgsluice");
        let handles = (0..20i64)
            .map(|task| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(0x5417 + task as u64);
                    for j in 0..50i64 {
                        let i = task * 1000 + j;
                        let err = |e: sqlx::Error| format!("task {task} query {j}: {e}");
                        // sqlx names its cached statements sqlx_s_1, sqlx_s_2, ...
                        // per connection, in order of first use: the random
                        // order makes the same name mean different queries on
                        // different connections.
                        let other_first = rng.gen_bool(0.5);
                        let other = rng.gen_range(0..2);
                        for step in 0..2 {
                            if (step == 0) != other_first {
                                let row = sqlx::query("SELECT $1::int8 + 1")
                                    .bind(i)
                                    .fetch_one(&pool)
                                    .await
                                    .map_err(err)?;
                                let got: i64 = row.try_get(0).map_err(err)?;
                                if got != i + 1 {
                                    return Err(format!("task {task}: {i} + 1 returned {got}"));
                                }
                            } else if other == 0 {
                                let s = format!("t{task}-{j}");
                                let row = sqlx::query("SELECT $1::text || '-sqlx'")
                                    .bind(&s)
                                    .fetch_one(&pool)
                                    .await
                                    .map_err(err)?;
                                let got: String = row.try_get(0).map_err(err)?;
                                if got != format!("{s}-sqlx") {
                                    return Err(format!("task {task}: {s:?} returned {got:?}"));
                                }
                            } else {
                                let x = (i % 100_000) as i32;
                                let row = sqlx::query("SELECT $1::int4 * 3, $2::text")
                                    .bind(x)
                                    .bind(task.to_string())
                                    .fetch_one(&pool)
                                    .await
                                    .map_err(err)?;
                                let (a, b): (i32, String) =
                                    (row.try_get(0).map_err(err)?, row.try_get(1).map_err(err)?);
                                if a != x * 3 || b != task.to_string() {
                                    return Err(format!(
                                        "task {task}: ({x}*3, {task}) returned ({a}, {b})"
                                    ));
                                }
                            }
                        }
                        if j % 10 == 9 {
                            // A transaction: the cached statement inside BEGIN/COMMIT.
                            let mut tx = pool.begin().await.map_err(err)?;
                            let row = sqlx::query("SELECT $1::int8 + 1")
                                .bind(-i)
                                .fetch_one(&mut *tx)
                                .await
                                .map_err(err)?;
                            let got: i64 = row.try_get(0).map_err(err)?;
                            tx.commit().await.map_err(err)?;
                            if got != 1 - i {
                                return Err(format!(
                                    "task {task}: -{i} + 1 returned {got} in a transaction"
                                ));
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        join_all("sqlx tasks", handles).await;
        pool.close().await;
    });
}

// ------------------------------------------------------------------ psycopg 3

#[test]
fn psycopg3_prepare_threshold_zero() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/psycopg_check.py");
    let probe = Command::new("python3")
        .args(["-c", "import psycopg; print(psycopg.__version__)"])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 cannot be run ({e}): install python3, then `python3 -m pip install \"psycopg[binary]\"` (.ci/run does both)"
        ),
        Ok(o) if !o.status.success() => panic!(
            "psycopg 3 is not importable by python3: run `python3 -m pip install \"psycopg[binary]\"` (.ci/run installs it)\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
    let (_cluster, pooler) = setup_with("transaction", "md5", 3, "");
    let out = Command::new("timeout")
        .args(["-k", "5", "150", "python3"])
        .arg(&script)
        .arg(app_url(&pooler))
        .args(["12", "40"])
        .output()
        .expect("run psycopg_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("psycopg_check OK"),
        "psycopg_check.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

// ------------------------------------------------------------------ eviction stress

#[test]
fn eviction_stress_200_clients_50_statements_limit_20_pool_4() {
    const CLIENTS: i32 = 200;
    const PER_CLIENT: i32 = 50;
    const STRIDE: i32 = 10; // client c uses k in c*10 .. c*10+50: overlaps the next four
    const LIMIT: usize = 20;
    const SLACK: usize = 3;
    let (_cluster, pooler) = setup_with("transaction", "md5", 4, "max_prepared_statements = 20");
    run_async(300, async {
        let url = app_url(&pooler);
        let gate = Arc::new(tokio::sync::Semaphore::new(50));
        let handles = (0..CLIENTS)
            .map(|c| {
                let url = url.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await.unwrap();
                    let mut rng = StdRng::seed_from_u64(0xe71c + c as u64);
                    let client = try_pg_connect(&url)
                        .await
                        .map_err(|e| format!("client {c}: {e}"))?;
                    let mut ks: Vec<i32> = (c * STRIDE..c * STRIDE + PER_CLIENT).collect();
                    ks.shuffle(&mut rng);
                    let mut stmts = Vec::new();
                    for &k in &ks {
                        let s = client
                            .prepare(&format!("SELECT $1::int + {k}"))
                            .await
                            .map_err(|e| {
                                format!("client {c}: prepare +{k}: {e} ({})", sqlstate(&e))
                            })?;
                        // Execute right away once, then twice more in random order later.
                        let x: i32 = rng.gen_range(-1_000_000..1_000_000);
                        let got: i32 = client
                            .query_one(&s, &[&x])
                            .await
                            .map_err(|e| {
                                format!("client {c}: execute +{k}: {e} ({})", sqlstate(&e))
                            })?
                            .get(0);
                        if got != x + k {
                            return Err(format!("client {c}: {x} + {k} returned {got}"));
                        }
                        stmts.push((k, s));
                    }
                    for pass in 0..2 {
                        stmts.shuffle(&mut rng);
                        for (k, s) in &stmts {
                            let x: i32 = rng.gen_range(-1_000_000..1_000_000);
                            let got: i32 = client
                                .query_one(s, &[&x])
                                .await
                                .map_err(|e| {
                                    format!(
                                        "client {c} pass {pass}: execute +{k}: {e} ({})",
                                        sqlstate(&e)
                                    )
                                })?
                                .get(0);
                            if got != x + k {
                                return Err(format!(
                                    "client {c} pass {pass}: {x} + {k} returned {got}"
                                ));
                            }
                        }
                    }
                    // The last clients stay connected (statements alive) for the check below.
                    Ok((c >= CLIENTS - 10).then_some((client, stmts)))
                })
            })
            .collect();
        let kept = join_all("eviction stress clients", handles).await;

        let servers = on_every_server(
            &url,
            4,
            "SELECT name || ' ' || statement FROM pg_catalog.\"pg_prepared_statements\" ORDER BY name",
        )
        .await;
        let mut total = 0;
        for (pid, rows) in &servers {
            assert!(
                rows.len() <= LIMIT + SLACK,
                "server {pid} has {} prepared statements, limit {LIMIT}: {rows:?}",
                rows.len()
            );
            assert!(
                rows.iter()
                    .all(|r| r.starts_with("sluice_") && r.contains("SELECT $1::int + ")),
                "server {pid}: statements not under pgsluice's names: {rows:?}"
            );
            total += rows.len();
        }
        assert!(
            total > 0,
            "no statement prepared on any server: {servers:?}"
        );
        drop(kept);
    });
}

// ------------------------------------------------------------------ parameter types

#[test]
fn describe_gives_parameter_types() {
    let (_cluster, pooler) = setup_with("transaction", "md5", 2, "");
    run_async(60, async {
        let (a, _) = pg_connect(&app_url(&pooler)).await;
        let (b, _) = pg_connect(&app_url(&pooler)).await;
        let s = a
            .prepare("SELECT $1::int8, $2::text, $3::bool, $4::numeric")
            .await
            .unwrap();
        assert_eq!(
            s.params(),
            [Type::INT8, Type::TEXT, Type::BOOL, Type::NUMERIC]
        );
        let cols: Vec<Type> = s.columns().iter().map(|c| c.type_().clone()).collect();
        assert_eq!(cols, [Type::INT8, Type::TEXT, Type::BOOL, Type::NUMERIC]);

        // Same text, different declared types: different statements.
        let s4 = a.prepare_typed("SELECT $1", &[Type::INT4]).await.unwrap();
        let st = a.prepare_typed("SELECT $1", &[Type::TEXT]).await.unwrap();
        let s8 = b.prepare_typed("SELECT $1", &[Type::INT8]).await.unwrap();
        let su = b.prepare("SELECT $1::int2").await.unwrap();
        assert_eq!(s4.params(), [Type::INT4]);
        assert_eq!(st.params(), [Type::TEXT]);
        assert_eq!(s8.params(), [Type::INT8]);
        assert_eq!(su.params(), [Type::INT2]);
        assert_eq!(s4.columns()[0].type_(), &Type::INT4);
        assert_eq!(st.columns()[0].type_(), &Type::TEXT);
        assert_eq!(s8.columns()[0].type_(), &Type::INT8);
        for i in 0..10 {
            let (x, y) = (i * 3, format!("v{i}"));
            let got: i32 = a.query_one(&s4, &[&x]).await.unwrap().get(0);
            assert_eq!(got, x);
            let got: String = a.query_one(&st, &[&y]).await.unwrap().get(0);
            assert_eq!(got, y);
            let got: i64 = b
                .query_one(&s8, &[&(x as i64 * 1_000_000_000)])
                .await
                .unwrap()
                .get(0);
            assert_eq!(got, x as i64 * 1_000_000_000);
            let got: i16 = b.query_one(&su, &[&(i as i16)]).await.unwrap().get(0);
            assert_eq!(got, i as i16);
        }
        // tokio-postgres reports a failed prepare as the server's error.
        let e = a.prepare("SELEC 1").await.unwrap_err();
        assert_eq!(sqlstate(&e), "42601");
        assert_eq!(sq1(&a, "SELECT 'still fine'").await, "still fine");
    });
}

// ------------------------------------------------------------------ sharing

#[test]
fn same_query_from_10_clients_is_prepared_once_per_server() {
    const Q: &str = "SELECT $1::int + 1000";
    let (_cluster, pooler) = setup_with("transaction", "md5", 1, "");
    run_async(60, async {
        let url = app_url(&pooler);
        let mut clients = Vec::new();
        for i in 0..10 {
            let (c, _) = pg_connect(&url).await;
            let s = c.prepare(Q).await.unwrap();
            let got: i32 = c.query_one(&s, &[&i]).await.unwrap().get(0);
            assert_eq!(got, i + 1000);
            clients.push((c, s));
        }
        // Five more with a declared int8 parameter: another server-side statement.
        for i in 0..5i64 {
            let (c, _) = pg_connect(&url).await;
            let s = c.prepare_typed(Q, &[Type::INT8]).await.unwrap();
            assert_eq!(s.params(), [Type::INT8]);
            let got: i32 = c.query_one(&s, &[&i]).await.unwrap().get(0);
            assert_eq!(got, i as i32 + 1000);
            clients.push((c, s));
        }
        // All still usable.
        for (i, (c, s)) in clients.iter().enumerate() {
            let x = i as i32;
            let got: i32 = if s.params()[0] == Type::INT8 {
                c.query_one(s, &[&(x as i64)]).await.unwrap().get(0)
            } else {
                c.query_one(s, &[&x]).await.unwrap().get(0)
            };
            assert_eq!(got, x + 1000);
        }
        let (check, _) = pg_connect(&url).await;
        let rows = sq(
            &check,
            &format!(
                "SELECT name || ' ' || parameter_types::text FROM pg_catalog.\"pg_prepared_statements\" \
                 WHERE statement = '{Q}' ORDER BY parameter_types::text"
            ),
        )
        .await;
        assert_eq!(
            rows.len(),
            2,
            "want one int4 and one int8 statement on the server: {rows:?}"
        );
        assert!(
            rows[0].ends_with(" {bigint}") && rows[1].ends_with(" {integer}"),
            "{rows:?}"
        );
        assert!(rows.iter().all(|r| r.starts_with("sluice_")), "{rows:?}");
        // Nothing else under the drivers' own names.
        assert_eq!(
            sq1(
                &check,
                "SELECT count(*) FROM pg_catalog.\"pg_prepared_statements\" WHERE name NOT LIKE 'sluice\\_%'"
            )
            .await,
            "0"
        );
        drop(clients);
    });
}

// ------------------------------------------------------------------ max_prepared_statements = 0

#[test]
fn max_prepared_statements_zero_pins_like_before() {
    let (_cluster, pooler) = setup_with("transaction", "md5", 2, "max_prepared_statements = 0");
    run_async(60, async {
        let url = app_url(&pooler);
        let (a, _) = pg_connect(&url).await;
        let (b, _) = pg_connect(&url).await;
        let s = a.prepare("SELECT $1::int * 5").await.unwrap();
        let pid_a = sq1(&a, "SELECT pg_backend_pid()").await;
        for i in 0..20 {
            let got: i32 = a.query_one(&s, &[&i]).await.unwrap().get(0);
            assert_eq!(got, i * 5);
            assert_eq!(sq1(&b, &format!("SELECT {i}")).await, i.to_string());
            assert_eq!(
                sq1(&a, "SELECT pg_backend_pid()").await,
                pid_a,
                "A was not pinned"
            );
            assert_ne!(
                sq1(&b, "SELECT pg_backend_pid()").await,
                pid_a,
                "B got A's pinned server"
            );
        }
    });
}
