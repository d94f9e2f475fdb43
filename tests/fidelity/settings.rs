//! Fidelity of session settings: roles and session authorization, startup values and
//! `RESET`, partial settings, `SET`s and state made where pgsluice cannot see (functions,
//! `DO`, sequences), custom settings' placeholders and `LOAD`.

use super::*;

const ROLES: &str = "CREATE ROLE fid_a; CREATE ROLE fid_b; GRANT fid_b TO fid_a";
const WHO: &str = "SELECT current_user, session_user";

#[test]
fn session_authorization_then_role_replays_both() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        rig.admin(ROLES).await;
        let setup = ["SET SESSION AUTHORIZATION fid_a", "SET ROLE fid_b"];
        same_across_servers(&rig, &setup, WHO).await;
    });
}

#[test]
fn reset_session_authorization_also_resets_role() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        rig.admin(ROLES).await;
        let setup = [
            "SET SESSION AUTHORIZATION fid_a",
            "SET ROLE fid_b",
            "RESET SESSION AUTHORIZATION",
        ];
        same_across_servers(&rig, &setup, WHO).await;
    });
}

#[test]
fn role_only_replays() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        rig.admin(ROLES).await;
        same_across_servers(&rig, &["SET ROLE fid_b"], WHO).await;
    });
}

#[test]
fn dropped_role_does_not_wedge_the_client() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        rig.admin("CREATE ROLE fid_gone").await;
        let c = rig.pooled().await;
        let (held, _) = rig.hold(0).await;
        c.batch_execute("SET ROLE fid_gone")
            .await
            .expect("SET ROLE");
        let first: i32 = sq1(&c, "SELECT pg_backend_pid()")
            .await
            .parse()
            .expect("pid");
        rig.release(held).await;
        rig.admin("DROP ROLE fid_gone").await;
        // On another server the role cannot be replayed; whatever that first statement
        // answers, RESET ROLE must work and leave the client as itself.
        let (held, _) = rig.hold(first).await;
        let _ = rows(&c, "SELECT 1").await;
        rig.release(held).await;
        let reset = rows(&c, "RESET ROLE").await;
        assert_eq!(reset, Ok(vec![]), "RESET ROLE after the role was dropped");
        let who = rows(&c, WHO).await;
        assert_eq!(who, Ok(vec!["postgres|postgres".to_string()]));
    });
}

#[test]
fn superuser_setting_is_reset_before_session_authorization_drops_privileges() {
    run_async(120, async {
        // One server: the next client gets exactly the server the first one left.
        let rig = Rig::start(1).await;
        rig.admin(ROLES).await;
        let x = rig.pooled().await;
        x.batch_execute("SET lo_compat_privileges = on")
            .await
            .expect("SET lo_compat_privileges");
        x.batch_execute("SET SESSION AUTHORIZATION fid_a")
            .await
            .expect("SET SESSION AUTHORIZATION");
        let y = rig.pooled().await;
        let got = rows(
            &y,
            "SELECT current_setting('lo_compat_privileges'), current_user",
        )
        .await;
        assert_eq!(got, Ok(vec!["off|postgres".to_string()]));
    });
}

// ------------------------------------------------------------------ startup values, RESET

const PG_DATESTYLE: (&str, &str) = ("DateStyle", "Postgres, MDY");

/// `stmt` after connecting with `startup`, then `show`, directly and through pgsluice.
async fn reset_to_startup(mode: &str, startup: (&str, &str), stmt: &str, show: &str) {
    // Four servers: in session mode the idle helpers may hold two.
    let rig = Rig::start_mode(mode, 4).await;
    let mut d = Raw::direct(&rig, &[startup]).await;
    let mut p = Raw::pooled(&rig, &[startup]).await;
    for raw in [&mut d, &mut p] {
        let a = raw
            .query("SET datestyle = 'German'; SET timezone = 'UTC'")
            .await;
        assert!(a.error.is_none(), "{a:?}");
        let a = raw.query(stmt).await;
        assert!(a.error.is_none(), "{stmt}: {a:?}");
    }
    let want = d.query(show).await;
    let got = p.query(show).await;
    assert_eq!(got.rows, want.rows, "{startup:?}, {stmt}: {show}");
}

