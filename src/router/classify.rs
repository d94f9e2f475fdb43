//! Whether a statement text is provably read-only, decided by sqlparser (PostgreSQL
//! dialect) and cached per worker thread by the text with its literals replaced.
//!
//! The rule is one-sided on purpose: a statement goes to a replica only when it is
//! provably read-only. Anything the parser cannot read, any function outside the
//! allowlist, any locking clause, data-modifying CTE or `SELECT ... INTO`, and every
//! utility statement go to the primary.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor,
    TransactionAccessMode, TransactionMode, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::sql as inspect;

/// A route forced by the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
}

/// What the router needs to know about one query text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// Every statement in the text is provably read-only.
    pub read_only: bool,
    /// The text starts a transaction with a plain `BEGIN`/`START TRANSACTION` (read-only
    /// only when the session's default is read-only).
    pub plain_begin: bool,
    /// A `/* pgsluice: primary|replica */` comment.
    pub hint: Option<Hint>,
}

impl Class {
    const WRITE: Class = Class {
        read_only: false,
        plain_begin: false,
        hint: None,
    };

    /// Whether this text may run on a replica, given whether the session's transactions
    /// default to read-only.
    pub fn replica_ok(self, session_read_only: bool) -> bool {
        match self.hint {
            Some(Hint::Primary) => false,
            Some(Hint::Replica) => true,
            None => self.read_only && (!self.plain_begin || session_read_only),
        }
    }
}

/// Functions that never write, beyond those matched by prefix in [`allowed_prefix`].
/// Anything else (`nextval`, `setval`, `pg_advisory_*`, `set_config`, `txid_current`,
/// `pg_notify`, `lo_*`, user functions) may write and sends the statement to the primary.
const READ_ONLY_FUNCTIONS: &[&str] = &[
    // aggregates and window functions
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "string_agg",
    "array_agg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // conditionals and comparison
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "num_nulls",
    "num_nonnulls",
    // strings
    "lower",
    "upper",
    "initcap",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "substr",
    "substring",
    "position",
    "strpos",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "translate",
    "concat",
    "concat_ws",
    "format",
    "left",
    "right",
    "lpad",
    "rpad",
    "repeat",
    "reverse",
    "split_part",
    "starts_with",
    "ascii",
    "chr",
    "md5",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "encode",
    "decode",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "overlay",
    "unistr",
    "normalize",
    "like",
    "ilike",
    // numbers
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "mod",
    "power",
    "pow",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log10",
    "sign",
    "pi",
    "degrees",
    "radians",
    "div",
    "gcd",
    "lcm",
    "width_bucket",
    "random",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "factorial",
    // dates and times
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "age",
    "date_trunc",
    "date_part",
    "date_bin",
    "extract",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    "timezone",
    // sets, arrays, ranges
    "generate_series",
    "generate_subscripts",
    "unnest",
    "cardinality",
    "lower_inc",
    "upper_inc",
    "lower_inf",
    "upper_inf",
    "isempty",
    "range_merge",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    // json (beyond the json_/jsonb_ prefixes)
    "row_to_json",
    "to_json",
    "to_jsonb",
    // session and server information
    "version",
    "current_database",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_setting",
    "pg_backend_pid",
    "inet_server_port",
    "inet_server_addr",
    "inet_client_port",
    "inet_client_addr",
    "pg_is_in_recovery",
    "pg_last_wal_replay_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_typeof",
    "format_type",
    "pg_size_pretty",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_column_size",
    "obj_description",
    "col_description",
    "pg_get_viewdef",
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_sleep",
    "gen_random_uuid",
    "uuid_generate_v4",
    "exists",
    "any",
    "all",
    "array",
    "row",
    "cast",
];

/// Families of read-only functions matched by name prefix.
fn allowed_prefix(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "json_",
        "jsonb_",
        "array_",
        "regexp_",
        "string_to_",
        "to_",
        "has_",
        "ts_",
        "st_",
    ];
    // `jsonb_set`, `array_append` and the like compute values; none of them writes.
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The read-only function allowlist: the built-in list plus the configured extras.
#[derive(Debug, Default)]
pub struct Allowlist {
    extra: Vec<String>,
}

impl Allowlist {
    pub fn new(extra: &[String]) -> Allowlist {
        Allowlist {
            extra: extra.iter().map(|s| s.to_ascii_lowercase()).collect(),
        }
    }

    fn allows(&self, name: &ObjectName) -> bool {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
                ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
                ObjectNamePart::Function(_) => String::from("\0"),
            })
            .collect();
        let full = parts.join(".");
        if self.extra.contains(&full) {
            return true;
        }
        let func = match parts.as_slice() {
            [f] => f.as_str(),
            [schema, f] if schema == "pg_catalog" => f.as_str(),
            _ => return false,
        };
        READ_ONLY_FUNCTIONS.contains(&func)
            || allowed_prefix(func)
            || self.extra.iter().any(|e| e == func)
    }
}

