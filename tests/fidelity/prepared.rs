//! Fidelity of SQL-level prepared statements through the statement mapping: `EXECUTE`,
//! `EXPLAIN EXECUTE`, `CREATE TABLE AS EXECUTE`, errors and positions, Describe, and
//! `pg_prepared_statements` in the client's terms.

use super::*;

// ------------------------------------------------------------------ SQL PREPARE mapping

/// `stmts` one by one on a direct connection, then through pgsluice (transaction mode,
/// two servers): every answer (rows or error) must be the same.
async fn same_answers(stmts: &[&str]) {
    let rig = Rig::start(2).await;
    let d = rig.direct().await;
    let mut want = Vec::new();
    for sql in stmts {
        want.push(rows(&d, sql).await);
    }
    drop(d);
    let p = rig.pooled().await;
    for (sql, want) in stmts.iter().zip(want) {
        let got = rows(&p, sql).await;
        assert_eq!(got, want, "{sql}");
    }
}

#[test]
fn explain_execute() {
    run_async(
        120,
        same_answers(&[
            "PREPARE fid_p(int) AS SELECT $1 + 1 AS x",
            "EXPLAIN (COSTS OFF) EXECUTE fid_p(1)",
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE fid_p(1)",
        ]),
    );
}

#[test]
fn create_table_as_execute() {
    run_async(
        120,
        same_answers(&[
            "PREPARE fid_p(int) AS SELECT $1 + 1 AS x",
            "CREATE TABLE fid_t AS EXECUTE fid_p(41)",
            "SELECT x FROM fid_t",
            "DROP TABLE fid_t",
        ]),
    );
}

#[test]
fn execute_error_names_the_clients_statement() {
    run_async(
        120,
        same_answers(&[
            "PREPARE fid_p(int) AS SELECT $1 + 1 AS x",
            "EXECUTE fid_p",
            "EXECUTE fid_p(1, 2)",
        ]),
    );
}

#[test]
fn execute_and_deallocate_answer_as_postgres_does() {
    run_async(
        120,
        same_answers(&[
            "PREPARE fid_p(int) AS SELECT $1 + 1 AS x",
            "EXECUTE fid_p(1)",
            "PREPARE fid_p AS SELECT 2",
            "DEALLOCATE fid_p",
            "EXECUTE fid_p(1)",
        ]),
    );
}

// ------------------------------------------------------------------ pg_prepared_statements

/// What the view shows of a client's statements, in a stable order.
const VIEW: &str = "SELECT name, statement, parameter_types, from_sql \
                    FROM pg_prepared_statements ORDER BY name";

#[test]
fn pg_prepared_statements_lists_the_clients_names() {
    run_async(
        120,
        same_answers(&[
            "PREPARE fid_p(int) AS SELECT $1 + 1 AS x",
            "SELECT name, statement FROM pg_prepared_statements",
            "PREPARE \"Fid \"\"it's\"\"\"(int, text) AS\n\tSELECT $1, $2 || E'\\\\';",
            VIEW,
            "SELECT p.name, generic_plans, custom_plans FROM pg_catalog.pg_prepared_statements p \
             WHERE p.name = 'fid_p'",
            "DEALLOCATE fid_p",
            VIEW,
            "SELECT count(*) FROM pg_prepared_statements",
            "DEALLOCATE ALL",
            "TABLE pg_prepared_statements",
        ]),
    );
}

/// The client's SQL and protocol-level statements are prepared on one server; the view
/// is read on the other, by a simple Query and by an extended-protocol one.
#[test]
fn pg_prepared_statements_lists_statements_prepared_on_another_server() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        let mut d = Raw::direct(&rig, &[]).await;
        let mut p = Raw::pooled(&rig, &[]).await;
        let prepare = "PREPARE fid_q(int, text) AS SELECT $1, $2";
        let (held, first) = rig.hold(0).await;
        for raw in [&mut d, &mut p] {
            let a = raw.query(prepare).await;
            assert!(a.error.is_none(), "{a:?}");
            let a = raw.parse_named("fid_s", "SELECT $1::int + 1 AS y").await;
            assert!(a.error.is_none(), "{a:?}");
        }
        let pid = p.query("SELECT pg_backend_pid()").await;
        assert_eq!(
            pid.rows,
            vec![first.to_string()],
            "set up on the free server"
        );
        rig.release(held).await;
        let (held, _) = rig.hold(first).await;
        let check = format!("{VIEW}; SELECT pg_backend_pid()");
        let want = d.query(&check).await;
        let mut got = p.query(&check).await;
        let other = got.rows.pop().expect("pid row");
        assert_ne!(
            other,
            first.to_string(),
            "the view must be read on the other server"
        );
        let mut want_rows = want.rows.clone();
        want_rows.pop();
        assert_eq!(got.rows, want_rows);
        assert_eq!(
            got.rows,
            vec![
                "fid_q|PREPARE fid_q(int, text) AS SELECT $1, $2|{integer,text}|t",
                "fid_s|SELECT $1::int + 1 AS y|{integer}|f",
            ]
        );
        rig.release(held).await;
        // Read by an extended-protocol query, on whichever server.
        let want = d.extended(VIEW).await;
        let got = p.extended(VIEW).await;
        assert_eq!(got, want);
        assert_eq!(got.rows.len(), 2, "{got:?}");
    });
}

