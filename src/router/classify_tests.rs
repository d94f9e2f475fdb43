//! Unit tests of the read-only classification, its hints and its cache.

use super::*;

fn ro(sql: &str) -> bool {
    classify_uncached(sql, &Allowlist::new(&["my_reader".into()])).replica_ok(false)
}

#[test]
fn reads() {
    for sql in [
        "SELECT 1",
        "select * from t where a = $1",
        "SELECT count(*), max(x), coalesce(y, 0) FROM t GROUP BY z",
        "VALUES (1), (2)",
        "TABLE t",
        "/* c */ -- d\n TABLE t",
        "SHOW search_path",
        "SELECT now(), lower('A'), jsonb_extract_path(j, 'a') FROM t",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT pg_catalog.now()",
        "BEGIN READ ONLY",
        "START TRANSACTION READ ONLY",
        "SELECT 1; SELECT 2",
        "SELECT my_reader(1)",
        "SELECT * FROM a JOIN b ON a.id = b.id WHERE a.x IN (SELECT y FROM c)",
        "EXPLAIN SELECT 1",
        "COMMIT",
        "SET search_path = a",
    ] {
        assert!(ro(sql), "{sql}");
    }
}

#[test]
fn writes() {
    for sql in [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "SELECT nextval('s')",
        "SELECT setval('s', 1)",
        "SELECT pg_advisory_lock(1)",
        "SELECT set_config('a.b', '1', false)",
        "SELECT txid_current()",
        "SELECT pg_notify('c', 'x')",
        "SELECT lo_create(0)",
        "SELECT my_func(1)",
        "SELECT public.now()",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR SHARE",
        "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        "SELECT * INTO t2 FROM t",
        "SELECT 1; UPDATE t SET a = 1",
        "CREATE TABLE x (a int)",
        "BEGIN",
        "START TRANSACTION",
        "BEGIN READ WRITE",
        "EXPLAIN ANALYZE DELETE FROM t",
        "this is not sql",
        "LISTEN ch",
        "SELECT * FROM my_srf()",
        "SELECT (SELECT nextval('s'))",
        "VACUUM t",
        "COPY t FROM STDIN",
        "DO $$ BEGIN END $$",
        "CALL p()",
    ] {
        assert!(!ro(sql), "{sql}");
    }
}

#[test]
fn functions_left_to_the_catalog() {
    let a = Allowlist::default();
    let f = |schema: Option<&str>, name: &str| FuncRef {
        schema: schema.map(str::to_string),
        name: name.to_string(),
    };
    let c = classify_uncached(
        "SELECT my_func(1), Sales.\"Top\"(2), my_func(3) FROM my_srf() WHERE now() > x",
        &a,
    );
    assert!(c.read_only);
    assert_eq!(
        c.functions.as_deref(),
        Some(
            &[
                f(None, "my_func"),
                f(Some("sales"), "Top"),
                f(None, "my_srf")
            ][..]
        )
    );
    let read_only = &mut |_: &[FuncRef]| Resolved::ReadOnly;
    let volatile = &mut |_: &[FuncRef]| Resolved::Volatile;
    assert_eq!(c.verdict(false, read_only), Verdict::Replica);
    assert_eq!(
        c.verdict(false, volatile),
        Verdict::Primary(NotRead::Function)
    );
    assert_eq!(
        c.verdict(false, &mut |_| Resolved::Unknown),
        Verdict::Primary(NotRead::Function)
    );
    // No catalog can make a write a read.
    let c = classify_uncached("SELECT my_func(); DELETE FROM t", &a);
    assert_eq!(
        c.verdict(false, read_only),
        Verdict::Primary(NotRead::Write)
    );
    let c = classify_uncached("SELECT nextval('s'), my_func()", &a);
    assert_eq!(
        c.verdict(false, read_only),
        Verdict::Primary(NotRead::Write)
    );
    // A built-in off the list is refused without asking.
    let c = classify_uncached("SELECT pg_catalog.pg_stat_get_live_tuples(1)", &a);
    assert_eq!(
        c.verdict(false, read_only),
        Verdict::Primary(NotRead::Function)
    );
    assert!(classify_uncached("SELECT 1", &a).functions.is_none());
}

#[test]
fn plain_begin_follows_session_default() {
    let c = classify_uncached("BEGIN", &Allowlist::default());
    assert!(!c.replica_ok(false));
    assert!(c.replica_ok(true));
}

#[test]
fn hints() {
    let a = Allowlist::default();
    let c = classify_uncached("/* pgsluice: primary */ SELECT 1", &a);
    assert!(!c.replica_ok(false));
    let c = classify_uncached("SELECT f() /* PgSluice: replica */", &a);
    assert!(c.replica_ok(false));
}

#[test]
fn cache_ignores_literals() {
    let c = Classifier::new(Arc::new(Allowlist::default()));
    assert!(c.classify("SELECT * FROM t WHERE a = 1").replica_ok(false));
    assert!(
        c.classify("SELECT * FROM t WHERE a = 'x'")
            .replica_ok(false)
    );
    assert!(!c.classify("SELECT nextval('a')").replica_ok(false));
    assert_eq!(
        inspect::normalize("SELECT * FROM t WHERE a = 1 -- note").as_deref(),
        Some("SELECT * FROM t WHERE a = ?")
    );
    assert_eq!(
        inspect::normalize("SELECT * FROM t WHERE a = 'x'"),
        inspect::normalize("SELECT * FROM t WHERE a = 'it''s'")
    );
    // Literals of different kinds may parse differently: separate entries.
    assert_ne!(
        inspect::normalize("SELECT 1::numeric(10, 2)"),
        inspect::normalize("SELECT 1::numeric('x', 2)")
    );
}
