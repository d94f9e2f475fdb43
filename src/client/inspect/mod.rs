//! Detects statements in client query text that change session state (for transaction pooling).

mod lexer;
mod prepared;

pub use prepared::{SqlPrepare, sql_execute, sql_prepare};

use lexer::{IDENT_CONT, Kind, Lexer, SPACE, Tok};

/// A session-state effect of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A session-level SET of a parameter. `name` is the canonical parameter name,
    /// `set_sql` re-applies what the client did, `reset_sql` undoes it.
    Set {
        name: String,
        set_sql: String,
        reset_sql: String,
    },
    /// RESET of one parameter (also `SET name TO DEFAULT`).
    Reset { name: String },
    /// RESET ALL.
    ResetAll,
    /// DISCARD ALL: params, prepared statements, temp tables, listens, locks, cursors.
    DiscardAll,
    /// State that cannot be replayed on another server: pin the client to its server.
    Pin(PinReason),
    /// The client cleared such state.
    Unpin(PinReason),
}

/// Why a client must stay on its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// LISTEN (cleared by UNLISTEN *).
    Listen,
    /// Session-level advisory lock (cleared by pg_advisory_unlock_all()).
    AdvisoryLock,
    /// Temporary table, view, sequence or pg_temp object (cleared by DISCARD TEMP).
    TempObject,
    /// Cursor WITH HOLD (cleared by CLOSE ALL).
    HoldCursor,
    /// SQL-level PREPARE (cleared by DEALLOCATE ALL).
    SqlPrepare,
    /// set_config() call, possibly session-level.
    SetConfig,
    /// A named protocol-level prepared statement while statement mapping is off; not
    /// produced by `inspect` (the relay sets it on a named Parse).
    ProtocolPrepare,
    /// Anything else; not produced by `inspect`.
    Unknown,
}

impl PinReason {
    /// The name shown in logs and the admin console.
    pub fn name(self) -> &'static str {
        match self {
            PinReason::Listen => "listen",
            PinReason::AdvisoryLock => "advisory_lock",
            PinReason::TempObject => "temp_object",
            PinReason::HoldCursor => "hold_cursor",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::SetConfig => "set_config",
            PinReason::ProtocolPrepare => "protocol_prepare",
            PinReason::Unknown => "unknown",
        }
    }
}

/// A cache key for `sql`: its tokens with every literal (string, number, `$n`) replaced by
/// `?` and comments dropped, so that queries differing only in their constants share one
/// entry. `None` when the text has an unterminated quote (let the parser judge it).
pub fn normalize(sql: &str) -> Option<String> {
    let mut out = String::with_capacity(sql.len());
    normalize_into(sql, &mut out).then_some(out)
}