/// Plain statements naming the view in ways that are not read as it stay as they are.
#[test]
fn pg_prepared_statements_in_other_forms_answers_as_postgres_does() {
    run_async(
        120,
        same_answers(&[
            "PREPARE fid_p AS SELECT 1",
            "SELECT 'pg_prepared_statements' AS pg_prepared_statements",
            "SELECT pg_prepared_statements.name FROM pg_prepared_statements",
            "SELECT count(*) FROM pg_class WHERE relname = 'pg_prepared_statements'",
            "SELECT name FROM pg_catalog.pg_prepared_statements s \
             JOIN pg_class c ON c.relname = 'pg_class' ORDER BY 1",
            "DELETE FROM pg_prepared_statements",
        ]),
    );
}

#[test]
fn prepare_error_position_is_the_clients() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        let sql = "PREPARE fid_p AS SELECT no_such_column FROM pg_class";
        let mut d = Raw::direct(&rig, &[]).await;
        let mut p = Raw::pooled(&rig, &[]).await;
        let want = d.query(sql).await;
        let got = p.query(sql).await;
        assert_eq!(want.error_field('P'), Some("25"));
        assert_eq!(got.error_field('P'), want.error_field('P'), "{got:?}");
    });
}

#[test]
fn describe_of_execute_has_the_statements_columns() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        let mut d = Raw::direct(&rig, &[]).await;
        let mut p = Raw::pooled(&rig, &[]).await;
        for raw in [&mut d, &mut p] {
            let a = raw
                .query("PREPARE fid_p(int) AS SELECT $1 + 1 AS x, 'y' AS y")
                .await;
            assert!(a.error.is_none(), "{a:?}");
        }
        let want = d.describe("EXECUTE fid_p(1)").await;
        let got = p.describe("EXECUTE fid_p(1)").await;
        assert_eq!(want.columns, vec![vec!["x".to_string(), "y".to_string()]]);
        assert_eq!(got, want);
    });
}

#[test]
fn unnamed_statement_is_described_after_a_sync_on_another_server() {
    run_async(120, async {
        // psql's \gdesc: Parse "" + Sync, then Describe "" + Sync.
        let rig = Rig::start(2).await;
        let mut p = Raw::pooled(&rig, &[]).await;
        // The Parse runs on the one server the helpers leave free (a query asking for
        // the pid would replace the unnamed statement).
        let (held, first) = rig.hold(0).await;
        let parsed = p.parse_only("SELECT 1 AS a, 2 AS b").await;
        assert!(parsed.error.is_none(), "{parsed:?}");
        rig.release(held).await;
        let (held, _) = rig.hold(first).await;
        let got = p.describe_only().await;
        rig.release(held).await;
        assert_eq!(
            got.columns,
            vec![vec!["a".to_string(), "b".to_string()]],
            "{got:?}"
        );
    });
}

/// psql's `PREPARE test ...; EXECUTE test \gdesc`: the PREPARE, then Parse "" of
/// `EXECUTE test` + Sync, then Describe "" + Sync, each unit on the server `servers` says
/// (0 and 1: the two servers of the pool, told apart by pid). Returns the Describe's
/// answer and the direct connection's.
async fn gdesc_of_execute(servers: [usize; 3]) -> (Answer, Answer) {
    let rig = Rig::start(2).await;
    let prepare = "PREPARE fid_test AS SELECT 1 AS first, 2 AS second";
    let mut d = Raw::direct(&rig, &[]).await;
    assert!(d.query(prepare).await.error.is_none());
    assert!(d.parse_only("EXECUTE fid_test").await.error.is_none());
    let want = d.describe_only().await;
    let mut p = Raw::pooled(&rig, &[]).await;
    // The pids of the two servers: hold(0) leaves one free, hold(that) the other.
    let (held, a) = rig.hold(0).await;
    rig.release(held).await;
    let (held, b) = rig.hold(a).await;
    rig.release(held).await;
    let pids = [a, b];
    let mut got = Answer::default();
    for (step, on) in servers.into_iter().enumerate() {
        // Hold the server the step must not run on.
        let (held, free) = rig.hold(pids[1 - on]).await;
        assert_eq!(free, pids[on]);
        match step {
            0 => assert!(p.query(prepare).await.error.is_none()),
            1 => {
                let parsed = p.parse_only("EXECUTE fid_test").await;
                assert!(parsed.error.is_none(), "{parsed:?}");
            }
            _ => got = p.describe_only().await,
        }
        rig.release(held).await;
    }
    (got, want)
}

#[test]
fn gdesc_of_execute_on_the_server_of_the_prepare() {
    run_async(120, async {
        let (got, want) = gdesc_of_execute([0, 0, 0]).await;
        assert_eq!(
            want.columns,
            vec![vec!["first".to_string(), "second".into()]]
        );
        assert_eq!(got, want);
    });
}

#[test]
fn gdesc_of_execute_described_on_a_server_without_the_statement() {
    run_async(120, async {
        // The Describe's server never saw the PREPARE nor the Parse.
        let (got, want) = gdesc_of_execute([0, 0, 1]).await;
        assert_eq!(got, want);
    });
}

#[test]
fn gdesc_of_execute_parsed_on_another_server() {
    run_async(120, async {
        let (got, want) = gdesc_of_execute([0, 1, 1]).await;
        assert_eq!(got, want);
    });
}

#[test]
fn gdesc_of_execute_parsed_elsewhere_described_back_home() {
    run_async(120, async {
        let (got, want) = gdesc_of_execute([0, 1, 0]).await;
        assert_eq!(got, want);
    });
}
