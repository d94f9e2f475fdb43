//! Session state: the settings a client made (to replay on whichever server it gets) and
//! the state that pins it to its server.
//!
//! Effects found in the client's statements stay pending until the server's answers show
//! they took: a SET inside a transaction that rolls back never happened. What the server
//! really holds is recorded beside the client's own settings, and the two are brought
//! together before the client's next unit of work (see [`SessionState::server_record`]):
//! after `RESET datestyle` the client is back at its *startup* value, the server at its
//! own default, and the next unit first gets the startup value replayed.

use std::sync::Arc;

use crate::server::varcache::{Gucs, reported_set_sql};
use crate::sql::{self, Effect};

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
    /// Values the server reported (ParameterStatus) since the last ReadyForQuery:
    /// the whole value of a parameter a SET may have changed only in part (DateStyle).
    reported: Vec<(String, String)>,
    /// An ErrorResponse arrived since the last ReadyForQuery.
    pub error_seen: bool,
    /// A ROLLBACK completed since the last ReadyForQuery.
    pub rolled_back: bool,
    /// The transaction ran something that may change settings out of sight (a `DO` block,
    /// a `CALL`, a function outside the allowlist): its settings are read back from the
    /// server when it ends.
    opaque: bool,
}

/// What a ReadyForQuery changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The client's settings changed.
    pub changed: bool,
    /// The server no longer holds these of the client's settings (a RESET took the
    /// server to its own default where the client's is a startup value).
    pub server_lacks: Vec<String>,
    /// A `DISCARD ALL` or `UNLISTEN *` ran: the client listens on nothing any more.
    pub unlistened: bool,
}

/// A parked session's settings: the current and the startup ones (see `parked.rs`).
pub struct ParkedState {
    gucs: Arc<Gucs>,
    startup: Arc<Gucs>,
}

impl SessionState {
    /// Between transactions with nothing pending: no pin, no effect waiting for a
    /// verdict, no flag of the last transaction left.
    pub(super) fn parkable(&self) -> bool {
        self.pins.is_empty()
            && self.pending.is_empty()
            && self.in_txn.is_empty()
            && self.reported.is_empty()
            && !self.error_seen
            && !self.rolled_back
            && !self.opaque
    }

    /// The compact form of a [`SessionState::parkable`] state.
    pub(super) fn park(self) -> ParkedState {
        ParkedState {
            gucs: self.gucs,
            startup: self.startup,
        }
    }

    pub(super) fn unpark(p: ParkedState) -> SessionState {
        SessionState {
            gucs: p.gucs,
            startup: p.startup,
            ..SessionState::default()
        }
    }

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
    pub fn on_statement(&mut self, text: &str) -> bool {
        let mut forgets_prepared = false;
        for effect in sql::inspect(text) {
            forgets_prepared |=
                matches!(effect, Effect::DiscardAll | Effect::Unpin(Pin::SqlPrepare));
            match effect {
                Effect::Pin(r) => self.pin(r),
                Effect::Opaque => self.opaque = true,
                e => self.pending.push(e),
            }
        }
        forgets_prepared
    }

    /// The transaction ran PL code that may have changed settings out of sight.
    pub fn mark_opaque(&mut self) {
        self.opaque = true;
    }

    /// Whether the transaction ran PL code pgsluice cannot see into.
    pub fn is_opaque(&self) -> bool {
        self.opaque
    }

    /// Whether the settings must be read back from the server (and forgets it).
    pub fn take_opaque(&mut self) -> bool {
        std::mem::take(&mut self.opaque)
    }

    /// A ParameterStatus arrived: the server's whole value of `name` now.
    pub fn on_reported(&mut self, name: &str, value: &str) {
        if self.pending.is_empty() && self.in_txn.is_empty() {
            return;
        }
        let name = name.to_ascii_lowercase();
        self.reported.retain(|(n, _)| *n != name);
        self.reported.push((name, value.to_string()));
    }

    /// Applies what the server's ReadyForQuery proves.
    pub fn on_ready(&mut self, status: u8) -> Applied {
        let ok = !std::mem::take(&mut self.error_seen);
        let rolled_back = std::mem::take(&mut self.rolled_back);
        if self.pending.is_empty() && self.in_txn.is_empty() {
            self.reported.clear();
            return Applied::default();
        }
        let stmt = std::mem::take(&mut self.pending);
        let applied = match status {
            b'T' if ok => {
                self.in_txn.extend(stmt);
                return Applied::default();
            }
            b'T' => return Applied::default(),
            b'I' if ok && !rolled_back => {
                let mut all = std::mem::take(&mut self.in_txn);
                all.extend(stmt);
                self.apply(all)
            }
            _ => {
                self.in_txn.clear();
                Applied::default()
            }
        };
        self.reported.clear();
        applied
    }

