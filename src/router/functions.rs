//! Function volatility from the catalog: what the database itself says a function may do.
//!
//! PostgreSQL refuses data changes inside `IMMUTABLE` and `STABLE` functions, so a read
//! that calls only such functions may run on a replica. The primary's monitor loads
//! every function's volatility (`pg_proc`, worst over the overloads of a name in a
//! schema, and for an aggregate over its support functions) into a [`Catalog`], refreshed
//! on a timer, on RELOAD, and soon after a session meets a name it does not know. A
//! session resolves the names its query calls against it, through its own `search_path`.
//!
//! The rule is one-sided, like the rest of the router: a name the catalog does not have,
//! an overload set with any `VOLATILE` member, and any name that is also a built-in in
//! `pg_catalog` (searched first, and its volatility says nothing: `txid_current` is STABLE
//! and assigns a transaction id) send the query to the primary. A function that writes
//! anyway from a non-volatile body (a STABLE function calling `nextval`) is refused by
//! the replica with 25006, and that read is retried on the primary.

use std::collections::HashMap;
use std::time::Instant;

/// A function as a query names it: unquoted parts folded to lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FuncRef {
    pub schema: Option<String>,
    pub name: String,
}

/// `pg_proc.provolatile`, ordered from safest to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

impl Volatility {
    fn parse(s: &str) -> Volatility {
        match s {
            "i" => Volatility::Immutable,
            "s" => Volatility::Stable,
            _ => Volatility::Volatile,
        }
    }
}

/// What the catalog says about the functions one query calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Every one is IMMUTABLE or STABLE.
    ReadOnly,
    /// Some overload a name may resolve to is VOLATILE, or is a built-in.
    Volatile,
    /// A name the catalog does not have (not loaded yet, or created since).
    Unknown,
}

/// The schemas an unqualified name is looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchPath {
    /// The session set its search_path: these schemas, in order.
    Set(Vec<String>),
    /// The server's default, which pgsluice does not know: every schema counts.
    Default,
}

/// Every function of one database: by name, the schemas that have one of that name and
/// the worst volatility among its overloads there.
#[derive(Debug, Default)]
pub struct Catalog {
    by_name: HashMap<String, Vec<(String, Volatility)>>,
    /// When it was read (`None`: never).
    pub loaded_at: Option<Instant>,
}

/// Reads (schema, name, worst volatility) for every function pgsluice may be asked
/// about. `pg_temp_*` schemas are left out (their functions are called qualified, and
/// pgsluice refuses to guess about them).
pub const CATALOG_SQL: &str = "SELECT n.nspname, p.proname, \
     max(CASE v.v WHEN 'v' THEN 2 WHEN 's' THEN 1 ELSE 0 END)::text \
     FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     LEFT JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid \
     CROSS JOIN LATERAL (SELECT p.provolatile AS v UNION ALL \
       SELECT f.provolatile FROM pg_catalog.pg_proc f WHERE f.oid IN (a.aggtransfn, \
       a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn, a.aggmtransfn, \
       a.aggminvtransfn, a.aggmfinalfn)) v \
     WHERE n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%' \
     GROUP BY 1, 2";

impl Catalog {
    /// Builds a catalog from [`CATALOG_SQL`]'s rows (schema, name, 0|1|2).
    pub fn from_rows(rows: &[Vec<Option<String>>], at: Instant) -> Catalog {
        let mut by_name: HashMap<String, Vec<(String, Volatility)>> = HashMap::new();
        for row in rows {
            let (Some(Some(schema)), Some(Some(name)), Some(Some(v))) =
                (row.first(), row.get(1), row.get(2))
            else {
                continue;
            };
            let v = match v.as_str() {
                "0" => Volatility::parse("i"),
                "1" => Volatility::parse("s"),
                _ => Volatility::parse("v"),
            };
            by_name
                .entry(name.clone())
                .or_default()
                .push((schema.clone(), v));
        }
        Catalog {
            by_name,
            loaded_at: Some(at),
        }
    }

    /// Test and bench helper: a catalog from (schema, name, volatility) triples.
    pub fn from_entries(entries: &[(&str, &str, Volatility)]) -> Catalog {
        let mut by_name: HashMap<String, Vec<(String, Volatility)>> = HashMap::new();
        for (schema, name, v) in entries {
            let list = by_name.entry((*name).to_string()).or_default();
            match list.iter_mut().find(|(s, _)| s == schema) {
                Some((_, worst)) => *worst = (*worst).max(*v),
                None => list.push(((*schema).to_string(), *v)),
            }
        }
        Catalog {
            by_name,
            loaded_at: Some(Instant::now()),
        }
    }

