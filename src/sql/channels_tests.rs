//! Tests of the `pg_listening_channels()` rewrite, and its fuzz target.

use proptest::prelude::*;

use super::*;
use crate::fuzz;

const CHANNELS: &[&str] = &["b", "a"];

fn with() -> String {
    replacement(CHANNELS, 1 << 20)
}

fn text(sql: &str) -> String {
    rewrite(sql, CHANNELS, 1 << 20).unwrap_or_else(|| panic!("{sql}: not rewritten"))
}

#[test]
fn prefilter() {
    assert!(may_call_listening_channels(
        b"SELECT pg_listening_channels()"
    ));
    assert!(may_call_listening_channels(
        b"select * from PG_CATALOG.PG_Listening_Channels()"
    ));
    assert!(may_call_listening_channels(b"\"pg_listening_channels\""));
    assert!(!may_call_listening_channels(b"SELECT * FROM pg_class"));
    assert!(!may_call_listening_channels(b"_listening_channels()"));
    assert!(!may_call_listening_channels(b"pg_listening_channel"));
    assert!(!may_call_listening_channels(b""));
}

#[test]
fn the_replacement_lists_the_clients_channels_then_the_servers() {
    assert_eq!(
        with(),
        "pg_catalog.unnest(ARRAY[E'b',E'a']::text[] || ARRAY(SELECT c FROM \
         pg_catalog.\"pg_listening_channels\"() c WHERE c OPERATOR(pg_catalog.<>) ALL \
         (ARRAY[E'b',E'a']::text[])))"
    );
    // Without channels the server's own answer is the client's.
    assert_eq!(
        replacement(&[], 1 << 20),
        "pg_catalog.\"pg_listening_channels\"()"
    );
    // Names are quoted as string literals, whatever they hold.
    let odd = replacement(&["it's", "back\\slash", "Q\"x€"], 1 << 20);
    assert!(
        odd.contains(r#"ARRAY[E'it''s',E'back\\slash',E'Q"x€']"#),
        "{odd}"
    );
    // Past the budget, names are left out (the first always stays).
    let many: Vec<String> = (0..100).map(|i| format!("channel_{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let cut = replacement(&refs, 200);
    assert!(
        cut.contains("E'channel_0'") && !cut.contains("E'channel_99'"),
        "{cut}"
    );
    assert!(replacement(&refs, 0).contains("E'channel_0'"));
}

#[test]
fn a_select_list_item_keeps_its_column_name() {
    let w = with();
    let named = format!("{w} AS pg_listening_channels");
    assert_eq!(
        text("SELECT pg_listening_channels()"),
        format!("SELECT {named}")
    );
    assert_eq!(
        text("select pg_catalog.PG_LISTENING_CHANNELS ( ) ;"),
        format!("select {named} ;")
    );
    assert_eq!(
        text("SELECT 1, pg_listening_channels() FROM t ORDER BY 1"),
        format!("SELECT 1, {named} FROM t ORDER BY 1")
    );
    assert_eq!(
        text("SELECT DISTINCT pg_listening_channels(), 2"),
        format!("SELECT DISTINCT {named}, 2")
    );
    assert_eq!(
        text("SELECT pg_listening_channels()::text"),
        format!("SELECT {w}::text AS pg_listening_channels")
    );
    assert_eq!(
        text("SELECT pg_listening_channels()::pg_catalog.varchar(10)[]"),
        format!("SELECT {w}::pg_catalog.varchar(10)[] AS pg_listening_channels")
    );
    // The client named it: nothing is added.
    assert_eq!(
        text("SELECT pg_listening_channels() AS ch"),
        format!("SELECT {w} AS ch")
    );
    assert_eq!(
        text("SELECT pg_listening_channels() ch"),
        format!("SELECT {w} ch")
    );
    // Inside an expression the name is the expression's: nothing is added.
    assert_eq!(
        text("SELECT upper(pg_listening_channels())"),
        format!("SELECT upper({w})")
    );
    assert_eq!(
        text("SELECT pg_listening_channels() || 'x'"),
        format!("SELECT {w} || 'x'")
    );
}

/// Found by `fuzz_listening_channels_rewrite` (minimal input: `WITH ORDINALITY FROM
/// pg_listening_channels() ( )`): the alias added after the call, followed by the
/// client's `( )`, read as a call on a second pass, so a rewritten text was rewritten
/// again. A name after `AS` is an alias, never a call.
#[test]
fn a_name_after_as_is_not_a_call() {
    let w = with();
    let once = text("WITH ORDINALITY FROM pg_listening_channels() ( ) ");
    assert_eq!(
        once,
        format!("WITH ORDINALITY FROM {w} AS pg_listening_channels ( ) ")
    );
    assert_eq!(rewrite(&once, CHANNELS, 1 << 20), None);
    assert_eq!(
        rewrite("SELECT 1 AS pg_listening_channels()", CHANNELS, 1 << 20),
        None
    );
}

#[test]
fn a_from_item_keeps_its_column_name() {
    let w = with();
    assert_eq!(
        text("SELECT * FROM pg_listening_channels()"),
        format!("SELECT * FROM {w} AS pg_listening_channels")
    );
    assert_eq!(
        text("SELECT * FROM pg_listening_channels() WITH ORDINALITY ORDER BY 2"),
        format!("SELECT * FROM {w} WITH ORDINALITY AS pg_listening_channels ORDER BY 2")
    );
    assert_eq!(
        text("SELECT c FROM pg_listening_channels() c WHERE c = 'a'"),
        format!("SELECT c FROM {w} c WHERE c = 'a'")
    );
    assert_eq!(
        text("SELECT * FROM pg_listening_channels() AS t(x)"),
        format!("SELECT * FROM {w} AS t(x)")
    );
    assert_eq!(
        text("SELECT * FROM pg_class, pg_listening_channels() WHERE true"),
        format!("SELECT * FROM pg_class, {w} AS pg_listening_channels WHERE true")
    );
    assert_eq!(
        text("SELECT * FROM t JOIN pg_listening_channels() ON true"),
        format!("SELECT * FROM t JOIN {w} AS pg_listening_channels ON true")
    );
    assert_eq!(
        text("SELECT count(*) FROM pg_listening_channels()"),
        format!("SELECT count(*) FROM {w} AS pg_listening_channels")
    );
}

#[test]
fn subqueries_and_several_statements() {
    let w = with();
    let named = format!("{w} AS pg_listening_channels");
    assert_eq!(
        text("SELECT 'a' IN (SELECT pg_listening_channels())"),
        format!("SELECT 'a' IN (SELECT {named})")
    );
    assert_eq!(
        text("SELECT x FROM t WHERE x IN (SELECT pg_listening_channels()) AND y"),
        format!("SELECT x FROM t WHERE x IN (SELECT {named}) AND y")
    );
    assert_eq!(
        text("LISTEN a; SELECT pg_listening_channels(); SELECT pg_listening_channels()"),
        format!("LISTEN a; SELECT {named}; SELECT {named}")
    );
    assert_eq!(
        text("WITH c AS (SELECT pg_listening_channels()) SELECT * FROM c"),
        format!("WITH c AS (SELECT {named}) SELECT * FROM c")
    );
    assert_eq!(
        text("INSERT INTO t SELECT pg_listening_channels()"),
        format!("INSERT INTO t SELECT {named}")
    );
    assert_eq!(
        text("(SELECT pg_listening_channels())"),
        format!("(SELECT {named})")
    );
}

#[test]
fn what_is_left_alone() {
    for sql in [
        "SELECT 1",
        "SELECT 'pg_listening_channels()'",
        "SELECT \"pg_listening_channels\"()",
        "SELECT pg_catalog.\"pg_listening_channels\"()",
        "SELECT public.pg_listening_channels()",
        "SELECT pg_listening_channels",
        "SELECT pg_listening_channels(1)",
        "SELECT t.pg_listening_channels() FROM t",
        "CREATE VIEW v AS SELECT pg_listening_channels()",
        "PREPARE p AS SELECT pg_listening_channels()",
        "EXPLAIN SELECT pg_listening_channels()",
        "DO $$BEGIN PERFORM pg_listening_channels(); END$$",
        "SELECT 1 -- pg_listening_channels()",
        "SELECT /* pg_listening_channels() */ 1",
    ] {
        assert_eq!(rewrite(sql, CHANNELS, 1 << 20), None, "{sql}");
    }
    // The rewritten text is not rewritten again.
    let once = text("SELECT * FROM pg_listening_channels()");
    assert_eq!(rewrite(&once, CHANNELS, 1 << 20), None, "{once}");
}

#[test]
fn without_channels_the_call_is_the_servers_own() {
    assert_eq!(
        rewrite("SELECT pg_listening_channels()", &[], 1 << 20).as_deref(),
        Some("SELECT pg_catalog.\"pg_listening_channels\"()")
    );
    assert_eq!(
        rewrite("SELECT * FROM pg_listening_channels()", &[], 1 << 20).as_deref(),
        Some("SELECT * FROM pg_catalog.\"pg_listening_channels\"()")
    );
}

/// SQL soup with calls of the function mixed in.
fn soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => fuzz::sql_soup(6),
        1 => prop::sample::select(
            &[
                "pg_listening_channels()",
                "pg_catalog.pg_listening_channels()",
                "PG_LISTENING_CHANNELS ( )",
                "SELECT pg_listening_channels()",
                "FROM pg_listening_channels()",
                "WITH ORDINALITY",
                "::text",
                "\"pg_listening_channels\"()",
            ][..]
        )
        .prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.join(" "))
}

fn channel_lists() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            3 => "[a-z_][a-z0-9_]{0,8}",
            1 => any::<String>().prop_map(|s| s.chars().filter(|c| *c != '\0').take(12).collect()),
        ],
        0..4,
    )
}

