//! A session that panics while it holds a server connection: the connection is closed
//! and its slot freed (the checkout is a guard), the panic is logged and counted, and no
//! other client notices. pgsluice runs in-process here so that the test can arm a
//! failpoint (`Shared::failpoints`), which the binary never sets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, pg_connect, run_async, sq1};

const TRIGGER: &str = "pgsluice_test_panic";

#[test]
fn a_panicking_session_frees_its_server_and_harms_no_one() {
    let cluster = Cluster::start(0);
    run_async(120, async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let toml = cluster
            .pooler_config("transaction", "md5", 2)
            .replace("{LISTEN}", &addr.to_string())
            // A leaked slot would show as 57014 after this wait instead of an answer.
            .replace("[general]\n", "[general]\nquery_wait_timeout = 2\n");
        let config = pgsluice::Config::from_toml_with_env(&toml, std::iter::empty()).unwrap();
        let shared = pgsluice::Shared::new(config, None);
        shared.failpoints.panic_on_query(TRIGGER);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(pgsluice::run(listener, shared.clone(), async {
            let _ = stop_rx.await;
        }));
        let url = format!(
            "host=127.0.0.1 port={} user=app password=app_pw dbname=app",
            addr.port()
        );

        // A bystander in a transaction of its own, holding one of the two servers.
        let (bystander, _rx) = pg_connect(&url).await;
        bystander.simple_query("BEGIN").await.unwrap();
        let before = sq1(&bystander, "SELECT pg_backend_pid()::text").await;

        // Five panics inside transactions, more than the pool has connections.
        for _ in 0..5 {
            let (victim, _rx) = pg_connect(&url).await;
            victim.simple_query("BEGIN").await.unwrap();
            sq1(&victim, "SELECT 1::text").await;
            let err = victim
                .simple_query(&format!("SELECT '{TRIGGER}'"))
                .await
                .expect_err("the panicking session's client sees its connection end");
            assert!(
                err.is_closed() || err.to_string().contains("closed"),
                "{err}"
            );
        }

        // The bystander is untouched, still in its transaction on the same backend.
        assert_eq!(
            sq1(&bystander, "SELECT pg_backend_pid()::text").await,
            before
        );
        bystander.simple_query("COMMIT").await.unwrap();

        // The pool's count is right and new clients are served (a leaked slot would leave
        // them waiting out query_wait_timeout and failing with 57014).
        let pool = shared
            .pools
            .get(&shared.snapshot.load().config, "app", "app", 0)
            .unwrap();
        let snap = pool.snapshot();
        assert!(snap.total <= 2, "pool counts {snap:?} after the panics");
        let (fresh, _rx) = pg_connect(&url).await;
        let (other, _rx2) = pg_connect(&url).await;
        // Both servers at once: each client holds one inside a transaction.
        fresh.simple_query("BEGIN").await.unwrap();
        other.simple_query("BEGIN").await.unwrap();
        assert_eq!(sq1(&fresh, "SELECT 41 + 1").await, "42");
        assert_eq!(sq1(&other, "SELECT 40 + 2").await, "42");
        fresh.simple_query("COMMIT").await.unwrap();
        other.simple_query("COMMIT").await.unwrap();
        assert_eq!(
            shared
                .metrics
                .panics
                .load(std::sync::atomic::Ordering::Relaxed),
            5
        );
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        drop(Arc::clone(&shared));
    });
}
