//! Tests of the statement-effect scanner and its prefilter.

use super::Effect::{DiscardAll, Pin, ResetAll, Unpin};
use super::PinReason::*;
use super::*;

fn set(name: &str, set_sql: &str, reset_sql: &str) -> Effect {
    Effect::Set {
        name: name.into(),
        set_sql: set_sql.into(),
        reset_sql: reset_sql.into(),
    }
}

fn reset(name: &str) -> Effect {
    Effect::Reset { name: name.into() }
}

const PGBENCH: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 123;";

fn cases() -> Vec<(&'static str, Vec<Effect>)> {
    let sp = "RESET search_path";
    vec![
        // Fast path and traps.
        (PGBENCH, vec![]),
        (
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1;",
            vec![],
        ),
        (
            "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2",
            vec![],
        ),
        ("", vec![]),
        (
            " ; ;; -- only a comment\n /* and /* nested */ another */",
            vec![],
        ),
        // SET
        (
            "SET search_path TO myschema",
            vec![set("search_path", "SET search_path TO myschema", sp)],
        ),
        (
            "SeT   search_path  TO  \"$user\", public",
            vec![set(
                "search_path",
                "SeT   search_path  TO  \"$user\", public",
                sp,
            )],
        ),
        (
            "set SESSION statement_timeout = 5000;",
            vec![set(
                "statement_timeout",
                "set SESSION statement_timeout = 5000",
                "RESET statement_timeout",
            )],
        ),
        (
            "SET DateStyle TO ISO, MDY",
            vec![set(
                "datestyle",
                "SET DateStyle TO ISO, MDY",
                "RESET datestyle",
            )],
        ),
        ("SET LOCAL statement_timeout = 0", vec![]),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", vec![]),
        ("SET SESSION TRANSACTION READ ONLY", vec![]),
        (
            "SET statement_timeout TO DEFAULT",
            vec![reset("statement_timeout")],
        ),
        ("set work_mem=default", vec![reset("work_mem")]),
        (
            "SET work_mem = 'default'",
            vec![set(
                "work_mem",
                "SET work_mem = 'default'",
                "RESET work_mem",
            )],
        ),
        (
            "SET TIME ZONE 'UTC'",
            vec![set("timezone", "SET TIME ZONE 'UTC'", "RESET timezone")],
        ),
        ("SET TIME ZONE LOCAL", vec![reset("timezone")]),
        (
            "SET timezone = 'UTC'",
            vec![set("timezone", "SET timezone = 'UTC'", "RESET timezone")],
        ),
        (
            "SET SCHEMA 'app'",
            vec![set("search_path", "SET SCHEMA 'app'", sp)],
        ),
        (
            "SET NAMES 'UTF8'",
            vec![set(
                "client_encoding",
                "SET NAMES 'UTF8'",
                "RESET client_encoding",
            )],
        ),
        ("SET NAMES DEFAULT", vec![reset("client_encoding")]),
        (
            "SET ROLE admin",
            vec![set("role", "SET ROLE admin", "RESET ROLE")],
        ),
        (
            "SET SESSION ROLE admin",
            vec![set("role", "SET SESSION ROLE admin", "RESET ROLE")],
        ),
        ("SET ROLE NONE", vec![reset("role")]),
        (
            "SET SESSION AUTHORIZATION 'bob'",
            vec![set(
                "session_authorization",
                "SET SESSION AUTHORIZATION 'bob'",
                "RESET SESSION AUTHORIZATION",
            )],
        ),
        (
            "SET SESSION AUTHORIZATION DEFAULT",
            vec![reset("session_authorization")],
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            vec![set(
                "session_characteristics",
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                SESSION_CHARACTERISTICS_RESET,
            )],
        ),
        (
            "SET \"search_path\" = public",
            vec![set(
                "search_path",
                "SET \"search_path\" = public",
                "RESET \"search_path\"",
            )],
        ),
        (
            "SET \"My\"\"App\".Tenant = '5'",
            vec![set(
                "My\"App.tenant",
                "SET \"My\"\"App\".Tenant = '5'",
                "RESET \"My\"\"App\".tenant",
            )],
        ),
        (
            "SET myapp.tenant = '5'",
            vec![set(
                "myapp.tenant",
                "SET myapp.tenant = '5'",
                "RESET myapp.tenant",
            )],
        ),
        (
            "SET local.x = 1",
            vec![set("local.x", "SET local.x = 1", "RESET local.x")],
        ),
        ("SET pgsluice.pool_mode = 'session'", vec![]),
        (
            "SET PgSluice.x TO 1; RESET pgsluice.x; SET \"pgsluice.y\" = 2",
            vec![],
        ),
        ("SET x FROM CURRENT", vec![]),
        (
            "/* hi */ -- x\n  SET x.y = 1 -- trailing\n;",
            vec![set("x.y", "SET x.y = 1", "RESET x.y")],
        ),
        // RESET
        ("RESET search_path", vec![reset("search_path")]),
        ("reset ALL;", vec![ResetAll]),
        ("RESET TIME ZONE", vec![reset("timezone")]),
        (
            "RESET ROLE; RESET SESSION AUTHORIZATION",
            vec![reset("role"), reset("session_authorization")],
        ),
        ("RESET TRANSACTION ISOLATION LEVEL", vec![]),
        // DISCARD
        ("DISCARD ALL", vec![DiscardAll]),
        (
            "DISCARD TEMP; discard temporary",
            vec![Unpin(TempObject), Unpin(TempObject)],
        ),
        ("DISCARD PLANS; DISCARD SEQUENCES", vec![]),
        // LISTEN
        ("LISTEN jobs", vec![Pin(Listen)]),
        ("UNLISTEN *", vec![Unpin(Listen)]),
        ("UNLISTEN jobs", vec![]),
        // Advisory locks and set_config, anywhere in the text.
        ("SELECT pg_advisory_lock(42)", vec![Pin(AdvisoryLock)]),
        (
            "select PG_TRY_ADVISORY_LOCK_SHARED (1, 2)",
            vec![Pin(AdvisoryLock)],
        ),
        (
            "SELECT x FROM t WHERE pg_catalog.pg_try_advisory_lock(id) AND pg_advisory_lock_shared(2)",
            vec![Pin(AdvisoryLock), Pin(AdvisoryLock)],
        ),
        (
            "SELECT pg_advisory_xact_lock(1), pg_try_advisory_xact_lock(2)",
            vec![],
        ),
        ("SELECT pg_advisory_unlock(1)", vec![]),
        ("SELECT pg_advisory_unlock_all()", vec![Unpin(AdvisoryLock)]),
        (
            "SELECT pg_advisory_lock /* c */ (1)",
            vec![Pin(AdvisoryLock)],
        ),
        ("SELECT pg_advisory_lock FROM t", vec![]),
        (
            "SELECT set_config('search_path', 'x', false)",
            vec![Pin(SetConfig)],
        ),
        (
            "SELECT \"set_config\"('a', 'b', false)",
            vec![Pin(SetConfig)],
        ),
        ("SELECT 'set_config(1)', \"set_config(\"", vec![]),
        (
            "UPDATE t SET a = set_config('x.y', '1', true)",
            vec![Pin(SetConfig)],
        ),
        // A library stays loaded in its backend.
        ("LOAD 'plpgsql'", vec![Pin(Load)]),
        ("select 1; load 'auto_explain'", vec![Pin(Load)]),
        ("SELECT 'load x'", vec![]),
        // Temp objects
        ("CREATE TEMP TABLE t (a int)", vec![Pin(TempObject)]),
        (
            "create global temporary table t(a int)",
            vec![Pin(TempObject)],
        ),
        ("CREATE LOCAL TEMP SEQUENCE s", vec![Pin(TempObject)]),
        (
            "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
            vec![Pin(TempObject)],
        ),
        (
            "CREATE TEMPORARY RECURSIVE VIEW v (n) AS SELECT 1",
            vec![Pin(TempObject)],
        ),
        ("CREATE TABLE pg_temp.t (a int)", vec![Pin(TempObject)]),
        (
            "CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql",
            vec![Pin(TempObject)],
        ),
        ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", vec![]),
        ("CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1", vec![]),
        (
            "CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS",
            vec![Pin(TempObject)],
        ),
        ("CREATE TABLE t AS SELECT * FROM pg_temp.x", vec![]),
        ("CREATE TABLE t (a int); CREATE INDEX ON t (a)", vec![]),
        ("SELECT * INTO TEMP t FROM x", vec![Pin(TempObject)]),
        ("INSERT INTO temp VALUES (1)", vec![]),
        // Cursors and prepared statements
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            vec![Pin(HoldCursor)],
        ),
        (
            "DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1",
            vec![],
        ),
        (
            "DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold",
            vec![],
        ),
        ("CLOSE ALL", vec![Unpin(HoldCursor)]),
        ("CLOSE c", vec![]),
        ("PREPARE q(int) AS SELECT $1", vec![Pin(SqlPrepare)]),
        ("PREPARE TRANSACTION 'gid1'", vec![]),
        (
            "DEALLOCATE ALL; DEALLOCATE PREPARE ALL",
            vec![Unpin(SqlPrepare), Unpin(SqlPrepare)],
        ),
        ("DEALLOCATE q", vec![]),
        // Quotes and comments hide everything.
        ("SELECT 'SET x = 1; LISTEN y'", vec![]),
        ("SELECT E'it\\'s; LISTEN x'", vec![]),
        ("SELECT 'it''s; LISTEN x'", vec![]),
        ("SELECT 'a\\'; LISTEN x", vec![Pin(Listen)]),
        ("SELECT $$pg_advisory_lock(1)$$", vec![]),
        ("SELECT $fn$ ; LISTEN x; $f$ $fn$", vec![]),
        ("SELECT \"LISTEN x;\"", vec![]),
        ("-- LISTEN x\nSELECT 1", vec![]),
        (
            "/* outer /* LISTEN x; */ still comment; */ SELECT 1",
            vec![],
        ),
        ("SELECT $1; LISTEN x", vec![Pin(Listen)]),
        ("SELECT a$b FROM t; LISTEN x", vec![Pin(Listen)]),
        ("SELECT 1; -- SET x = 1", vec![]),
        // Several statements
        (
            "SET a=1; SELECT 1; SET LOCAL b=2; RESET c",
            vec![set("a", "SET a=1", "RESET a"), reset("c")],
        ),
        (
            "SET x = 'a;b'; LISTEN y",
            vec![set("x", "SET x = 'a;b'", "RESET x"), Pin(Listen)],
        ),
        (
            "SELECT 'héllo'; SET ÜNï.x = 1",
            vec![set("Ünï.x", "SET ÜNï.x = 1", "RESET Ünï.x")],
        ),
        // Unterminated: best effort, no panic.
        ("SELECT 'abc; LISTEN x", vec![]),
        (
            "LISTEN x; SELECT $$ unterminated; LISTEN y",
            vec![Pin(Listen)],
        ),
        ("LISTEN x; /* unterminated; LISTEN y", vec![Pin(Listen)]),
        ("SET \"unterminated = 1", vec![]),
    ]
}

