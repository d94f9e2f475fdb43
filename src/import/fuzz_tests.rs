//! Fuzz targets: pgbouncer.ini and userlist.txt as a DBA (or a careless editor) may have
//! written them; whatever they hold, the import writes a TOML file pgsluice can read.

use proptest::prelude::*;

use super::ini::{Ini, parse_connstr};
use super::pgbouncer::{UserFile, translate};
use super::userlist;
use crate::fuzz;

const KEYS: &[&str] = &[
    "listen_addr",
    "listen_port",
    "auth_type",
    "auth_file",
    "admin_users",
    "stats_users",
    "pool_mode",
    "max_client_conn",
    "default_pool_size",
    "min_pool_size",
    "server_lifetime",
    "server_idle_timeout",
    "query_wait_timeout",
    "ignore_startup_parameters",
    "max_prepared_statements",
    "server_reset_query",
    "logfile",
    "made_up",
    "app",
    "*",
    "reports",
    "host",
    "pool_size",
    "\"quoted\"",
    "a.b",
    "[x]",
    "é€",
    "key with space",
];

const VALUES: &[&str] = &[
    "",
    "*",
    "0",
    "-1",
    "5",
    "1e400",
    "1800.5",
    "nan",
    "inf",
    "transaction",
    "session",
    "scram-sha-256",
    "md5",
    "trust",
    "hba",
    "admin, ops",
    "host=db port=5433 dbname=app",
    "host=/tmp dbname='my ''db'''",
    "host=a,b,c port=x pool_size=0",
    "host='unterminated",
    "host=::1 pool_mode=statement",
    "user=u password=p auth_user=x",
    "\"",
    "'",
    "\\",
    "\\\"",
    "a\"b",
    "€",
    "\u{7f}",
    "\u{0}",
    "[table]",
    "key = value",
    "1 = 2",
    "\"\"\"",
    "'''",
    "${HOME}",
    "127.0.0.1",
    "[::1]",
    "6432",
    "99999999999999999999",
];

fn ini_text() -> impl Strategy<Value = String> {
    let section = prop::sample::select(
        &[
            "[databases]",
            "[users]",
            "[pgbouncer]",
            "[ PgBouncer ]",
            "[peers]",
            "[other]",
            "[",
        ][..],
    )
    .prop_map(str::to_string);
    let entry = (
        prop::sample::select(KEYS),
        prop::sample::select(&["=", " = ", "= ", "=="][..]),
        prop_oneof![
            prop::sample::select(VALUES).prop_map(str::to_string),
            ".{0,12}"
        ],
    )
        .prop_map(|(k, eq, v)| format!("{k}{eq}{v}"));
    let other = prop_oneof![
        Just("; comment".to_string()),
        Just("%include /etc/x.ini".to_string()),
        Just(String::new()),
        ".{0,16}",
    ];
    let line = prop_oneof![2 => section, 6 => entry, 1 => other];
    prop::collection::vec(line, 0..16).prop_map(|l| l.join("\n"))
}

fn userlist_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        ("[^\"\n]{0,6}", "[^\"\n]{0,8}").prop_map(|(u, p)| format!("\"{u}\" \"{p}\"")),
        Just("\"o\"\"brien\" \"md5f00dbeeff00dbeeff00dbeeff00dbeef\"".to_string()),
        Just("\"s\" \"SCRAM-SHA-256$4096:c2FsdA==$a:b\"".to_string()),
        ".{0,16}",
    ];
    prop::collection::vec(line, 0..6).prop_map(|l| l.join("\n"))
}

#[test]
fn fuzz_import_pgbouncer() {
    let input = (ini_text(), prop::option::of(userlist_text()));
    fuzz::run("import_pgbouncer", 1500, input, |(ini, users)| {
        let parsed = Ini::parse(&ini);
        let lines = ini.lines().count();
        for e in &parsed.entries {
            prop_assert!(!e.key.is_empty() && e.line >= 1 && e.line <= lines);
        }
        let users = users.map(|text| UserFile {
            source: "userlist.txt".into(),
            text: Ok(text),
        });
        let out = translate(&parsed, "fuzz.ini", users);
        let table = toml::from_str::<toml::Table>(&out);
        prop_assert!(table.is_ok(), "not TOML: {:?}\n{}", table.err(), out);
        // pgsluice's loader reads it: a config, or an error naming what is wrong.
        let _ = crate::Config::from_toml_with_env(&out, std::iter::empty());
        Ok(())
    });
}

#[test]
fn fuzz_import_parts() {
    let pair = ("[a-z_]{1,8}", prop_oneof!["[^ '\\\\]{0,8}", ".{0,8}"]);
    let input = (
        prop::collection::vec(pair, 0..5),
        ".{0,40}",
        prop::collection::vec(("[^\n\r]{1,6}", "[^\n\r]{0,8}"), 0..4),
    );
    fuzz::run("import_parts", 3000, input, |(pairs, junk, users)| {
        // key='value' pairs, quoted the libpq way, read back as written.
        let text: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "''")))
            .collect();
        prop_assert_eq!(parse_connstr(&text.join(" ")), Ok(pairs.clone()));
        let _ = parse_connstr(&junk);
        // userlist pairs with `""` for a quote read back as written.
        let lines: Vec<String> = users
            .iter()
            .map(|(u, p)| {
                format!(
                    "\"{}\" \"{}\"",
                    u.replace('"', "\"\""),
                    p.replace('"', "\"\"")
                )
            })
            .collect();
        let (got, bad) = userlist::parse(&lines.join("\n"));
        prop_assert!(bad.is_empty(), "{bad:?}");
        prop_assert_eq!(got, users);
        let _ = userlist::parse(&junk);
        let _ = Ini::parse(&junk);
        Ok(())
    });
}
