//! Whether a statement text is provably read-only, decided by sqlparser (PostgreSQL
//! dialect) and cached per worker thread by the text with its literals replaced.
//!
//! The rule is one-sided on purpose: a statement goes to a replica only when it is
//! provably read-only. Anything the parser cannot read, any locking clause,
//! data-modifying CTE or `SELECT ... INTO`, every utility statement, and any function
//! that is neither on the allowlist ([`super::allowlist`]) nor IMMUTABLE or STABLE in the
//! catalog ([`super::functions`]) go to the primary. The text is classified once; the
//! functions it calls that only the catalog can vouch for are kept in its [`Class`] and
//! resolved when a session routes it (the answer depends on the session's search_path
//! and on the catalog of the moment).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use foldhash::fast::RandomState;
use sqlparser::ast::{
    Expr, ObjectName, Query, SetExpr, Statement, TableFactor, TransactionAccessMode,
    TransactionMode, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use super::allowlist::Allowlist;
use super::allowlist::Judged;
use super::functions::{FuncRef, Resolved};
use crate::sql as inspect;

/// A route forced by the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
}

/// Why a text is not provably read-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRead {
    /// It writes, locks, starts a read-write transaction, or cannot be parsed.
    Write,
    /// It reads, but calls a function nobody vouches for: volatile or unknown in the
    /// catalog, a built-in off the allowlist.
    Function,
    /// A `pgsluice: primary` hint sends it there.
    Hint,
}

/// Functions a query calls beyond this many are not looked up: the query goes to the
/// primary.
const MAX_CHECKED_FUNCTIONS: usize = 16;

/// What the router needs to know about one query text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    /// Every statement in the text is provably read-only, provided that the functions in
    /// `functions` are IMMUTABLE or STABLE.
    pub read_only: bool,
    /// Why it is not read-only (meaningful when `read_only` is false).
    pub why: NotRead,
    /// The text starts a transaction with a plain `BEGIN`/`START TRANSACTION` (read-only
    /// only when the session's default is read-only).
    pub plain_begin: bool,
    /// A `/* pgsluice: primary|replica */` comment.
    pub hint: Option<Hint>,
    /// It may change session state where pgsluice cannot see it: it calls a function
    /// outside the allowlist (PL code may `SET`), or `CALL`s a procedure, or cannot be
    /// parsed at all (see [`super::opaque`]).
    pub opaque: bool,
    /// Functions only the catalog can vouch for (none: `None`, the common case).
    pub functions: Option<Arc<[FuncRef]>>,
}

/// Where a text may run, for one session at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Replica,
    Primary(NotRead),
}

impl Class {
    const WRITE: Class = Class {
        read_only: false,
        why: NotRead::Write,
        plain_begin: false,
        hint: None,
        opaque: true,
        functions: None,
    };

    /// Whether this text may run on a replica, given whether the session's transactions
    /// default to read-only, with no catalog (its catalog-checked functions count as
    /// unknown).
    pub fn replica_ok(&self, session_read_only: bool) -> bool {
        self.verdict(session_read_only, &mut |_| Resolved::Unknown) == Verdict::Replica
    }

    /// Where this text may run: `session_read_only` says whether the session's
    /// transactions default to read-only, `resolve` looks its functions up in the catalog.
    pub fn verdict(
        &self,
        session_read_only: bool,
        resolve: &mut dyn FnMut(&[FuncRef]) -> Resolved,
    ) -> Verdict {
        match self.hint {
            Some(Hint::Primary) => return Verdict::Primary(NotRead::Hint),
            Some(Hint::Replica) => return Verdict::Replica,
            None => {}
        }
        if !self.read_only {
            return Verdict::Primary(self.why);
        }
        if self.plain_begin && !session_read_only {
            return Verdict::Primary(NotRead::Write);
        }
        match &self.functions {
            Some(fs) if resolve(fs) != Resolved::ReadOnly => Verdict::Primary(NotRead::Function),
            _ => Verdict::Replica,
        }
    }
}

