//! Fuzz targets: the lexer, the normaliser, the byte prefilter against the full effect
//! scan, statement effects, and the SQL-level `PREPARE`/`EXECUTE` forms.

use proptest::prelude::*;

use super::effects::scan;
use super::lexer::{Kind, Lexer};
use super::*;
use crate::fuzz;

#[test]
fn fuzz_sql_lexer() {
    fuzz::run("sql_lexer", 4000, fuzz::sql_text(), |sql| {
        let mut last_end = 0;
        let mut n = 0;
        for t in Lexer::new(&sql) {
            n += 1;
            prop_assert!(n <= sql.len(), "more tokens than bytes");
            prop_assert!(t.start >= last_end && t.start < t.end && t.end <= sql.len());
            prop_assert!(sql.is_char_boundary(t.start) && sql.is_char_boundary(t.end));
            let text = &sql[t.start..t.end];
            match t.kind {
                Kind::Quoted => prop_assert!(text.len() >= 2 && text.ends_with('"')),
                Kind::Unterminated => prop_assert_eq!(t.end, sql.len()),
                Kind::Punct(p) => prop_assert_eq!(text.as_bytes(), &[p]),
                Kind::Word | Kind::Literal => {}
            }
            last_end = t.end;
        }
        Ok(())
    });
}

#[test]
fn fuzz_sql_normalize() {
    fuzz::run("sql_normalize", 4000, fuzz::sql_text(), |sql| {
        let mut lexer = Lexer::new(&sql);
        let unterminated =
            lexer.by_ref().any(|t| t.kind == Kind::Unterminated) || lexer.open_comment();
        let key = normalize(&sql);
        prop_assert!(!unterminated || key.is_none());
        let mut reused = b"left over".to_vec();
        prop_assert_eq!(normalize_bytes(&sql, &mut reused), key.is_some());
        if let Some(key) = key {
            prop_assert_eq!(&reused, key.as_bytes());
            prop_assert!(!key.contains("--") || sql.contains("--"));
            // Blanks between tokens do not matter.
            let spaced: String = Lexer::new(&sql)
                .map(|t| &sql[t.start..t.end])
                .collect::<Vec<_>>()
                .join("  ");
            prop_assert_eq!(normalize(&spaced), Some(key.clone()), "{}", spaced);
        }
        Ok(())
    });
}

#[test]
fn fuzz_sql_prefilter_is_conservative() {
    fuzz::run("sql_prefilter", 6000, fuzz::sql_bytes(), |bytes| {
        let may = may_have_effects(&bytes);
        if let Ok(sql) = std::str::from_utf8(&bytes) {
            let effects = scan(sql);
            prop_assert!(
                may || effects.is_empty(),
                "the prefilter missed {:?} in {:?}",
                effects,
                sql
            );
            prop_assert_eq!(inspect(sql), if may { effects } else { Vec::new() });
        }
        Ok(())
    });
}

#[test]
fn fuzz_sql_effects() {
    fuzz::run("sql_effects", 4000, fuzz::sql_text(), |sql| {
        for e in inspect(&sql) {
            match e {
                Effect::Set { name, set_sql, .. } => {
                    prop_assert!(!name.is_empty());
                    prop_assert!(sql.contains(&set_sql), "{set_sql:?}");
                }
                Effect::Reset { name } => prop_assert!(!name.is_empty()),
                Effect::Pin(r) | Effect::Unpin(r) => {
                    prop_assert!(!matches!(
                        r,
                        PinReason::ProtocolPrepare | PinReason::Unknown
                    ))
                }
                Effect::ResetAll | Effect::DiscardAll | Effect::Opaque => {}
            }
        }
        Ok(())
    });
}

const BODIES: &[&str] = &[
    "SELECT 1",
    "SELECT $1::int + 1",
    "INSERT INTO t VALUES ($1)",
    "select ';' from t",
    "SELECT $$a;b$$",
    "VALUES (1), (2)",
];

/// A statement name as a client may write it, and how PostgreSQL folds it.
fn statement_name() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_map(|n| (n.clone(), n.to_ascii_lowercase())),
        "[a-zA-Z €\"]{1,6}".prop_map(|n| (format!("\"{}\"", n.replace('"', "\"\"")), n)),
    ]
}

#[test]
fn fuzz_sql_prepare_execute() {
    let types = prop::sample::select(&["", " (int)", "(int, text)", " ( int [ ] )"][..]);
    let input = (
        fuzz::sql_text(),
        statement_name(),
        types,
        prop::sample::select(BODIES),
        prop::sample::select(&["", ";", " ; ", ";;"][..]),
    );
    fuzz::run(
        "sql_prepare_execute",
        4000,
        input,
        |(sql, name, types, body, end)| {
            for text in [
                sql.as_str(),
                &format!("PREPARE {sql}"),
                &format!("EXECUTE {sql}"),
            ] {
                if let Some(p) = sql_prepare(text) {
                    let token = text.get(p.span.0..p.span.1);
                    prop_assert!(token.is_some(), "span off a char boundary");
                    prop_assert!(text.contains(p.body) && text.contains(p.types));
                }
                if let Some(e) = sql_execute(text) {
                    prop_assert!(text.get(e.span.0..e.span.1).is_some());
                }
            }
            // Well-formed statements are read as written.
            let (written, folded) = name;
            let text = format!("PREPARE {written}{types} AS {body}{end}");
            let p = sql_prepare(&text);
            prop_assert!(p.is_some(), "{text}");
            if let Some(p) = p {
                prop_assert_eq!(&p.name, &folded);
                prop_assert_eq!(&text[p.span.0..p.span.1], written.as_str());
                prop_assert_eq!(p.types, types.trim());
                prop_assert_eq!(p.body, body);
            }
            for text in [
                format!("EXECUTE {written}(1, 'a'){end}"),
                format!("explain (costs off) EXECUTE {written}{end}"),
                format!("CREATE TEMP TABLE x AS EXECUTE {written} WITH NO DATA{end}"),
            ] {
                let e = sql_execute(&text);
                prop_assert_eq!(e.map(|e| e.name), Some(folded.clone()), "{}", text);
            }
            Ok(())
        },
    );
}