/// [`normalize`] into a reused buffer; false when there is no key.
pub fn normalize_into(sql: &str, out: &mut String) -> bool {
    out.clear();
    for t in Lexer::new(sql) {
        let piece = match t.kind {
            Kind::Literal => "?",
            Kind::Unterminated => return false,
            _ => &sql[t.start..t.end],
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(piece);
    }
    true
}

/// Effects of every statement in `sql`, in order. Returns an empty Vec without
/// allocating when the text has nothing relevant.
pub fn inspect(sql: &str) -> Vec<Effect> {
    if !may_have_effects(sql.as_bytes()) {
        return Vec::new();
    }
    scan(sql)
}

/// One cheap pass ignoring quotes and comments: false only if `scan` would
/// surely find nothing. Looks at statement starts (text start and after any
/// `;`), at `_` for the function names, and for INTO after a SELECT.
pub fn may_have_effects(b: &[u8]) -> bool {
    let mut select = false;
    if starts_relevant(b, 0, &mut select) {
        return true;
    }
    let mut i = 0;
    while let Some(at) = next_prefilter_byte(b, i) {
        i = at;
        let hit = match b[i] {
            b';' => starts_relevant(b, i + 1, &mut select),
            b'_' => names_call(b, i),
            _ => select && starts_with_kw(&b[i..], b"into"),
        };
        if hit {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether a statement starting at `b[i..]` might have an effect; notes SELECT.
fn starts_relevant(b: &[u8], i: usize, select: &mut bool) -> bool {
    let rest = b.get(i..).unwrap_or_default();
    let n = rest
        .iter()
        .position(|&c| !SPACE[c as usize])
        .unwrap_or(rest.len());
    let rest = &rest[n..];
    if rest.starts_with(b"--") || rest.starts_with(b"/*") {
        return true;
    }
    let len = rest
        .iter()
        .position(|&c| !IDENT_CONT[c as usize])
        .unwrap_or(rest.len());
    match verb(&rest[..len]) {
        Verb::Select => *select = true,
        Verb::Other => {}
        _ => return true,
    }
    false
}

/// Whether one of `CALLS` is spelled around the `_` at `b[i]`.
fn names_call(b: &[u8], i: usize) -> bool {
    // Every name in `CALLS` starts `pg_` or `set_`; most identifiers with a `_` do not.
    let before = |n: usize, kw: &[u8]| i >= n && eq_kw(&b[i - n..i], kw);
    if !before(2, b"pg") && !before(3, b"set") {
        return false;
    }
    CALLS.iter().any(|&(k, ..)| {
        let first = if k.starts_with("set") { 3 } else { 2 };
        i >= first && starts_with_kw(&b[i - first..], k.as_bytes())
    })
}

/// Position of the next `PREFILTER` byte at or after `from`.
fn next_prefilter_byte(b: &[u8], from: usize) -> Option<usize> {
    let mut base = from;
    // Whole chunks without a branch per byte: most bytes are uninteresting.
    for chunk in b.get(from..)?.chunks_exact(8) {
        if chunk
            .iter()
            .fold(false, |any, &c| any | PREFILTER[c as usize])
        {
            break;
        }
        base += 8;
    }
    let rest = b.get(base..)?;
    rest.iter()
        .position(|&c| PREFILTER[c as usize])
        .map(|n| base + n)
}

static PREFILTER: [bool; 256] = {
    let mut t = [false; 256];
    t[b';' as usize] = true;
    t[b'_' as usize] = true;
    t[b'i' as usize] = true;
    t[b'I' as usize] = true;
    t
};

/// ASCII case-insensitive equality with a lowercase keyword.
fn eq_kw(s: &[u8], kw: &[u8]) -> bool {
    s.len() == kw.len() && s.iter().zip(kw).all(|(a, b)| a.to_ascii_lowercase() == *b)
}

fn starts_with_kw(hay: &[u8], kw: &[u8]) -> bool {
    hay.get(..kw.len()).is_some_and(|h| eq_kw(h, kw))
}

/// The full tokenizing pass.
fn scan(sql: &str) -> Vec<Effect> {
    let mut out = Vec::new();
    let mut lx = Lexer::new(sql);
    // The current statement's verb and start; None between statements.
    let mut stmt: Option<(Verb, usize)> = None;
    let mut end = 0; // of the statement's last token so far
    // Effect of a function name just seen, emitted if `(` follows.
    let mut call: Option<Effect> = None;
    while let Some(t) = lx.next() {
        if matches!(t.kind, Kind::Punct(b';')) {
            if let Some((verb, start)) = stmt.take() {
                statement(verb, sql, start, end, &mut out);
            }
            call = None;
            continue;
        }
        let (verb, _) = *stmt.get_or_insert_with(|| (classify(sql, t), t.start));
        end = t.end;
        if matches!(t.kind, Kind::Punct(b'(')) {
            out.extend(call.take());
            continue;
        }
        call = call_effect(sql, t);
        if verb == Verb::Select && is_kw(sql, t, "into") && into_temp(Cur::with(sql, lx.clone())) {
            out.push(Effect::Pin(PinReason::TempObject));
        }
    }
    if let Some((verb, start)) = stmt {
        statement(verb, sql, start, end, &mut out);
    }
    out
}

// ---------------------------------------------------------------------------
// Statement classification and handlers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Set,
    Reset,
    Discard,
    Listen,
    Unlisten,
    Create,
    Declare,
    Close,
    Prepare,
    Deallocate,
    Select,
    Other,
}

const VERBS: [(&str, Verb); 11] = [
    ("set", Verb::Set),
    ("reset", Verb::Reset),
    ("discard", Verb::Discard),
    ("listen", Verb::Listen),
    ("unlisten", Verb::Unlisten),
    ("create", Verb::Create),
    ("declare", Verb::Declare),
    ("close", Verb::Close),
    ("prepare", Verb::Prepare),
    ("deallocate", Verb::Deallocate),
    ("select", Verb::Select),
];

fn classify(sql: &str, t: Tok) -> Verb {
    match t.kind {
        Kind::Word => verb(text(sql, t).as_bytes()),
        _ => Verb::Other,
    }
}

fn verb(word: &[u8]) -> Verb {
    VERBS
        .iter()
        .find(|(k, _)| eq_kw(word, k.as_bytes()))
        .map_or(Verb::Other, |&(_, v)| v)
}

/// Session-level functions whose call pins or unpins, wherever they appear.
const CALLS: [(&str, bool, PinReason); 6] = [
    ("set_config", true, PinReason::SetConfig),
    ("pg_advisory_lock", true, PinReason::AdvisoryLock),
    ("pg_advisory_lock_shared", true, PinReason::AdvisoryLock),
    ("pg_try_advisory_lock", true, PinReason::AdvisoryLock),
    ("pg_try_advisory_lock_shared", true, PinReason::AdvisoryLock),
    ("pg_advisory_unlock_all", false, PinReason::AdvisoryLock),
];

fn call_effect(sql: &str, t: Tok) -> Option<Effect> {
    if t.end - t.start < "set_config".len() {
        return None;
    }
    // A quoted identifier naming the function exactly is still a call of it.
    let (name, exact) = match t.kind {
        Kind::Word => (text(sql, t), false),
        Kind::Quoted => (unquote_raw(text(sql, t)), true),
        _ => return None,
    };
    let &(_, pin, reason) = CALLS.iter().find(|(k, ..)| {
        if exact {
            *k == name
        } else {
            eq_kw(name.as_bytes(), k.as_bytes())
        }
    })?;
    Some(if pin {
        Effect::Pin(reason)
    } else {
        Effect::Unpin(reason)
    })
}

/// Runs the handler for the statement at `sql[start..end]` (trimmed).
fn statement(verb: Verb, sql: &str, start: usize, end: usize, out: &mut Vec<Effect>) {
    if matches!(verb, Verb::Select | Verb::Other) {
        return;
    }
    let stmt = slice(sql, start, end);
    let mut c = Cur::new(stmt);
    c.bump(); // the verb
    let effect = match verb {
        Verb::Set => set(&mut c, stmt),
        Verb::Reset => reset(&mut c),
        Verb::Discard => discard(&mut c),
        Verb::Listen => c.peek().map(|_| Effect::Pin(PinReason::Listen)),
        Verb::Unlisten => c
            .eat_punct(b'*')
            .then_some(Effect::Unpin(PinReason::Listen)),
        Verb::Create => create(&mut c),
        Verb::Declare => declare(&mut c),
        Verb::Close => all_then(&mut c, Effect::Unpin(PinReason::HoldCursor)),
        Verb::Prepare => prepare(&mut c),
        Verb::Deallocate => {
            c.eat_kw("prepare");
            all_then(&mut c, Effect::Unpin(PinReason::SqlPrepare))
        }
        Verb::Select | Verb::Other => None,
    };
    out.extend(effect);
}

fn all_then(c: &mut Cur, e: Effect) -> Option<Effect> {
    (c.eat_kw("all") && c.at_end()).then_some(e)
}

fn set(c: &mut Cur, stmt: &str) -> Option<Effect> {
    if !c.name_first() {
        if c.peek_kw("local") {
            return None;
        }
        let special = c.nth_kw(1, "authorization") || c.nth_kw(1, "characteristics");
        if c.peek_kw("session") && !special {
            c.bump();
        }
    }
    let special = if c.name_first() {
        None
    } else {
        set_special(c, stmt)
    };
    special.unwrap_or_else(|| set_generic(c, stmt))
}

/// SET forms with their own syntax (`SET TIME ZONE x`, ...); None, consuming
/// nothing, if not one.
fn set_special(c: &mut Cur, stmt: &str) -> Option<Option<Effect>> {
    let fixed = |name, reset: &str| Some(set_effect(name, stmt, reset.to_string()));
    let effect = if c.eat_kw("transaction") || c.eat_kw("catalog") {
        None
    } else if c.eat_kws("time", "zone") {
        if c.peek_kw("default") || c.peek_kw("local") {
            Some(reset_effect("timezone"))
        } else {
            fixed("timezone", "RESET timezone")
        }
    } else if c.eat_kw("schema") {
        fixed("search_path", "RESET search_path")
    } else if c.eat_kw("names") {
        if c.at_end() || c.peek_kw("default") {
            Some(reset_effect("client_encoding"))
        } else {
            fixed("client_encoding", "RESET client_encoding")
        }
    } else if c.eat_kw("role") {
        if c.peek_kw("none") || c.peek().is_some_and(|t| c.text(t) == "'none'") {
            Some(reset_effect("role"))
        } else {
            fixed("role", "RESET ROLE")
        }
    } else if c.eat_kws("session", "authorization") {
        if c.peek_kw("default") {
            Some(reset_effect("session_authorization"))
        } else {
            fixed("session_authorization", "RESET SESSION AUTHORIZATION")
        }
    } else if c.eat_kws("session", "characteristics") {
        fixed("session_characteristics", SESSION_CHARACTERISTICS_RESET)
    } else if c.eat_kws("xml", "option") {
        fixed("xmloption", "RESET xmloption")
    } else {
        return None;
    };
    Some(effect)
}

const SESSION_CHARACTERISTICS_RESET: &str = "RESET default_transaction_isolation; \
     RESET default_transaction_read_only; RESET default_transaction_deferrable";

/// `name {TO|=} value`, the cursor at `name`.
fn set_generic(c: &mut Cur, stmt: &str) -> Option<Effect> {
    let name = parse_name(c)?;
    if !(c.eat_kw("to") || c.eat_punct(b'=')) || c.at_end() || name.is_ours() {
        return None;
    }
    if c.peek_kw("default") {
        return Some(Effect::Reset { name: name.canon });
    }
    let reset_sql = format!("RESET {}", name.sql);
    Some(set_effect(&name.canon, stmt, reset_sql))
}

fn reset(c: &mut Cur) -> Option<Effect> {
    if c.nth_kw(0, "all") && c.nth(1).is_none() {
        return Some(Effect::ResetAll);
    }
    if c.nth_kw(0, "transaction") {
        return None;
    }
    if c.nth_kw(0, "time") && c.nth_kw(1, "zone") {
        return Some(reset_effect("timezone"));
    }
    if c.nth_kw(0, "session") && c.nth_kw(1, "authorization") {
        return Some(reset_effect("session_authorization"));
    }
    let name = parse_name(c)?;
    (!name.is_ours()).then_some(Effect::Reset { name: name.canon })
}

fn discard(c: &mut Cur) -> Option<Effect> {
    if c.eat_kw("all") {
        Some(Effect::DiscardAll)
    } else if c.eat_kw("temp") || c.eat_kw("temporary") {
        Some(Effect::Unpin(PinReason::TempObject))
    } else {
        None
    }
}

fn prepare(c: &mut Cur) -> Option<Effect> {
    // PREPARE TRANSACTION 'gid' is two-phase commit, not a prepared statement.
    let two_phase = c.nth_kw(0, "transaction") && c.nth(1).is_some_and(|t| t.kind == Kind::Literal);
    (!two_phase && c.peek().is_some()).then_some(Effect::Pin(PinReason::SqlPrepare))
}

/// `DECLARE name ... [WITH HOLD] ... FOR query`: only look before FOR.
fn declare(c: &mut Cur) -> Option<Effect> {
    c.bump();
    while let Some(t) = c.bump() {
        if is_kw(c.src, t, "for") {
            break;
        }
        if is_kw(c.src, t, "with") && c.peek_kw("hold") {
            return Some(Effect::Pin(PinReason::HoldCursor));
        }
    }
    None
}

fn create(c: &mut Cur) -> Option<Effect> {
    if c.eat_kw("or") {
        c.eat_kw("replace");
    }
    let _ = c.eat_kw("global") || c.eat_kw("local");
    let mut temp = c.eat_kw("temp") || c.eat_kw("temporary");
    let after_kind = Cur::with(c.src, c.lx.clone());
    // Object name: everything before the first `(` or AS.
    while let Some(t) = c.peek() {
        if t.kind == Kind::Punct(b'(') || is_kw(c.src, t, "as") {
            break;
        }
        c.bump();
        temp |= is_pg_temp(c.src, t) && c.peek().is_some_and(|t| t.kind == Kind::Punct(b'.'));
    }
    (temp && !on_commit_drop(after_kind)).then_some(Effect::Pin(PinReason::TempObject))
}

/// Whether `ON COMMIT DROP` follows (outside parentheses, before any AS).
fn on_commit_drop(mut c: Cur) -> bool {
    let mut depth = 0u32;
    while let Some(t) = c.bump() {
        match t.kind {
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ if is_kw(c.src, t, "as") => return false,
            _ if is_kw(c.src, t, "on") && c.nth_kw(0, "commit") && c.nth_kw(1, "drop") => {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// After `SELECT ... INTO`: does a temp table name follow?
fn into_temp(mut c: Cur) -> bool {
    let _ = c.eat_kw("global") || c.eat_kw("local");
    if c.eat_kw("temp") || c.eat_kw("temporary") {
        return true;
    }
    c.peek().is_some_and(|t| is_pg_temp(c.src, t))
        && c.nth(1).is_some_and(|t| t.kind == Kind::Punct(b'.'))
}

/// `pg_temp`, or a backend's own `pg_temp_N`.
fn is_pg_temp(sql: &str, t: Tok) -> bool {
    let name = match t.kind {
        Kind::Word => text(sql, t),
        Kind::Quoted => unquote_raw(text(sql, t)),
        _ => return false,
    };
    let b = name.as_bytes();
    if b.len() < 7 || !b[..7].eq_ignore_ascii_case(b"pg_temp") {
        return false;
    }
    match &b[7..] {
        [] => true,
        [b'_', n @ ..] => !n.is_empty() && n.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

fn set_effect(name: &str, stmt: &str, reset_sql: String) -> Effect {
    Effect::Set {
        name: name.to_string(),
        set_sql: stmt.to_string(),
        reset_sql,
    }
}

fn reset_effect(name: &str) -> Effect {
    Effect::Reset {
        name: name.to_string(),
    }
}

/// A possibly dotted parameter name.
struct Name {
    /// Canonical: unquoted parts lowercased, quoted parts verbatim.
    canon: String,
    /// The same name as SQL, quoted parts re-quoted.
    sql: String,
}

impl Name {
    fn is_ours(&self) -> bool {
        let b = self.canon.as_bytes();
        b.len() > 9 && b[..9].eq_ignore_ascii_case(b"pgsluice.")
    }
}

fn parse_name(c: &mut Cur) -> Option<Name> {
    let mut name = Name {
        canon: String::new(),
        sql: String::new(),
    };
    loop {
        let t = c.bump()?;
        let s = c.text(t);
        match t.kind {
            Kind::Word => {
                let lower = s.to_ascii_lowercase();
                name.canon.push_str(&lower);
                name.sql.push_str(&lower);
            }
            Kind::Quoted => {
                name.canon.push_str(&unquote_raw(s).replace("\"\"", "\""));
                name.sql.push_str(s);
            }
            _ => return None,
        }
        if !c.eat_punct(b'.') {
            return Some(name);
        }
        name.canon.push('.');
        name.sql.push('.');
    }
}

// ---------------------------------------------------------------------------
// Token cursor

/// A lexer over `src` with lookahead helpers.
struct Cur<'a> {
    src: &'a str,
    lx: Lexer<'a>,
}

impl<'a> Cur<'a> {
    fn new(src: &'a str) -> Self {
        Cur::with(src, Lexer::new(src))
    }

    fn with(src: &'a str, lx: Lexer<'a>) -> Self {
        Cur { src, lx }
    }

    fn text(&self, t: Tok) -> &'a str {
        text(self.src, t)
    }

    fn bump(&mut self) -> Option<Tok> {
        self.lx.next()
    }

    fn nth(&self, n: usize) -> Option<Tok> {
        self.lx.clone().nth(n)
    }

    fn peek(&self) -> Option<Tok> {
        self.nth(0)
    }

    fn at_end(&self) -> bool {
        self.peek().is_none()
    }

    fn nth_kw(&self, n: usize, kw: &str) -> bool {
        self.nth(n).is_some_and(|t| is_kw(self.src, t, kw))
    }

    fn peek_kw(&self, kw: &str) -> bool {
        self.nth_kw(0, kw)
    }

    /// Whether the next token is a parameter name rather than a keyword:
    /// `TO`, `=` or `.` follows it.
    fn name_first(&self) -> bool {
        self.nth(1)
            .is_some_and(|t| matches!(t.kind, Kind::Punct(b'=' | b'.')) || is_kw(self.src, t, "to"))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.peek_kw(kw);
        if hit {
            self.bump();
        }
        hit
    }

    /// Consumes keywords `a b` if both are next.
    fn eat_kws(&mut self, a: &str, b: &str) -> bool {
        let hit = self.nth_kw(0, a) && self.nth_kw(1, b);
        if hit {
            self.bump();
            self.bump();
        }
        hit
    }

    fn eat_punct(&mut self, p: u8) -> bool {
        let hit = self.peek().is_some_and(|t| t.kind == Kind::Punct(p));
        if hit {
            self.bump();
        }
        hit
    }
}

fn is_kw(sql: &str, t: Tok, kw: &str) -> bool {
    matches!(t.kind, Kind::Word)
        && t.end - t.start == kw.len()
        && eq_kw(text(sql, t).as_bytes(), kw.as_bytes())
}

fn text(sql: &str, t: Tok) -> &str {
    slice(sql, t.start, t.end)
}

fn slice(sql: &str, start: usize, end: usize) -> &str {
    sql.get(start..end).unwrap_or("")
}

/// Inside of a terminated `"..."` token (still with doubled quotes).
fn unquote_raw(s: &str) -> &str {
    s.get(1..s.len().saturating_sub(1)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::Effect::{DiscardAll, Pin, ResetAll, Unpin};
    use super::PinReason::*;
    use super::*;

    fn set(name: &str, set_sql: &str, reset_sql: &str) -> Effect {
        Effect::Set {
            name: name.into(),
            set_sql: set_sql.into(),
            reset_sql: reset_sql.into(),
        }
    }

    fn reset(name: &str) -> Effect {
        Effect::Reset { name: name.into() }
    }

    const PGBENCH: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 123;";

    fn cases() -> Vec<(&'static str, Vec<Effect>)> {
        let sp = "RESET search_path";
        vec![
            // Fast path and traps.
            (PGBENCH, vec![]),
            (
                "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1;",
                vec![],
            ),
            (
                "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2",
                vec![],
            ),
            ("", vec![]),
            (
                " ; ;; -- only a comment\n /* and /* nested */ another */",
                vec![],
            ),
            // SET
            (
                "SET search_path TO myschema",
                vec![set("search_path", "SET search_path TO myschema", sp)],
            ),
            (
                "SeT   search_path  TO  \"$user\", public",
                vec![set(
                    "search_path",
                    "SeT   search_path  TO  \"$user\", public",
                    sp,
                )],
            ),
            (
                "set SESSION statement_timeout = 5000;",
                vec![set(
                    "statement_timeout",
                    "set SESSION statement_timeout = 5000",
                    "RESET statement_timeout",
                )],
            ),
            (
                "SET DateStyle TO ISO, MDY",
                vec![set(
                    "datestyle",
                    "SET DateStyle TO ISO, MDY",
                    "RESET datestyle",
                )],
            ),
            ("SET LOCAL statement_timeout = 0", vec![]),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", vec![]),
            ("SET SESSION TRANSACTION READ ONLY", vec![]),
            (
                "SET statement_timeout TO DEFAULT",
                vec![reset("statement_timeout")],
            ),
            ("set work_mem=default", vec![reset("work_mem")]),
            (
                "SET work_mem = 'default'",
                vec![set(
                    "work_mem",
                    "SET work_mem = 'default'",
                    "RESET work_mem",
                )],
            ),
            (
                "SET TIME ZONE 'UTC'",
                vec![set("timezone", "SET TIME ZONE 'UTC'", "RESET timezone")],
            ),
            ("SET TIME ZONE LOCAL", vec![reset("timezone")]),
            (
                "SET timezone = 'UTC'",
                vec![set("timezone", "SET timezone = 'UTC'", "RESET timezone")],
            ),
            (
                "SET SCHEMA 'app'",
                vec![set("search_path", "SET SCHEMA 'app'", sp)],
            ),
            (
                "SET NAMES 'UTF8'",
                vec![set(
                    "client_encoding",
                    "SET NAMES 'UTF8'",
                    "RESET client_encoding",
                )],
            ),
            ("SET NAMES DEFAULT", vec![reset("client_encoding")]),
            (
                "SET ROLE admin",
                vec![set("role", "SET ROLE admin", "RESET ROLE")],
            ),
            (
                "SET SESSION ROLE admin",
                vec![set("role", "SET SESSION ROLE admin", "RESET ROLE")],
            ),
            ("SET ROLE NONE", vec![reset("role")]),
            (
                "SET SESSION AUTHORIZATION 'bob'",
                vec![set(
                    "session_authorization",
                    "SET SESSION AUTHORIZATION 'bob'",
                    "RESET SESSION AUTHORIZATION",
                )],
            ),
            (
                "SET SESSION AUTHORIZATION DEFAULT",
                vec![reset("session_authorization")],
            ),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                vec![set(
                    "session_characteristics",
                    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                    SESSION_CHARACTERISTICS_RESET,
                )],
            ),
            (
                "SET \"search_path\" = public",
                vec![set(
                    "search_path",
                    "SET \"search_path\" = public",
                    "RESET \"search_path\"",
                )],
            ),
            (
                "SET \"My\"\"App\".Tenant = '5'",
                vec![set(
                    "My\"App.tenant",
                    "SET \"My\"\"App\".Tenant = '5'",
                    "RESET \"My\"\"App\".tenant",
                )],
            ),
            (
                "SET myapp.tenant = '5'",
                vec![set(
                    "myapp.tenant",
                    "SET myapp.tenant = '5'",
                    "RESET myapp.tenant",
                )],
            ),
            (
                "SET local.x = 1",
                vec![set("local.x", "SET local.x = 1", "RESET local.x")],
            ),
            ("SET pgsluice.pool_mode = 'session'", vec![]),
            (
                "SET PgSluice.x TO 1; RESET pgsluice.x; SET \"pgsluice.y\" = 2",
                vec![],
            ),
            ("SET x FROM CURRENT", vec![]),
            (
                "/* hi */ -- x\n  SET x.y = 1 -- trailing\n;",
                vec![set("x.y", "SET x.y = 1", "RESET x.y")],
            ),
            // RESET
            ("RESET search_path", vec![reset("search_path")]),
            ("reset ALL;", vec![ResetAll]),
            ("RESET TIME ZONE", vec![reset("timezone")]),
            (
                "RESET ROLE; RESET SESSION AUTHORIZATION",
                vec![reset("role"), reset("session_authorization")],
            ),
            ("RESET TRANSACTION ISOLATION LEVEL", vec![]),
            // DISCARD
            ("DISCARD ALL", vec![DiscardAll]),
            (
                "DISCARD TEMP; discard temporary",
                vec![Unpin(TempObject), Unpin(TempObject)],
            ),
            ("DISCARD PLANS; DISCARD SEQUENCES", vec![]),
            // LISTEN
            ("LISTEN jobs", vec![Pin(Listen)]),
            ("UNLISTEN *", vec![Unpin(Listen)]),
            ("UNLISTEN jobs", vec![]),
            // Advisory locks and set_config, anywhere in the text.
            ("SELECT pg_advisory_lock(42)", vec![Pin(AdvisoryLock)]),
            (
                "select PG_TRY_ADVISORY_LOCK_SHARED (1, 2)",
                vec![Pin(AdvisoryLock)],
            ),
            (
                "SELECT x FROM t WHERE pg_catalog.pg_try_advisory_lock(id) AND pg_advisory_lock_shared(2)",
                vec![Pin(AdvisoryLock), Pin(AdvisoryLock)],
            ),
            (
                "SELECT pg_advisory_xact_lock(1), pg_try_advisory_xact_lock(2)",
                vec![],
            ),
            ("SELECT pg_advisory_unlock(1)", vec![]),
            ("SELECT pg_advisory_unlock_all()", vec![Unpin(AdvisoryLock)]),
            (
                "SELECT pg_advisory_lock /* c */ (1)",
                vec![Pin(AdvisoryLock)],
            ),
            ("SELECT pg_advisory_lock FROM t", vec![]),
            (
                "SELECT set_config('search_path', 'x', false)",
                vec![Pin(SetConfig)],
            ),
            (
                "SELECT \"set_config\"('a', 'b', false)",
                vec![Pin(SetConfig)],
            ),
            ("SELECT 'set_config(1)', \"set_config(\"", vec![]),
            (
                "UPDATE t SET a = set_config('x.y', '1', true)",
                vec![Pin(SetConfig)],
            ),
            // Temp objects
            ("CREATE TEMP TABLE t (a int)", vec![Pin(TempObject)]),
            (
                "create global temporary table t(a int)",
                vec![Pin(TempObject)],
            ),
            ("CREATE LOCAL TEMP SEQUENCE s", vec![Pin(TempObject)]),
            (
                "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
                vec![Pin(TempObject)],
            ),
            (
                "CREATE TEMPORARY RECURSIVE VIEW v (n) AS SELECT 1",
                vec![Pin(TempObject)],
            ),
            ("CREATE TABLE pg_temp.t (a int)", vec![Pin(TempObject)]),
            (
                "CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql",
                vec![Pin(TempObject)],
            ),
            ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", vec![]),
            ("CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1", vec![]),
            (
                "CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS",
                vec![Pin(TempObject)],
            ),
            ("CREATE TABLE t AS SELECT * FROM pg_temp.x", vec![]),
            ("CREATE TABLE t (a int); CREATE INDEX ON t (a)", vec![]),
            ("SELECT * INTO TEMP t FROM x", vec![Pin(TempObject)]),
            ("INSERT INTO temp VALUES (1)", vec![]),
            // Cursors and prepared statements
            (
                "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                vec![Pin(HoldCursor)],
            ),
            (
                "DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1",
                vec![],
            ),
            (
                "DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold",
                vec![],
            ),
            ("CLOSE ALL", vec![Unpin(HoldCursor)]),
            ("CLOSE c", vec![]),
            ("PREPARE q(int) AS SELECT $1", vec![Pin(SqlPrepare)]),
            ("PREPARE TRANSACTION 'gid1'", vec![]),
            (
                "DEALLOCATE ALL; DEALLOCATE PREPARE ALL",
                vec![Unpin(SqlPrepare), Unpin(SqlPrepare)],
            ),
            ("DEALLOCATE q", vec![]),
            // Quotes and comments hide everything.
            ("SELECT 'SET x = 1; LISTEN y'", vec![]),
            ("SELECT E'it\\'s; LISTEN x'", vec![]),
            ("SELECT 'it''s; LISTEN x'", vec![]),
            ("SELECT 'a\\'; LISTEN x", vec![Pin(Listen)]),
            ("SELECT $$pg_advisory_lock(1)$$", vec![]),
            ("SELECT $fn$ ; LISTEN x; $f$ $fn$", vec![]),
            ("SELECT \"LISTEN x;\"", vec![]),
            ("-- LISTEN x\nSELECT 1", vec![]),
            (
                "/* outer /* LISTEN x; */ still comment; */ SELECT 1",
                vec![],
            ),
            ("SELECT $1; LISTEN x", vec![Pin(Listen)]),
            ("SELECT a$b FROM t; LISTEN x", vec![Pin(Listen)]),
            ("SELECT 1; -- SET x = 1", vec![]),
            // Several statements
            (
                "SET a=1; SELECT 1; SET LOCAL b=2; RESET c",
                vec![set("a", "SET a=1", "RESET a"), reset("c")],
            ),
            (
                "SET x = 'a;b'; LISTEN y",
                vec![set("x", "SET x = 'a;b'", "RESET x"), Pin(Listen)],
            ),
            (
                "SELECT 'héllo'; SET ÜNï.x = 1",
                vec![set("Ünï.x", "SET ÜNï.x = 1", "RESET Ünï.x")],
            ),
            // Unterminated: best effort, no panic.
            ("SELECT 'abc; LISTEN x", vec![]),
            (
                "LISTEN x; SELECT $$ unterminated; LISTEN y",
                vec![Pin(Listen)],
            ),
            ("LISTEN x; /* unterminated; LISTEN y", vec![Pin(Listen)]),
            ("SET \"unterminated = 1", vec![]),
        ]
    }

    #[test]
    fn table() {
        let mut failed = 0;
        for (sql, want) in cases() {
            let got = inspect(sql);
            if got != want {
                failed += 1;
                eprintln!("{sql:?}\n  got:  {got:?}\n  want: {want:?}");
            }
        }
        assert_eq!(failed, 0);
    }

    #[test]
    fn fast_path_does_not_allocate() {
        for sql in [
            PGBENCH,
            "UPDATE t SET x = x + 1 WHERE id = $1",
            "BEGIN",
            "COMMIT",
        ] {
            assert_eq!(inspect(sql).capacity(), 0, "{sql}");
        }
    }

    #[test]
    fn no_panic_on_garbage_and_prefilter_is_conservative() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let inputs: Vec<&str> = cases().into_iter().map(|(sql, _)| sql).collect();
        // The prefilter must never hide what the full scan finds.
        let check = |sql: &str| assert_eq!(inspect(sql), scan(sql), "{sql:?}");
        for sql in &inputs {
            for i in (0..=sql.len()).filter(|&i| sql.is_char_boundary(i)) {
                check(&sql[..i]);
                check(&sql[i..]);
            }
        }
        let alphabet = b"'\"$-/*;\\eE()._=xSETLIST \n\x80\xc3\xa9";
        for _ in 0..100_000 {
            let mut bytes = inputs[rand() as usize % inputs.len()].as_bytes().to_vec();
            for _ in 0..rand() % 6 {
                let b = match rand() % 3 {
                    0 => rand() as u8,
                    _ => alphabet[rand() as usize % alphabet.len()],
                };
                let at = rand() as usize % (bytes.len() + 1);
                bytes.insert(at, b);
            }
            check(&String::from_utf8_lossy(&bytes));
        }
    }

    /// `cargo test --release -- --ignored --nocapture timing`
    #[test]
    #[ignore]
    fn timing() {
        let queries = [
            PGBENCH,
            "UPDATE pgbench_accounts SET abalance = abalance + -4277 WHERE aid = 80935;",
        ];
        for sql in queries {
            let n = 5_000_000u32;
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(inspect(std::hint::black_box(sql)));
            }
            eprintln!(
                "{:.1} ns/query: {sql}",
                t.elapsed().as_nanos() as f64 / f64::from(n)
            );
        }
    }
}
