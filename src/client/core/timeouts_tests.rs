//! The session timeouts over recorded message sequences (see `tests.rs` for the rig).

use std::time::Duration;

use super::super::tests::*;
use super::super::*;

fn with(r: &mut Rig, f: impl FnOnce(&mut crate::config::SessionTimeouts)) {
    f(std::sync::Arc::make_mut(&mut r.core.limits)
        .timeouts
        .get_or_insert_default());
}

#[test]
fn query_timeout_cancels_on_the_server_and_the_server_is_not_reused() {
    let mut r = rig(PoolMode::Transaction, &[]);
    with(&mut r, |t| t.query = Some(Duration::from_secs(2)));
    r.client(&query("SELECT pg_sleep(10)"));
    r.expect_checkout();
    r.sent_to_server();
    let deadline = r.core.deadline().expect("query deadline");
    assert_eq!(deadline, r.now + Duration::from_secs(2));
    r.core.tick(deadline);
    assert!(matches!(r.action(), Some(Action::Cancel)));
    assert!(
        r.core.deadline().is_none(),
        "one cancel per query, no second deadline"
    );
    // The server answers the cancel with 57014, which goes to the client as is.
    let mut answer = error("57014", "canceling statement due to user request");
    answer.extend(ready(b'I'));
    r.now = deadline;
    r.server(&answer);
    assert_eq!(r.sent_to_client(), answer);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::QueryTimeout));
    // The next query gets a fresh timer and a clean release.
    r.client(&query("SELECT 1"));
    r.expect_checkout();
    // Written to the server before it can answer (a server still owed bytes is closed).
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    let mut answer = complete("SELECT 1");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
}

#[test]
fn transaction_timeout_ends_the_transaction_and_says_why() {
    let mut r = rig(PoolMode::Transaction, &[]);
    with(&mut r, |t| t.transaction = Some(Duration::from_secs(3)));
    std::sync::Arc::make_mut(&mut r.core.limits).idle_txn = None;
    r.client(&query("BEGIN"));
    r.expect_checkout();
    let mut answer = complete("BEGIN");
    answer.extend(ready(b'T'));
    r.server(&answer);
    r.sent_to_client();
    assert!(r.action().is_none());
    r.now += Duration::from_secs(1);
    r.client(&query("SELECT pg_sleep(100)"));
    let deadline = r.core.deadline().expect("transaction deadline");
    assert_eq!(
        deadline,
        r.now - Duration::from_secs(1) + Duration::from_secs(3)
    );
    r.core.tick(deadline);
    let (_, how) = r.expect_release();
    assert_eq!(
        how,
        Release::CloseAndCancel(CloseReason::TransactionTimeout),
        "a running query is cancelled and the server closed: the transaction rolls back"
    );
    assert!(matches!(r.action(), Some(Action::Close { .. })));
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(
        out.contains("25P04") && out.contains("transaction_timeout"),
        "{out}"
    );
}

#[test]
fn transaction_timeout_counts_a_single_statement_outside_a_block() {
    let mut r = rig(PoolMode::Transaction, &[]);
    with(&mut r, |t| t.transaction = Some(Duration::from_secs(3)));
    r.client(&query("SELECT pg_sleep(100)"));
    r.expect_checkout();
    let deadline = r.core.deadline().expect("transaction deadline");
    assert_eq!(deadline, r.now + Duration::from_secs(3));
    r.core.tick(deadline);
    let (_, how) = r.expect_release();
    assert_eq!(
        how,
        Release::CloseAndCancel(CloseReason::TransactionTimeout)
    );
    // A short statement resets the timer.
    let mut r = rig(PoolMode::Transaction, &[]);
    with(&mut r, |t| t.transaction = Some(Duration::from_secs(3)));
    r.client(&query("SELECT 1"));
    r.expect_checkout();
    let mut answer = complete("SELECT 1");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.expect_release();
    assert_eq!(r.core.deadline(), None);
}

#[test]
fn client_idle_timeout_closes_an_idle_client_only() {
    let mut r = rig(PoolMode::Transaction, &[]);
    with(&mut r, |t| t.client_idle = Some(Duration::from_secs(5)));
    r.client(&query("SELECT 1"));
    r.expect_checkout();
    assert_eq!(r.core.deadline(), None, "a query in flight is not idle");
    let mut answer = complete("SELECT 1");
    answer.extend(ready(b'I'));
    r.now += Duration::from_secs(7);
    r.server(&answer);
    r.expect_release();
    let deadline = r.core.deadline().expect("idle deadline");
    assert_eq!(deadline, r.now + Duration::from_secs(5));
    r.core.tick(deadline - Duration::from_millis(1));
    assert!(r.action().is_none());
    r.core.tick(deadline);
    assert!(matches!(r.action(), Some(Action::Close { .. })));
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(out.contains("57P05"), "{out}");
    assert_eq!(r.core.deadline(), None);
}
