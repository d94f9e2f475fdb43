//! The routing decision without a server: units as bytes, node states as values.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::router::classify::Allowlist;
use crate::router::functions::FuncRef;
use crate::router::monitor::Sample;
use crate::router::nodes::Nodes;

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn query(sql: &str) -> Vec<u8> {
    frame(b'Q', format!("{sql}\0").as_bytes())
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    frame(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}

fn bind(name: &str) -> Vec<u8> {
    frame(b'B', format!("\0{name}\0\0\0\0\0\0\0").as_bytes())
}

fn sync() -> Vec<u8> {
    frame(b'S', b"")
}

/// The session knows one protocol statement `ro` (a read) and one SQL statement `w`.
struct Known;

impl Prepared for Known {
    fn class_of(&self, name: &str, c: &Classifier) -> Option<Class> {
        (name == "ro").then(|| c.classify("SELECT 1"))
    }
    fn executed_class(&self, sql: &str, c: &Classifier) -> Option<Class> {
        sql.eq_ignore_ascii_case("EXECUTE w")
            .then(|| c.classify("UPDATE t SET a = 1"))
    }
}

/// A session: its transaction default, and a catalog that knows `stable_f` (STABLE) and
/// `bump` (VOLATILE).
struct View(bool);

impl SessionView for View {
    fn read_only(&mut self) -> bool {
        self.0
    }
    fn functions(&mut self, fs: &[FuncRef]) -> Resolved {
        use crate::router::functions::{Catalog, SearchPath, Volatility};
        let c = Catalog::from_entries(&[
            ("public", "stable_f", Volatility::Stable),
            ("public", "bump", Volatility::Volatile),
        ]);
        c.resolve_all(fs, &SearchPath::Default)
    }
}

fn judge(bytes: &[u8]) -> (Unit, NotRead) {
    let c = Classifier::new(Arc::new(Allowlist::new(&[])));
    classify_unit(bytes, 1 << 20, &c, &Known, &mut View(false))
}

fn unit(bytes: &[u8]) -> Unit {
    judge(bytes).0
}

#[test]
fn simple_queries() {
    assert_eq!(unit(&query("SELECT * FROM t")), Unit::Read);
    assert_eq!(unit(&query("INSERT INTO t VALUES (1)")), Unit::Write);
    assert_eq!(unit(&query("SELECT nextval('s')")), Unit::Write);
    assert_eq!(unit(&query("EXECUTE w")), Unit::Write);
    assert_eq!(unit(&query("BEGIN")), Unit::Write);
    // Half a frame: wait for the rest.
    let q = query("SELECT 1");
    assert_eq!(unit(&q[..q.len() - 1]), Unit::Incomplete);
    // Garbage is a write, never a panic.
    assert_eq!(unit(b"Q\xff\xff\xff\xffxyz"), Unit::Write);
}

#[test]
fn extended_units() {
    let mut u = parse("", "SELECT 1");
    u.extend(bind(""));
    u.extend(sync());
    assert_eq!(unit(&u), Unit::Read);
    let mut u = parse("s", "DELETE FROM t");
    u.extend(bind("s"));
    u.extend(sync());
    assert_eq!(unit(&u), Unit::Write);
    let mut u = bind("ro");
    u.extend(sync());
    assert_eq!(unit(&u), Unit::Read);
    let mut u = bind("unknown");
    u.extend(sync());
    assert_eq!(unit(&u), Unit::Write);
    // No Sync yet.
    assert_eq!(unit(&parse("", "SELECT 1")), Unit::Incomplete);
}

#[test]
fn a_plain_begin_reads_when_the_session_defaults_to_read_only() {
    let c = Classifier::new(Arc::new(Allowlist::new(&[])));
    let ro = classify_unit(&query("BEGIN"), 1 << 20, &c, &Known, &mut View(true));
    assert_eq!(ro.0, Unit::Read);
}

#[test]
fn functions_the_catalog_vouches_for_read() {
    assert_eq!(unit(&query("SELECT stable_f(1)")), Unit::Read);
    assert_eq!(
        judge(&query("SELECT bump()")),
        (Unit::Write, NotRead::Function)
    );
    assert_eq!(
        judge(&query("SELECT unknown_f()")),
        (Unit::Write, NotRead::Function)
    );
    assert_eq!(
        judge(&query("UPDATE t SET a = stable_f(1)")),
        (Unit::Write, NotRead::Write)
    );
    let mut u = parse("", "SELECT * FROM stable_f(2)");
    u.extend(bind(""));
    u.extend(sync());
    assert_eq!(unit(&u), Unit::Read);
    let mut u = parse("p", "SELECT bump()");
    u.extend(bind("p"));
    u.extend(sync());
    assert_eq!(judge(&u), (Unit::Write, NotRead::Function));
}

#[test]
fn unit_lengths() {
    let q = query("SELECT 1");
    assert_eq!(unit_len(&q, 1 << 20), Some(q.len()));
    let mut u = parse("", "SELECT 1");
    u.extend(bind(""));
    let partial = u.len();
    u.extend(sync());
    let whole = u.len();
    u.extend(query("SELECT 2"));
    assert_eq!(unit_len(&u, 1 << 20), Some(whole));
    assert_eq!(unit_len(&u[..partial], 1 << 20), None);
    let mut c = frame(b'C', b"Sx\0");
    c.extend(sync());
    assert_eq!(
        unit_len(&c, 1 << 20),
        Some(c.len()),
        "a Close goes again (closing what a server lacks is no error)"
    );
    let mut f = frame(b'H', b"");
    f.extend(sync());
    assert_eq!(unit_len(&f, 1 << 20), None, "a Flush is not a unit's");
}

fn db_with_replica() -> Arc<DbNodes> {
    let toml = "[databases.app]\nprimary = \"127.0.0.1:1\"\nreplicas = [\"127.0.0.1:2\"]\n";
    let config = crate::Config::from_toml_with_env(toml, std::iter::empty()).unwrap();
    let nodes = Nodes::default();
    nodes.sync(&config);
    nodes.get(&config, "app").unwrap()
}

/// A database whose replica is in the read set with everything up to `lsn` replayed.
pub(crate) fn db_with_ready_replica(lsn: u64) -> Arc<DbNodes> {
    let db = db_with_replica();
    for _ in 0..db.policy.load().rejoin_after.max(1) + 1 {
        db.record(0, sample(false, lsn));
        db.record(1, sample(true, lsn));
    }
    db
}

fn sample(recovery: bool, lsn: u64) -> Sample {
    Sample {
        in_recovery: recovery,
        lsn,
        flushed: lsn,
        replay_age: Duration::ZERO,
    }
}

fn req(read: bool, min_lsn: u64) -> Request {
    Request {
        read,
        why: NotRead::Write,
        force: Force::Auto,
        primary_once: false,
        min_lsn,
        avoid: None,
        probe: false,
    }
}

fn at(node: usize, reading: bool, why: Option<ToPrimary>) -> Result<Choice, NoReader> {
    Ok(Choice {
        node,
        reading,
        probe: None,
        why,
    })
}

#[test]
fn reads_go_to_a_replica_that_has_the_sessions_writes() {
    let db = db_with_replica();
    let policy = db.policy.load();
    for _ in 0..policy.rejoin_after.max(1) + 1 {
        db.record(0, sample(false, 1000));
        db.record(1, sample(true, 900));
    }
    assert_eq!(choose(&db, &req(true, 0)), at(1, true, None));
    assert_eq!(choose(&db, &req(true, 900)), at(1, true, None));
    // Not replayed yet: the primary.
    assert_eq!(
        choose(&db, &req(true, 950)),
        at(0, false, Some(ToPrimary::Lag))
    );
    assert_eq!(
        choose(&db, &req(false, 0)),
        at(0, false, Some(ToPrimary::Write))
    );
    let function = Request {
        why: NotRead::Function,
        ..req(false, 0)
    };
    assert_eq!(
        choose(&db, &function),
        at(0, false, Some(ToPrimary::Function))
    );
    let forced = Request {
        force: Force::Primary,
        ..req(true, 0)
    };
    assert_eq!(choose(&db, &forced), at(0, false, Some(ToPrimary::Forced)));
    let retry = Request {
        primary_once: true,
        ..req(true, 0)
    };
    assert_eq!(choose(&db, &retry), at(0, false, Some(ToPrimary::Forced)));
    let avoid = Request {
        avoid: Some(1),
        ..req(true, 0)
    };
    assert_eq!(
        choose(&db, &avoid),
        at(0, false, Some(ToPrimary::NoReplica))
    );
}

#[test]
fn a_replica_that_keeps_up_is_probed_and_a_lagging_one_is_not() {
    let db = db_with_replica();
    for _ in 0..db.policy.load().rejoin_after.max(1) + 1 {
        db.record(0, sample(false, 1000));
        db.record(1, sample(true, 1000));
    }
    let probing = Request {
        probe: true,
        ..req(true, 1200)
    };
    assert_eq!(
        choose(&db, &probing),
        Ok(Choice {
            node: 1,
            reading: true,
            probe: Some(1200),
            why: None
        })
    );
    // A probe that saw the replica past the write helps every session.
    db.saw_replay(1, 1300);
    assert_eq!(choose(&db, &probing), at(1, true, None));
    // Two seconds behind: not worth asking.
    let lagging = Sample {
        replay_age: Duration::from_secs(2),
        ..sample(true, 900)
    };
    db.record(1, lagging);
    let later = Request {
        probe: true,
        ..req(true, 1400)
    };
    assert_eq!(choose(&db, &later), at(0, false, Some(ToPrimary::Lag)));
}
