//! The routing decision, as pure functions: the frames of a unit of work and what the
//! session knows go in; whether the unit only reads, and which node serves it, come out.
//! No sockets and no session: tested with plain bytes and node states.
//!
//! A unit is one simple Query, or the extended-protocol messages up to Sync or Flush.

use super::balance::Pick;
use super::classify::{Class, Classifier, NotRead, Verdict};
use super::functions::{FuncRef, Resolved};
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

/// Why a unit of work went to the primary: the columns of SHOW NODES and `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToPrimary {
    /// It writes, or may (not provably read-only, a read-write transaction).
    Write,
    /// It reads, but calls a function nobody vouches for (volatile or unknown).
    Function,
    /// No replica had replayed what the session must see, or every replica lags.
    Lag,
    /// A replica was asked (read-your-writes probe) and had not replayed the session's
    /// write within `ryw_max_wait`.
    RywTimeout,
    /// No replica is usable (none up, none in the read set).
    NoReplica,
    /// The application asked for the primary (hint, `pgsluice.route`), or a retry after a
    /// replica refused the unit.
    Forced,
}

impl ToPrimary {
    pub const COUNT: usize = 6;
    pub const ALL: [ToPrimary; ToPrimary::COUNT] = [
        ToPrimary::Write,
        ToPrimary::Function,
        ToPrimary::Lag,
        ToPrimary::RywTimeout,
        ToPrimary::NoReplica,
        ToPrimary::Forced,
    ];

    /// The name in SHOW NODES (`primary_<name>`) and `/metrics` (`reason="<name>"`).
    pub fn name(self) -> &'static str {
        match self {
            ToPrimary::Write => "write",
            ToPrimary::Function => "function",
            ToPrimary::Lag => "lag",
            ToPrimary::RywTimeout => "ryw_timeout",
            ToPrimary::NoReplica => "no_replica",
            ToPrimary::Forced => "forced",
        }
    }
}

impl From<NotRead> for ToPrimary {
    fn from(n: NotRead) -> ToPrimary {
        match n {
            NotRead::Write => ToPrimary::Write,
            NotRead::Function => ToPrimary::Function,
            NotRead::Hint => ToPrimary::Forced,
        }
    }
}

/// What a session adds to a text's class: its transaction default and its search path,
/// through which the functions of a query are looked up.
pub trait SessionView {
    /// Whether the session's transactions default to read-only.
    fn read_only(&mut self) -> bool;
    /// What the catalog says of `fs`, resolved through the session's search_path.
    fn functions(&mut self, fs: &[FuncRef]) -> Resolved;
}

/// The session's named statements, as the router needs them: the class of what a
/// prepared name runs.
pub trait Prepared {
    /// The class of the protocol-level statement `name`.
    fn class_of(&self, name: &str, classifier: &Classifier) -> Option<Class>;
    /// The class of what `EXECUTE name` in `sql` runs, when `name` is an SQL-level one.
    fn executed_class(&self, sql: &str, classifier: &Classifier) -> Option<Class>;
}