/// Classifies `sql` (uncached).
pub fn classify_uncached(sql: &str, allow: &Allowlist) -> Class {
    let hint = hint(sql);
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, sql).or_else(|e| {
        // sqlparser lacks the `TABLE name` statement; it means `SELECT * FROM name`.
        let t = skip_comments(sql);
        match t.get(..6) {
            Some(w) if w.eq_ignore_ascii_case("table ") => {
                Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT * FROM {}", &t[6..]))
            }
            _ => Err(e),
        }
    });
    let Ok(statements) = parsed else {
        return Class {
            hint,
            ..Class::WRITE
        };
    };
    let mut class = Class {
        read_only: true,
        plain_begin: false,
        hint,
    };
    for stmt in &statements {
        match statement_class(stmt, allow) {
            Stmt::Read => {}
            Stmt::Write => class.read_only = false,
            Stmt::PlainBegin => class.plain_begin = true,
        }
    }
    class
}

enum Stmt {
    Read,
    Write,
    PlainBegin,
}

fn statement_class(stmt: &Statement, allow: &Allowlist) -> Stmt {
    match stmt {
        Statement::Query(q) => {
            if query_reads_only(q, allow) {
                Stmt::Read
            } else {
                Stmt::Write
            }
        }
        Statement::Explain {
            statement, analyze, ..
        } => match statement_class(statement, allow) {
            Stmt::Write if *analyze => Stmt::Write,
            Stmt::Write => Stmt::Write,
            _ => Stmt::Read,
        },
        Statement::StartTransaction { modes, .. } => {
            let read_only = modes.iter().any(|m| {
                matches!(
                    m,
                    TransactionMode::AccessMode(TransactionAccessMode::ReadOnly)
                )
            });
            let read_write = modes.iter().any(|m| {
                matches!(
                    m,
                    TransactionMode::AccessMode(TransactionAccessMode::ReadWrite)
                )
            });
            if read_only {
                Stmt::Read
            } else if read_write {
                Stmt::Write
            } else {
                Stmt::PlainBegin
            }
        }
        Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::Set(_)
        | Statement::Discard { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Stmt::Read,
        _ => Stmt::Write,
    }
}

/// Whether a query, with every nested query, reads only.
fn query_reads_only(q: &Query, allow: &Allowlist) -> bool {
    let mut v = ReadOnlyCheck { allow };
    q.visit(&mut v).is_continue()
}

struct ReadOnlyCheck<'a> {
    allow: &'a Allowlist,
}

impl Visitor for ReadOnlyCheck<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() || q.for_clause.is_some() {
            return ControlFlow::Break(());
        }
        set_expr_reads_only(&q.body)
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        // Statements nested in a query: data-modifying CTEs and the like.
        match s {
            Statement::Query(_) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) if !self.allow.allows(&f.name) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        let called = match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => Some(name),
            TableFactor::Function { name, .. } => Some(name),
            _ => None,
        };
        match called {
            Some(name) if !self.allow.allows(name) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

fn set_expr_reads_only(body: &SetExpr) -> ControlFlow<()> {
    match body {
        SetExpr::Select(s) if s.into.is_some() => ControlFlow::Break(()),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            ControlFlow::Break(())
        }
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_reads_only(left)?;
            set_expr_reads_only(right)
        }
        _ => ControlFlow::Continue(()),
    }
}

/// `sql` after leading whitespace and comments.
fn skip_comments(mut sql: &str) -> &str {
    loop {
        sql = sql.trim_start();
        if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, r)| r);
        } else if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, r)| r);
        } else {
            return sql;
        }
    }
}

