//! Support for the property/fuzz tests (test builds only): one runner every target goes
//! through, and generators of the text a client may send.
//!
//! Every parser of outside bytes and the session core have a `fuzz_*` test next to their
//! code. Under `cargo test` each runs a bounded number of cases (its default, or
//! `PROPTEST_CASES`); with `PGSLUICE_FUZZ_SECONDS` set it runs batches of that many cases
//! with fresh seeds until the time is up, and prints how many inputs it ran
//! (`integration/fuzz.sh MINUTES` runs every target that way). A failure prints the
//! shrunk input and the seed that replays it (`PROPTEST_RNG_SEED`).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestError, TestRunner};

/// Runs `test` on inputs from `strategy`: `default_cases` of them, or as many batches as
/// fit in `PGSLUICE_FUZZ_SECONDS`. Panics with the minimal failing input on failure.
pub fn run<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = env_parse::<u32>("PROPTEST_CASES")
        .unwrap_or(default_cases)
        .max(1);
    let budget = env_parse::<f64>("PGSLUICE_FUZZ_SECONDS")
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let fixed = env_parse::<u64>("PROPTEST_RNG_SEED");
    let start = Instant::now();
    let mut inputs: u64 = 0;
    loop {
        let seed = fixed.unwrap_or_else(rand::random);
        let config = Config {
            cases,
            failure_persistence: None,
            rng_algorithm: RngAlgorithm::XorShift,
            rng_seed: RngSeed::Fixed(seed),
            max_shrink_time: 120_000,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        match runner.run(&strategy, &test) {
            Ok(()) => inputs += u64::from(cases),
            Err(TestError::Fail(why, input)) => panic!(
                "fuzz target {name} failed after {inputs} inputs: {why}\n\
                 minimal input: {input:#?}\n\
                 replay: PROPTEST_RNG_SEED={seed} PROPTEST_CASES={cases}"
            ),
            Err(TestError::Abort(why)) => panic!("fuzz target {name} aborted: {why}"),
        }
        let done = budget.is_none_or(|b| start.elapsed() >= b);
        if done || fixed.is_some() {
            break;
        }
    }
    // The line integration/fuzz.sh counts.
    println!(
        "\nfuzz {name}: {inputs} inputs in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

fn env_parse<T: std::str::FromStr>(var: &str) -> Option<T> {
    std::env::var(var).ok()?.trim().parse().ok()
}

/// Pieces of SQL text that steer the lexer, the prefilters, the effect scanner, the
/// classifier and the SQL-level statement forms into their interesting corners.
const SQL_PIECES: &[&str] = &[
    "SELECT",
    "select",
    "INTO",
    "into",
    "TEMP",
    "TEMPORARY",
    "GLOBAL",
    "FROM",
    "WHERE",
    "SET",
    "set",
    "RESET",
    "ALL",
    "DISCARD",
    "LISTEN",
    "UNLISTEN",
    "*",
    "CREATE",
    "OR",
    "REPLACE",
    "TABLE",
    "VIEW",
    "pg_temp",
    "pg_temp_3",
    "\"pg_temp\"",
    ".",
    "AS",
    "as",
    "ON",
    "COMMIT",
    "DROP",
    "DECLARE",
    "CURSOR",
    "WITH",
    "HOLD",
    "FOR",
    "UPDATE",
    "SHARE",
    "CLOSE",
    "PREPARE",
    "prepare",
    "EXECUTE",
    "execute",
    "DEALLOCATE",
    "TRANSACTION",
    "SESSION",
    "LOCAL",
    "TIME",
    "ZONE",
    "NAMES",
    "ROLE",
    "NONE",
    "AUTHORIZATION",
    "CHARACTERISTICS",
    "XML",
    "OPTION",
    "SCHEMA",
    "CATALOG",
    "DEFAULT",
    "TO",
    "to",
    "=",
    "EXPLAIN",
    "ANALYZE",
    "VERBOSE",
    "BEGIN",
    "START",
    "READ",
    "ONLY",
    "WRITE",
    "ROLLBACK",
    "END",
    "INSERT",
    "UPDATE",
    "DELETE",
    "VALUES",
    "RETURNING",
    "TABLE t",
    "set_config",
    "SET_CONFIG",
    "\"set_config\"",
    "pg_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_unlock_all",
    "nextval",
    "now",
    "count",
    "lower",
    "generate_series",
    "my_func",
    "pg_catalog",
    "(",
    ")",
    "((",
    "))",
    ",",
    ";",
    ";;",
    "'x'",
    "'it''s'",
    "''",
    "E'\\''",
    "e'a\\'b'",
    "\"Quoted\"",
    "\"a\"\"b\"",
    "$$body$$",
    "$t$ x $t$",
    "$1",
    "$12",
    "$",
    "$a",
    "1",
    "1.5",
    "1e3",
    ".5",
    "1abc",
    "--c\n",
    "-- pgsluice: replica\n",
    "/* c */",
    "/* pgsluice: primary */",
    "/* a /* b */ */",
    "'unterminated",
    "\"unterminated",
    "$$unterminated",
    "/* unterminated",
    "€",
    "é",
    "\u{301}",
    "日本",
    "\u{1F600}",
    "pgsluice.",
    "pgsluice.route",
    "pgsluice.min_lsn",
    "primary",
    "replica",
    "auto",
    "'0/16B3748'",
    "search_path",
    "work_mem",
    "'8MB'",
    "datestyle",
    "application_name",
    "a",
    "b",
    "t",
    "x",
    "p",
    "s1",
    "sluice_1",
    "\"P\"",
    "ALL",
    "ON COMMIT DROP",
    "IN",
    "INTO TEMP t",
    "FOR UPDATE",
    "NOT",
    "NULL",
];

/// One piece of SQL-ish text: mostly keywords and punctuation, sometimes anything.
fn sql_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(SQL_PIECES).prop_map(str::to_string),
        1 => "[a-z_][a-z0-9_$]{0,8}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

/// Text made of SQL pieces joined by varied blanks (or none), up to `max` pieces.
pub fn sql_soup(max: usize) -> impl Strategy<Value = String> {
    let sep = prop::sample::select(&[" ", " ", " ", "", "\n", "\t", "  "][..]);
    prop::collection::vec((sql_piece(), sep), 0..max).prop_map(|parts| {
        let mut s = String::new();
        for (piece, sep) in parts {
            s.push_str(&piece);
            s.push_str(sep);
        }
        s
    })
}

/// Any text a client may send as SQL: soup, arbitrary strings, lossily decoded bytes.
pub fn sql_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => sql_soup(24),
        2 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// Bytes that are mostly text: SQL soup, sometimes with invalid UTF-8 spliced in.
pub fn sql_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => sql_text().prop_map(String::into_bytes),
        1 => (sql_soup(12), prop::collection::vec(any::<u8>(), 0..8), sql_soup(12)).prop_map(
            |(a, junk, b)| {
                let mut v = a.into_bytes();
                v.extend(junk);
                v.extend(b.into_bytes());
                v
            }
        ),
    ]
}
