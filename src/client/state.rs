//! A client's session state in transaction and statement mode: the settings it made (to
//! replay on whichever server it gets) and the state that pins it to its server.
//!
//! Effects found in the client's statements stay pending until the server's answers show
//! they took: a SET inside a transaction that rolls back never happened.

use std::sync::Arc;

use crate::server::varcache::Gucs;
use crate::sql::{self as inspect, Effect};

/// Why a client is pinned to its server.
pub use crate::sql::PinReason as Pin;

/// Settings and pins of one client session.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Settings now in force for the client (startup parameters plus SETs).
    pub gucs: Arc<Gucs>,
    /// Settings from the startup packet, which RESET returns to.
    pub startup: Arc<Gucs>,
    pins: Vec<Pin>,
    /// Effects of statements sent since the last ReadyForQuery.
    pending: Vec<Effect>,
    /// Effects of statements that succeeded inside the open transaction.
    in_txn: Vec<Effect>,
    /// An ErrorResponse arrived since the last ReadyForQuery.
    pub error_seen: bool,
    /// A ROLLBACK completed since the last ReadyForQuery.
    pub rolled_back: bool,
}

impl SessionState {
    pub fn new(startup: Arc<Gucs>) -> SessionState {
        SessionState {
            gucs: startup.clone(),
            startup,
            ..SessionState::default()
        }
    }

    pub fn is_pinned(&self) -> bool {
        !self.pins.is_empty()
    }

    pub fn pins(&self) -> &[Pin] {
        &self.pins
    }

    pub fn pin(&mut self, pin: Pin) {
        if !self.pins.contains(&pin) {
            tracing::debug!(reason = pin.name(), "client pinned to its server");
            self.pins.push(pin);
        }
    }

    /// Whether CommandComplete tags must be read (to see a ROLLBACK).
    pub fn wants_tags(&self) -> bool {
        !self.pending.is_empty() || !self.in_txn.is_empty()
    }

    /// Records the effects of a statement text the client sent. Pins apply at once (the
    /// safe direction); everything else waits for the server's verdict.
    ///
    /// Returns true when the text drops every prepared statement on the server
    /// (DISCARD ALL, DEALLOCATE ALL), which the caller must forget at once.
    pub fn on_statement(&mut self, sql: &str) -> bool {
        let mut forgets_prepared = false;
        for effect in inspect::inspect(sql) {
            forgets_prepared |=
                matches!(effect, Effect::DiscardAll | Effect::Unpin(Pin::SqlPrepare));
            match effect {
                Effect::Pin(r) => self.pin(r),
                e => self.pending.push(e),
            }
        }
        forgets_prepared
    }

    /// Applies what the server's ReadyForQuery proves. Returns the new settings when they
    /// changed, so the caller can record them on the server connection too.
    pub fn on_ready(&mut self, status: u8) -> Option<Arc<Gucs>> {
        let ok = !std::mem::take(&mut self.error_seen);
        let rolled_back = std::mem::take(&mut self.rolled_back);
        if self.pending.is_empty() && self.in_txn.is_empty() {
            return None;
        }
        let stmt = std::mem::take(&mut self.pending);
        match status {
            b'T' if ok => self.in_txn.extend(stmt),
            b'T' => {}
            b'I' if ok && !rolled_back => {
                let mut all = std::mem::take(&mut self.in_txn);
                all.extend(stmt);
                return self.apply(all);
            }
            _ => self.in_txn.clear(),
        }
        None
    }

    fn apply(&mut self, effects: Vec<Effect>) -> Option<Arc<Gucs>> {
        let before = self.gucs.clone();
        for e in effects {
            match e {
                Effect::Set {
                    name,
                    set_sql,
                    reset_sql,
                } => {
                    let name = name.to_ascii_lowercase();
                    Arc::make_mut(&mut self.gucs).set(name, set_sql, reset_sql)
                }
                Effect::Reset { name } => self.reset(&name.to_ascii_lowercase()),
                Effect::ResetAll => self.reset_all(),
                Effect::DiscardAll => {
                    self.gucs = self.startup.clone();
                    self.pins.clear();
                }
                Effect::Unpin(r) => {
                    self.pins.retain(|p| *p != r);
                }
                Effect::Pin(r) => self.pin(r),
            }
        }
        (!Arc::ptr_eq(&before, &self.gucs)).then(|| self.gucs.clone())
    }

    /// RESET ALL: back to the startup settings, except the role and session
    /// authorization, which PostgreSQL's RESET ALL leaves alone.
    fn reset_all(&mut self) {
        let mut gucs = (*self.startup).clone();
        for kept in ["role", "session_authorization"] {
            match self.gucs.get(kept) {
                Some(s) => gucs.set(kept.into(), s.set_sql.clone(), s.reset_sql.clone()),
                None => gucs.remove(kept),
            }
        }
        self.gucs = Arc::new(gucs);
    }

    fn reset(&mut self, name: &str) {
        match self.startup.get(name).cloned() {
            Some(s) => Arc::make_mut(&mut self.gucs).set(name.to_string(), s.set_sql, s.reset_sql),
            None => Arc::make_mut(&mut self.gucs).remove(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_outside_transaction_applies() {
        let mut s = SessionState::default();
        s.on_statement("SET search_path TO a");
        assert!(s.on_ready(b'I').is_some());
        assert!(s.gucs.get("search_path").is_some());
    }

    #[test]
    fn set_in_rolled_back_transaction_is_dropped() {
        let mut s = SessionState::default();
        s.on_statement("BEGIN");
        s.on_ready(b'T');
        s.on_statement("SET search_path TO a");
        s.on_ready(b'T');
        s.on_statement("ROLLBACK");
        s.rolled_back = true;
        assert!(s.on_ready(b'I').is_none());
        assert!(s.gucs.get("search_path").is_none());
    }

    #[test]
    fn failed_set_is_dropped() {
        let mut s = SessionState::default();
        s.on_statement("SET statement_timeout TO 'banana'");
        s.error_seen = true;
        assert!(s.on_ready(b'I').is_none());
        assert!(s.gucs.is_empty());
    }

    #[test]
    fn reset_returns_to_startup_value() {
        let mut startup = Gucs::default();
        startup.set_value("application_name", "app");
        let mut s = SessionState::new(Arc::new(startup));
        s.on_statement("SET application_name = 'other'");
        s.on_ready(b'I');
        s.on_statement("RESET application_name");
        s.on_ready(b'I');
        assert_eq!(s.gucs, s.startup);
    }

    #[test]
    fn listen_pins_until_unlisten_all() {
        let mut s = SessionState::default();
        s.on_statement("LISTEN ch");
        assert!(s.is_pinned());
        s.on_ready(b'I');
        s.on_statement("UNLISTEN *");
        s.on_ready(b'I');
        assert!(!s.is_pinned());
    }
}
