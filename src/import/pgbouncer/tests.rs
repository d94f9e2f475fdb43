//! Translations of small pgbouncer.ini files, read back by pgsluice's own loader.

use super::*;
use crate::Config;

fn import(ini: &str, users: &str) -> String {
    translate(
        &Ini::parse(ini),
        "test.ini",
        Some(UserFile {
            source: "userlist.txt".into(),
            text: Ok(users.into()),
        }),
    )
}

fn load(text: &str) -> Config {
    Config::from_toml_with_env(text, std::iter::empty()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const SEVERAL: &str = "\
[databases]
app = host=10.0.0.5 port=5433 dbname=app_prod pool_size=30 pool_mode=transaction
reports = host=db.internal dbname=reports min_pool_size=2 max_db_connections=50 client_encoding=UTF8
local = dbname=app
* = host=10.0.0.9

[users]
app = pool_mode=session pool_size=7 max_user_connections=40

[pgbouncer]
listen_addr = *
listen_port = 6543
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
admin_users = admin, ops
stats_users = stats
pool_mode = transaction
max_client_conn = 500
default_pool_size = 15
server_idle_timeout = 300
server_lifetime = 1800.5
query_wait_timeout = 30
query_timeout = 60
client_idle_timeout = 600
ignore_startup_parameters = extra_float_digits, search_path
max_prepared_statements = 100
logfile = /var/log/pgbouncer.log
reserve_pool_size = 5
made_up_key = 1
";

#[test]
fn several_databases_users_and_timeouts() {
    let users = "\"app\" \"app_pw\"\n\"admin\" \"md5f00dbeeff00dbeeff00dbeeff00dbeef\"\n\"stats\" \"stats_pw\"\n";
    let text = import(SEVERAL, users);
    let c = load(&text);
    assert_eq!(c.general.listen_addr, "0.0.0.0:6543");
    assert_eq!(c.general.pool_mode, crate::config::PoolMode::Transaction);
    assert_eq!(c.general.max_client_conn, 500);
    assert_eq!(c.general.default_pool_size, 15);
    assert_eq!(c.general.server_idle_timeout, 300.0);
    assert_eq!(c.general.server_lifetime, 1800.5);
    assert_eq!(c.general.query_wait_timeout, 30.0);
    assert_eq!(c.general.max_prepared_statements, 100);
    assert_eq!(c.auth.auth_type, crate::config::AuthType::ScramSha256);
    assert_eq!(c.auth.admin_users, vec!["admin", "ops"]);
    assert_eq!(c.auth.stats_users, vec!["stats"]);
    assert_eq!(c.databases.len(), 4);
    let app = &c.databases["app"];
    assert_eq!(app.primary, "10.0.0.5:5433");
    assert_eq!(app.dbname.as_deref(), Some("app_prod"));
    assert_eq!(app.pool_size, Some(30));
    assert_eq!(c.databases["reports"].primary, "db.internal:5432");
    assert_eq!(c.databases["reports"].min_pool_size, Some(2));
    assert_eq!(
        c.databases["local"].primary, "/tmp:5432",
        "PgBouncer's socket directory"
    );
    let app_user = c.user("app").unwrap();
    assert_eq!(app_user.pool_size, Some(7));
    assert_eq!(app_user.pool_mode, Some(crate::config::PoolMode::Session));
    assert_eq!(app_user.password.as_deref(), Some("app_pw"));
    // The DBA controls of issue 16 come along.
    assert_eq!(c.general.query_timeout, 60.0);
    assert_eq!(c.general.client_idle_timeout, 600.0);
    assert_eq!(c.general.reserve_pool_size, 5);
    assert_eq!(c.general.unix_socket_dir, "/tmp", "PgBouncer's default");
    assert_eq!(c.databases["reports"].max_db_connections, Some(50));
    assert_eq!(app_user.max_user_connections, Some(40));
    let wild = &c.databases["*"];
    assert_eq!(wild.primary, "10.0.0.9:5432");
    assert_eq!(wild.dbname, None);
    assert_eq!(
        c.database("anything").unwrap().dbname.as_deref(),
        Some("anything")
    );
    for why in [
        "ignore_startup_parameters = extra_float_digits, search_path (line 25): not needed",
        "logfile = /var/log/pgbouncer.log",
        "made_up_key = 1",
        "client_encoding = UTF8",
        "no host: PgBouncer's Unix socket directory /tmp",
        "the password is stored as a hash",
        "ops has no [[users]] entry",
    ] {
        assert!(text.contains(why), "no {why:?} in:\n{text}");
    }
}

#[test]
fn pgbouncer_defaults_that_differ_are_written_out() {
    let text = import("[pgbouncer]\nlisten_addr = localhost\n", "");
    let c = load(&text);
    assert_eq!(c.general.pool_mode, crate::config::PoolMode::Session);
    assert_eq!(c.general.max_client_conn, 100);
    assert_eq!(c.auth.auth_type, crate::config::AuthType::Md5);
    assert_eq!(c.general.listen_addr, "127.0.0.1:6432");
    assert!(text.contains("No database was carried over"), "{text}");
    assert!(text.contains("lists no users"), "{text}");
}

#[test]
fn odd_lines_and_auth_types_become_comments() {
    let text = import(
        "[pgbouncer]\nauth_type = hba\nlisten_addr = 10.1.1.1, 10.1.1.2\n%include extra.ini\n\
         garbage line\n[databases]\nbad = host='unterminated\nsock = host=/var/run/postgresql port=5433 user=forced password=secret\n",
        "\"app\" \"\"\n",
    );
    let c = load(&text);
    assert_eq!(c.general.listen_addr, "10.1.1.1:6432");
    assert_eq!(c.databases["sock"].primary, "/var/run/postgresql:5433");
    assert!(!text.contains("secret"), "a password leaked:\n{text}");
    for why in [
        "auth_type = hba",
        "10.1.1.2",
        "%include extra.ini",
        "garbage line",
        "[databases] bad",
        "user = forced",
        "no password in userlist.txt",
    ] {
        assert!(text.contains(why), "no {why:?} in:\n{text}");
    }
}

/// Found by the import's fuzz target (minimal input `listen_addr=\0`, outside any
/// section): control characters copied into a comment made the output unreadable TOML.
#[test]
fn control_characters_in_the_ini_stay_readable_comments() {
    for ini in [
        "listen_addr=\0",
        "[weird]\nkey = a\u{1}b\u{7f}\r c",
        "[databases]\napp = host=db\u{0} port=x\u{1b}",
    ] {
        let text = import(ini, "\"u\u{0}\" \"p\u{8}\"\n");
        let parsed = toml::from_str::<toml::Table>(&text);
        assert!(parsed.is_ok(), "{parsed:?}\n{text}");
    }
}

/// Found by the import's fuzz target: a database defined twice became two tables of one
/// name. The last definition wins, as in PgBouncer.
#[test]
fn a_database_defined_twice_is_the_last_definition() {
    let text = import(
        "[databases]\napp = host=old port=5433\napp = host=new dbname=real\n",
        "",
    );
    let c = load(&text);
    assert_eq!(c.databases["app"].primary, "new:5432");
    assert_eq!(c.databases["app"].dbname.as_deref(), Some("real"));
    assert!(text.contains("defined more than once"), "{text}");
}

/// Found by the import's fuzz target (minimal input `[databases]\n\'=`): a database name
/// the toml crate writes as a multi-line literal string made an invalid table header.
#[test]
fn odd_database_names_are_quoted_keys() {
    for name in ["\\'", "a'b", "x\"y", "'''", "tab\there"] {
        let text = import(&format!("[databases]\n{name} = host=db\n"), "");
        let parsed = toml::from_str::<toml::Table>(&text);
        let dbs = parsed
            .as_ref()
            .ok()
            .and_then(|t| t.get("databases"))
            .and_then(|d| d.as_table());
        assert!(
            dbs.is_some_and(|d| d.contains_key(name.trim())),
            "{name:?}: {parsed:?}\n{text}"
        );
    }
}

#[test]
fn limits_timeouts_sockets_keepalives_auth_query_and_tls_come_along() {
    let ini = "\
[databases]
app = host=10.0.0.5 reserve_pool=3 max_db_client_connections=9 auth_user=other
[users]
app = max_user_client_connections=4 reserve_pool_size=1 query_timeout=2.5 client_idle_timeout=30
[pgbouncer]
listen_addr = 127.0.0.1
auth_type = scram-sha-256
auth_user = pgbouncer
auth_query = SELECT usename, passwd FROM pgbouncer.user_lookup($1)
auth_dbname = postgres
max_db_connections = 40
max_user_connections = 20
max_db_client_connections = 300
max_user_client_connections = 200
reserve_pool_timeout = 2.5
transaction_timeout = 120
server_check_query = SELECT 2
server_check_delay = 10
unix_socket_dir = /run/pgbouncer
unix_socket_mode = 0770
unix_socket_group = postgres
tcp_keepalive = 1
tcp_keepidle = 60
tcp_keepintvl = 10
tcp_keepcnt = 5
client_tls_sslmode = verify-full
client_tls_cert_file = /etc/pgbouncer/server.crt
client_tls_key_file = /etc/pgbouncer/server.key
client_tls_ca_file = /etc/pgbouncer/ca.crt
client_tls_protocols = secure
server_tls_sslmode = verify-ca
server_tls_ca_file = /etc/pgbouncer/root.crt
autodb_idle_timeout = 600
";
    let text = import(ini, "\"app\" \"app_pw\"\n");
    let c = load(&text);
    let g = &c.general;
    assert_eq!((g.max_db_connections, g.max_user_connections), (40, 20));
    assert_eq!(
        (g.max_db_client_connections, g.max_user_client_connections),
        (300, 200)
    );
    assert_eq!(g.reserve_pool_timeout, 2.5);
    assert_eq!(g.transaction_timeout, 120.0);
    assert_eq!(
        (g.server_check_query.as_str(), g.server_check_delay),
        ("SELECT 2", 10.0)
    );
    assert_eq!(
        (g.unix_socket_dir.as_str(), g.unix_socket_mode.as_str()),
        ("/run/pgbouncer", "0770")
    );
    assert_eq!(
        (
            g.tcp_keepalive,
            g.tcp_keepidle,
            g.tcp_keepintvl,
            g.tcp_keepcnt
        ),
        (true, 60, 10, 5)
    );
    assert_eq!(c.auth.auth_user.as_deref(), Some("pgbouncer"));
    assert_eq!(
        c.auth.auth_query,
        "SELECT usename, passwd FROM pgbouncer.user_lookup($1)"
    );
    assert!(
        c.user("pgbouncer").is_some(),
        "auth_user gets a [[users]] entry"
    );
    assert_eq!(c.tls.client_mode, crate::config::ClientTlsMode::Require);
    assert_eq!(c.tls.client_cert, crate::config::ClientCert::VerifyCa);
    assert_eq!(c.tls.cert_file, "/etc/pgbouncer/server.crt");
    assert_eq!(c.tls.ca_file, "/etc/pgbouncer/ca.crt");
    let app = &c.databases["app"];
    assert_eq!(app.server_tls, Some(crate::config::ServerTlsMode::VerifyCa));
    assert_eq!(
        app.server_ca_file.as_deref(),
        Some("/etc/pgbouncer/root.crt")
    );
    assert_eq!(app.reserve_pool_size, Some(3));
    assert_eq!(app.max_db_client_connections, Some(9));
    let u = c.user("app").unwrap();
    assert_eq!(u.max_user_client_connections, Some(4));
    assert_eq!(u.reserve_pool_size, Some(1));
    assert_eq!(u.query_timeout, Some(2.5));
    assert_eq!(u.client_idle_timeout, Some(30.0));
    for why in [
        "auth_dbname = postgres",
        "unix_socket_group = postgres",
        "client_tls_protocols = secure",
        "auth_user = other",
        "autodb_idle_timeout = 600",
        "set password or password_file",
    ] {
        assert!(text.contains(why), "no {why:?} in:\n{text}");
    }
    assert!(!text.contains("not built"), "{text}");
}
