//! The routing decision without a server: units as bytes, node states as values.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::router::classify::Allowlist;
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

fn unit(bytes: &[u8]) -> Unit {
    let c = Classifier::new(Arc::new(Allowlist::new(&[])));
    classify_unit(bytes, 1 << 20, &c, &Known, &mut || false)
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
    let ro = classify_unit(&query("BEGIN"), 1 << 20, &c, &Known, &mut || true);
    assert_eq!(ro, Unit::Read);
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

#[test]
fn reads_go_to_a_replica_that_has_the_sessions_writes() {
    let db = db_with_replica();
    let policy = db.policy.load();
    for _ in 0..policy.rejoin_after.max(1) + 1 {
        db.record(0, sample(false, 1000));
        db.record(1, sample(true, 900));
    }
    let req = |read, min_lsn| Request {
        read,
        force: Force::Auto,
        primary_once: false,
        min_lsn,
        avoid: None,
    };
    assert_eq!(
        choose(&db, &req(true, 0)),
        Ok(Choice {
            node: 1,
            reading: true
        })
    );
    assert_eq!(
        choose(&db, &req(true, 900)),
        Ok(Choice {
            node: 1,
            reading: true
        })
    );
    // Not replayed yet: the primary.
    assert_eq!(
        choose(&db, &req(true, 950)),
        Ok(Choice {
            node: 0,
            reading: false
        })
    );
    assert_eq!(
        choose(&db, &req(false, 0)),
        Ok(Choice {
            node: 0,
            reading: false
        })
    );
    let forced = Request {
        force: Force::Primary,
        ..req(true, 0)
    };
    assert_eq!(
        choose(&db, &forced),
        Ok(Choice {
            node: 0,
            reading: false
        })
    );
    let retry = Request {
        primary_once: true,
        ..req(true, 0)
    };
    assert_eq!(
        choose(&db, &retry),
        Ok(Choice {
            node: 0,
            reading: false
        })
    );
    let avoid = Request {
        avoid: Some(1),
        ..req(true, 0)
    };
    assert_eq!(
        choose(&db, &avoid),
        Ok(Choice {
            node: 0,
            reading: false
        })
    );
}
