//! Read/write routing inside a session: the node each transaction runs on, the session's
//! read-your-writes LSN, and the route the application forced.
//!
//! A transaction's node is chosen when it starts, from its first unit of work (one Query,
//! or the extended-protocol messages up to Sync or Flush), and it stays there to its end.
//! Reads go to a replica that has replayed everything this session wrote (its *write
//! LSN*) and any LSN it was handed (`SET pgsluice.min_lsn`), else to the primary. The
//! decision itself is [`crate::router::route`]'s; this is the session's memory of it.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::ReadYourWrites;
use crate::router::functions::search_path_of;
use crate::router::route::{self, Choice, Force, Prepared, Request, SessionView, Unit};
use crate::router::{
    Class, Classifier, DbNodes, FuncRef, NotRead, Resolved, SearchPath, ToPrimary, parse_lsn,
};
use crate::server::varcache::Gucs;

/// A read-only endpoint's session (`replicas_of`): every unit goes to a replica.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The primary serves the session when no replica can (it runs read-only there).
    pub primary_fallback: bool,
}

/// Routing state of one session; absent when the database has no replicas, routing is
/// off, or the session holds its server for its whole life (session mode, except on a
/// read-only endpoint).
pub struct Route {
    pub db: Arc<DbNodes>,
    pub classifier: Classifier,
    pub force: Force,
    /// The login user (`$user` in a search_path).
    pub user: String,
    /// Set for a read-only endpoint's session.
    pub endpoint: Option<Endpoint>,
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
    /// The server being checked out must first be asked whether it has replayed this LSN
    /// (a read-your-writes probe, `ryw.rs`).
    pub probe: Option<u64>,
    /// A probe sent ahead of the unit in flight (pipelined, `ryw.rs`).
    pub(super) ahead: Option<super::ryw::Ahead>,
    /// The write-LSN read went right behind the unit in flight (`write_lsn.rs`): its answer
    /// follows the unit's ReadyForQuery.
    pub(super) lsn_behind: bool,
    /// The write-LSN read queued last prepares its statement (recorded when sent; taken
    /// back if the Parse is not confirmed, `write_lsn.rs`).
    pub(super) lsn_parse: bool,
    /// Why the last unit classified is not a read.
    why: Cell<NotRead>,
}

impl Route {
    pub fn new(db: Arc<DbNodes>, classifier: Classifier, force: Force) -> Route {
        Route {
            db,
            classifier,
            force,
            user: String::new(),
            endpoint: None,
            own_lsn: 0,
            token_lsn: 0,
            node: 0,
            reading: false,
            wrote: false,
            head: None,
            primary_once: false,
            probe: None,
            ahead: None,
            lsn_behind: false,
            lsn_parse: false,
            why: Cell::new(NotRead::Write),
        }
    }