#[test]
fn reset_returns_to_startup_datestyle() {
    run_async(
        120,
        reset_to_startup(
            "transaction",
            PG_DATESTYLE,
            "RESET datestyle",
            "SHOW datestyle",
        ),
    );
}

#[test]
fn reset_all_returns_to_startup_timezone() {
    let tz = ("TimeZone", "America/Los_Angeles");
    run_async(
        120,
        reset_to_startup("transaction", tz, "RESET ALL", "SHOW timezone"),
    );
}

#[test]
fn discard_all_returns_to_startup_datestyle() {
    run_async(
        120,
        reset_to_startup("transaction", PG_DATESTYLE, "DISCARD ALL", "SHOW datestyle"),
    );
}

#[test]
fn reset_returns_to_startup_datestyle_in_session_mode() {
    run_async(
        120,
        reset_to_startup("session", PG_DATESTYLE, "RESET datestyle", "SHOW datestyle"),
    );
}

#[test]
fn reset_of_an_options_startup_value() {
    run_async(120, async {
        // options=-c is a startup value too (pg_regress sets intervalstyle this way).
        let opt = ("options", "-c intervalstyle=postgres_verbose");
        reset_to_startup(
            "transaction",
            opt,
            "RESET intervalstyle",
            "SHOW intervalstyle",
        )
        .await;
    });
}

#[test]
fn reset_does_not_change_the_next_clients_datestyle() {
    run_async(120, async {
        let rig = Rig::start(1).await;
        let mut x = Raw::pooled(&rig, &[PG_DATESTYLE]).await;
        let a = x.query("RESET datestyle").await;
        assert!(a.error.is_none(), "{a:?}");
        let mut y = Raw::pooled(&rig, &[PG_DATESTYLE]).await;
        let got = y.query("SHOW datestyle").await;
        assert_eq!(got.rows, vec!["Postgres, MDY".to_string()]);
    });
}

// ------------------------------------------------------------------ partial settings

#[test]
fn partial_datestyle_sets_replay_as_a_whole() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        let setup = ["SET datestyle TO postgres", "SET datestyle TO ymd"];
        same_across_servers(&rig, &setup, "SHOW datestyle").await;
    });
}

#[test]
fn partial_datestyle_sets_after_a_startup_datestyle() {
    run_async(120, async {
        // The case, as in pg_regress: every client starts with DateStyle
        // `Postgres, MDY`; one sets `iso` then `ymd`, another client uses the (only)
        // server in between, and the first must still see `ISO, YMD`.
        let rig = Rig::start(1).await;
        let options = "?options=-c%20DateStyle%3DPostgres%2C%5C%20MDY";
        let setup = ["SET datestyle TO iso", "SET datestyle TO ymd"];
        let want = direct_answer(&rig, options, &setup, "SHOW datestyle").await;
        assert_eq!(want, Ok(vec!["ISO, YMD".to_string()]));
        let x = pg_connect(&format!("{}{options}", rig.pooled_url()))
            .await
            .0;
        for sql in setup {
            x.batch_execute(sql).await.expect(sql);
        }
        let y = pg_connect(&format!("{}{options}", rig.pooled_url()))
            .await
            .0;
        assert_eq!(sq1(&y, "SHOW datestyle").await, "Postgres, MDY");
        assert_eq!(rows(&x, "SHOW datestyle").await, want);
    });
}

#[test]
fn datestyle_set_twice_in_full_replays_the_last() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        let setup = [
            "SET datestyle TO postgres, dmy",
            "SET datestyle TO iso, ymd",
        ];
        same_across_servers(&rig, &setup, "SHOW datestyle").await;
    });
}

#[test]
fn reset_custom_setting_still_exists_on_another_server() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        let setup = ["SET fid.custom = 'foo'", "RESET fid.custom"];
        same_across_servers(&rig, &setup, "SHOW fid.custom").await;
    });
}

