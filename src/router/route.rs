//! The routing decision, as pure functions: the frames of a unit of work and what the
//! session knows go in; whether the unit only reads, and which node serves it, come out.
//! No sockets and no session: tested with plain bytes and node states.
//!
//! A unit is one simple Query, or the extended-protocol messages up to Sync or Flush.

use super::classify::{Class, Classifier};
use super::nodes::{DbNodes, NoReader};
use crate::protocol::{self, fe};

/// How far ahead a unit is looked for before it is treated as a write.
pub const UNIT_LOOKAHEAD: usize = 1 << 20;

/// What the client's next unit of work amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Its end has not arrived yet.
    Incomplete,
    /// Provably read-only.
    Read,
    /// Anything else.
    Write,
}

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

/// The session's named statements, as the router needs them: the class of what a
/// prepared name runs.
pub trait Prepared {
    /// The class of the protocol-level statement `name`.
    fn class_of(&self, name: &str, classifier: &Classifier) -> Option<Class>;
    /// The class of what `EXECUTE name` in `sql` runs, when `name` is an SQL-level one.
    fn executed_class(&self, sql: &str, classifier: &Classifier) -> Option<Class>;
}

/// Classifies the unit at the start of `buf`. `session_read_only` says whether the
/// session's transactions default to read-only (it makes a plain `BEGIN` a read).
pub fn classify_unit(
    buf: &[u8],
    max_message: usize,
    classifier: &Classifier,
    prepared: &dyn Prepared,
    session_read_only: &mut dyn FnMut() -> bool,
) -> Unit {
    let mut replica_ok = |class: Class| class.replica_ok(class.plain_begin && session_read_only());
    let mut pos = 0;
    let mut read = true;
    let mut unnamed = None;
    let mut parsed: Vec<(&str, bool)> = Vec::new();
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let h = match protocol::header(rest, max_message) {
            Ok(Some(h)) if rest.len() >= h.frame_len => h,
            Ok(_) if buf.len() < UNIT_LOOKAHEAD => return Unit::Incomplete,
            _ => return Unit::Write,
        };
        let body = rest
            .get(protocol::HEADER_LEN..h.frame_len)
            .unwrap_or_default();
        match h.tag {
            fe::QUERY if pos == 0 => {
                let ok = protocol::cstr(body).is_some_and(|(q, _)| {
                    match prepared.executed_class(q, classifier) {
                        Some(class) => replica_ok(class),
                        None => replica_ok(classifier.classify(q)),
                    }
                });
                return if ok { Unit::Read } else { Unit::Write };
            }
            fe::PARSE => {
                let Some((name, rest)) = protocol::cstr(body) else {
                    return Unit::Write;
                };
                let ok =
                    protocol::cstr(rest).is_some_and(|(q, _)| replica_ok(classifier.classify(q)));
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
                    Some(n) => match parsed.iter().rev().find(|(p, _)| *p == n) {
                        Some((_, ok)) => *ok,
                        None => prepared
                            .class_of(n, classifier)
                            .is_some_and(&mut replica_ok),
                    },
                    None => false,
                };
            }
            fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => {}
            fe::SYNC | fe::FLUSH => return if read { Unit::Read } else { Unit::Write },
            _ => return Unit::Write,
        }
        if !read {
            return Unit::Write;
        }
        pos += h.frame_len;
    }
}

/// What a unit asks of the router.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The unit only reads.
    pub read: bool,
    pub force: Force,
    /// The unit goes to the primary whatever it is (a retry after a replica refused it).
    pub primary_once: bool,
    /// WAL position the node must have replayed (the session's writes, a causal token).
    pub min_lsn: u64,
    /// A node that just failed to give a connection.
    pub avoid: Option<usize>,
}

/// Where a unit runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub node: usize,
    /// The node is not the writer: the transaction must stay read-only.
    pub reading: bool,
}

/// Chooses the node for a unit.
pub fn choose(db: &DbNodes, req: &Request) -> Result<Choice, NoReader> {
    let replica = match req.force {
        _ if req.primary_once => false,
        Force::Primary => false,
        Force::Replica => true,
        Force::Auto => req.read,
    };
    let writer = db.writer();
    let node = if replica {
        db.reader_avoiding(req.min_lsn, req.avoid)?
    } else {
        writer
    };
    Ok(Choice {
        node,
        reading: node != writer,
    })
}

#[cfg(test)]
#[path = "route_tests.rs"]
pub(crate) mod tests;
