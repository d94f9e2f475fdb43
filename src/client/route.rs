//! Read/write routing inside a session: which node the next transaction runs on, holding
//! back a write that arrives while the client sits on a replica, and the session's
//! read-your-writes LSN.
//!
//! A transaction's node is chosen when it starts, from the first unit of work the client
//! sent (one Query, or the extended-protocol messages up to Sync or Flush). It stays on
//! that node to its end. Reads go to a replica that has replayed everything this session
//! wrote (its *write LSN*) and any LSN it was handed (`SET pgsluice.min_lsn`), else to the
//! primary.

use std::sync::Arc;

use bytes::BytesMut;

use super::session::Session;
use crate::config::{Config, PoolMode, ReadYourWrites};
use crate::pool::{Pool, PoolKey};
use crate::protocol::{self, build, fe};
use crate::router::{Classifier, DbNodes, format_lsn, parse_lsn};
use crate::server::CloseReason;

/// A route the application forced for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Force {
    Auto,
    Primary,
    Replica,
}

impl Force {
    pub fn parse(value: &str) -> Option<Force> {
        match value
            .trim()
            .trim_matches('\'')
            .to_ascii_lowercase()
            .as_str()
        {
            "auto" | "default" => Some(Force::Auto),
            "primary" => Some(Force::Primary),
            "replica" => Some(Force::Replica),
            _ => None,
        }
    }
}

/// Routing state of one session; absent when the database has no replicas, routing is
/// off, or the session holds its server for its whole life (session mode).
pub(super) struct Route {
    pub db: Arc<DbNodes>,
    classifier: Classifier,
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
    /// The unit that chose the current server was already classified.
    pub first_unit_checked: bool,
    /// Class of the unit waiting for a server (decided before asking for one).
    pending_read: Option<bool>,
    /// The next transaction goes to the primary whatever it is (a retry).
    pub primary_once: bool,
    /// A read sent to a replica that can still be retried on the primary.
    pub retry: Option<super::retry::Retry>,
    pools: Vec<Option<Arc<Pool>>>,
    /// Each node's pool statistics, for the session's accounting.
    stats: Vec<Option<Arc<crate::metrics::pool::PoolMetrics>>>,
    database: String,
    user: String,
}

/// What the client's next unit of work amounts to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unit {
    Read,
    Write,
    /// Its end has not arrived yet.
    Incomplete,
}

/// Past this many buffered bytes without the end of a unit, route it to the primary.
const UNIT_LOOKAHEAD: usize = 1 << 20;

impl Route {
    /// Routing for a new session, if its database and mode allow it.
    pub fn new(
        config: &Config,
        db: Arc<DbNodes>,
        mode: PoolMode,
        database: &str,
        user: &str,
        force: Force,
    ) -> Option<Box<Route>> {
        if mode == PoolMode::Session || !config.routing.read_write_split || !db.has_replicas() {
            return None;
        }
        let allow = Arc::new(crate::router::Allowlist::new(
            &config.routing.read_only_functions,
        ));
        let pools = vec![None; db.nodes.len()];
        Some(Box::new(Route {
            db,
            classifier: Classifier::new(allow),
            force,
            own_lsn: 0,
            token_lsn: 0,
            node: 0,
            reading: false,
            wrote: false,
            first_unit_checked: false,
            pending_read: None,
            primary_once: false,
            retry: None,
            stats: vec![None; pools.len()],
            pools,
            database: database.to_string(),
            user: user.to_string(),
        }))
    }

    fn ryw(&self) -> bool {
        self.db.policy.load().read_your_writes == ReadYourWrites::Lsn
    }

    /// Whether the session must learn its write LSN when this transaction ends.
    pub fn needs_write_lsn(&self) -> bool {
        !self.reading && self.wrote && (self.ryw() || self.db.policy.load().report_write_lsn)
    }

    /// Whether the units of the transaction in progress must still be classified.
    pub fn watching(&self) -> bool {
        self.reading || (!self.wrote && self.ryw())
    }

