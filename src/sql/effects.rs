//! Session-state effects of statement text (for transaction pooling): SET, RESET, DISCARD,
//! and the statements that pin a client to its server (LISTEN, temp objects, WITH HOLD
//! cursors, session advisory locks, SQL PREPARE, set_config).

use super::cursor::{Cur, is_kw, parse_name, slice, text, unquote_raw};
use super::lexer::{Kind, Lexer, Tok};
use super::prefilter::{eq_kw, may_have_effects};

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
    /// A `DO` block or `CALL`: PL code that may change settings out of sight.
    Opaque,
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
    /// LOAD of a shared library: it stays loaded in that backend (never cleared).
    Load,
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
            PinReason::Load => "load",
            PinReason::ProtocolPrepare => "protocol_prepare",
            PinReason::Unknown => "unknown",
        }
    }
}

/// Effects of every statement in `sql`, in order. Returns an empty Vec without
/// allocating when the text has nothing relevant.
pub fn inspect(sql: &str) -> Vec<Effect> {
    if !may_have_effects(sql.as_bytes()) {
        return Vec::new();
    }
    scan(sql)
}

/// The full tokenizing pass (the prefilter's fuzz target checks it against [`may_have_effects`]).
pub(super) fn scan(sql: &str) -> Vec<Effect> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
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
    Do,
    Call,
    Load,
    Select,
    Other,
}

const VERBS: [(&str, Verb); 14] = [
    // The most common first: `verb` tries them in order.
    ("select", Verb::Select),
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
    ("do", Verb::Do),
    ("call", Verb::Call),
    ("load", Verb::Load),
];

fn classify(sql: &str, t: Tok) -> Verb {
    match t.kind {
        Kind::Word => verb(text(sql, t).as_bytes()),
        _ => Verb::Other,
    }
}

pub(super) fn verb(word: &[u8]) -> Verb {
    VERBS
        .iter()
        .find(|(k, _)| eq_kw(word, k.as_bytes()))
        .map_or(Verb::Other, |&(_, v)| v)
}

/// Session-level functions whose call pins or unpins, wherever they appear.
pub(super) const CALLS: [(&str, bool, PinReason); 6] = [
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
        Verb::Do | Verb::Call => Some(Effect::Opaque),
        // What a library sets up (its settings, hooks) lives in that backend only.
        Verb::Load => c.peek().map(|_| Effect::Pin(PinReason::Load)),
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

#[cfg(test)]
#[path = "effects_tests.rs"]
mod tests;
