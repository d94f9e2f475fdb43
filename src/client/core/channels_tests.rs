//! `pg_listening_channels()` over recorded message sequences: the channels the core keeps
//! and the statements it rewrites.

use super::super::tests::*;
use super::super::*;
use crate::listen::Request;

/// `sql` as the rewrite makes it for a client listening on `channels`.
fn rewritten(sql: &str, channels: &[&str]) -> Vec<u8> {
    let text = crate::sql::rewrite_listening_channels(sql, channels, 1 << 20)
        .expect("the statement is rewritten");
    query(&text)
}

/// Plays a LISTEN/UNLISTEN the listener confirms (`Ok`) or refuses.
fn listen(r: &mut Rig, sql: &str, result: Result<(), String>) {
    r.client(&query(sql));
    match r.action() {
        Some(Action::Listen(_)) => {}
        other => panic!("{sql}: expected Listen, got {other:?}"),
    }
    r.core.listen_done(result, r.now);
    r.sent_to_client();
}

/// Runs `sql` on a fresh server, answered by `answer` and ReadyForQuery `I`; returns what
/// went to the server.
fn run(r: &mut Rig, sql: &str, answer: &[u8]) -> Vec<u8> {
    r.client(&query(sql));
    r.expect_checkout();
    let sent = r.sent_to_server();
    let mut a = answer.to_vec();
    a.extend(ready(b'I'));
    r.server(&a);
    r.sent_to_client();
    sent
}

#[test]
fn the_call_lists_the_channels_in_the_order_listened() {
    let mut r = rig(PoolMode::Transaction, &[]);
    listen(&mut r, "LISTEN b", Ok(()));
    listen(&mut r, "LISTEN \"A\"\"x\"", Ok(()));
    listen(&mut r, "listen b", Ok(()));
    listen(
        &mut r,
        "LISTEN refused",
        Err("no listening connection".into()),
    );
    let sql = "SELECT pg_listening_channels()";
    assert_eq!(
        run(&mut r, sql, &complete("SELECT 2")),
        rewritten(sql, &["b", "A\"x"])
    );
    r.expect_release();
    listen(&mut r, "UNLISTEN b", Ok(()));
    listen(&mut r, "LISTEN b", Ok(()));
    let sql = "SELECT * FROM pg_listening_channels() WITH ORDINALITY";
    assert_eq!(
        run(&mut r, sql, &complete("SELECT 2")),
        rewritten(sql, &["A\"x", "b"])
    );
    r.expect_release();
    listen(&mut r, "UNLISTEN *", Ok(()));
    let sql = "SELECT pg_listening_channels()";
    assert_eq!(
        run(&mut r, sql, &complete("SELECT 0")),
        query("SELECT pg_catalog.\"pg_listening_channels\"()")
    );
    // Other statements go as they are.
    r.expect_release();
    assert_eq!(
        run(&mut r, "SELECT 1", &complete("SELECT 1")),
        query("SELECT 1")
    );
}

#[test]
fn a_parse_is_rewritten_too() {
    let mut r = rig(PoolMode::Transaction, &[]);
    listen(&mut r, "LISTEN jobs", Ok(()));
    let sql = "SELECT 'jobs' IN (SELECT pg_listening_channels())";
    let mut batch = parse("", sql);
    batch.extend(bind(""));
    batch.extend(execute());
    batch.extend(sync());
    r.client(&batch);
    r.expect_checkout();
    let text = crate::sql::rewrite_listening_channels(sql, &["jobs"], 1 << 20).expect("rewritten");
    let mut expect = parse("", &text);
    expect.extend(bind(""));
    expect.extend(execute());
    expect.extend(sync());
    assert_eq!(r.sent_to_server(), expect);
}