/// Classifies `sql` (uncached).
pub fn classify_uncached(sql: &str, allow: &Allowlist) -> Class {
    let hint = hint(sql);
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, sql).or_else(|e| {
        // sqlparser lacks the `TABLE name` statement; it means `SELECT * FROM name`.
        let t = skip_comments(sql);
        match t.get(..6) {
            Some(w) if w.eq_ignore_ascii_case("table ") => Parser::parse_sql(
                &PostgreSqlDialect {},
                &format!("SELECT * FROM {}", t.get(6..).unwrap_or_default()),
            ),
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
        why: NotRead::Write,
        plain_begin: false,
        hint,
        opaque: statements
            .iter()
            .any(|s| super::opaque::calls_unlisted(s, allow)),
        functions: None,
    };
    let mut check = ReadOnlyCheck {
        allow,
        functions: Vec::new(),
        why: NotRead::Write,
    };
    let mut function_only = true;
    for stmt in &statements {
        match statement_class(stmt, &mut check) {
            Stmt::Read => {}
            Stmt::Write(why) => {
                class.read_only = false;
                function_only &= why == NotRead::Function;
            }
            Stmt::PlainBegin => class.plain_begin = true,
        }
    }
    if !class.read_only {
        class.why = if function_only {
            NotRead::Function
        } else {
            NotRead::Write
        };
    } else if !check.functions.is_empty() {
        class.functions = Some(check.functions.into());
    }
    class
}

enum Stmt {
    Read,
    Write(NotRead),
    PlainBegin,
}

fn statement_class(stmt: &Statement, check: &mut ReadOnlyCheck) -> Stmt {
    match stmt {
        Statement::Query(q) => {
            check.why = NotRead::Write;
            if q.visit(check).is_continue() {
                Stmt::Read
            } else {
                Stmt::Write(check.why)
            }
        }
        Statement::Explain { statement, .. } => match statement_class(statement, check) {
            Stmt::Write(why) => Stmt::Write(why),
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
                Stmt::Write(NotRead::Write)
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
        _ => Stmt::Write(NotRead::Write),
    }
}

/// Walks a query: stops at anything that writes or locks; collects the functions the
/// catalog must vouch for.
struct ReadOnlyCheck<'a> {
    allow: &'a Allowlist,
    functions: Vec<FuncRef>,
    /// Why the walk stopped.
    why: NotRead,
}

impl ReadOnlyCheck<'_> {
    fn function(&mut self, name: &ObjectName) -> ControlFlow<()> {
        let why = match self.allow.judge(name) {
            Judged::Allowed => return ControlFlow::Continue(()),
            Judged::Check(f) if self.functions.len() < MAX_CHECKED_FUNCTIONS => {
                if !self.functions.contains(&f) {
                    self.functions.push(f);
                }
                return ControlFlow::Continue(());
            }
            Judged::Check(_) | Judged::Refused => NotRead::Function,
            Judged::Writes => NotRead::Write,
        };
        self.why = why;
        ControlFlow::Break(())
    }
}

impl Visitor for ReadOnlyCheck<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() || q.for_clause.is_some() {
            self.why = NotRead::Write;
            return ControlFlow::Break(());
        }
        self.why = NotRead::Write;
        set_expr_reads_only(&q.body)
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        // Statements nested in a query: data-modifying CTEs and the like.
        match s {
            Statement::Query(_) => ControlFlow::Continue(()),
            _ => {
                self.why = NotRead::Write;
                ControlFlow::Break(())
            }
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => self.function(&f.name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => self.function(name),
            TableFactor::Function { name, .. } => self.function(name),
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
    let rest = sql.get(at + 9..)?.trim_start();
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

/// Whether `b` contains `/*` or `--` (one search for both).
fn may_hold_comment(b: &[u8]) -> bool {
    memchr::memchr2_iter(b'/', b'-', b).any(|i| match b.get(i..i + 2) {
        Some(pair) => pair == b"/*" || pair == b"--",
        None => false,
    })
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

/// Classes by normalised text (`inspect::normalize_bytes`). Hashed with foldhash, seeded
/// per process: the keys are short and hashed on every statement, which SipHash made a
/// tenth of the cached path's cost.
type Classes = HashMap<Box<[u8]>, Class, RandomState>;

thread_local! {
    /// Classes by normalised text, and a buffer to build the key in without allocating.
    static CACHE: RefCell<(Classes, Vec<u8>)> = RefCell::new((HashMap::default(), Vec::new()));
}

impl Classifier {
    pub fn new(allow: Arc<Allowlist>) -> Classifier {
        Classifier { allow }
    }

    /// The class of `sql`, parsing it only the first time this thread sees its shape.
    /// Whether the unqualified function `name` is on the allowlist.
    pub fn allows_word(&self, name: &str) -> bool {
        self.allow.allows_word(name)
    }

    pub fn classify(&self, sql: &str) -> Class {
        // Comments are dropped from the key; a hinted text is rare and looked at whole.
        let hinted =
            may_hold_comment(sql.as_bytes()) && find_ci(sql.as_bytes(), b"pgsluice:").is_some();
        if hinted {
            return classify_uncached(sql, &self.allow);
        }
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let (map, key) = &mut *c;
            if !inspect::normalize_bytes(sql, key) {
                return classify_uncached(sql, &self.allow);
            }
            if let Some(class) = map.get(key.as_slice()) {
                return class.clone();
            }
            let class = classify_uncached(sql, &self.allow);
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
            map.insert(key.as_slice().into(), class.clone());
            class
        })
    }
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