    /// The pool of `node`, made on first use.
    fn pool(&mut self, shared: &crate::shared::Shared, node: usize) -> Option<Arc<Pool>> {
        if let Some(p) = self.pools.get(node).and_then(Option::as_ref) {
            return Some(p.clone());
        }
        let key = PoolKey {
            database: self.database.clone(),
            user: self.user.clone(),
            node,
        };
        let pool = shared.pools.get(&shared.snapshot.load().config, key)?;
        if let Some(slot) = self.pools.get_mut(node) {
            *slot = Some(pool.clone());
        }
        Some(pool)
    }
}

impl Session {
    /// Classifies the unit of work starting at `at` in the client buffer.
    pub(super) fn unit_at(&self, at: usize) -> Unit {
        let Some(r) = &self.route else {
            return Unit::Write;
        };
        let mut ro_session = None;
        let mut replica_ok = |class: crate::router::Class| {
            class.replica_ok(
                class.plain_begin && *ro_session.get_or_insert_with(|| self.session_read_only()),
            )
        };
        let mut pos = at;
        let mut read = true;
        let mut unnamed = None;
        let mut parsed: Vec<(&str, bool)> = Vec::new();
        loop {
            let rest = &self.cin[pos..];
            let h = match protocol::header(rest, self.max_message) {
                Ok(Some(h)) if rest.len() >= h.frame_len => h,
                Ok(_) if self.cin.len() - at < UNIT_LOOKAHEAD => return Unit::Incomplete,
                _ => return Unit::Write,
            };
            let body = protocol::body(&rest[..h.frame_len]);
            match h.tag {
                fe::QUERY if pos == at => {
                    let ok = protocol::cstr(body).is_some_and(|(q, _)| {
                        // EXECUTE of a mapped SQL statement: the class of what it runs.
                        let executes = q
                            .trim_start()
                            .as_bytes()
                            .first()
                            .is_some_and(|c| c.eq_ignore_ascii_case(&b'e'));
                        let mapped = executes
                            .then(|| crate::sql::sql_execute(q))
                            .flatten()
                            .and_then(|(name, _)| self.ext.sql.get(&name));
                        match mapped {
                            Some(stmt) => replica_ok(stmt.class(&r.classifier)),
                            None => replica_ok(r.classifier.classify(q)),
                        }
                    });
                    return if ok { Unit::Read } else { Unit::Write };
                }
                fe::PARSE => {
                    let Some((name, rest)) = protocol::cstr(body) else {
                        return Unit::Write;
                    };
                    let ok = protocol::cstr(rest)
                        .is_some_and(|(q, _)| replica_ok(r.classifier.classify(q)));
                    if name.is_empty() {
                        unnamed = Some(ok);
                    } else {
                        parsed.push((name, ok));
                    }
                    read &= ok;
                }
                fe::BIND => {
                    let name = protocol::cstr(body)
                        .and_then(|(_, rest)| protocol::cstr(rest))
                        .map(|(n, _)| n);
                    read &= match name {
                        Some("") => unnamed.unwrap_or(false),
                        Some(n) if parsed.iter().any(|(p, _)| *p == n) => parsed
                            .iter()
                            .rev()
                            .find(|(p, _)| *p == n)
                            .is_some_and(|(_, ok)| *ok),
                        Some(n) => self
                            .ext
                            .stmts
                            .get(n)
                            .is_some_and(|s| replica_ok(s.class(&r.classifier))),
                        None => false,
                    };
                }
                fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => {}
                fe::SYNC | fe::FLUSH => {
                    return if read { Unit::Read } else { Unit::Write };
                }
                _ => return Unit::Write,
            }
            if !read {
                return Unit::Write;
            }
            pos += h.frame_len;
        }
    }

    /// Whether the session's transactions are read-only by default
    /// (`default_transaction_read_only`, `SET SESSION CHARACTERISTICS ... READ ONLY`).
    fn session_read_only(&self) -> bool {
        let g = &self.state.gucs;
        g.get("default_transaction_read_only")
            .is_some_and(|s| setting_is_on(&s.set_sql))
            || g.get("session_characteristics")
                .is_some_and(|s| s.set_sql.to_ascii_lowercase().contains("read only"))
    }

