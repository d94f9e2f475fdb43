//! Idle clients parked without a task (issue 14, `park_idle_after`): a client idle that
//! long waits in its worker's lot, and its next byte, its EOF, a KILL or a drain brings it
//! back with its session (settings, named prepared statements) as it was. SHOW LISTS
//! (`parked_clients`) and `/metrics` (`pgsluice_parked_clients`) count them.

mod common;

use std::time::Duration;

use common::console::{Rows, console_config, http_section};
use common::pg::{Pg, rt};
use common::{Cluster, Pooler, with_general};

/// Short, so that the test does not wait long for clients to park.
const PARK: &str = "park_idle_after = 0.2";

fn parked(rows: &Rows) -> i64 {
    rows.num("list", "parked_clients", "items")
}

fn used(rows: &Rows) -> i64 {
    rows.num("list", "used_clients", "items")
}

#[test]
fn parked_clients_keep_their_session_and_come_back_on_their_next_byte() {
    let c = Cluster::start(0);
    let p = Pooler::start(&with_general(
        &console_config(&c, "transaction", 2, ""),
        PARK,
    ));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let mut clients = Vec::new();
        for i in 0..12 {
            let pg = Pg::connect(&app).await;
            pg.q(&format!("SET application_name = 'parked{i}'")).await;
            let stmt = pg
                .client
                .prepare("SELECT $1::int + 1")
                .await
                .expect("prepare");
            assert_eq!(
                pg.client
                    .query_one(&stmt, &[&i])
                    .await
                    .unwrap()
                    .get::<_, i32>(0),
                i + 1
            );
            clients.push((pg, stmt));
        }
        let lists = admin.show_until("SHOW LISTS", |r| parked(r) == 12).await;
        assert_eq!(parked(&lists), 12, "every idle client parked: {lists:#?}");
        assert_eq!(
            used(&lists),
            13,
            "parked clients are still logged in (and the console)"
        );

        // Each comes back on its next query with its settings and statements.
        for (i, (pg, stmt)) in clients.iter().enumerate() {
            let i = i as i32;
            assert_eq!(pg.one("SHOW application_name").await, format!("parked{i}"));
            let row = pg
                .client
                .query_one(stmt, &[&(i * 10)])
                .await
                .expect("parked statement");
            assert_eq!(row.get::<_, i32>(0), i * 10 + 1);
        }
        // ... and parks again once idle.
        let lists = admin.show_until("SHOW LISTS", |r| parked(r) == 12).await;
        assert_eq!(parked(&lists), 12, "{lists:#?}");

        // A parked client that leaves, politely or not, is noticed by the lot.
        let mut rest = clients.split_off(6);
        for (n, (pg, _)) in clients.into_iter().enumerate() {
            if n % 2 == 0 {
                pg.close().await;
            } else {
                pg.kill().await;
            }
        }
        let lists = admin
            .show_until("SHOW LISTS", |r| parked(r) == 6 && used(r) == 7)
            .await;
        assert_eq!((parked(&lists), used(&lists)), (6, 7), "{lists:#?}");

        // KILL reaches parked clients: each is closed with 57P01.
        admin.q("KILL app").await;
        for (pg, _) in rest.drain(..) {
            assert_eq!(
                pg.wait_closed("a parked client KILL closes")
                    .await
                    .as_deref(),
                Some("57P01")
            );
        }
        let lists = admin
            .show_until("SHOW LISTS", |r| parked(r) == 0 && used(r) == 1)
            .await;
        assert_eq!((parked(&lists), used(&lists)), (0, 1), "{lists:#?}");
    });
}

#[test]
fn busy_clients_never_park_and_a_drain_lets_parked_clients_go() {
    let c = Cluster::start(0);
    let (http, port) = http_section();
    let mut p = Pooler::start(&with_general(
        &console_config(&c, "transaction", 2, &http),
        PARK,
    ));
    let app = p.url("app", "app_pw", "app");
    let metric = |name: &str| {
        common::console::http_get(port, "/metrics")
            .1
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.strip_prefix(' '))
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    rt().block_on(async {
        // A client that keeps sending never parks, however long it has been connected
        // (statistics on: the byte counts they reset are not what tells idle from busy).
        let busy = Pg::connect(&app).await;
        let t0 = std::time::Instant::now();
        let mut n = 0;
        while t0.elapsed() < Duration::from_millis(1000) {
            assert_eq!(busy.one("SELECT 1").await, "1");
            n += 1;
        }
        assert_eq!(
            metric("pgsluice_client_parks_total"),
            "0",
            "a busy client parked ({n} queries)"
        );
        busy.close().await;

        let mut clients = Vec::new();
        for _ in 0..5 {
            let pg = Pg::connect(&app).await;
            assert_eq!(pg.one("SELECT 1").await, "1");
            clients.push(pg);
        }
        let parked = || metric("pgsluice_parked_clients");
        assert!(
            common::wait_until(Duration::from_secs(20), || parked() == "5"),
            "pgsluice_parked_clients: {}",
            parked()
        );
        assert_eq!(metric("pgsluice_client_parks_total"), "5");
        // SIGTERM: the parked clients get their tasks back, see the drain and are closed
        // at once (they are between transactions); pgsluice exits well before
        // shutdown_timeout.
        p.signal("TERM");
        for pg in clients {
            let why = pg.wait_closed("a parked client at the drain").await;
            assert_eq!(why.as_deref(), Some("57P01"), "{why:?}");
        }
        let status = p.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            p.log()
        );
    });
}