#[test]
fn table() {
    let mut failed = 0;
    for (sql, want) in cases() {
        let got = inspect(sql);
        if got != want {
            failed += 1;
            eprintln!("{sql:?}\n  got:  {got:?}\n  want: {want:?}");
        }
    }
    assert_eq!(failed, 0);
}

#[test]
fn fast_path_does_not_allocate() {
    for sql in [
        PGBENCH,
        "UPDATE t SET x = x + 1 WHERE id = $1",
        "BEGIN",
        "COMMIT",
    ] {
        assert_eq!(inspect(sql).capacity(), 0, "{sql}");
    }
}

#[test]
fn no_panic_on_garbage_and_prefilter_is_conservative() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let inputs: Vec<&str> = cases().into_iter().map(|(sql, _)| sql).collect();
    // The prefilter must never hide what the full scan finds.
    let check = |sql: &str| assert_eq!(inspect(sql), scan(sql), "{sql:?}");
    for sql in &inputs {
        for i in (0..=sql.len()).filter(|&i| sql.is_char_boundary(i)) {
            check(&sql[..i]);
            check(&sql[i..]);
        }
    }
    let alphabet = b"'\"$-/*;\\eE()._=xSETLIST \n\x80\xc3\xa9";
    for _ in 0..100_000 {
        let mut bytes = inputs[rand() as usize % inputs.len()].as_bytes().to_vec();
        for _ in 0..rand() % 6 {
            let b = match rand() % 3 {
                0 => rand() as u8,
                _ => alphabet[rand() as usize % alphabet.len()],
            };
            let at = rand() as usize % (bytes.len() + 1);
            bytes.insert(at, b);
        }
        check(&String::from_utf8_lossy(&bytes));
    }
}

/// `cargo test --release -- --ignored --nocapture timing`
#[test]
#[ignore]
fn timing() {
    let queries = [
        PGBENCH,
        "UPDATE pgbench_accounts SET abalance = abalance + -4277 WHERE aid = 80935;",
    ];
    for sql in queries {
        let n = 5_000_000u32;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(inspect(std::hint::black_box(sql)));
        }
        eprintln!(
            "{:.1} ns/query: {sql}",
            t.elapsed().as_nanos() as f64 / f64::from(n)
        );
    }
}
