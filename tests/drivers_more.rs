//! More real drivers that cache named prepared statements per connection, through
//! pgsluice in transaction mode: asyncpg, node-postgres and pgjdbc, each running its
//! checked workload (integration/asyncpg_check.py, integration/node/pg_check.js,
//! integration/jdbc/JdbcCheck.java) with 8 connections over a pool of 2 servers, so
//! clients move between server connections with their statement caches warm.
//!
//! Like `psycopg3_prepare_threshold_zero` in tests/prepared_drivers.rs, a driver that
//! is not installed fails its test with the command that installs it (.ci/run installs
//! all three). Statement names, each counted per connection: asyncpg
//! `__asyncpg_stmt_<n>__`, node-postgres the names the script gives (`q1`..`q5`, in a
//! different order on each connection), pgjdbc `S_<n>`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Pooler, app_url, setup_with};

/// Client connections per check, and the pool they share.
const CONNECTIONS: &str = "8";
const POOL_SIZE: u32 = 2;
const ROUNDS: &str = "40";
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs `probe` and panics with `install` unless it succeeds.
fn require(probe: &mut Command, what: &str, install: &str) {
    match probe.output() {
        Err(e) => panic!("{what} cannot be run ({e}): {install}"),
        Ok(o) if !o.status.success() => panic!(
            "{what} is not installed: {install}\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
}

/// Runs `program ARGS URL CONNECTIONS ROUNDS` against `pooler` (killed after 90 s; the
/// scripts give up after 50) and asserts it exited 0 and printed `ok_line`.
fn run_check(pooler: &Pooler, program: &str, args: &[&str], ok_line: &str) {
    let out = Command::new("timeout")
        .args(["-k", "5", "90", program])
        .args(args)
        .args([&app_url(pooler), CONNECTIONS, ROUNDS])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(ok_line),
        "{program} {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn asyncpg_statement_cache() {
    let install = "run `python3 -m pip install asyncpg` (.ci/run installs it)";
    require(
        Command::new("python3").args(["-c", "import asyncpg; print(asyncpg.__version__)"]),
        "asyncpg (for python3)",
        install,
    );
    let (_cluster, pooler) = setup_with("transaction", "md5", POOL_SIZE, "");
    let script = repo_path("integration/asyncpg_check.py");
    run_check(
        &pooler,
        "python3",
        &[script.to_str().unwrap()],
        "asyncpg_check OK",
    );
}

#[test]
fn node_postgres_named_statements() {
    let install = "run `apt-get install nodejs npm`, then `npm ci --prefix integration/node` \
                   (.ci/run does both)";
    require(Command::new("node").arg("--version"), "node", install);
    require(
        Command::new("node")
            .args(["-e", "require('pg')"])
            .current_dir(repo_path("integration/node")),
        "node-postgres (integration/node/node_modules/pg)",
        "run `npm ci --prefix integration/node` (.ci/run does it)",
    );
    let (_cluster, pooler) = setup_with("transaction", "md5", POOL_SIZE, "");
    let script = repo_path("integration/node/pg_check.js");
    run_check(&pooler, "node", &[script.to_str().unwrap()], "pg_check OK");
}

#[test]
fn pgjdbc_prepare_threshold_one() {
    let install =
        "run `apt-get install libpostgresql-jdbc-java default-jre-headless` (.ci/run does it)";
    require(Command::new("java").arg("-version"), "java", install);
    assert!(
        Path::new(PGJDBC_JAR).exists(),
        "pgjdbc is not installed ({PGJDBC_JAR} is missing): {install}"
    );
    let (_cluster, pooler) = setup_with("transaction", "md5", POOL_SIZE, "");
    let script = repo_path("integration/jdbc/JdbcCheck.java");
    run_check(
        &pooler,
        "java",
        &["-cp", PGJDBC_JAR, script.to_str().unwrap()],
        "jdbc_check OK",
    );
}
