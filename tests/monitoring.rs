//! Monitoring: `/metrics` (parsed by the reference Prometheus parser and checked against
//! what the test ran), `/healthz`, `/readyz` while draining and with a primary down, and
//! the slow query log (issue 5).
//!
//! Every test runs its own PostgreSQL cluster and pgsluice. Counters are checked against
//! what the test itself did, never against times; state gauges, which settle a moment
//! after a client has its answer, are waited for (`scrape_until`).

mod common;

use std::time::Duration;

use common::console::{
    Sample, console_config, http_get, http_section, metric, metric_opt, scrape_until,
};
use common::pg::{Pg, rt};
use common::{Cluster, Pooler, free_port, wait_until};

#[test]
fn metrics_parse_and_count_what_ran() {
    let c = Cluster::start(0);
    let (http, port) = http_section();
    let p = Pooler::start(&console_config(&c, "transaction", 2, &http));
    const N: usize = 25;
    rt().block_on(async {
        let app = Pg::connect(&p.url("app", "app_pw", "app")).await;
        for i in 0..N {
            assert_eq!(app.one(&format!("SELECT {i}")).await, i.to_string());
        }
        assert_eq!(app.fails("SELECT * FROM no_such_table").await, "42P01");
        assert_eq!(app.fails("SELECT 1/0").await, "22012");
        app.q("BEGIN").await;
        app.q("SELECT 1").await;
        app.q("COMMIT").await;
        let idle = Pg::connect(&p.url("app", "app_pw", "app")).await;

        let pool = [("database", "app"), ("user", "app"), ("node", "0")];
        let state = |s: &[Sample], family: &str, labels: &[(&str, &str)], st: &str| {
            metric_opt(s, family, &[labels, &[("state", st)]].concat())
        };
        let app_user = [("database", "app"), ("user", "app")];
        // `app` has its last answer; it gives its server back a moment later.
        let s = scrape_until(port, |s| {
            let c = |st| state(s, "pgsluice_client_connections", &app_user, st);
            c("idle") == Some(2.0)
                && c("active") == Some(0.0)
                && c("waiting") == Some(0.0)
                && state(s, "pgsluice_server_connections", &pool, "idle")
                    .is_some_and(|n| (1.0..=2.0).contains(&n))
        });
        // N selects, two failures, BEGIN + SELECT + COMMIT in one transaction
        let queries = N as f64 + 2.0 + 3.0;
        let xacts = N as f64 + 2.0 + 1.0;
        assert_eq!(metric(&s, "pgsluice_queries_total", &pool), queries);
        assert_eq!(metric(&s, "pgsluice_transactions_total", &pool), xacts);
        assert_eq!(
            metric(&s, "pgsluice_query_duration_seconds_count", &pool),
            queries
        );
        let inf = [pool.as_slice(), &[("le", "+Inf")]].concat();
        assert_eq!(
            metric(&s, "pgsluice_query_duration_seconds_bucket", &inf),
            queries
        );
        assert_eq!(
            metric(&s, "pgsluice_transaction_duration_seconds_count", &pool),
            xacts
        );
        assert!(metric(&s, "pgsluice_pool_wait_duration_seconds_count", &pool) >= 1.0);
        assert!(metric(&s, "pgsluice_query_duration_seconds_sum", &pool) > 0.0);
        let class = |c: &'static str| [pool.as_slice(), &[("class", c)]].concat();
        assert_eq!(
            metric(&s, "pgsluice_server_errors_total", &class("42")),
            1.0
        );
        assert_eq!(
            metric(&s, "pgsluice_server_errors_total", &class("22")),
            1.0
        );
        assert!(metric(&s, "pgsluice_client_received_bytes_total", &pool) > 0.0);
        assert!(metric(&s, "pgsluice_client_sent_bytes_total", &pool) > 0.0);
        assert_eq!(metric(&s, "pgsluice_pool_wait_timeouts_total", &pool), 0.0);
        let clients = |st: &str| {
            metric(
                &s,
                "pgsluice_client_connections",
                &[("database", "app"), ("user", "app"), ("state", st)],
            )
        };
        assert_eq!(clients("idle"), 2.0);
        assert_eq!(clients("active"), 0.0);
        assert_eq!(clients("waiting"), 0.0);
        let idle_servers = metric(
            &s,
            "pgsluice_server_connections",
            &[pool.as_slice(), &[("state", "idle")]].concat(),
        );
        assert!((1.0..=2.0).contains(&idle_servers), "{idle_servers}");
        assert_eq!(metric(&s, "pgsluice_draining", &[]), 0.0);
        drop(idle);

        // the console agrees
        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let stats = admin.show("SHOW STATS").await;
        assert_eq!(
            stats.num("database", "app", "total_query_count") as f64,
            queries
        );

        let (status, body) = http_get(port, "/healthz");
        assert_eq!((status, body.trim()), (200, "ok"));
        let (status, _) = http_get(port, "/nothing");
        assert_eq!(status, 404);
    });
}

