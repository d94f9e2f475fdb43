//! The statement mapping over recorded message sequences (see `tests.rs` for the rig):
//! named statements answered here or prepared where they land, SQL-level statements and
//! their errors in the client's terms, and the unnamed statement following the client
//! from server to server.

use super::tests::*;
use super::*;
use crate::prepare::Registry;

#[test]
fn a_named_parse_the_server_has_is_answered_here() {
    let registry = Arc::new(Registry::default());
    let mut r = rig_with(PoolMode::Transaction, &[], registry.clone());
    let mut unit = parse("s1", "SELECT 1");
    unit.extend(bind("s1"));
    unit.extend(execute());
    unit.extend(sync());
    r.client(&unit);
    r.expect_checkout();
    let sent = r.sent_to_server();
    assert!(
        String::from_utf8_lossy(&sent).contains("sluice_1"),
        "renamed"
    );
    let mut answer = msg(b'1', b"");
    answer.extend(msg(b'2', b""));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "12CZ");
    let (state, _) = r.expect_release();
    // A second client prepares the same statement on that server: no Parse goes out.
    let mut r2 = rig_with(PoolMode::Transaction, &[], registry);
    r2.client(&unit);
    assert!(matches!(r2.action(), Some(Action::NeedServer { .. })));
    r2.attach(state);
    assert_eq!(tags(&r2.sent_to_server()), "BES");
    let mut answer = msg(b'2', b"");
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r2.server(&answer);
    assert_eq!(
        tags(&r2.sent_to_client()),
        "12CZ",
        "ParseComplete made here, in order"
    );
}

#[test]
fn errors_about_a_mapped_sql_statement_name_the_clients_statement() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("PREPARE p(int) AS SELECT $1 + 1"));
    r.expect_checkout();
    assert_eq!(
        r.sent_to_server(),
        query("PREPARE sluice_1(int) AS SELECT $1 + 1")
    );
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    let (state, _) = r.expect_release();
    r.client(&query("EXECUTE p(1, 2)"));
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(state);
    assert_eq!(r.sent_to_server(), query("EXECUTE sluice_1(1, 2)"));
    let mut answer = msg(
        b'E',
        b"SERROR\0C42601\0Mwrong number of parameters for prepared statement \"sluice_1\"\0P16\0\0",
    );
    answer.extend(ready(b'I'));
    r.server(&answer);
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(out.contains("prepared statement \"p\""), "{out}");
    assert!(out.contains("P9\0"), "position in the client's text: {out}");
}

fn describe_statement(name: &str) -> Vec<u8> {
    msg(b'D', format!("S{name}\0").as_bytes())
}

#[test]
fn the_unnamed_statement_follows_the_client_to_another_server() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut unit = parse("", "SELECT 1 AS a");
    unit.extend(sync());
    r.client(&unit);
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), unit);
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_client(), answer);
    r.expect_release();
    // The next unit describes it, on a server that never saw the Parse.
    let mut unit = describe_statement("");
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(ServerState::new(2));
    let mut want = parse("", "SELECT 1 AS a");
    want.extend(unit.clone());
    assert_eq!(r.sent_to_server(), want, "the Parse goes again first");
    let mut answer = msg(b'1', b"");
    answer.extend(msg(b't', b"\0\0"));
    answer.extend(msg(b'T', b"\0\0"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(
        tags(&r.sent_to_client()),
        "tTZ",
        "its ParseComplete is hidden"
    );
}

#[test]
fn a_parse_of_execute_runs_the_mapped_statement() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("PREPARE test AS SELECT 1 AS first"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    let (state, _) = r.expect_release();
    let mut unit = parse("", "EXECUTE test");
    unit.extend(describe_statement(""));
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(state);
    let mut want = parse("", "EXECUTE sluice_1");
    want.extend(describe_statement(""));
    want.extend(sync());
    assert_eq!(r.sent_to_server(), want);
}

/// psql's `PREPARE test ...; EXECUTE test \gdesc` in transaction mode, as recorded:
/// the PREPARE and the Parse + Sync run on server 1, the Describe + Sync gets server 2,
/// which has neither the unnamed statement nor `sluice_1` (issue 17, C8/C12: the
/// re-sent Parse of `EXECUTE sluice_1` alone was described as NoData there).
#[test]
fn gdesc_of_execute_prepares_the_statement_where_the_describe_lands() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("PREPARE test AS SELECT 1 AS first, 2 AS second"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    let (state, _) = r.expect_release();
    let mut unit = parse("", "EXECUTE test");
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(state);
    let mut want = parse("", "EXECUTE sluice_1");
    want.extend(sync());
    assert_eq!(r.sent_to_server(), want);
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "1Z");
    r.expect_release();
    // The Describe lands on a server that never saw the statement.
    let mut unit = describe_statement("");
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(ServerState::new(2));
    let mut want = query("PREPARE sluice_1  AS SELECT 1 AS first, 2 AS second");
    want.extend(parse("", "EXECUTE sluice_1"));
    want.extend(unit.clone());
    assert_eq!(
        String::from_utf8_lossy(&r.sent_to_server()),
        String::from_utf8_lossy(&want),
        "the statement is prepared there, then the unnamed Parse goes again"
    );
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    answer.extend(msg(b'1', b""));
    answer.extend(msg(b't', b"\0\0"));
    answer.extend(msg(b'T', b"\0\0"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(
        tags(&r.sent_to_client()),
        "tTZ",
        "pgsluice's PREPARE and ParseComplete are hidden"
    );
    r.expect_release();
}

/// pgsluice's own Query on the server (here: the settings read after a statement calling
/// a function outside the allowlist) drops the unnamed statement there: a Describe on
/// the same server re-sends the Parse first.
#[test]
fn the_unnamed_statement_is_parsed_again_after_pgsluices_own_query() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let allow = Arc::new(crate::router::Allowlist::new(&[]));
    r.core
        .set_opaque_check(crate::router::Classifier::new(allow));
    let mut unit = parse("", "SELECT f(1) AS a");
    unit.extend(sync());
    r.client(&unit);
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), unit);
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_client(), answer);
    let chore = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(chore.contains("pg_settings"), "{chore}");
    let mut answer = msg(b'T', b"\0\0");
    answer.extend(complete("SELECT 0"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (state, _) = r.expect_release();
    let mut unit = describe_statement("");
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(state);
    let mut want = parse("", "SELECT f(1) AS a");
    want.extend(unit.clone());
    assert_eq!(r.sent_to_server(), want, "the Parse goes again first");
}