#[test]
fn fuzz_listening_channels_rewrite() {
    fuzz::run(
        "listening_channels",
        3000,
        (soup(), channel_lists()),
        |(sql, channels)| {
            let refs: Vec<&str> = channels.iter().map(String::as_str).collect();
            let out = rewrite(&sql, &refs, 1 << 16);
            // The prefilter never misses a call that is rewritten.
            prop_assert!(out.is_none() || may_call_listening_channels(sql.as_bytes()));
            if let Some(out) = out {
                // Every replaced call is gone, and nothing is replaced twice.
                prop_assert_eq!(rewrite(&out, &refs, 1 << 16), None, "{}", out);
                // The text's tokens outside the calls are kept.
                let words = |s: &str| {
                    Lexer::new(s)
                        .filter(|t| t.kind == Kind::Word)
                        .filter(|t| {
                            !slice(s, t.start, t.end).eq_ignore_ascii_case("pg_listening_channels")
                        })
                        .count()
                };
                prop_assert!(words(&out) >= words(&sql));
                // An unterminated literal or comment in the client's text stays the last
                // thing: a replacement never lands inside it.
                let unterminated = |s: &str| {
                    let mut lx = Lexer::new(s);
                    lx.by_ref().any(|t| t.kind == Kind::Unterminated) || lx.open_comment()
                };
                prop_assert_eq!(unterminated(&out), unterminated(&sql));
            }
            Ok(())
        },
    );
}
