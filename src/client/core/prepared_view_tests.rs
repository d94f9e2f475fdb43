//! The `pg_prepared_statements` policy over recorded message sequences.

use super::tests::{complete, msg, parse, query, ready, rig, row, sync, tags};
use super::*;

/// The client's statement was prepared on one server; the view is read on a fresh one:
/// the statement is prepared there first, hidden, and the Query reads the client's names.
#[test]
fn the_view_prepares_the_clients_statements_and_names_them() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut unit = parse("s1", "SELECT 1");
    unit.extend(sync());
    r.client(&unit);
    r.expect_checkout();
    assert_eq!(tags(&r.sent_to_server()), "PS");
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "1Z");
    r.expect_release();

    r.client(&query("SELECT name FROM pg_prepared_statements"));
    r.expect_checkout();
    let sent = r.sent_to_server();
    assert_eq!(tags(&sent), "PSQ", "hidden Parse and Sync, then the Query");
    let text = String::from_utf8_lossy(&sent);
    assert!(text.contains("P\0\0\0\x18sluice_1\0SELECT 1\0"), "{text:?}");
    assert!(
        text.contains("(E'sluice_1', E's1', NULL, false)")
            && text.contains("AS pg_prepared_statements\0"),
        "{text:?}"
    );
    // The hidden answers go nowhere; the Query's reach the client.
    let mut hidden = msg(b'1', b"");
    hidden.extend(ready(b'I'));
    r.server(&hidden);
    assert!(r.sent_to_client().is_empty());
    let mut answer = msg(b'T', b"\0\0");
    answer.extend(row("s1"));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_client(), answer);
    let (state, _) = r.expect_release();
    assert_eq!(state.statements.len(), 1);
}

/// Statements that do not name the view go out as the client sent them.
#[test]
fn other_statements_are_untouched() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query(
        "SELECT relname FROM pg_class WHERE relname LIKE 'pg_prepared%'",
    ));
    r.expect_checkout();
    assert_eq!(
        r.sent_to_server(),
        query("SELECT relname FROM pg_class WHERE relname LIKE 'pg_prepared%'")
    );
}
