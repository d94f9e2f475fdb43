//! Tests of the session-state policy: what each sequence of statements and server answers
//! leaves as the client's settings and as the server's record.

use super::*;

fn state_with_startup(pairs: &[(&str, &str)]) -> SessionState {
    let mut g = Gucs::default();
    for (n, v) in pairs {
        g.set_value(n, v);
    }
    SessionState::new(Arc::new(g))
}

#[test]
fn set_outside_transaction_applies() {
    let mut s = SessionState::default();
    s.on_statement("SET search_path TO a");
    assert!(s.on_ready(b'I').changed);
    assert!(s.gucs.get("search_path").is_some());
}

#[test]
fn set_in_rolled_back_transaction_is_dropped() {
    let mut s = SessionState::default();
    s.on_statement("BEGIN");
    s.on_ready(b'T');
    s.on_statement("SET search_path TO a");
    s.on_ready(b'T');
    s.on_statement("ROLLBACK");
    s.rolled_back = true;
    assert!(!s.on_ready(b'I').changed);
    assert!(s.gucs.get("search_path").is_none());
}

#[test]
fn failed_set_is_dropped() {
    let mut s = SessionState::default();
    s.on_statement("SET statement_timeout TO 'banana'");
    s.error_seen = true;
    assert!(!s.on_ready(b'I').changed);
    assert!(s.gucs.is_empty());
}

#[test]
fn reset_returns_to_startup_value_and_the_server_lacks_it() {
    let mut s = state_with_startup(&[("application_name", "app")]);
    s.on_statement("SET application_name = 'other'");
    s.on_ready(b'I');
    s.on_statement("RESET application_name");
    let applied = s.on_ready(b'I');
    assert_eq!(s.gucs, s.startup);
    assert_eq!(applied.server_lacks, vec!["application_name".to_string()]);
    let record = s.server_record(&applied);
    assert!(record.get("application_name").is_none());
    // The next unit replays the startup value on that server.
    let replay = Gucs::diff_sql(&record, &s.gucs);
    assert_eq!(
        replay.as_deref(),
        Some("SELECT pg_catalog.set_config('application_name', 'app', false)")
    );
}

#[test]
fn reset_all_and_discard_all_return_to_startup() {
    for stmt in ["RESET ALL", "DISCARD ALL"] {
        let mut s = state_with_startup(&[("timezone", "America/Los_Angeles")]);
        s.on_statement("SET timezone = 'UTC'");
        s.on_statement("SET work_mem = '1MB'");
        s.on_ready(b'I');
        s.on_statement(stmt);
        let applied = s.on_ready(b'I');
        assert_eq!(s.gucs, s.startup, "{stmt}");
        assert_eq!(applied.server_lacks, vec!["timezone".to_string()], "{stmt}");
    }
}

#[test]
fn partial_datestyle_is_recorded_by_its_reported_value() {
    let mut s = SessionState::default();
    s.on_statement("SET datestyle TO iso");
    s.on_reported("DateStyle", "ISO, MDY");
    s.on_ready(b'I');
    s.on_statement("SET datestyle TO ymd");
    s.on_reported("DateStyle", "ISO, YMD");
    s.on_ready(b'I');
    assert_eq!(
        s.gucs.get("datestyle").map(|g| g.set_sql.as_str()),
        Some("SELECT pg_catalog.set_config('datestyle', 'ISO, YMD', false)")
    );
}

#[test]
fn session_authorization_clears_the_role() {
    let mut s = SessionState::default();
    s.on_statement("SET SESSION AUTHORIZATION a");
    s.on_ready(b'I');
    s.on_statement("SET ROLE b");
    s.on_ready(b'I');
    assert!(s.gucs.get("role").is_some());
    s.on_statement("RESET SESSION AUTHORIZATION");
    s.on_ready(b'I');
    assert!(s.gucs.get("role").is_none());
    assert!(s.gucs.get("session_authorization").is_none());
    s.on_statement("SET SESSION AUTHORIZATION a");
    s.on_statement("SET ROLE b");
    s.on_ready(b'I');
    s.on_statement("SET SESSION AUTHORIZATION c");
    s.on_ready(b'I');
    assert!(s.gucs.get("role").is_none());
}

#[test]
fn identity_is_replayed_last_in_order() {
    let mut s = SessionState::default();
    s.on_statement("SET lo_compat_privileges = on");
    s.on_statement("SET SESSION AUTHORIZATION a");
    s.on_statement("SET ROLE b");
    s.on_ready(b'I');
    let replay = Gucs::diff_sql(&Gucs::default(), &s.gucs);
    assert_eq!(
        replay.as_deref(),
        Some("SET lo_compat_privileges = on; SET SESSION AUTHORIZATION a; SET ROLE b")
    );
    // From a server under that identity to a plain client: back to the login user first.
    let back = Gucs::diff_sql(&s.gucs, &Gucs::default());
    assert_eq!(
        back.as_deref(),
        Some("RESET ROLE; RESET SESSION AUTHORIZATION; RESET lo_compat_privileges")
    );
}

#[test]
fn custom_setting_reset_keeps_its_placeholder() {
    let mut s = SessionState::default();
    s.on_statement("SET custom.my_guc = 'foo'");
    s.on_ready(b'I');
    s.on_statement("RESET custom.my_guc");
    s.on_ready(b'I');
    assert_eq!(
        s.gucs.get("custom.my_guc").map(|g| g.set_sql.as_str()),
        Some("RESET custom.my_guc")
    );
}

#[test]
fn dropped_settings_leave_the_client_able_to_go_on() {
    let mut s = SessionState::default();
    s.on_statement("SET ROLE gone");
    s.on_ready(b'I');
    s.drop_settings(&["role".to_string()]);
    assert!(s.gucs.is_empty());
}

#[test]
fn listen_pins_until_unlisten_all() {
    let mut s = SessionState::default();
    s.on_statement("LISTEN ch");
    assert!(s.is_pinned());
    s.on_ready(b'I');
    s.on_statement("UNLISTEN *");
    s.on_ready(b'I');
    assert!(!s.is_pinned());
}