    fn apply(&mut self, effects: Vec<Effect>) -> Applied {
        let before = self.gucs.clone();
        let mut lacks = Vec::new();
        let mut unlistened = false;
        for e in effects {
            match e {
                Effect::Set {
                    name,
                    set_sql,
                    reset_sql,
                } => self.set(name.to_ascii_lowercase(), set_sql, reset_sql),
                Effect::Reset { name } => {
                    let name = name.to_ascii_lowercase();
                    self.reset(&name, &mut lacks);
                }
                Effect::ResetAll => self.reset_all(&mut lacks),
                Effect::DiscardAll => {
                    self.gucs = self.startup.clone();
                    lacks.extend(self.startup.names().map(str::to_string));
                    self.pins.clear();
                    unlistened = true;
                }
                Effect::Unpin(r) => {
                    unlistened |= r == Pin::Listen;
                    self.pins.retain(|p| *p != r);
                }
                Effect::Pin(r) => self.pin(r),
                Effect::Opaque => self.opaque = true,
            }
        }
        lacks.sort();
        lacks.dedup();
        lacks.retain(|n| self.gucs.get(n).is_some());
        Applied {
            changed: !Arc::ptr_eq(&before, &self.gucs),
            server_lacks: lacks,
            unlistened,
        }
    }

    fn set(&mut self, name: String, set_sql: String, reset_sql: String) {
        // A parameter the server reports is recorded by its whole value: a SET may have
        // changed only part of it (`SET datestyle TO ymd` keeps the output format).
        let set_sql = self
            .reported
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(n, v)| reported_set_sql(n, v))
            .unwrap_or(set_sql);
        let gucs = Arc::make_mut(&mut self.gucs);
        if name == "session_authorization" {
            // SET SESSION AUTHORIZATION also resets the role.
            gucs.remove("role");
        }
        gucs.set(name, set_sql, reset_sql);
    }

    /// RESET ALL: back to the startup settings, except the role and session
    /// authorization, which PostgreSQL's RESET ALL leaves alone.
    fn reset_all(&mut self, lacks: &mut Vec<String>) {
        let mut gucs = (*self.startup).clone();
        for kept in ["role", "session_authorization"] {
            match self.gucs.get(kept) {
                Some(s) => gucs.set(kept.into(), s.set_sql.clone(), s.reset_sql.clone()),
                None => gucs.remove(kept),
            }
        }
        // Custom settings keep their (now empty) placeholder, as on PostgreSQL.
        for name in self.gucs.names() {
            if is_custom(name) && gucs.get(name).is_none() {
                gucs.set(name.to_string(), reset_sql_of(name), reset_sql_of(name));
            }
        }
        lacks.extend(self.startup.names().map(str::to_string));
        self.gucs = Arc::new(gucs);
    }

    fn reset(&mut self, name: &str, lacks: &mut Vec<String>) {
        let gucs = Arc::make_mut(&mut self.gucs);
        match self.startup.get(name).cloned() {
            Some(s) => {
                gucs.set(name.to_string(), s.set_sql, s.reset_sql);
                lacks.push(name.to_string());
            }
            // A custom setting reset keeps its placeholder: replaying `RESET name`
            // creates it on a server that never saw it.
            None if is_custom(name) => {
                gucs.set(name.to_string(), reset_sql_of(name), reset_sql_of(name))
            }
            None => gucs.remove(name),
        }
        if name == "session_authorization" {
            gucs.remove("role");
        }
    }

    /// What the server holds after this ReadyForQuery, given what it held before: the
    /// client's settings, except those a RESET took to the server's own default.
    pub fn server_record(&self, applied: &Applied) -> Arc<Gucs> {
        if applied.server_lacks.is_empty() {
            return self.gucs.clone();
        }
        let mut g = (*self.gucs).clone();
        for n in &applied.server_lacks {
            g.remove(n);
        }
        Arc::new(g)
    }

    /// A replay of these settings failed: the client no longer has them (it gets the
    /// error once and can go on, as after a RESET).
    pub fn drop_settings(&mut self, names: &[String]) {
        let gucs = Arc::make_mut(&mut self.gucs);
        for n in names {
            gucs.remove(n);
            if n == "session_authorization" {
                gucs.remove("role");
            }
        }
    }

    /// Takes the settings read from a server after PL code may have changed them
    /// (`pg_settings` rows whose source is `session`), keeping the role and session
    /// authorization, which that view does not show.
    pub fn adopt_server_settings(&mut self, rows: &[(String, String)]) -> Arc<Gucs> {
        let mut g = Gucs::default();
        for (name, value) in rows {
            g.set_value(name, value);
        }
        for kept in ["role", "session_authorization"] {
            if let Some(s) = self.gucs.get(kept) {
                g.set(kept.into(), s.set_sql.clone(), s.reset_sql.clone());
            }
        }
        for name in self.gucs.names() {
            if is_custom(name)
                && g.get(name).is_none()
                && let Some(s) = self.gucs.get(name)
            {
                g.set(name.to_string(), s.set_sql.clone(), s.reset_sql.clone());
            }
        }
        self.gucs = Arc::new(g);
        self.gucs.clone()
    }
}

/// A custom (extension or placeholder) parameter: its name has a dot.
fn is_custom(name: &str) -> bool {
    name.contains('.')
}

fn reset_sql_of(name: &str) -> String {
    format!("RESET {}", crate::server::varcache::quote_ident(name))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
