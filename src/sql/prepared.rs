//! SQL-level prepared statements in query text: a lone `PREPARE`, and a statement that
//! runs one with `EXECUTE` (on its own, under `EXPLAIN`, or as the source of
//! `CREATE TABLE ... AS`), with the statement name folded as PostgreSQL folds it and the
//! byte span of its token, so that a pooler can replace just that token.

use super::cursor::{is_kw, slice, text, unquote_raw};
use super::lexer::{Kind, Lexer, Tok};

/// A lone SQL `PREPARE name [(types)] AS statement`.
#[derive(Debug, PartialEq, Eq)]
pub struct SqlPrepare<'a> {
    /// As PostgreSQL folds it: unquoted lowercased, quoted exact.
    pub name: String,
    /// Byte range of the name's token in the text.
    pub span: (usize, usize),
    /// `(int, text)`, or empty.
    pub types: &'a str,
    /// The prepared statement's text.
    pub body: &'a str,
}

/// An `EXECUTE name` inside a single statement.
#[derive(Debug, PartialEq, Eq)]
pub struct SqlExecute {
    /// As PostgreSQL folds it.
    pub name: String,
    /// Byte range of the name's token in the text.
    pub span: (usize, usize),
}

/// `sql` as a single `PREPARE` of a statement (not `PREPARE TRANSACTION`).
pub fn sql_prepare(sql: &str) -> Option<SqlPrepare<'_>> {
    let mut lx = Lexer::new(sql);
    let verb = lx.next()?;
    if !is_kw(sql, verb, "prepare") {
        return None;
    }
    let name_tok = lx.next()?;
    let name = statement_name(sql, name_tok)?;
    let mut next = lx.next()?;
    let mut types = "";
    if next.kind == Kind::Punct(b'(') {
        let start = next.start;
        let mut depth = 1;
        let mut end = next.end;
        while depth > 0 {
            let t = lx.next()?;
            match t.kind {
                Kind::Punct(b'(') => depth += 1,
                Kind::Punct(b')') => depth -= 1,
                Kind::Punct(b';') => return None,
                _ => {}
            }
            end = t.end;
        }
        types = slice(sql, start, end);
        next = lx.next()?;
    }
    if !is_kw(sql, next, "as") {
        return None;
    }
    let body_start = lx.clone().next()?.start;
    let body = single_statement(sql, body_start, lx)?;
    Some(SqlPrepare {
        name,
        span: (name_tok.start, name_tok.end),
        types,
        body,
    })
}

/// The `EXECUTE name` that `sql` runs, when it is a single statement that is one:
/// `EXECUTE p(...)`, `EXPLAIN [options] EXECUTE p`, `CREATE [TEMP] TABLE t [...] AS
/// EXECUTE p [...]`, or `EXPLAIN` of such a `CREATE TABLE`.
pub fn sql_execute(sql: &str) -> Option<SqlExecute> {
    let mut lx = Lexer::new(sql);
    let first = lx.next()?;
    let found = if is_kw(sql, first, "execute") {
        name_after(sql, &mut lx)?
    } else if is_kw(sql, first, "explain") || is_kw(sql, first, "create") {
        nested_execute(sql, first, &mut lx)?
    } else {
        return None;
    };
    single_statement(sql, 0, lx)?;
    Some(found)
}

/// The name token right after `EXECUTE`.
fn name_after(sql: &str, lx: &mut Lexer<'_>) -> Option<SqlExecute> {
    let t = lx.next()?;
    Some(SqlExecute {
        name: statement_name(sql, t)?,
        span: (t.start, t.end),
    })
}