    /// The session of a read-only endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Route {
        self.endpoint = Some(endpoint);
        self.force = Force::Replica;
        self
    }

    fn ryw(&self) -> bool {
        self.endpoint.is_none() && self.db.policy.load().read_your_writes == ReadYourWrites::Lsn
    }

    /// Whether the session must learn its write LSN when this transaction ends.
    pub fn needs_write_lsn(&self) -> bool {
        !self.reading
            && self.wrote
            && self.endpoint.is_none()
            && (self.ryw() || self.db.policy.load().report_write_lsn)
    }

    /// Whether the client is told the write LSN (`routing.report_write_lsn`).
    pub fn reports_write_lsn(&self) -> bool {
        self.db.policy.load().report_write_lsn
    }

    /// Whether the units of the transaction in progress must still be classified.
    pub fn watching(&self) -> bool {
        self.endpoint.is_none() && (self.reading || (!self.wrote && self.ryw()))
    }

    /// Classifies the unit at the start of `buf`.
    pub fn classify(
        &self,
        buf: &[u8],
        max_message: usize,
        prepared: &dyn Prepared,
        gucs: &Gucs,
    ) -> Unit {
        let mut view = View { gucs, route: self };
        let (unit, why) =
            route::classify_unit(buf, max_message, &self.classifier, prepared, &mut view);
        self.why.set(why);
        match unit {
            // A read-only endpoint sends every unit to a replica: only its end matters.
            Unit::Write if self.endpoint.is_some() => Unit::Read,
            unit => unit,
        }
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
        let policy = self.db.policy.load();
        let req = Request {
            read,
            why: self.why.get(),
            force: self.force,
            primary_once: std::mem::take(&mut self.primary_once),
            min_lsn,
            avoid,
            // A probe needs the session's write LSN (`u64::MAX` is "unknown").
            probe: policy.ryw_probe && min_lsn != u64::MAX,
        };
        let no_reader = || {
            (
                "08006".to_string(),
                "no replica is available for reads and routing.primary_reads = \"never\""
                    .to_string(),
            )
        };
        let choice = route::choose(&self.db, &req).map_err(|_| no_reader())?;
        let Choice {
            node,
            reading,
            probe,
            why,
        } = choice;
        if let Some(e) = self.endpoint
            && !reading
            && !e.primary_fallback
        {
            return Err((
                "08006".to_string(),
                format!(
                    "no replica of database \"{}\" is available for this read-only endpoint \
                     (and it has no primary_fallback)",
                    self.db.database
                ),
            ));
        }
        self.reading = reading;
        self.wrote = !read && !reading;
        self.node = node;
        self.head = Some(unit);
        self.probe = probe;
        if let Some(n) = self.db.nodes.get(node) {
            if probe.is_some() {
                n.probes.fetch_add(1, Relaxed);
            } else if reading {
                n.reads.fetch_add(1, Relaxed);
            } else {
                n.writes.fetch_add(1, Relaxed);
            }
        }
        if let Some(why) = why {
            self.db.count_to_primary(node, why);
        }
        Ok(node)
    }

    /// The probe of the replica just checked out answered: `lsn` is its replay position
    /// (`None`: no answer). True when it has what the session must see; otherwise the
    /// caller gives the replica back and calls [`Route::probe_missed`].
    pub fn probe_answered(&mut self, min_lsn: u64, lsn: Option<u64>) -> bool {
        if let Some(lsn) = lsn {
            self.db.saw_replay(self.node, lsn);
        }
        let ok = lsn.is_some_and(|l| l >= min_lsn);
        if let Some(n) = self.db.nodes.get(self.node) {
            if ok {
                n.reads.fetch_add(1, Relaxed);
            } else {
                n.probe_misses.fetch_add(1, Relaxed);
            }
        }
        ok
    }

    /// The probed replica had not replayed the session's write in time: the unit goes to
    /// the primary. Returns the node to check out.
    pub fn probe_missed(&mut self) -> usize {
        let writer = self.db.writer();
        self.db.ryw_fallbacks.fetch_add(1, Relaxed);
        self.db.count_to_primary(writer, ToPrimary::RywTimeout);
        if let Some(n) = self.db.nodes.get(writer) {
            n.writes.fetch_add(1, Relaxed);
        }
        let unit = self.head.unwrap_or(Unit::Read);
        self.reading = false;
        self.wrote = unit != Unit::Read;
        self.node = writer;
        self.probe = None;
        writer
    }

    /// Whether a unit a replica refused as a write (25006) may be retried on the primary.
    pub fn retries_refusals(&self) -> bool {
        self.endpoint.is_none() && self.db.policy.load().retry_read_only_errors
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
            ("pgsluice.route", _) if self.endpoint.is_some() => {
                return Err(
                    "pgsluice.route cannot be changed on a read-only endpoint (replicas_of)"
                        .to_string(),
                );
            }
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

/// The session as the classifier sees it: its transaction default and its search path.
struct View<'a> {
    gucs: &'a Gucs,
    route: &'a Route,
}

impl SessionView for View<'_> {
    fn read_only(&mut self) -> bool {
        session_read_only(self.gucs)
    }

    fn functions(&mut self, fs: &[FuncRef]) -> Resolved {
        if !self.route.db.policy.load().function_volatility {
            return Resolved::Unknown;
        }
        let path = match self.gucs.get("search_path") {
            // `$user` is the current user: with a role or session authorization set,
            // pgsluice does not know it, and looks everywhere.
            Some(_) if self.gucs.get("role").is_some() => SearchPath::Default,
            Some(_) if self.gucs.get("session_authorization").is_some() => SearchPath::Default,
            Some(s) => search_path_of(&s.set_sql, &self.route.user),
            None => SearchPath::Default,
        };
        let resolved = self.route.db.functions.load().resolve_all(fs, &path);
        if resolved == Resolved::Unknown {
            self.route.db.want_functions();
        }
        resolved
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
        self.0.sql.get(&e.name).map(|s| s.stmt.class(classifier))
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
pub(super) mod route_tests;

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
