//! Fuzz target: `PGSLUICE_*` environment overrides over a small config; whatever the
//! variables say, loading gives a config or an error, never a panic.

use proptest::prelude::*;

use super::Config;
use super::env::{self, Applied, SECTIONS};
use crate::fuzz;

/// Path segments: sections, keys, positions and names, in any case, or junk. No key
/// naming a file: the loader would read it.
fn segment() -> impl Strategy<Value = String> {
    let known = prop::sample::select(
        &[
            "pool_mode",
            "listen_addr",
            "default_pool_size",
            "max_message_size",
            "workers",
            "name",
            "password",
            "pool_size",
            "primary",
            "replicas",
            "app",
            "APP",
            "0",
            "1",
            "7",
            "",
            "dbname",
            "allowlist",
            "read_your_writes",
            "max_replica_lag",
            "log_format",
            "users",
            "access",
            "general",
            "x",
            "query_wait_timeout",
        ][..],
    )
    .prop_map(str::to_string);
    let section = prop::sample::select(SECTIONS).prop_map(str::to_string);
    prop_oneof![
        3 => known,
        2 => section,
        1 => "[A-Za-z0-9_]{0,6}",
    ]
    .prop_map(|s| {
        if s.len() % 2 == 0 {
            s.to_ascii_uppercase()
        } else {
            s
        }
    })
}

fn variable() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        4 => prop::collection::vec(segment(), 1..5).prop_map(|s| format!("PGSLUICE_{}", s.join("__"))),
        1 => "PGSLUICE_[A-Z_]{0,12}",
        1 => ".{0,12}",
    ];
    let value = prop_oneof![
        prop::sample::select(
            &[
                "7",
                "0",
                "-1",
                "true",
                "[\"a\"]",
                "[1, 2]",
                "{ a = 1 }",
                "'x'",
                "\"open",
                "1e400",
                "nan",
                "inf",
                "session",
                "transaction",
                "127.0.0.1:1",
                "[[x]]",
                "\"127.0.0.1:2\"",
                "",
                "app",
                "v = 1",
                "1\nx = 2",
                "lsn",
                "text",
            ][..]
        )
        .prop_map(str::to_string),
        ".{0,12}",
    ];
    (name, value).prop_filter("names a file", |(n, v)| {
        !n.to_ascii_lowercase().contains("file") && !v.to_ascii_lowercase().contains("file")
    })
}

const BASES: &[&str] = &[
    "",
    "[databases.app]\nprimary = \"127.0.0.1:1\"\n",
    "[databases.app]\nprimary = \"127.0.0.1:1\"\nreplicas = [\"127.0.0.1:2\"]\n\
     [[users]]\nname = \"app\"\npassword = \"pw\"\n",
    "[general]\npool_mode = \"session\"\n[[access]]\naction = \"allow\"\n",
];

#[test]
fn fuzz_config_env() {
    let input = (
        prop::sample::select(BASES),
        prop::collection::vec(variable(), 0..6),
    );
    fuzz::run("config_env", 1500, input, |(base, vars)| {
        let mut root: toml::Table = toml::from_str(base).unwrap_or_default();
        for (k, v) in &vars {
            if let Ok(Applied::NotOurs) = env::apply(&mut root, k, v) {
                prop_assert!(
                    !k.starts_with(env::PREFIX) || k == "PGSLUICE_CONFIG" || k == "PGSLUICE_LOG"
                );
            }
        }
        let loaded = Config::from_toml_with_env(base, vars.into_iter());
        if let Ok(c) = loaded {
            prop_assert!(c.validate().is_ok());
        }
        Ok(())
    });
}