    /// Functions known.
    pub fn len(&self) -> usize {
        self.by_name.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// What `f` may be, looked up as PostgreSQL would: a qualified name in its schema; an
    /// unqualified one in `pg_catalog` (always searched) and the session's search path.
    /// Argument types are unknown here, so every overload a name could resolve to counts.
    pub fn resolve(&self, f: &FuncRef, path: &SearchPath) -> Resolved {
        let Some(found) = self.by_name.get(&f.name) else {
            return Resolved::Unknown;
        };
        let mut any = false;
        let mut worst = Volatility::Immutable;
        for (schema, v) in found {
            let candidate = match (&f.schema, path) {
                (Some(s), _) => s == schema,
                // A built-in of this name may be the one called: its volatility is no
                // promise (see the module doc).
                (None, _) if schema == "pg_catalog" => return Resolved::Volatile,
                (None, SearchPath::Default) => true,
                (None, SearchPath::Set(schemas)) => schemas.iter().any(|s| s == schema),
            };
            if candidate {
                any = true;
                worst = worst.max(*v);
            }
        }
        match (any, worst) {
            (false, _) => Resolved::Unknown,
            (true, Volatility::Volatile) => Resolved::Volatile,
            (true, _) => Resolved::ReadOnly,
        }
    }

    /// The verdict on every function of one query: the worst of them.
    pub fn resolve_all(&self, fs: &[FuncRef], path: &SearchPath) -> Resolved {
        let mut verdict = Resolved::ReadOnly;
        for f in fs {
            match self.resolve(f, path) {
                Resolved::ReadOnly => {}
                Resolved::Volatile => return Resolved::Volatile,
                Resolved::Unknown => verdict = Resolved::Unknown,
            }
        }
        verdict
    }
}

/// The schemas of a session's `search_path` from the statement that set it (as the
/// session state records it: the client's `SET` or a `set_config` call). `user` stands
/// for `$user`. Anything this cannot read with certainty is [`SearchPath::Default`]:
/// every schema counts, which can only send more to the primary.
pub fn search_path_of(set_sql: &str, user: &str) -> SearchPath {
    let items = if let Some(value) = set_config_value(set_sql) {
        split_identifiers(&value)
    } else {
        set_statement_items(set_sql)
    };
    match items {
        Some(items) if !items.is_empty() => SearchPath::Set(
            items
                .into_iter()
                .map(|s| if s == "$user" { user.to_string() } else { s })
                .collect(),
        ),
        _ => SearchPath::Default,
    }
}

/// The value of `set_config('search_path', '<value>', ...)`.
fn set_config_value(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    let at = lower.find("set_config")?;
    let rest = sql.get(at..)?;
    let mut literals = Literals { s: rest };
    let name = literals.next()?;
    if !name.eq_ignore_ascii_case("search_path") {
        return None;
    }
    literals.next()
}

/// Standard-conforming string literals in a text, in order.
struct Literals<'a> {
    s: &'a str,
}

impl Iterator for Literals<'_> {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        let start = self.s.find('\'')?;
        let mut out = String::new();
        let mut chars = self.s.get(start + 1..)?.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    chars.next();
                    out.push('\'');
                    continue;
                }
                self.s = self.s.get(start + 1 + i + 1..).unwrap_or("");
                return Some(out);
            }
            out.push(c);
        }
        None
    }
}

/// `a, "B", $user` as PostgreSQL splits a list setting's text: unquoted names folded to
/// lower case, quoted ones exact. `None` when it is not such a list.
fn split_identifiers(value: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    '"' => break,
                    c => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                item.extend(c.to_lowercase());
                chars.next();
            }
            if item.is_empty() {
                return if out.is_empty() && chars.peek().is_none() {
                    Some(out)
                } else {
                    None
                };
            }
        }
        out.push(item);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// The items of `SET [SESSION] search_path {TO|=} item, ...`: a string literal is one
