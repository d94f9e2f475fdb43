//! Fuzz targets: the classifier (never panics; what sqlparser cannot read is never
//! read-only; the cache answers as a fresh parse would), a unit of frames classified for
//! the router, and LSN text.

use std::sync::Arc;

use proptest::prelude::*;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::classify::classify_uncached;
use super::route::{Prepared, UNIT_LOOKAHEAD, Unit, classify_unit};
use super::*;
use crate::fuzz;

#[test]
fn fuzz_classify() {
    let allow = Allowlist::new(&["my_func".to_string()]);
    fuzz::run("classify", 1500, fuzz::sql_text(), |sql| {
        let class = classify_uncached(&sql, &allow);
        let parses = Parser::parse_sql(&PostgreSqlDialect {}, &sql).is_ok();
        // `TABLE name` is read as `SELECT * FROM name` when the parser refuses it.
        if !parses && !sql.to_ascii_lowercase().contains("table") {
            prop_assert!(!class.read_only, "unparsable yet read-only: {sql:?}");
        }
        if class.hint.is_none() {
            prop_assert!(!class.replica_ok(false) || class.read_only);
        }
        Ok(())
    });
}

/// Texts that differ only in their literals share a cache entry: each must classify as
/// it would alone, whichever came first. (Each case names its own table, so that earlier
/// cases in the thread's cache cannot answer for it.)
#[test]
fn fuzz_classify_cache() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CASE: AtomicU64 = AtomicU64::new(0);
    let literal = prop::sample::select(
        &[
            "1",
            "'x'",
            "$1",
            "1.5",
            "1e3",
            "$$a$$",
            "1abc",
            "1.2.3",
            "0x1f",
            "'a''b'",
            "E'\\''",
            "1_000",
            ".5e",
            "$q$ x $q$",
            "2.",
            "-1",
            "1e-5",
            "X'1f'",
            "B'101'",
            "'2024-01-01'",
            "$2",
            "0",
        ][..],
    );
    let template = prop::sample::select(
        &[
            "SELECT {} FROM {t}",
            "SELECT * FROM {t} WHERE a = {}",
            "SELECT {}, {} FROM {t}",
            "SELECT {} AS a FROM {t}",
            "SELECT lower({}) FROM {t}",
            "SELECT * FROM {t} LIMIT {}",
            "SELECT * FROM {t} LIMIT {} OFFSET {}",
            "SELECT {}::int FROM {t}",
            "SELECT count(*) FROM {t} WHERE a IN ({}, {})",
            "SELECT * FROM {t} ORDER BY {}",
            "SELECT {}::numeric(10, 2) FROM {t}",
            "SELECT 1::numeric({}, 2) FROM {t}",
            "SELECT * FROM {t} FETCH FIRST {} ROWS ONLY",
            "SELECT ARRAY[{}] FROM {t}",
            "SELECT a[{}] FROM {t}",
            "SELECT INTERVAL {} FROM {t}",
            "SELECT * FROM {t} WHERE a = {}p",
            "SELECT {}{} FROM {t}",
            "SELECT * FROM {t} WHERE a BETWEEN {} AND {}",
        ][..],
    );
    let input = (template, literal.clone(), literal, fuzz::sql_soup(4));
    fuzz::run("classify_cache", 1000, input, |(template, a, b, tail)| {
        let allow = Arc::new(Allowlist::default());
        let cached = Classifier::new(allow.clone());
        let table = format!("t{}", CASE.fetch_add(1, Ordering::Relaxed));
        let template = template.replace("{t}", &table);
        let first = template.replace("{}", a);
        let second = format!("{}{tail}", template.replace("{}", b));
        for text in [&first, &second] {
            let fresh = classify_uncached(text, &allow);
            prop_assert_eq!(cached.classify(text), fresh, "{:?} after {:?}", text, first);
        }
        Ok(())
    });
}

struct Names;

impl Prepared for Names {
    fn class_of(&self, name: &str, c: &Classifier) -> Option<Class> {
        (name == "r").then(|| c.classify("SELECT 1"))
    }
    fn executed_class(&self, sql: &str, c: &Classifier) -> Option<Class> {
        sql.contains("EXECUTE w")
            .then(|| c.classify("DELETE FROM t"))
    }
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend(((body.len() + 4) as i32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// A client message of a unit: well-formed or not.
fn unit_message() -> impl Strategy<Value = Vec<u8>> {
    let name = prop::sample::select(&["", "r", "w", "s1"][..]);
    prop_oneof![
        fuzz::sql_text().prop_map(|q| frame(b'Q', format!("{q}\0").as_bytes())),
        (name.clone(), fuzz::sql_text())
            .prop_map(|(n, q)| frame(b'P', format!("{n}\0{q}\0\0\0").as_bytes())),
        name.prop_map(|n| frame(b'B', format!("\0{n}\0\0\0\0\0\0\0").as_bytes())),
        Just(frame(b'E', b"\0\0\0\0\0")),
        Just(frame(b'D', b"P\0")),
        Just(frame(b'S', b"")),
        Just(frame(b'H', b"")),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(t, b)| frame(t, &b)),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

#[test]
fn fuzz_route_unit() {
    let input = (prop::collection::vec(unit_message(), 0..6), 0usize..8);
    fuzz::run("route_unit", 3000, input, |(msgs, cut)| {
        let c = Classifier::new(Arc::new(Allowlist::default()));
        let buf: Vec<u8> = msgs.concat();
        let buf = &buf[..buf.len().saturating_sub(cut)];
        let (unit, _) = classify_unit(buf, 1 << 20, &c, &Names, &mut Flipping(false));
        if unit == Unit::Incomplete {
            prop_assert!(buf.len() < UNIT_LOOKAHEAD);
        }
        Ok(())
    });
}

#[test]
fn fuzz_lsn_text() {
    let input = (any::<u64>(), "[0-9A-Fa-f/ ]{0,20}|.{0,12}");
    fuzz::run("lsn_text", 4000, input, |(lsn, text)| {
        prop_assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        if let Some(v) = parse_lsn(&text) {
            prop_assert_eq!(parse_lsn(&format_lsn(v)), Some(v));
        }
        Ok(())
    });
}

/// A session whose read-only default changes at every question; the catalog knows nothing.
struct Flipping(bool);

impl crate::router::route::SessionView for Flipping {
    fn read_only(&mut self) -> bool {
        self.0 = !self.0;
        self.0
    }
    fn functions(
        &mut self,
        _: &[crate::router::functions::FuncRef],
    ) -> crate::router::functions::Resolved {
        crate::router::functions::Resolved::Unknown
    }
}
