//! `pg_prepared_statements` in the client's terms, with statement mapping on: a Query or
//! Parse reading the view gets the client's names, texts and kinds (`from_sql`), and every
//! statement the client has, not only those on the server it holds now.
//!
//! The statement's text is rewritten (see [`crate::sql::rewrite_prepared_view`]) so that
//! the server joins its own view with the client's names, and, at the start of a unit
//! outside a transaction block, the client's statements the server lacks are prepared
//! there first, hidden, each with its own Sync so that one that no longer prepares (a
//! table dropped since) is left out instead of failing the client's statement. What the
//! server reports of each statement (`parameter_types`, `prepare_time`, plan counts) is the
//! server's: a server-side statement is shared by the clients that prepared the same text.

use std::sync::Arc;

use bytes::Bytes;

use super::Core;
use super::statements::{Mapping, frame};
use crate::client::outq::OutQueue;
use crate::prepare::Statement;
use crate::protocol::{self, fe};
use crate::server::ServerStatements;
use crate::sql::{ViewRewrite, ViewRow, may_name_prepared_view, rewrite_prepared_view};

/// Bytes the client's rows may add to one reference of the view: a client with more
/// statements than fit sees the first ones by name.
const ROWS_BUDGET: usize = 1 << 20;

const SYNC: &[u8] = b"S\0\0\0\x04";

/// What became of the frame at the head.
pub(super) enum ViewStep {
    /// It does not read the view (or is not rewritten): go on with it as it is.
    Pass,
    /// Statements must be prepared first, and earlier answers may still change the
    /// record of the server's statements: wait for them.
    Hold,
    /// The frame was replaced by its rewritten form, this long, at the buffer's head.
    Rewritten(usize),
}

impl Core {
    /// A whole Query or Parse at `*fwd`, about to go to the held server: rewritten when it
    /// reads `pg_prepared_statements`. Statements without the view cost one byte scan.
    ///
    /// `view`: what the text's facts say of the view (see [`crate::sql::TextFacts`]),
    /// when its text was scanned already.
    pub(super) fn prepared_view(
        &mut self,
        fwd: &mut usize,
        tag: u8,
        len: usize,
        view: Option<bool>,
    ) -> ViewStep {
        let Some(msg) = self.cin.get(*fwd..*fwd + len) else {
            return ViewStep::Pass;
        };
        // The prefilter first, over the whole body: one pass for most statements.
        if !view.unwrap_or_else(|| may_name_prepared_view(protocol::body(msg))) {
            return ViewStep::Pass;
        }
        let Some((name, text, types)) = split(tag, protocol::body(msg)) else {
            return ViewStep::Pass;
        };
        let Ok(sql) = std::str::from_utf8(text) else {
            return ViewStep::Pass;
        };
        let Some(att) = &self.server else {
            return ViewStep::Pass;
        };
        let rows = self.map.view_rows();
        let budget = self
            .limits
            .max_message
            .saturating_sub(len + 4096)
            .min(ROWS_BUDGET);
        let ViewRewrite::Text(new) = rewrite_prepared_view(sql, &rows, budget) else {
            return ViewStep::Pass;
        };
        drop(rows);
        // Hidden statements go out only where they cannot disturb the client: at a
        // unit's start, outside a transaction block (a failing one would abort it).
        let prepare = !self.flow.batch_open && self.status == b'I' && !self.map.replies.skipping;
        let lacks = prepare && self.map.view_lacks(&att.state.statements);
        if lacks && self.map.any_unsettled() && self.flow.outstanding > 0 {
            return ViewStep::Hold;
        }
        let rebuilt = match tag {
            fe::PARSE => frame(fe::PARSE, &[name, b"\0", new.as_bytes(), b"\0", types]),
            _ => frame(fe::QUERY, &[new.as_bytes(), b"\0"]),
        };
        self.flush_client_bytes(fwd);
        if lacks
            && !self.map.any_unsettled()
            && let Some(att) = &mut self.server
        {
            let sent_query = self
                .map
                .prepare_for_view(&mut self.sout, &mut att.state.statements);
            if sent_query {
                self.unnamed_dropped();
            }
        }
        let new_len = rebuilt.len();
        let rest = self.cin.split_off(len);
        self.cin.clear();
        self.cin.extend_from_slice(&rebuilt);
        self.cin.unsplit(rest);
        ViewStep::Rewritten(new_len)
    }
}

/// A Query's text, or a Parse's name, text and parameter types.
pub(super) fn split(tag: u8, body: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    match tag {
        fe::QUERY => protocol::cstr_bytes(body).map(|(t, _)| (&b""[..], t, &b""[..])),
        fe::PARSE => {
            let (name, rest) = protocol::cstr_bytes(body)?;
            let (text, types) = protocol::cstr_bytes(rest)?;
            Some((name, text, types))
        }
        _ => None,
    }
}

impl Mapping {
    /// The client's statements as the view shows them, by name.
    fn view_rows(&self) -> Vec<ViewRow<'_>> {
        let names = &self.names;
        let mut rows: Vec<ViewRow<'_>> = names
            .stmts
            .iter()
            .map(|(n, s)| ViewRow {
                server: &s.name,
                name: n,
                text: None,
                from_sql: false,
            })
            .chain(names.sql.iter().map(|(n, s)| ViewRow {
                server: &s.stmt.name,
                name: n,
                text: Some(&*s.text),
                from_sql: true,
            }))
            .collect();
        rows.sort_by(|a, b| a.name.cmp(b.name).then(a.from_sql.cmp(&b.from_sql)));
        rows
    }

    /// Whether `server` lacks one of the client's statements.
    fn view_lacks(&self, server: &ServerStatements) -> bool {
        let names = &self.names;
        names
            .stmts
            .values()
            .chain(names.sql.values().map(|p| &p.stmt))
            .any(|s| !server.contains(s.id))
    }

    /// Prepares on `server`, hidden, the client's statements it lacks, as many as its
    /// limit leaves room for beside the client's others (the client's own are touched
    /// first, so none of them is evicted for another). True when a simple Query went out
    /// (which drops the unnamed statement).
    fn prepare_for_view(&mut self, sout: &mut OutQueue, server: &mut ServerStatements) -> bool {
        let mut all: Vec<Arc<Statement>> = self
            .names
            .stmts
            .values()
            .chain(self.names.sql.values().map(|p| &p.stmt))
            .cloned()
            .collect();
        all.sort_by_key(|s| s.id);
        all.dedup_by_key(|s| s.id);
        let missing: Vec<Arc<Statement>> = all
            .iter()
            .filter(|s| !server.touch(s.id))
            .cloned()
            .collect();
        let room = self
            .max_prepared()
            .saturating_sub(all.len() - missing.len());
        let mut query = false;
        for stmt in missing.into_iter().take(room) {
            self.make_room(stmt.id, sout, server);
            match stmt.prepare_sql() {
                Some(sql) => {
                    sout.push(frame(fe::QUERY, &[sql.as_bytes(), b"\0"]));
                    query = true;
                }
                None => {
                    sout.push(stmt.parse_frame());
                    sout.push(Bytes::from_static(SYNC));
                }
            }
            self.registry()
                .server_parses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stmt.server_prepares
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.replies.expect_hidden_query(Some(stmt));
        }
        query
    }
}