// ------------------------------------------------------------------ state pgsluice cannot see

#[test]
fn set_inside_do_block_does_not_leak_to_another_client() {
    run_async(120, async {
        let rig = Rig::start(1).await;
        let x = rig.pooled().await;
        x.batch_execute("DO $$ BEGIN SET enable_seqscan = off; END $$")
            .await
            .expect("DO");
        let y = rig.pooled().await;
        assert_eq!(sq1(&y, "SHOW enable_seqscan").await, "on");
    });
}

#[test]
fn set_in_a_function_does_not_leak_to_another_client() {
    run_async(120, async {
        let rig = Rig::start(1).await;
        rig.admin(
            "CREATE FUNCTION fid_quiet() RETURNS void LANGUAGE plpgsql AS \
             $$ BEGIN SET work_mem = '77kB'; END $$",
        )
        .await;
        let x = rig.pooled().await;
        x.batch_execute("SELECT fid_quiet()").await.expect("call");
        let y = rig.pooled().await;
        assert_eq!(sq1(&y, "SHOW work_mem").await, "4MB");
    });
}

#[test]
fn currval_is_never_another_clients_value() {
    run_async(120, async {
        let rig = Rig::start(1).await;
        rig.admin("CREATE SEQUENCE fid_seq").await;
        rig.admin("CREATE TABLE fid_serial (id serial, v int)")
            .await;
        let x = rig.pooled().await;
        assert_eq!(sq1(&x, "SELECT nextval('fid_seq')").await, "1");
        let y = rig.pooled().await;
        assert_eq!(sq1(&y, "SELECT nextval('fid_seq')").await, "2");
        for sql in ["SELECT currval('fid_seq')", "SELECT lastval()"] {
            let got = rows(&x, sql).await;
            // The client's own value, or an error naming pooling: never the other's 2.
            match got {
                Ok(v) => assert_eq!(v, vec!["1".to_string()], "{sql}"),
                Err(e) => assert!(
                    e.contains("55000") && e.contains("per transaction"),
                    "{sql}: {e}"
                ),
            }
        }
        // In one transaction, after its own nextval or INSERT, the client's value, even on
        // a server that carried another client's.
        assert_eq!(sq1(&y, "SELECT nextval('fid_seq')").await, "3");
        x.batch_execute("BEGIN").await.expect("BEGIN");
        x.batch_execute("INSERT INTO fid_serial (v) VALUES (1)")
            .await
            .expect("INSERT");
        assert_eq!(
            sq1(
                &x,
                "SELECT currval(pg_get_serial_sequence('fid_serial', 'id'))"
            )
            .await,
            "1"
        );
        assert_eq!(sq1(&x, "SELECT lastval()").await, "1");
        x.batch_execute("COMMIT").await.expect("COMMIT");
        // A column default reading currval is a read too.
        rig.admin("CREATE TABLE fid_dflt (x int, z int DEFAULT -1 * currval('fid_seq'))")
            .await;
        assert_eq!(sq1(&y, "SELECT nextval('fid_seq')").await, "4");
        match x.batch_execute("INSERT INTO fid_dflt (x) VALUES (1)").await {
            Ok(()) => panic!("the default read another client's currval"),
            Err(e) => assert!(
                err_text(e).starts_with("55000"),
                "INSERT with a currval default"
            ),
        }
        // Several statements in one query string: the same.
        assert_eq!(
            rows(&y, "SELECT nextval('fid_seq'); SELECT currval('fid_seq')")
                .await
                .expect("nextval; currval"),
            vec!["5".to_string(), "5".to_string()]
        );
    });
}