/// A `pgsluice: primary` or `pgsluice: replica` hint in a comment.
fn hint(sql: &str) -> Option<Hint> {
    let b = sql.as_bytes();
    let at = find_ci(b, b"pgsluice:")?;
    let rest = sql[at + 9..].trim_start();
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    match word.as_str() {
        "primary" => Some(Hint::Primary),
        "replica" => Some(Hint::Replica),
        _ => None,
    }
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Cached classification, one cache per worker thread (no lock on the hot path).
pub struct Classifier {
    allow: Arc<Allowlist>,
}

/// Entries kept per thread before the cache starts over.
const CACHE_ENTRIES: usize = 8192;

thread_local! {
    /// Classes by normalised text, and a buffer to build the key in without allocating.
    static CACHE: RefCell<(HashMap<Box<str>, Class>, String)> =
        RefCell::new((HashMap::new(), String::new()));
}

impl Classifier {
    pub fn new(allow: Arc<Allowlist>) -> Classifier {
        Classifier { allow }
    }

    /// The class of `sql`, parsing it only the first time this thread sees its shape.
    pub fn classify(&self, sql: &str) -> Class {
        // Comments are dropped from the key; a hinted text is rare and looked at whole.
        let hinted = (sql.contains("/*") || sql.contains("--"))
            && find_ci(sql.as_bytes(), b"pgsluice:").is_some();
        if hinted {
            return classify_uncached(sql, &self.allow);
        }
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let (map, key) = &mut *c;
            if !inspect::normalize_into(sql, key) {
                return classify_uncached(sql, &self.allow);
            }
            if let Some(class) = map.get(key.as_str()) {
                return *class;
            }
            let class = classify_uncached(sql, &self.allow);
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
            map.insert(key.as_str().into(), class);
            class
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ro(sql: &str) -> bool {
        classify_uncached(sql, &Allowlist::new(&["my_reader".into()])).replica_ok(false)
    }

    #[test]
    fn reads() {
        for sql in [
            "SELECT 1",
            "select * from t where a = $1",
            "SELECT count(*), max(x), coalesce(y, 0) FROM t GROUP BY z",
            "VALUES (1), (2)",
            "TABLE t",
            "/* c */ -- d\n TABLE t",
            "SHOW search_path",
            "SELECT now(), lower('A'), jsonb_extract_path(j, 'a') FROM t",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT * FROM generate_series(1, 3)",
            "SELECT pg_catalog.now()",
            "BEGIN READ ONLY",
            "START TRANSACTION READ ONLY",
            "SELECT 1; SELECT 2",
            "SELECT my_reader(1)",
            "SELECT * FROM a JOIN b ON a.id = b.id WHERE a.x IN (SELECT y FROM c)",
            "EXPLAIN SELECT 1",
            "COMMIT",
            "SET search_path = a",
        ] {
            assert!(ro(sql), "{sql}");
        }
    }

    #[test]
    fn writes() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "SELECT nextval('s')",
            "SELECT setval('s', 1)",
            "SELECT pg_advisory_lock(1)",
            "SELECT set_config('a.b', '1', false)",
            "SELECT txid_current()",
            "SELECT pg_notify('c', 'x')",
            "SELECT lo_create(0)",
            "SELECT my_func(1)",
            "SELECT public.now()",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t FOR SHARE",
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            "SELECT * INTO t2 FROM t",
            "SELECT 1; UPDATE t SET a = 1",
            "CREATE TABLE x (a int)",
            "BEGIN",
            "START TRANSACTION",
            "BEGIN READ WRITE",
            "EXPLAIN ANALYZE DELETE FROM t",
            "this is not sql",
            "LISTEN ch",
            "SELECT * FROM my_srf()",
            "SELECT (SELECT nextval('s'))",
            "VACUUM t",
            "COPY t FROM STDIN",
            "DO $$ BEGIN END $$",
            "CALL p()",
        ] {
            assert!(!ro(sql), "{sql}");
        }
    }

    #[test]
    fn plain_begin_follows_session_default() {
        let c = classify_uncached("BEGIN", &Allowlist::default());
        assert!(!c.replica_ok(false));
        assert!(c.replica_ok(true));
    }

    #[test]
    fn hints() {
        let a = Allowlist::default();
        let c = classify_uncached("/* pgsluice: primary */ SELECT 1", &a);
        assert!(!c.replica_ok(false));
        let c = classify_uncached("SELECT f() /* PgSluice: replica */", &a);
        assert!(c.replica_ok(false));
    }

    #[test]
    fn cache_ignores_literals() {
        let c = Classifier::new(Arc::new(Allowlist::default()));
        assert!(c.classify("SELECT * FROM t WHERE a = 1").replica_ok(false));
        assert!(
            c.classify("SELECT * FROM t WHERE a = 'x'")
                .replica_ok(false)
        );
        assert!(!c.classify("SELECT nextval('a')").replica_ok(false));
        assert_eq!(
            inspect::normalize("SELECT * FROM t WHERE a = 1 -- note").as_deref(),
            Some("SELECT * FROM t WHERE a = ?")
        );
        assert_eq!(
            inspect::normalize("SELECT * FROM t WHERE a = 'x'"),
            inspect::normalize("SELECT * FROM t WHERE a = 'it''s'")
        );
        // Literals of different kinds may parse differently: separate entries.
        assert_ne!(
            inspect::normalize("SELECT 1::numeric(10, 2)"),
            inspect::normalize("SELECT 1::numeric('x', 2)")
        );
    }
}