/// Finds `EXECUTE name` at parenthesis depth 0 where a statement may stand: after
/// `EXPLAIN` and its options, or after the `AS` of `CREATE TABLE ... AS`.
fn nested_execute(sql: &str, first: Tok, lx: &mut Lexer<'_>) -> Option<SqlExecute> {
    let mut depth = 0u32;
    let mut prev = first;
    let mut table = false;
    while let Some(t) = lx.next() {
        match t.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth = depth.saturating_sub(1),
            Kind::Punct(b';') => return None,
            Kind::Word if depth == 0 => {
                table |= is_kw(sql, t, "table");
                let statement_may_start = ["explain", "analyze", "analyse", "verbose"]
                    .iter()
                    .any(|k| is_kw(sql, prev, k))
                    || prev.kind == Kind::Punct(b')') && is_kw(sql, first, "explain") && !table
                    || table && is_kw(sql, prev, "as");
                if statement_may_start && is_kw(sql, t, "execute") {
                    return name_after(sql, lx);
                }
            }
            _ => {}
        }
        prev = t;
    }
    None
}

/// The text from `start` to the end, if no `;` other than trailing ones follows.
fn single_statement<'a>(sql: &'a str, start: usize, lx: Lexer<'_>) -> Option<&'a str> {
    let mut end = start;
    let mut after_semicolon = false;
    for t in lx {
        if t.kind == Kind::Punct(b';') {
            after_semicolon = true;
            continue;
        }
        if after_semicolon || t.kind == Kind::Unterminated {
            return None;
        }
        end = t.end;
    }
    Some(slice(sql, start, end))
}

/// A statement name token as PostgreSQL folds it.
fn statement_name(sql: &str, t: Tok) -> Option<String> {
    match t.kind {
        Kind::Word => Some(text(sql, t).to_ascii_lowercase()),
        Kind::Quoted => Some(unquote_raw(text(sql, t)).replace("\"\"", "\"")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(sql: &str) -> Option<(String, &str)> {
        sql_execute(sql).map(|e| (e.name, &sql[e.span.0..e.span.1]))
    }

    #[test]
    fn prepare_and_execute() {
        let p = sql_prepare("PREPARE Foo (int, text) AS SELECT $1, $2;").unwrap();
        assert_eq!(p.name, "foo");
        assert_eq!(p.span, (8, 11));
        assert_eq!(p.types, "(int, text)");
        assert_eq!(p.body, "SELECT $1, $2");
        let p = sql_prepare("prepare \"Q\" as select ';' from t").unwrap();
        assert_eq!(
            (p.name.as_str(), p.types, p.body),
            ("Q", "", "select ';' from t")
        );
        assert!(sql_prepare("PREPARE TRANSACTION 'x'").is_none());
        assert!(sql_prepare("PREPARE a AS SELECT 1; SELECT 2").is_none());
        assert_eq!(exec("EXECUTE foo(1, 'a')"), Some(("foo".into(), "foo")));
        assert_eq!(exec("execute \"Foo\";"), Some(("Foo".into(), "\"Foo\"")));
        assert!(exec("EXECUTE foo; SELECT 1").is_none());
    }

    #[test]
    fn execute_under_explain_and_create_table_as() {
        assert_eq!(exec("EXPLAIN EXECUTE p(1)"), Some(("p".into(), "p")));
        assert_eq!(
            exec("explain (costs off, analyze) execute P"),
            Some(("p".into(), "P"))
        );
        assert_eq!(
            exec("EXPLAIN ANALYZE VERBOSE EXECUTE q"),
            Some(("q".into(), "q"))
        );
        assert_eq!(
            exec("CREATE TEMP TABLE t (a, b) AS EXECUTE q5(1) WITH NO DATA"),
            Some(("q5".into(), "q5"))
        );
        assert_eq!(
            exec("EXPLAIN (COSTS OFF) CREATE TABLE t AS EXECUTE p(2)"),
            Some(("p".into(), "p"))
        );
        assert!(exec("EXPLAIN SELECT execute FROM t").is_none());
        assert!(exec("CREATE TABLE execute (a int)").is_none());
        assert!(exec("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql").is_none());
        assert!(exec("EXPLAIN EXECUTE p; DROP TABLE x").is_none());
    }
}