    /// Before asking for a server: classifies the waiting unit. False while its end has
    /// not arrived.
    pub(super) fn route_ready(&mut self) -> bool {
        if self.route.is_none() {
            return true;
        }
        let read = match self.unit_at(0) {
            Unit::Incomplete => return false,
            unit => unit == Unit::Read,
        };
        if let Some(r) = &mut self.route {
            r.pending_read = Some(read);
        }
        true
    }

    /// Chooses the node for the transaction about to start and makes its pool current.
    /// `avoid` is a node that just failed to give a connection.
    pub(super) fn choose_node(&mut self, avoid: Option<usize>) -> Result<(), (String, String)> {
        let Some(r) = &mut self.route else {
            return Ok(());
        };
        let read = r.pending_read.unwrap_or(false);
        let replica = match r.force {
            _ if std::mem::take(&mut r.primary_once) => false,
            Force::Primary => false,
            Force::Replica => true,
            Force::Auto => read,
        };
        let writer = r.db.writer();
        let node = if replica {
            let min = if r.ryw() {
                r.own_lsn.max(r.token_lsn)
            } else {
                r.token_lsn
            };
            match r.db.reader_avoiding(min, avoid) {
                Ok(n) => n,
                Err(_) => {
                    return Err((
                        "08006".into(),
                        "no replica is available for reads and routing.primary_reads = \"never\""
                            .into(),
                    ));
                }
            }
        } else {
            writer
        };
        r.reading = node != writer;
        r.wrote = !read && !r.reading;
        r.node = node;
        r.first_unit_checked = true;
        let counter = if r.reading {
            &r.db.nodes[node].reads
        } else {
            &r.db.nodes[node].writes
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(pool) = r.pool(&self.shared, node) else {
            return Err((
                "3D000".into(),
                format!("node {node} of the database is no longer configured"),
            ));
        };
        if !Arc::ptr_eq(&pool, &self.pool) {
            let stats = r.stats[node]
                .get_or_insert_with(|| self.shared.metrics.pool(&pool.key))
                .clone();
            self.pool = pool;
            // Statistics follow the node: what is pending belongs to the previous one.
            self.tally.flush(&self.info);
            self.tally.pool = stats;
            self.info.set_node(node);
        }
        Ok(())
    }

    /// Marks the current node busy or free for least-outstanding balancing.
    pub(super) fn node_active(&self, delta: isize) {
        if let Some(r) = &self.route {
            let a = &r.db.nodes[r.node].active;
            if delta > 0 {
                a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                a.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// After a transaction that may have written: reads the writer's WAL insert position on
    /// the same connection (an upper bound of the commit's LSN) before it goes back to the
    /// pool. With `report` the client is told it (`pgsluice.write_lsn`) before its
    /// ReadyForQuery, which the relay held back.
    pub(super) async fn learn_write_lsn(&mut self, report: bool) {
        let Some(conn) = &mut self.server else {
            return;
        };
        let sql = "SELECT pg_catalog.pg_current_wal_insert_lsn()";
        let lsn = match tokio::time::timeout(std::time::Duration::from_secs(5), conn.query_row(sql))
            .await
        {
            Ok(Ok(Ok(row))) => row.first().cloned().flatten().and_then(|v| parse_lsn(&v)),
            _ => None,
        };
        let failed = lsn.is_none() || conn.status != b'I';
        if let Some(r) = &mut self.route {
            r.own_lsn = lsn.unwrap_or(u64::MAX);
            r.wrote = false;
        }
        if report {
            let mut buf = BytesMut::new();
            if let Some(lsn) = lsn {
                build::parameter_status(&mut buf, "pgsluice.write_lsn", &format_lsn(lsn));
            }
            build::ready_for_query(&mut buf, b'I');
            self.cout.push(buf.freeze());
        }
        if failed {
            tracing::warn!(
                client = self.id(),
                "could not read the write LSN; reads stay on the primary"
            );
            self.drop_server(CloseReason::Broken);
        }
    }

    /// `SET pgsluice.route = ...` / `SET pgsluice.min_lsn = ...` / `RESET pgsluice.*`:
    /// answered here, never forwarded. Returns the answer's error, if the value is bad.
    pub(super) fn set_ours(&mut self, name: &str, value: Option<&str>) -> Result<(), String> {
        let Some(r) = &mut self.route else {
            // Without replicas there is nothing to route; accept the settings quietly.
            return Ok(());
        };
        match (name, value) {
            ("pgsluice.route", None) => r.force = Force::Auto,
            ("pgsluice.route", Some(v)) => {
                r.force = Force::parse(v).ok_or_else(|| {
                    format!("invalid value for pgsluice.route: {v:?} (primary, replica or auto)")
                })?;
            }
            ("pgsluice.min_lsn", None) => r.token_lsn = 0,
            ("pgsluice.min_lsn", Some(v)) => {
                r.token_lsn = parse_lsn(v.trim_matches('\''))
                    .ok_or_else(|| format!("invalid LSN for pgsluice.min_lsn: {v:?}"))?;
            }
            _ => return Err(format!("unrecognized pgsluice setting \"{name}\"")),
        }
        Ok(())
    }
}

/// Whether the `set_sql` of a boolean setting turns it on.
fn setting_is_on(set_sql: &str) -> bool {
    let s = set_sql.to_ascii_lowercase();
    let value = if let Some(i) = s.find("set_config(") {
        s[i..].split('\'').nth(3).unwrap_or("").to_string()
    } else {
        let after = s
            .rfind('=')
            .map(|i| &s[i + 1..])
            .or_else(|| s.rfind(" to ").map(|i| &s[i + 4..]))
            .unwrap_or("");
        after
            .trim()
            .trim_matches(|c| c == '\'' || c == ';' || c == ' ')
            .to_string()
    };
    matches!(value.as_str(), "on" | "true" | "yes" | "1" | "t" | "y")
}

/// `SET pgsluice.x {=|TO} value` or `RESET pgsluice.x` as a whole query: the lowercase
/// name and the value (`None` for RESET). Cheap to reject anything else.
pub(super) fn parse_ours(sql: &str) -> Option<(String, Option<String>)> {
    let s = sql.trim().trim_end_matches(';').trim();
    let (verb, rest) = s.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    if rest.len() < 9 || !rest.as_bytes()[..9].eq_ignore_ascii_case(b"pgsluice.") {
        return None;
    }
    if verb.eq_ignore_ascii_case("reset") {
        let name = rest.trim();
        return (!name.contains(char::is_whitespace)).then(|| (name.to_ascii_lowercase(), None));
    }
    if !verb.eq_ignore_ascii_case("set") {
        return None;
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(rest.len());
    let name = rest[..end].to_ascii_lowercase();
    let mut value = rest[end..].trim_start();
    if let Some(v) = value.strip_prefix('=') {
        value = v;
    } else if value.len() > 2 && value[..2].eq_ignore_ascii_case("to") {
        value = &value[2..];
    } else {
        return None;
    }
    let value = value.trim();
    if value.is_empty() || value.contains(';') {
        return None;
    }
    let value = value.trim_matches('\'').to_string();
    Some((
        name,
        if value.eq_ignore_ascii_case("default") {
            None
        } else {
            Some(value)
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_settings() {
        assert_eq!(
            parse_ours("SET pgsluice.route = primary"),
            Some(("pgsluice.route".into(), Some("primary".into())))
        );
        assert_eq!(
            parse_ours("set PGSLUICE.min_lsn to '0/16B3748';"),
            Some(("pgsluice.min_lsn".into(), Some("0/16B3748".into())))
        );
        assert_eq!(
            parse_ours("RESET pgsluice.route"),
            Some(("pgsluice.route".into(), None))
        );
        assert_eq!(parse_ours("SET search_path = a"), None);
        assert_eq!(parse_ours("SET pgsluice.route = a; SELECT 1"), None);
    }

    #[test]
    fn boolean_settings() {
        assert!(setting_is_on("SET default_transaction_read_only = on"));
        assert!(setting_is_on("SET default_transaction_read_only TO 'true'"));
        assert!(setting_is_on(
            "SELECT pg_catalog.set_config('default_transaction_read_only', 'on', false)"
        ));
        assert!(!setting_is_on("SET default_transaction_read_only = off"));
    }
}