#[test]
fn discard_all_unlistens_everything_quietly() {
    let mut r = rig(PoolMode::Transaction, &[]);
    listen(&mut r, "LISTEN jobs", Ok(()));
    r.client(&query("DISCARD ALL"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("DISCARD ALL");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "CZ");
    // The listener drops the client's channels; its answer is not the client's, even
    // when the client's own LISTEN is waiting behind it.
    match r.action() {
        Some(Action::Listen(Request::UnlistenAll)) => {}
        other => panic!("expected a quiet UNLISTEN *, got {other:?}"),
    }
    r.expect_release();
    r.client(&query("LISTEN other"));
    assert!(matches!(
        r.action(),
        Some(Action::Listen(Request::Listen(_)))
    ));
    r.core.listen_done(Ok(()), r.now);
    assert!(
        r.sent_to_client().is_empty(),
        "the quiet answer went nowhere"
    );
    r.core.listen_done(Ok(()), r.now);
    assert_eq!(tags(&r.sent_to_client()), "CZ");
    let sql = "SELECT pg_listening_channels()";
    assert_eq!(
        run(&mut r, sql, &complete("SELECT 1")),
        rewritten(sql, &["other"])
    );
}

#[test]
fn a_discard_all_that_fails_keeps_the_channels() {
    let mut r = rig(PoolMode::Transaction, &[]);
    listen(&mut r, "LISTEN jobs", Ok(()));
    r.client(&query("BEGIN"));
    r.expect_checkout();
    let mut answer = complete("BEGIN");
    answer.extend(ready(b'T'));
    r.server(&answer);
    r.client(&query("DISCARD ALL"));
    let mut answer = error("25001", "DISCARD ALL cannot run inside a transaction block");
    answer.extend(ready(b'E'));
    r.server(&answer);
    r.client(&query("ROLLBACK"));
    let mut answer = complete("ROLLBACK");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_server();
    r.sent_to_client();
    r.expect_release();
    let sql = "SELECT pg_listening_channels()";
    assert_eq!(
        run(&mut r, sql, &complete("SELECT 1")),
        rewritten(sql, &["jobs"])
    );
}

#[test]
fn unlisten_all_committed_on_the_server_drops_the_listeners_channels() {
    let mut r = rig(PoolMode::Transaction, &[]);
    listen(&mut r, "LISTEN jobs", Ok(()));
    r.client(&query("BEGIN; UNLISTEN *; COMMIT"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("BEGIN; UNLISTEN *; COMMIT"));
    let mut answer = complete("BEGIN");
    answer.extend(complete("UNLISTEN"));
    answer.extend(complete("COMMIT"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert!(matches!(
        r.action(),
        Some(Action::Listen(Request::UnlistenAll))
    ));
}

#[test]
fn session_mode_leaves_the_call_to_the_server() {
    let mut r = rig(PoolMode::Session, &[]);
    std::sync::Arc::make_mut(&mut r.core.limits).listen_here = false;
    let sql = "SELECT pg_listening_channels()";
    r.client(&query(sql));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query(sql));
}

#[test]
fn unlisten_all_after_a_listen_the_server_ran_goes_to_the_server() {
    let mut r = rig(PoolMode::Transaction, &[]);
    listen(&mut r, "LISTEN jobs", Ok(()));
    r.client(&query("BEGIN"));
    r.expect_checkout();
    let mut answer = complete("BEGIN");
    answer.extend(ready(b'T'));
    r.server(&answer);
    r.client(&query("LISTEN late"));
    let mut answer = complete("LISTEN");
    answer.extend(ready(b'T'));
    r.server(&answer);
    r.client(&query("COMMIT"));
    let mut answer = complete("COMMIT");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_server();
    r.sent_to_client();
    assert!(r.core.pins().contains(&Pin::Listen));
    // The pinned server runs it, and the listener's channels go once it has.
    r.client(&query("UNLISTEN *"));
    assert_eq!(r.sent_to_server(), query("UNLISTEN *"));
    let mut answer = complete("UNLISTEN");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert!(matches!(
        r.action(),
        Some(Action::Listen(Request::UnlistenAll))
    ));
    assert!(!r.core.pins().contains(&Pin::Listen));
}
