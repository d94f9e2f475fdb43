//! Tests of the `pg_prepared_statements` rewrite.

use super::*;

fn rows() -> Vec<ViewRow<'static>> {
    vec![
        ViewRow {
            server: "sluice_3",
            name: "q1",
            text: Some("PREPARE q1 AS SELECT 1;"),
            from_sql: true,
        },
        ViewRow {
            server: "sluice_4",
            name: "s0",
            text: None,
            from_sql: false,
        },
    ]
}

fn sub() -> String {
    subquery(&rows(), 1 << 20)
}

fn text(sql: &str) -> String {
    match rewrite(sql, &rows(), 1 << 20) {
        Rewrite::Text(t) => t,
        other => panic!("{sql}: {other:?}"),
    }
}

#[test]
fn prefilter() {
    assert!(may_name_prepared_view(
        b"select * from pg_prepared_statements"
    ));
    assert!(may_name_prepared_view(
        b"SELECT * FROM PG_CATALOG.PG_Prepared_Statements"
    ));
    assert!(may_name_prepared_view(b"table \"pg_prepared_statements\""));
    assert!(!may_name_prepared_view(b"SELECT * FROM pg_class"));
    assert!(!may_name_prepared_view(b"_prepared_statements"));
    assert!(!may_name_prepared_view(b""));
}

#[test]
fn bare_and_qualified_references_become_the_subquery() {
    let s = sub();
    assert_eq!(
        text("SELECT name FROM pg_prepared_statements;"),
        format!("SELECT name FROM {s} AS pg_prepared_statements;")
    );
    assert_eq!(
        text("select * from PG_CATALOG.pg_prepared_statements where name = 'q1'"),
        format!("select * from {s} AS pg_prepared_statements where name = 'q1'")
    );
    assert_eq!(
        text("SELECT p.name FROM pg_prepared_statements p ORDER BY 1"),
        format!("SELECT p.name FROM {s} p ORDER BY 1")
    );
    assert_eq!(
        text("SELECT 1 FROM pg_class c, pg_prepared_statements AS p"),
        format!("SELECT 1 FROM pg_class c, {s} AS p")
    );
    assert_eq!(
        text("SELECT 1 FROM pg_class c JOIN pg_prepared_statements ON true"),
        format!("SELECT 1 FROM pg_class c JOIN {s} AS pg_prepared_statements ON true")
    );
    assert_eq!(
        text("TABLE pg_prepared_statements"),
        format!("SELECT * FROM {s} AS pg_prepared_statements")
    );
    assert_eq!(
        text("SELECT count(*) FROM (SELECT * FROM pg_prepared_statements) x"),
        format!("SELECT count(*) FROM (SELECT * FROM {s} AS pg_prepared_statements) x")
    );
}

#[test]
fn column_references_and_other_statements_stay() {
    let s = sub();
    // The qualifier of a column stays; the FROM item is rewritten, keeping its name.
    assert_eq!(
        text("SELECT pg_prepared_statements.name FROM pg_prepared_statements"),
        format!("SELECT pg_prepared_statements.name FROM {s} AS pg_prepared_statements")
    );
    let same = |sql: &str| rewrite(sql, &rows(), 1 << 20);
    assert_eq!(same("SELECT 1"), Rewrite::None);
    assert_eq!(
        same("SELECT * FROM pg_catalog.\"pg_prepared_statements\""),
        Rewrite::Already
    );
    assert_eq!(
        same("SELECT * FROM other.pg_prepared_statements"),
        Rewrite::Already
    );
    assert_eq!(
        same("CREATE VIEW v AS SELECT * FROM pg_prepared_statements"),
        Rewrite::Already
    );
    assert_eq!(
        same("PREPARE p AS SELECT * FROM pg_prepared_statements"),
        Rewrite::Already
    );
    assert_eq!(same("DELETE FROM pg_prepared_statements"), Rewrite::Already);
    assert_eq!(
        same("SELECT 'pg_prepared_statements', x AS pg_prepared_statements FROM t"),
        Rewrite::Already
    );
    assert_eq!(
        same("GRANT SELECT ON pg_prepared_statements TO public"),
        Rewrite::Already
    );
    // Only the statement that reads it, of several.
    assert_eq!(
        text("CREATE TABLE pg_prepared_statements (a int); SELECT * FROM pg_prepared_statements"),
        format!(
            "CREATE TABLE pg_prepared_statements (a int); SELECT * FROM {s} AS pg_prepared_statements"
        )
    );
}

#[test]
fn the_rewritten_text_is_not_rewritten_again() {
    let once = text("SELECT * FROM pg_prepared_statements");
    assert_eq!(rewrite(&once, &rows(), 1 << 20), Rewrite::Already);
}

#[test]
fn literals_are_quoted_whatever_the_client_sent() {
    let tricky = ViewRow {
        server: "sluice_9",
        name: "it's \"odd\"\\",
        text: Some("PREPARE \"it's \"\"odd\"\"\\\" AS SELECT '\\';"),
        from_sql: true,
    };
    let s = subquery(&[tricky], 1 << 20);
    assert!(s.contains(r#"(E'sluice_9', E'it''s "odd"\\', E'PREPARE "it''s ""odd""\\" AS SELECT ''\\'';', true)"#), "{s}");
    // Every quote the literals open is closed: the lexer sees no unterminated token.
    let toks: Vec<_> = Lexer::new(&s).collect();
    assert!(toks.iter().all(|t| t.kind != Kind::Unterminated));
}

#[test]
fn no_rows_is_still_valid_and_the_budget_bounds_the_rows() {
    let s = subquery(&[], 1 << 20);
    assert!(s.contains("(VALUES (NULL::text, NULL::text, NULL::text, NULL::boolean)) m"));
    let small = subquery(&rows(), 120);
    assert!(
        small.contains("sluice_3") && !small.contains("sluice_4"),
        "{small}"
    );
}