/// Classifies the unit at the start of `buf`; for a unit that is not a read, also why.
pub fn classify_unit(
    buf: &[u8],
    max_message: usize,
    classifier: &Classifier,
    prepared: &dyn Prepared,
    session: &mut dyn SessionView,
) -> (Unit, NotRead) {
    let mut verdict = |class: &Class| {
        let ro = class.plain_begin && session.read_only();
        class.verdict(ro, &mut |fs| session.functions(fs))
    };
    let write = |why| (Unit::Write, why);
    let mut pos = 0;
    let mut unnamed: Option<Verdict> = None;
    let mut parsed: Vec<(&str, Verdict)> = Vec::new();
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let h = match protocol::header(rest, max_message) {
            Ok(Some(h)) if rest.len() >= h.frame_len => h,
            Ok(_) if buf.len() < UNIT_LOOKAHEAD => return (Unit::Incomplete, NotRead::Write),
            _ => return write(NotRead::Write),
        };
        let body = rest
            .get(protocol::HEADER_LEN..h.frame_len)
            .unwrap_or_default();
        let step = match h.tag {
            fe::QUERY if pos == 0 => {
                let v = match protocol::cstr(body) {
                    Some((q, _)) => match prepared.executed_class(q, classifier) {
                        Some(class) => verdict(&class),
                        None => verdict(&classifier.classify(q)),
                    },
                    None => Verdict::Primary(NotRead::Write),
                };
                return match v {
                    Verdict::Replica => (Unit::Read, NotRead::Write),
                    Verdict::Primary(why) => write(why),
                };
            }
            fe::PARSE => {
                let Some((name, rest)) = protocol::cstr(body) else {
                    return write(NotRead::Write);
                };
                let v = match protocol::cstr(rest) {
                    Some((q, _)) => verdict(&classifier.classify(q)),
                    None => Verdict::Primary(NotRead::Write),
                };
                if name.is_empty() {
                    unnamed = Some(v);
                } else {
                    parsed.push((name, v));
                }
                v
            }
            fe::BIND => {
                let name = protocol::cstr(body)
                    .and_then(|(_, rest)| protocol::cstr(rest))
                    .map(|(n, _)| n);
                match name {
                    Some("") => unnamed.unwrap_or(Verdict::Primary(NotRead::Write)),
                    Some(n) => match parsed.iter().rev().find(|(p, _)| *p == n) {
                        Some((_, v)) => *v,
                        None => match prepared.class_of(n, classifier) {
                            Some(class) => verdict(&class),
                            None => Verdict::Primary(NotRead::Write),
                        },
                    },
                    None => Verdict::Primary(NotRead::Write),
                }
            }
            fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => Verdict::Replica,
            fe::SYNC | fe::FLUSH => return (Unit::Read, NotRead::Write),
            _ => return write(NotRead::Write),
        };
        if let Verdict::Primary(why) = step {
            return write(why);
        }
        pos += h.frame_len;
    }
}

/// The length of the unit at the start of `buf` (up to and including its Sync, or its
/// one Query), when it is whole and every message in it is one a read unit may hold.
pub fn unit_len(buf: &[u8], max_message: usize) -> Option<usize> {
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..)?;
        let h = protocol::header(rest, max_message).ok()??;
        if rest.len() < h.frame_len {
            return None;
        }
        pos += h.frame_len;
        match h.tag {
            fe::QUERY if pos == h.frame_len => return Some(pos),
            fe::SYNC => return Some(pos),
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => {}
            _ => return None,
        }
    }
}

/// What a unit asks of the router.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The unit only reads.
    pub read: bool,
    /// Why it is not a read (when `read` is false).
    pub why: NotRead,
    pub force: Force,
    /// The unit goes to the primary whatever it is (a retry after a replica refused it).
    pub primary_once: bool,
    /// WAL position the node must have replayed (the session's writes, a causal token).
    pub min_lsn: u64,
    /// A node that just failed to give a connection.
    pub avoid: Option<usize>,
    /// A replica that may not have replayed `min_lsn` yet may be chosen, to be asked.
    pub probe: bool,
}

/// Where a unit runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub node: usize,
    /// The node is not the writer: the transaction must stay read-only.
    pub reading: bool,
    /// The node must first be asked whether it has replayed this LSN (a probe).
    pub probe: Option<u64>,
    /// Why the unit goes to the writer (when it does).
    pub why: Option<ToPrimary>,
}

/// Chooses the node for a unit.
pub fn choose(db: &DbNodes, req: &Request) -> Result<Choice, NoReader> {
    let writer = db.writer();
    let primary = |why| Choice {
        node: writer,
        reading: false,
        probe: None,
        why: Some(why),
    };
    match req.force {
        _ if req.primary_once => return Ok(primary(ToPrimary::Forced)),
        Force::Primary => return Ok(primary(ToPrimary::Forced)),
        Force::Auto if !req.read => return Ok(primary(req.why.into())),
        Force::Auto | Force::Replica => {}
    }
    Ok(match db.pick_reader(req.min_lsn, req.avoid, req.probe)? {
        Pick::Reader(node) => Choice {
            node,
            reading: node != writer,
            probe: None,
            // The writer in the read set (`primary_reads = "always"`) serves it as a read.
            why: None,
        },
        Pick::Probe(node) => Choice {
            node,
            reading: true,
            probe: Some(req.min_lsn),
            why: None,
        },
        Pick::Primary(node, why) => Choice {
            node,
            reading: false,
            probe: None,
            why: Some(why),
        },
    })
}

#[cfg(test)]
#[path = "route_tests.rs"]
pub(crate) mod tests;
