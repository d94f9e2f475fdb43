//! SQL-level prepared statements in query text: a lone `PREPARE` or `EXECUTE`, with the
//! statement name folded as PostgreSQL folds it.

use super::cursor::{is_kw, slice, text, unquote_raw};
use super::lexer::{Kind, Lexer, Tok};

/// A lone SQL `PREPARE name [(types)] AS statement`.
#[derive(Debug, PartialEq, Eq)]
pub struct SqlPrepare<'a> {
    /// As PostgreSQL folds it: unquoted lowercased, quoted exact.
    pub name: String,
    /// `(int, text)`, or empty.
    pub types: &'a str,
    /// The prepared statement's text.
    pub body: &'a str,
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
    Some(SqlPrepare { name, types, body })
}

/// `sql` as a single `EXECUTE name [(args)]`: the name and the text after it.
pub fn sql_execute(sql: &str) -> Option<(String, &str)> {
    let mut lx = Lexer::new(sql);
    if !is_kw(sql, lx.next()?, "execute") {
        return None;
    }
    let name_tok = lx.next()?;
    let name = statement_name(sql, name_tok)?;
    let rest_start = name_tok.end;
    let rest = match lx.clone().next() {
        None => "",
        Some(_) => single_statement(sql, rest_start, lx)?,
    };
    Some((name, rest))
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

    #[test]
    fn prepare_and_execute() {
        let p = sql_prepare("PREPARE Foo (int, text) AS SELECT $1, $2;").unwrap();
        assert_eq!(p.name, "foo");
        assert_eq!(p.types, "(int, text)");
        assert_eq!(p.body, "SELECT $1, $2");
        let p = sql_prepare("prepare \"Q\" as select ';' from t").unwrap();
        assert_eq!(
            (p.name.as_str(), p.types, p.body),
            ("Q", "", "select ';' from t")
        );
        assert!(sql_prepare("PREPARE TRANSACTION 'x'").is_none());
        assert!(sql_prepare("PREPARE a AS SELECT 1; SELECT 2").is_none());
        assert_eq!(
            sql_execute("EXECUTE foo(1, 'a')"),
            Some(("foo".into(), "(1, 'a')"))
        );
        assert_eq!(sql_execute("execute \"Foo\";"), Some(("Foo".into(), "")));
        assert!(sql_execute("EXECUTE foo; SELECT 1").is_none());
    }
}