#[test]
fn many_idle_clients_park_sooner() {
    let c = Cluster::start(0);
    // Without pressure nobody would park within the test.
    let p = Pooler::start(&with_general(
        &console_config(&c, "transaction", 2, ""),
        "park_idle_after = 60\nworkers = 1",
    ));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let mut clients = Vec::new();
        for _ in 0..300 {
            clients.push(Pg::connect(&app).await);
        }
        // Past 256 idle sessions with tasks on the worker, the rest park after 50 ms (new
        // clients) or 100 ms.
        let lists = admin.show_until("SHOW LISTS", |r| parked(r) >= 44).await;
        assert!(parked(&lists) >= 44, "{lists:#?}");
        assert!(parked(&lists) <= 300, "{lists:#?}");
        for pg in clients.iter().take(20) {
            assert_eq!(pg.one("SELECT 1").await, "1");
        }
    });
}

#[test]
fn clients_that_wait_on_more_than_their_socket_keep_their_task() {
    let c = Cluster::start(0);
    let cfg = with_general(&console_config(&c, "transaction", 3, ""), PARK)
        // md5user has a client_idle_timeout (a deadline to keep)...
        .replacen(
            "name = \"md5user\"\npassword = \"md5_pw\"\n",
            "name = \"md5user\"\npassword = \"md5_pw\"\nclient_idle_timeout = 30\n",
            1,
        )
        // ... and database postgres is in session mode (its clients hold a server).
        .replacen(
            "[databases.postgres]\n",
            "[databases.postgres]\npool_mode = \"session\"\n",
            1,
        );
    let p = Pooler::start(&cfg);
    rt().block_on(async {
        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let listener = Pg::connect(&p.url("app", "app_pw", "app")).await;
        listener.q("LISTEN parked_channel").await;
        let timed = Pg::connect(&p.url("md5user", "md5_pw", "app")).await;
        assert_eq!(timed.one("SELECT 1").await, "1");
        let session = Pg::connect(&p.url("app", "app_pw", "postgres")).await;
        assert_eq!(session.one("SELECT 1").await, "1");
        let plain = Pg::connect(&p.url("app", "app_pw", "app")).await;
        assert_eq!(plain.one("SELECT 1").await, "1");
        // Only the plain one parks, and the others stay as they are.
        let lists = admin.show_until("SHOW LISTS", |r| parked(r) == 1).await;
        assert_eq!(parked(&lists), 1, "{lists:#?}");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(parked(&admin.show("SHOW LISTS").await), 1);
        for pg in [&listener, &timed, &session] {
            assert_eq!(pg.one("SELECT 'still here'").await, "still here");
        }
        for pg in [listener, timed, session, plain] {
            pg.close().await;
        }
    });
}

/// More clients than the loop keeps in tokio's reactor (`lot::FEW`), each running many
/// transactions: past `lot::SETTLE` waits a session's socket moves into the loop's epoll
/// set while the session is active (with a request pipelined behind another, a prepared
/// statement, a transaction block open), and nothing it was sent or waits for is lost.
#[test]
fn long_lived_clients_move_their_sockets_into_the_loop_without_losing_a_byte() {
    let c = Cluster::start(0);
    let p = Pooler::start_with_env(
        &console_config(&c, "transaction", 3, ""),
        &[],
        &[("PGSLUICE_LOG", "info,pgsluice::client::lot=debug")],
    );
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..10i32 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let pg = Pg::connect(&app).await;
                let stmt = pg
                    .client
                    .prepare("SELECT $1::int * 2")
                    .await
                    .map_err(|e| e.to_string())?;
                for n in 0..40i32 {
                    // Two requests in flight at once (tokio-postgres pipelines them).
                    let arg = i * 100 + n;
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&arg];
                    let (a, b) = tokio::join!(
                        pg.client.query_one(&stmt, &params),
                        pg.client.simple_query("SELECT 'pipelined'"),
                    );
                    let a: i32 = a.map_err(|e| e.to_string())?.get(0);
                    if a != arg * 2 {
                        return Err(format!("client {i}, round {n}: {a}"));
                    }
                    b.map_err(|e| e.to_string())?;
                    if n % 10 == 5 {
                        pg.q("BEGIN").await;
                        assert_eq!(pg.one("SELECT 'in a block'").await, "in a block");
                        pg.q("COMMIT").await;
                    }
                }
                pg.close().await;
                Ok(())
            }));
        }
        common::pg::within(
            "long-lived clients",
            common::pg::join_all("long-lived clients", tasks),
        )
        .await;
    });
    assert!(
        p.log()
            .contains("client socket moved into the session loop"),
        "no session settled into the loop's epoll set:\n{}",
        p.log()
    );
}
