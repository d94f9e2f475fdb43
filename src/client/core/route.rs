//! Read/write routing inside a session: the node each transaction runs on, the session's
//! read-your-writes LSN, and the route the application forced.
//!
//! A transaction's node is chosen when it starts, from its first unit of work (one Query,
//! or the extended-protocol messages up to Sync or Flush), and it stays there to its end.
//! Reads go to a replica that has replayed everything this session wrote (its *write
//! LSN*) and any LSN it was handed (`SET pgsluice.min_lsn`), else to the primary. The
//! decision itself is [`crate::router::route`]'s; this is the session's memory of it.

use std::sync::Arc;

use crate::config::ReadYourWrites;
use crate::router::route::{self, Choice, Force, Prepared, Request, Unit};
use crate::router::{Class, Classifier, DbNodes, parse_lsn};
use crate::server::varcache::Gucs;

/// Routing state of one session; absent when the database has no replicas, routing is
/// off, or the session holds its server for its whole life (session mode).
pub struct Route {
    pub db: Arc<DbNodes>,
    pub classifier: Classifier,
    pub force: Force,
    /// Upper bound of the session's last committed write (0: none; `u64::MAX`: unknown,
    /// so only the primary will do).
    pub own_lsn: u64,
    /// `SET pgsluice.min_lsn`: a write made elsewhere that reads must see.
    pub token_lsn: u64,
    /// Node of the server held now.
    pub node: usize,
    /// The server held now serves reads (it is not the writer).
    pub reading: bool,
    /// The transaction on the writer ran something that may write.
    pub wrote: bool,
    /// The class of the unit that chose the current server: the first unit boundary
    /// after attaching takes it instead of classifying that unit again.
    pub head: Option<Unit>,
    /// The next transaction goes to the primary whatever it is (a retry).
    pub primary_once: bool,
}

impl Route {
    pub fn new(db: Arc<DbNodes>, classifier: Classifier, force: Force) -> Route {
        Route {
            db,
            classifier,
            force,
            own_lsn: 0,
            token_lsn: 0,
            node: 0,
            reading: false,
            wrote: false,
            head: None,
            primary_once: false,
        }
    }

    fn ryw(&self) -> bool {
        self.db.policy.load().read_your_writes == ReadYourWrites::Lsn
    }

    /// Whether the session must learn its write LSN when this transaction ends.
    pub fn needs_write_lsn(&self) -> bool {
        !self.reading && self.wrote && (self.ryw() || self.db.policy.load().report_write_lsn)
    }

    /// Whether the client is told the write LSN (`routing.report_write_lsn`).
    pub fn reports_write_lsn(&self) -> bool {
        self.db.policy.load().report_write_lsn
    }

    /// Whether the units of the transaction in progress must still be classified.
    pub fn watching(&self) -> bool {
        self.reading || (!self.wrote && self.ryw())
    }

    /// Classifies the unit at the start of `buf`.
    pub fn classify(
        &self,
        buf: &[u8],
        max_message: usize,
        prepared: &dyn Prepared,
        gucs: &Gucs,
    ) -> Unit {
        let mut ro = || session_read_only(gucs);
        route::classify_unit(buf, max_message, &self.classifier, prepared, &mut ro)
    }