#[test]
fn metrics_off_counts_nothing_but_connections() {
    let c = Cluster::start(0);
    let (http, port) = http_section();
    let p = Pooler::start(&console_config(
        &c,
        "transaction",
        2,
        &format!("{http}\n[metrics]\nenabled = false\n"),
    ));
    rt().block_on(async {
        let app = Pg::connect(&p.url("app", "app_pw", "app")).await;
        for _ in 0..5 {
            app.q("SELECT 1").await;
        }
        let pool = [("database", "app"), ("user", "app"), ("node", "0")];
        let idle = [("database", "app"), ("user", "app"), ("state", "idle")];
        // The client has its last answer; it gives its server back a moment later.
        let s = scrape_until(port, |s| {
            metric_opt(s, "pgsluice_client_connections", &idle) == Some(1.0)
        });
        assert_eq!(metric(&s, "pgsluice_queries_total", &pool), 0.0);
        assert_eq!(metric(&s, "pgsluice_client_connections", &idle), 1.0);
    });
}

#[test]
fn readyz_fails_while_draining_and_for_an_unreachable_primary() {
    let c = Cluster::start(0);
    let (http, port) = http_section();
    let mut p = Pooler::start(&console_config(&c, "transaction", 2, &http));
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    rt().block_on(async {
        let app = Pg::connect(&p.url("app", "app_pw", "app")).await;
        app.q("BEGIN").await;
        app.q("SELECT 1").await;
        p.signal("TERM");
        assert!(
            wait_until(Duration::from_secs(10), || http_get(port, "/readyz").0
                == 503),
            "/readyz still ready during the drain"
        );
        let (_, body) = http_get(port, "/readyz");
        assert!(body.contains("draining"), "{body}");
        // alive all the same
        assert_eq!(http_get(port, "/healthz").0, 200);
        app.q("COMMIT").await;
    });
    p.wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("pgsluice still runs:\n{}", p.log()));

    // a database whose primary is down
    let (http, port) = http_section();
    let dead = free_port();
    let cfg = console_config(&c, "transaction", 2, &http)
        + &format!("\n[databases.gone]\nprimary = \"127.0.0.1:{dead}\"\n");
    let _p = Pooler::start(&cfg);
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"gone\""), "{body}");
}

// ------------------------------------------------------------------ slow query log

#[test]
fn slow_query_log_catches_slow_queries_only() {
    let c = Cluster::start(0);
    let p = Pooler::start(&console_config(&c, "transaction", 2, "").replacen(
        "[general]\n",
        "[general]\nslow_query_threshold = 0.1\n",
        1,
    ));
    rt().block_on(async {
        let app = Pg::connect(&p.url("app", "app_pw", "app")).await;
        app.q("SELECT 1").await;
        app.q("SELECT pg_sleep(0.2) /* simple */").await;
        // extended protocol: the text comes from the Parse
        let stmt = app
            .client
            .prepare("SELECT pg_sleep($1::float8), 'secret'")
            .await
            .expect("prepare");
        app.client.query(&stmt, &[&0.2f64]).await.expect("run");
        app.q("SELECT 1").await;
    });
    assert!(
        p.wait_for_log("pg_sleep($1::float8)", Duration::from_secs(10)),
        "extended-protocol slow query not logged:\n{}",
        p.log()
    );
    let log = p.log();
    let slow: Vec<&str> = log.lines().filter(|l| l.contains("slow query")).collect();
    assert_eq!(slow.len(), 2, "{slow:#?}");
    assert!(slow[0].contains("query=SELECT pg_sleep(?)"), "{}", slow[0]);
    assert!(
        slow[1].contains("query=SELECT pg_sleep($1::float8), ?"),
        "{}",
        slow[1]
    );
    for line in &slow {
        assert!(
            !line.contains("secret") && !line.contains("0.2)"),
            "literal leaked: {line}"
        );
        assert!(
            line.contains("node=0") && line.contains("wait_ms=") && line.contains("server_ms=")
        );
    }
}