#[test]
fn pinned_client_keeps_its_server_when_pgsluice_answers_deallocate() {
    run_async(120, async {
        // Two servers; a client waits at most 2 s for one.
        let rig = Rig::start_with("transaction", 2, "query_wait_timeout = 2.0").await;
        let x = rig.pooled().await;
        x.batch_execute("CREATE TEMP TABLE fid_tmp AS SELECT 42 AS v")
            .await
            .expect("CREATE TEMP TABLE");
        let (_, pid) = rows_pid(&x, "SELECT 1").await.expect("pid");
        for sql in [
            "PREPARE fid_p AS SELECT 1",
            "DEALLOCATE fid_p",
            "PREPARE fid_p AS SELECT 1",
        ] {
            x.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        // Both helpers ask for a server at once: while the client is pinned only one
        // server is free, so one helper gets it and the other times out. Neither may get
        // the pinned client's backend.
        let mut got = Vec::new();
        for h in &rig.helpers {
            if h.batch_execute("BEGIN").await.is_ok()
                && let Ok(r) = rows(h, "SELECT pg_backend_pid()").await
            {
                got.extend(r);
            }
        }
        for h in &rig.helpers {
            let _ = h.batch_execute("COMMIT").await;
        }
        assert!(
            !got.contains(&pid.to_string()),
            "another client got the pinned client's server {pid}: {got:?}"
        );
        let (mine, now) = rows_pid(&x, "SELECT v FROM fid_tmp")
            .await
            .expect("the client's own temp table");
        assert_eq!((mine, now), (vec!["42".to_string()], pid));
    });
}

// ------------------------------------------------------------------ controls

#[test]
fn plain_set_replays_on_another_server() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        let setup = [
            "SET work_mem = '1234kB'",
            "SET search_path = pg_catalog, public",
        ];
        same_across_servers(&rig, &setup, "SHOW work_mem; SHOW search_path").await;
        let c = rig.pooled().await;
        assert_eq!(sq(&c, "SHOW work_mem").await, vec!["4MB".to_string()]);
    });
}

#[test]
fn create_temp_table_as_execute_keeps_the_server() {
    run_async(120, async {
        let rig = Rig::start(2).await;
        let x = rig.pooled().await;
        x.batch_execute("PREPARE fid_q5(int) AS SELECT $1 AS v")
            .await
            .expect("PREPARE");
        x.batch_execute("CREATE TEMP TABLE fid_nodata AS EXECUTE fid_q5(1) WITH NO DATA")
            .await
            .expect("CREATE TEMP TABLE AS EXECUTE");
        // Another client takes whatever server is idle and keeps it.
        let y = rig.pooled().await;
        y.batch_execute("BEGIN").await.expect("BEGIN");
        y.batch_execute("SELECT 1").await.expect("SELECT");
        assert_eq!(
            rows(&x, "SELECT count(*) FROM fid_nodata").await,
            Ok(vec!["0".to_string()])
        );
        y.batch_execute("COMMIT").await.expect("COMMIT");
    });
}

/// `steps` (client 0 or 1, statement) on two direct connections, then on two clients of
/// pgsluice sharing one server (transaction mode, pool of one): every answer (rows or
/// error) must be the same.
async fn same_answers_two_clients(setup: &str, steps: &[(usize, &str)]) {
    let rig = Rig::start(1).await;
    rig.admin(setup).await;
    let direct = [rig.direct().await, rig.direct().await];
    let mut want = Vec::new();
    for (who, sql) in steps {
        want.push(rows(&direct[*who], sql).await);
    }
    drop(direct);
    let pooled = [rig.pooled().await, rig.pooled().await];
    for ((who, sql), want) in steps.iter().zip(want) {
        let got = rows(&pooled[*who], sql).await;
        assert_eq!(got, want, "client {who}: {sql}");
    }
}

/// A PL/pgSQL function that runs its argument as dynamic SQL (as `partition_prune` does).
const RUN_DYNAMIC: &str = "CREATE FUNCTION fid_run(q text) RETURNS SETOF text \
     LANGUAGE plpgsql AS $$ DECLARE r text; \
     BEGIN FOR r IN EXECUTE q LOOP RETURN NEXT r; END LOOP; END $$";