    /// Chooses the node for the transaction about to start with a unit of class `unit`;
    /// `avoid` is a node that just failed to give a connection.
    pub fn choose(&mut self, unit: Unit, avoid: Option<usize>) -> Result<usize, (String, String)> {
        let read = unit == Unit::Read;
        let min_lsn = if self.ryw() {
            self.own_lsn.max(self.token_lsn)
        } else {
            self.token_lsn
        };
        let req = Request {
            read,
            force: self.force,
            primary_once: std::mem::take(&mut self.primary_once),
            min_lsn,
            avoid,
        };
        let Choice { node, reading } = route::choose(&self.db, &req).map_err(|_| {
            (
                "08006".to_string(),
                "no replica is available for reads and routing.primary_reads = \"never\""
                    .to_string(),
            )
        })?;
        self.reading = reading;
        self.wrote = !read && !reading;
        self.node = node;
        self.head = Some(unit);
        let n = self.db.nodes.get(node);
        if let Some(n) = n {
            let counter = if reading { &n.reads } else { &n.writes };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(node)
    }

    /// Marks the current node busy or free for least-outstanding balancing.
    pub fn node_active(&self, delta: isize) {
        if let Some(n) = self.db.nodes.get(self.node) {
            if delta > 0 {
                n.active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                n.active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// `SET pgsluice.route` / `pgsluice.min_lsn` and their RESET. The error is the
    /// client's answer when the value is bad.
    pub fn set_ours(&mut self, name: &str, value: Option<&str>) -> Result<(), String> {
        match (name, value) {
            ("pgsluice.route", None) => self.force = Force::Auto,
            ("pgsluice.route", Some(v)) => {
                self.force = Force::parse(v).ok_or_else(|| {
                    format!("invalid value for pgsluice.route: {v:?} (primary, replica or auto)")
                })?;
            }
            ("pgsluice.min_lsn", None) => self.token_lsn = 0,
            ("pgsluice.min_lsn", Some(v)) => {
                self.token_lsn = parse_lsn(v.trim_matches('\''))
                    .ok_or_else(|| format!("invalid LSN for pgsluice.min_lsn: {v:?}"))?;
            }
            _ => return Err(format!("unrecognized pgsluice setting \"{name}\"")),
        }
        Ok(())
    }

    /// The transaction that wrote ended; `lsn` is where the writer's WAL stands (`None`:
    /// unknown, so reads stay on the primary).
    pub fn wrote_up_to(&mut self, lsn: Option<u64>) {
        self.own_lsn = lsn.unwrap_or(u64::MAX);
        self.wrote = false;
    }
}

/// Whether the session's transactions are read-only by default
/// (`default_transaction_read_only`, `SET SESSION CHARACTERISTICS ... READ ONLY`).
fn session_read_only(g: &Gucs) -> bool {
    g.get("default_transaction_read_only")
        .is_some_and(|s| setting_is_on(&s.set_sql))
        || g.get("session_characteristics")
            .is_some_and(|s| s.set_sql.to_ascii_lowercase().contains("read only"))
}

/// Whether the `set_sql` of a boolean setting turns it on.
fn setting_is_on(set_sql: &str) -> bool {
    let s = set_sql.to_ascii_lowercase();
    let value = match s.find("set_config(") {
        Some(i) => s.get(i..).and_then(|r| r.split('\'').nth(3)).unwrap_or(""),
        None => {
            let after = s
                .rfind('=')
                .and_then(|i| s.get(i + 1..))
                .or_else(|| s.rfind(" to ").and_then(|i| s.get(i + 4..)))
                .unwrap_or("");
            after
                .trim()
                .trim_matches(|c| c == '\'' || c == ';' || c == ' ')
        }
    };
    matches!(value, "on" | "true" | "yes" | "1" | "t" | "y")
}

/// The class of what a client's prepared names run, for the router.
pub struct NamesView<'a>(pub &'a super::statements::Names);

impl Prepared for NamesView<'_> {
    fn class_of(&self, name: &str, classifier: &Classifier) -> Option<Class> {
        self.0.stmts.get(name).map(|s| s.class(classifier))
    }

    fn executed_class(&self, sql: &str, classifier: &Classifier) -> Option<Class> {
        if self.0.sql.is_empty() {
            return None;
        }
        // Only a plain EXECUTE runs what was prepared: EXPLAIN or CREATE TABLE AS around
        // it is classified as itself.
        let head = sql.trim_start().as_bytes().get(..7)?;
        if !head.eq_ignore_ascii_case(b"execute") {
            return None;
        }
        let e = crate::sql::sql_execute(sql)?;
        self.0.sql.get(&e.name).map(|s| s.class(classifier))
    }
}

#[cfg(test)]
mod tests {
    use super::setting_is_on;

    #[test]
    fn boolean_settings() {
        assert!(setting_is_on("SET default_transaction_read_only = on"));
        assert!(setting_is_on("SET default_transaction_read_only TO 'true'"));
        assert!(setting_is_on(
            "SELECT pg_catalog.set_config('default_transaction_read_only', 'on', false)"
        ));
        assert!(!setting_is_on("SET default_transaction_read_only = off"));
        assert!(!setting_is_on("SET default_transaction_read_only = '€'"));
    }
}
