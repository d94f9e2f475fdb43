//! `pgsluice import-pgbouncer`: Debian's own pgbouncer.ini, and a config with several
//! databases (the `*` wildcard too), per-user pool sizes and limits, auth_type, timeouts and
//! ignore_startup_parameters,
//! each checked with --check-config and served against a real cluster.

use std::path::Path;

use super::common::{Cluster, Pooler, psql_ok};
use super::{assert_config_ok, pgsluice, stderr, stdout, temp_file};

/// The file Debian's pgbouncer package installs.
const DEBIAN_INI: &str = "/etc/pgbouncer/pgbouncer.ini";

fn import(args: &[&str]) -> String {
    let mut all = vec!["import-pgbouncer"];
    all.extend_from_slice(args);
    let out = pgsluice(&all, &[]);
    assert!(out.status.success(), "import {args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn debian_pgbouncer_ini_imports_checks_and_serves() {
    assert!(
        Path::new(DEBIAN_INI).exists(),
        "{DEBIAN_INI} is missing: apt-get install pgbouncer (integration/deps.sh does)"
    );
    let text = import(&[DEBIAN_INI]);
    for expect in [
        "listen_addr = \"127.0.0.1:6432\"",
        "pool_mode = \"session\"  # from PgBouncer's default",
        "type = \"md5\"",
        "not carried over: logfile = /var/log/postgresql/pgbouncer.log",
        "not carried over: pidfile",
        "unix_socket_dir = \"/var/run/postgresql\"",
        "No database was carried over",
    ] {
        assert!(text.contains(expect), "no {expect:?} in:\n{text}");
    }
    let file = temp_file("pooler.toml", &text);
    // As imported it has no database: refused, saying so.
    let out = pgsluice(
        &["--check-config", "--config", &file.display().to_string()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no [databases.NAME] section"),
        "{}",
        stderr(&out)
    );
    // With a database and a user (Debian's userlist.txt is empty) it checks and serves.
    let c = Cluster::start(0);
    let primary = format!("127.0.0.1:{}", c.primary_port);
    let envs = [
        ("PGSLUICE_DATABASES__APP__PRIMARY", primary.as_str()),
        ("PGSLUICE_USERS__APP__PASSWORD", "app_pw"),
    ];
    assert_config_ok(&file, &envs);
    let p = Pooler::start_with_env(&text.replace("127.0.0.1:6432", "{LISTEN}"), &[], &envs);
    let url = p.url("app", "app_pw", "app");
    assert_eq!(
        psql_ok(&url, "SELECT current_user || ' ' || current_database()"),
        "app app"
    );
}

#[test]
fn several_databases_per_user_pools_and_timeouts_import_and_serve() {
    let c = Cluster::start(1);
    let (primary, replica) = (c.primary_port, c.replica_ports[0]);
    let ini = format!(
        "[databases]
app = host=127.0.0.1 port={primary} dbname=app pool_size=4
pg = host=localhost port={primary} dbname=postgres pool_mode=session client_encoding=UTF8
app_ro = host=127.0.0.1 port={replica} dbname=app max_db_connections=10
* = host=127.0.0.1 port={primary}

[users]
app = pool_size=2 max_user_connections=20

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
auth_type = scram-sha-256
auth_file = userlist.txt
admin_users = admin
pool_mode = transaction
max_client_conn = 300
default_pool_size = 5
server_idle_timeout = 120
server_lifetime = 900
server_connect_timeout = 5
query_wait_timeout = 20
client_login_timeout = 30
idle_transaction_timeout = 60
query_timeout = 300
ignore_startup_parameters = extra_float_digits,options
max_prepared_statements = 50
logfile = /var/log/pgbouncer/pgbouncer.log
"
    );
    let ini_path = temp_file("pgbouncer.ini", &ini);
    // The auth_file is found next to the ini, as PgBouncer would.
    let users = "\"app\" \"app_pw\"\n\"admin\" \"admin_pw\"\n\"postgres\" \"\"\n";
    std::fs::write(ini_path.with_file_name("userlist.txt"), users).expect("write userlist");
    let text = import(&[&ini_path.display().to_string()]);
    for expect in [
        "[databases.app]",
        "[databases.pg]",
        "[databases.app_ro]",
        "pool_mode = \"transaction\"",
        "max_client_conn = 300",
        "server_lifetime = 900.0",
        "query_wait_timeout = 20.0",
        "idle_transaction_timeout = 60.0",
        "type = \"scram-sha-256\"",
        "admin_users = [\"admin\"]",
        "pool_size = 2",
        "max_user_connections = 20",
        "query_timeout = 300.0",
        "not carried over: ignore_startup_parameters = extra_float_digits,options",
        "not carried over: client_encoding = UTF8",
        "max_db_connections = 10",
        "[databases.\"*\"]",
        "no password in",
    ] {
        assert!(text.contains(expect), "no {expect:?} in:\n{text}");
    }
    let file = temp_file("pooler.toml", &text);
    assert_config_ok(&file, &[]);
    let p = Pooler::start(&text.replace("127.0.0.1:6432", "{LISTEN}"));
    assert_eq!(
        psql_ok(&p.url("app", "app_pw", "app"), "SELECT current_database()"),
        "app"
    );
    assert_eq!(
        psql_ok(&p.url("app", "app_pw", "pg"), "SELECT current_database()"),
        "postgres"
    );
    assert_eq!(
        psql_ok(
            &p.url("app", "app_pw", "app_ro"),
            "SELECT pg_is_in_recovery()"
        ),
        "t"
    );
    // A database only the wildcard line serves.
    assert_eq!(
        psql_ok(
            &p.url("app", "app_pw", "postgres"),
            "SELECT current_database()"
        ),
        "postgres"
    );
    // The per-user pool size (2) and the database's (4): the user's wins, as in PgBouncer.
    let pools = psql_ok(&p.url("admin", "admin_pw", "pgsluice"), "SHOW DATABASES");
    assert!(pools.lines().any(|l| l.starts_with("app|")), "{pools}");
    let printed = pgsluice(
        &["--print-config", "--config", &file.display().to_string()],
        &[],
    );
    assert!(
        stdout(&printed).contains("pool_size = 2"),
        "{}",
        stdout(&printed)
    );
}