/// schema name as written, a quoted identifier exact, a bare word folded. `DEFAULT`, or
/// anything else, is `None`.
fn set_statement_items(sql: &str) -> Option<Vec<String>> {
    let lower = sql.to_ascii_lowercase();
    let at = lower.find("search_path")?;
    let rest = sql.get(at + "search_path".len()..)?.trim_start();
    let rest = if let Some(r) = rest.strip_prefix('=') {
        r
    } else if rest.len() >= 2 && rest.get(..2)?.eq_ignore_ascii_case("to") {
        rest.get(2..)?
    } else {
        return None;
    };
    let rest = rest.trim().trim_end_matches(';').trim_end();
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        match chars.peek() {
            Some('\'') | Some('"') => {
                let q = chars.next()?;
                loop {
                    match chars.next()? {
                        c if c == q && chars.peek() == Some(&q) => {
                            chars.next();
                            item.push(q);
                        }
                        c if c == q => break,
                        c => item.push(c),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if !(c.is_alphanumeric() || c == '_' || c == '$') {
                        break;
                    }
                    item.extend(c.to_lowercase());
                    chars.next();
                }
                if item.is_empty() || item == "default" {
                    return None;
                }
            }
        }
        out.push(item);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Volatility::*;

    fn f(schema: Option<&str>, name: &str) -> FuncRef {
        FuncRef {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }

    fn path(s: &[&str]) -> SearchPath {
        SearchPath::Set(s.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn resolution() {
        let c = Catalog::from_entries(&[
            ("public", "report", Stable),
            ("public", "pure", Immutable),
            ("public", "bump", Volatile),
            ("public", "mixed", Stable),
            ("public", "mixed", Volatile),
            ("sales", "report", Volatile),
            ("sales", "top", Stable),
            ("pg_catalog", "txid_current", Stable),
            ("public", "txid_current", Immutable),
        ]);
        let d = SearchPath::Default;
        assert_eq!(c.resolve(&f(None, "pure"), &d), Resolved::ReadOnly);
        assert_eq!(c.resolve(&f(None, "bump"), &d), Resolved::Volatile);
        assert_eq!(c.resolve(&f(None, "mixed"), &d), Resolved::Volatile);
        assert_eq!(c.resolve(&f(None, "nope"), &d), Resolved::Unknown);
        // Unqualified `report`: public's is STABLE, sales' VOLATILE.
        assert_eq!(c.resolve(&f(None, "report"), &d), Resolved::Volatile);
        assert_eq!(
            c.resolve(&f(None, "report"), &path(&["public"])),
            Resolved::ReadOnly
        );
        assert_eq!(
            c.resolve(&f(None, "report"), &path(&["sales", "public"])),
            Resolved::Volatile
        );
        assert_eq!(
            c.resolve(&f(None, "top"), &path(&["public"])),
            Resolved::Unknown
        );
        assert_eq!(
            c.resolve(&f(Some("sales"), "top"), &path(&["public"])),
            Resolved::ReadOnly
        );
        assert_eq!(
            c.resolve(&f(Some("sales"), "report"), &d),
            Resolved::Volatile
        );
        assert_eq!(
            c.resolve(&f(Some("other"), "report"), &d),
            Resolved::Unknown
        );
        // A built-in of the same name is always a candidate.
        assert_eq!(
            c.resolve(&f(None, "txid_current"), &path(&["public"])),
            Resolved::Volatile
        );
        assert_eq!(
            c.resolve_all(&[f(None, "pure"), f(None, "nope")], &d),
            Resolved::Unknown
        );
        assert_eq!(
            c.resolve_all(&[f(None, "nope"), f(None, "bump")], &d),
            Resolved::Volatile
        );
    }

    #[test]
    fn rows() {
        let row = |s: &str, n: &str, v: &str| vec![Some(s.into()), Some(n.into()), Some(v.into())];
        let c = Catalog::from_rows(
            &[row("public", "a", "0"), row("public", "b", "2"), vec![None]],
            Instant::now(),
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.resolve(&f(None, "a"), &SearchPath::Default),
            Resolved::ReadOnly
        );
        assert_eq!(
            c.resolve(&f(None, "b"), &SearchPath::Default),
            Resolved::Volatile
        );
    }

    #[test]
    fn search_paths() {
        let p = |sql: &str| search_path_of(sql, "app");
        assert_eq!(p("SET search_path TO a, public"), path(&["a", "public"]));
        assert_eq!(
            p("set search_path = \"My\", 'x y', B;"),
            path(&["My", "x y", "b"])
        );
        assert_eq!(
            p("SET SESSION search_path TO \"$user\", public"),
            path(&["app", "public"])
        );
        assert_eq!(
            p("SELECT pg_catalog.set_config('search_path', 'a, \"B c\", $user', false)"),
            path(&["a", "B c", "app"])
        );
        assert_eq!(p("SET search_path TO DEFAULT"), SearchPath::Default);
        assert_eq!(p("SET search_path TO a b"), SearchPath::Default);
        assert_eq!(p("SET search_path TO 'unterminated"), SearchPath::Default);
        assert_eq!(
            p("SELECT pg_catalog.set_config('search_path', '\"x', false)"),
            SearchPath::Default
        );
        assert_eq!(p("SET search_path = ''"), path(&[""]));
        assert_eq!(p("SET work_mem = '1MB'"), SearchPath::Default);
        // Never panics on multibyte text.
        let _ = p("SET search_path TO é€, \"ü");
    }
}
