//! The test harness itself, against PostgreSQL directly (no pgsluice):
//! cluster.sh clusters replicate, authenticate and survive fault operations.

mod common;

use common::{Cluster, psql, psql_ok};
use std::time::Duration;

#[test]
fn primary_and_replica_replicate() {
    let c = Cluster::start(1);
    assert_eq!(
        psql_ok(
            &c.node_url("primary", "postgres", "", "postgres"),
            "SELECT pg_is_in_recovery()"
        ),
        "f"
    );
    assert_eq!(
        psql_ok(
            &c.node_url("replica1", "postgres", "", "postgres"),
            "SELECT pg_is_in_recovery()"
        ),
        "t"
    );

    let primary = c.node_url("primary", "app", "app_pw", "app");
    let replica = c.node_url("replica1", "app", "app_pw", "app");
    psql_ok(
        &primary,
        "CREATE TABLE smoke (id int); INSERT INTO smoke VALUES (42)",
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            let out = psql(&replica, "SELECT id FROM smoke");
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "42"
        }),
        "row did not reach the replica"
    );
    c.wait_replicas_caught_up();
}

#[test]
fn roles_authenticate_with_their_methods() {
    let c = Cluster::start(0);
    let p = c.primary_port;
    for (user, pw, method) in [
        ("app", "app_pw", "SCRAM-SHA-256$"),
        ("md5user", "md5_pw", "md5"),
        ("plainuser", "plain_pw", "SCRAM-SHA-256$"),
    ] {
        assert_eq!(
            psql_ok(&common::url(p, user, pw, "app"), "SELECT current_user"),
            user
        );
        let wrong = psql(&common::url(p, user, "wrong", "app"), "SELECT 1");
        assert!(
            !wrong.status.success(),
            "{user} logged in with a wrong password"
        );
        let stored = psql_ok(
            &c.primary_url("postgres"),
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"),
        );
        assert!(
            stored.starts_with(method),
            "{user}: stored password {stored}"
        );
    }
    assert_eq!(
        psql_ok(&c.primary_url("app"), "SELECT current_user"),
        "postgres"
    );
}

#[test]
fn nodes_stop_start_and_promote() {
    let c = Cluster::start(1);
    let replica = c.node_url("replica1", "postgres", "", "postgres");

    c.stop_node("replica1");
    assert!(!psql(&replica, "SELECT 1").status.success());
    c.start_node("replica1");
    assert_eq!(psql_ok(&replica, "SELECT pg_is_in_recovery()"), "t");

    c.stop_node("primary");
    assert!(
        !psql(&c.primary_url("postgres"), "SELECT 1")
            .status
            .success()
    );
    c.promote("replica1");
    assert_eq!(psql_ok(&replica, "SELECT pg_is_in_recovery()"), "f");
    psql_ok(&replica, "CREATE TABLE after_promotion (id int)");
}

#[test]
fn last_replica_applies_with_delay() {
    let c = Cluster::start_with_delay(2, 3);
    let primary = c.node_url("primary", "app", "app_pw", "app");
    psql_ok(&primary, "CREATE TABLE delayed (id int)");
    let exists = "SELECT to_regclass('delayed') IS NOT NULL";
    let prompt = c.node_url("replica1", "app", "app_pw", "app");
    let delayed = c.node_url("replica2", "app", "app_pw", "app");
    assert!(common::wait_until(Duration::from_secs(5), || psql_ok(
        &prompt, exists
    ) == "t"));
    assert_eq!(psql_ok(&delayed, exists), "f", "replica2 should lag by 3 s");
    assert!(common::wait_until(Duration::from_secs(15), || psql_ok(
        &delayed, exists
    ) == "t"));
}