#[test]
fn server_code_runs_the_clients_sql_prepared_statement() {
    run_async(
        120,
        same_answers_two_clients(
            RUN_DYNAMIC,
            &[
                (0, "PREPARE fid_d(int) AS SELECT ($1 + 1)::text"),
                (0, "SELECT fid_run('execute fid_d(41)')"),
                // Not another client's, on the same server, as on its own connection.
                (1, "SELECT fid_run('execute fid_d(1)')"),
                (1, "EXECUTE fid_d(1)"),
                (0, "SELECT fid_run('execute fid_d(1)')"),
                (0, "DO $$ BEGIN EXECUTE 'execute fid_d(1)'; END $$"),
                (1, "DO $$ BEGIN EXECUTE 'execute fid_d(1)'; END $$"),
                // Inside a transaction block; `fid_e`, which can no longer be prepared,
                // must not abort it.
                (0, "BEGIN"),
                (0, "SELECT 1"),
                (0, "SELECT fid_run('execute fid_d(2)')"),
                (0, "COMMIT"),
                (0, "PREPARE fid_e AS SELECT x::text FROM fid_gone"),
                (0, "CREATE TABLE fid_gone (x int)"),
                (0, "PREPARE fid_e AS SELECT x::text FROM fid_gone"),
                (0, "DROP TABLE fid_gone"),
                (0, "BEGIN"),
                (0, "SELECT fid_run('execute fid_d(3)')"),
                (0, "ROLLBACK"),
                (0, "DEALLOCATE fid_d"),
                (0, "SELECT fid_run('execute fid_d(1)')"),
                (1, "SELECT name FROM pg_prepared_statements"),
            ],
        ),
    );
}

#[test]
fn a_custom_setting_leaves_no_placeholder_for_another_client() {
    run_async(
        120,
        same_answers_two_clients(
            "SELECT 1",
            &[
                (0, "SET fidx.foo = 1"),
                (1, "SHOW fidx.foo"),
                (0, "SHOW fidx.foo"),
                (0, "RESET fidx.foo"),
                (1, "SELECT current_setting('fidx.foo', true) IS NULL"),
                (0, "SHOW fidx.foo"),
                (1, "SET fidx.bar = 2"),
                (0, "SHOW fidx.bar"),
                (1, "SHOW fidx.foo"),
            ],
        ),
    );
}

#[test]
fn a_custom_setting_leaves_no_placeholder_in_session_mode() {
    run_async(120, async {
        // Three servers: the idle helpers hold two in session mode.
        let rig = Rig::start_mode("session", 3).await;
        let x = rig.pooled().await;
        x.batch_execute("SET fidx.foo = 1").await.expect("SET");
        drop(x);
        // The next client may wait for the server until the first one's is back.
        let y = rig.pooled().await;
        let got = rows(&y, "SHOW fidx.foo").await;
        assert!(
            got.as_ref().is_err_and(|e| e.starts_with("42704")),
            "a new session sees another's placeholder: {got:?}"
        );
    });
}

#[test]
fn load_keeps_the_client_on_the_server_that_loaded_the_library() {
    run_async(120, async {
        let rig = Rig::start(3).await;
        let d = rig.direct().await;
        let x = rig.pooled().await;
        let setting = "SET plpgsql.extra_foo_warnings = true";
        for c in [&d, &x] {
            c.batch_execute("LOAD 'plpgsql'").await.expect("LOAD");
        }
        let (_, pid) = rows_pid(&x, "SELECT 1").await.expect("pid");
        // Both helpers take a server each: neither may be the one with the library.
        for h in &rig.helpers {
            h.batch_execute("BEGIN").await.expect("BEGIN");
            let (_, hp) = rows_pid(h, "SELECT 1").await.expect("helper pid");
            assert_ne!(hp, pid, "a helper got the server that loaded the library");
        }
        // On the backend that loaded plpgsql the prefix is reserved.
        assert_eq!(rows(&x, setting).await, rows(&d, setting).await);
        let (_, now) = rows_pid(&x, "SELECT 1").await.expect("pid");
        assert_eq!(now, pid);
        for h in &rig.helpers {
            h.batch_execute("COMMIT").await.expect("COMMIT");
        }
    });
}
