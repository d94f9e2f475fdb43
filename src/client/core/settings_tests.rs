//! Session state over recorded message sequences (see `tests.rs` for the rig):
//! pgsluice's own settings, the client's settings replayed on the next server, and
//! another client's sequence values discarded before a write.

use super::tests::*;
use super::*;
use crate::server::varcache::Gucs;

#[test]
fn our_settings_are_answered_here_even_with_multibyte_text() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SET pgsluice.route €x"));
    r.expect_checkout();
    // Not ours (it does not parse): it goes to the server as any statement would.
    assert_eq!(r.sent_to_server(), query("SET pgsluice.route €x"));
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SET pgsluice.route = primary"));
    assert!(r.action().is_none(), "no server needed");
    assert_eq!(tags(&r.sent_to_client()), "CZ");
}

#[test]
fn a_client_setting_is_replayed_on_the_next_server_first() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SET work_mem = '8MB'"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("SET");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    let (state, _) = r.expect_release();
    assert!(
        state.gucs.get("work_mem").is_some(),
        "the server's record has the setting"
    );
    // The next transaction gets another server: the setting goes first, hidden.
    r.client(&query("SELECT 2"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("SET work_mem = '8MB'"));
    let mut answer = complete("SET");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(
        r.sent_to_client(),
        Vec::<u8>::new(),
        "the replay's answer is hidden"
    );
    assert_eq!(r.sent_to_server(), query("SELECT 2"));
}

#[test]
fn a_failed_replay_is_an_error_for_the_statement_and_clears_the_setting() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SET ROLE gone"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("SET");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    r.expect_release();
    r.client(&query("SELECT current_user"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("SET ROLE gone"));
    let mut answer = error("22023", "role \"gone\" does not exist");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let out = r.sent_to_client();
    assert_eq!(tags(&out), "EZ");
    assert!(String::from_utf8_lossy(&out).contains("role \"gone\" does not exist"));
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(state.gucs.get("role").is_none());
    assert!(
        r.core.settings().get("role").is_none(),
        "the client can go on"
    );
    // The next statement runs without the role.
    r.client(&query("SELECT current_user"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("SELECT current_user"));
}

#[test]
fn reset_of_a_startup_value_is_replayed_before_the_next_unit() {
    let mut r = rig(PoolMode::Session, &[("datestyle", "Postgres, MDY")]);
    r.client(&query("SHOW datestyle"));
    r.expect_checkout();
    // A fresh server gets the startup value first.
    assert_eq!(
        r.sent_to_server(),
        query("SELECT pg_catalog.set_config('datestyle', 'Postgres, MDY', false)")
    );
    let mut answer = msg(b'S', b"DateStyle\0Postgres, MDY\0");
    answer.extend(row("Postgres, MDY"));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_server(), query("SHOW datestyle"));
    let mut answer = row("Postgres, MDY");
    answer.extend(complete("SHOW"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    r.client(&query("RESET datestyle"));
    assert_eq!(r.sent_to_server(), query("RESET datestyle"));
    let mut answer = msg(b'S', b"DateStyle\0ISO, MDY\0");
    answer.extend(complete("RESET"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    // The server is at its own default now; the client is back at its startup value.
    r.client(&query("SHOW datestyle"));
    assert_eq!(
        r.sent_to_server(),
        query("SELECT pg_catalog.set_config('datestyle', 'Postgres, MDY', false)")
    );
}

#[test]
fn resetting_a_setting_the_server_dropped_is_not_the_next_clients_error() {
    // Another client set a placeholder; its extension loaded since, and the server
    // dropped the name. Resetting it fails as unknown: the server is as wanted anyway.
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SELECT 1"));
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("expected NeedServer, got {other:?}"),
    }
    let mut state = ServerState::new(1);
    let mut gucs = Gucs::default();
    gucs.set_value("plpgsql.extra_foo_warnings", "true");
    state.gucs = Arc::new(gucs);
    r.attach(state);
    let replay = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(replay.contains("plpgsql.extra_foo_warnings"), "{replay}");
    let mut answer = error("42602", "invalid configuration parameter name");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    let mut answer = row("1");
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "DCZ");
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(state.gucs.is_empty());
}

#[test]
fn a_write_after_another_clients_is_preceded_by_a_pipelined_sequence_discard() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let allow = Arc::new(crate::router::Allowlist::new(&[]));
    r.core
        .set_opaque_check(crate::router::Classifier::new(allow));
    let on_server = |r: &mut Rig, sql: &str, owner: u32| {
        r.client(&query(sql));
        match r.action() {
            Some(Action::NeedServer { node: 0 }) => {}
            other => panic!("expected NeedServer, got {other:?}"),
        }
        let mut state = ServerState::new(1);
        state.seq_owner = owner;
        r.attach(state);
        r.sent_to_server()
    };
    let finish = |r: &mut Rig, hidden: bool| {
        let mut answer = Vec::new();
        if hidden {
            answer.extend(complete("DISCARD SEQUENCES"));
            answer.extend(ready(b'I'));
        }
        answer.extend(complete("INSERT 0 1"));
        answer.extend(ready(b'I'));
        r.server(&answer);
        assert_eq!(
            tags(&r.sent_to_client()),
            "CZ",
            "the discard's answer is hidden"
        );
        r.expect_release().0
    };
    // A plain read on a server holding another client's values: nothing added.
    assert_eq!(on_server(&mut r, "SELECT 1", 99), query("SELECT 1"));
    assert_eq!(r.core.take_quiet_lead(), 0);
    assert_eq!(finish(&mut r, false).seq_owner, 99);
    // A write there: the discard goes first, in the same write.
    let mut want = query("DISCARD SEQUENCES");
    want.extend(query("INSERT INTO t VALUES (1)"));
    assert_eq!(on_server(&mut r, "INSERT INTO t VALUES (1)", 99), want);
    // The driver is told how long the discard's answer is (its wake-up is spared), once.
    let mut discard_answer = complete("DISCARD SEQUENCES");
    discard_answer.extend(ready(b'I'));
    assert_eq!(r.core.take_quiet_lead(), discard_answer.len());
    assert_eq!(r.core.take_quiet_lead(), 0);
    assert_eq!(finish(&mut r, true).seq_owner, 7);
    // On a server holding only this client's values: nothing added.
    let sql = "INSERT INTO t VALUES (2)";
    assert_eq!(on_server(&mut r, sql, 7), query(sql));
    assert_eq!(finish(&mut r, false).seq_owner, 7);
}
