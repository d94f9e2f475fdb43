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
    assert_eq!(c.databases.len(), 3);
    let app = &c.databases["app"];
    assert_eq!(app.primary, "10.0.0.5:5433");
    assert_eq!(app.dbname.as_deref(), Some("app_prod"));
    assert_eq!(app.pool_size, Some(30));
    assert_eq!(c.databases["reports"].primary, "db.internal:5432");
    assert_eq!(c.databases["reports"].min_pool_size, Some(2));
    assert_eq!(c.databases["local"].primary, "127.0.0.1:5432");
    let app_user = c.user("app").unwrap();
    assert_eq!(app_user.pool_size, Some(7));
    assert_eq!(app_user.pool_mode, Some(crate::config::PoolMode::Session));
    assert_eq!(app_user.password.as_deref(), Some("app_pw"));
    for why in [
        "query_timeout = 60",
        "client_idle_timeout = 600",
        "ignore_startup_parameters = extra_float_digits, search_path (line 25): not needed",
        "logfile = /var/log/pgbouncer.log",
        "reserve_pool_size = 5",
        "made_up_key = 1",
        "max_db_connections = 50",
        "client_encoding = UTF8",
        "max_user_connections = 40",
        "[databases] * = host=10.0.0.9",
        "no host: PgBouncer used its Unix socket",
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
    assert_eq!(c.databases["sock"].primary, "127.0.0.1:5433");
    assert!(!text.contains("secret"), "a password leaked:\n{text}");
    for why in [
        "auth_type = hba",
        "10.1.1.2",
        "%include extra.ini",
        "garbage line",
        "[databases] bad",
        "Unix socket directory",
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
