//! Read-only endpoints: `[databases.app_ro] replicas_of = "app"` is a database whose
//! sessions run on `app`'s replicas, in every pool mode, for reporting tools, `pg_dump`
//! from a replica, and session-mode frameworks that only read.
//!
//! At load, an endpoint takes its database's servers: primary, replicas, weights, the
//! server-side database name and TLS settings (so pools, TLS connectors and the node
//! monitor need nothing new). It has its own pools and pool settings. The router shares
//! the database's node health (`router::Nodes::get`), so lag exclusion, load balancing and
//! failover are the same. The primary serves an endpoint's sessions only with
//! `primary_fallback = true`, and then read-only (see `client::login`).

use std::collections::BTreeMap;

use super::{ConfigError, Database, invalid};

/// Copies each endpoint's servers from the database it names; checks the names.
pub fn resolve(databases: &mut BTreeMap<String, Database>) -> Result<(), ConfigError> {
    let endpoints: Vec<(String, String)> = databases
        .iter()
        .filter_map(|(name, db)| db.replicas_of.clone().map(|t| (name.clone(), t)))
        .collect();
    for (name, target) in endpoints {
        let key = format!("databases.{name}");
        let Some(source) = databases.get(&target) else {
            return Err(invalid(
                format!("{key}.replicas_of"),
                format!("no database {target:?}"),
            ));
        };
        if source.replicas_of.is_some() {
            return Err(invalid(
                format!("{key}.replicas_of"),
                format!("{target:?} is itself a read-only endpoint"),
            ));
        }
        if source.replicas.is_empty() {
            return Err(invalid(
                format!("{key}.replicas_of"),
                format!("database {target:?} has no replicas"),
            ));
        }
        let source = source.clone();
        let Some(db) = databases.get_mut(&name) else {
            continue;
        };
        if !db.primary.is_empty() || !db.replicas.is_empty() || db.dbname.is_some() {
            return Err(invalid(
                key,
                "a read-only endpoint takes its servers from replicas_of: \
                 leave out primary, replicas and dbname",
            ));
        }
        db.primary = source.primary;
        db.replicas = source.replicas;
        db.primary_weight = source.primary_weight;
        db.dbname = Some(source.dbname.unwrap_or(target));
        if db.server_tls.is_none() {
            db.server_tls = source.server_tls;
            db.server_ca_file = source.server_ca_file;
            db.server_cert_file = source.server_cert_file;
            db.server_key_file = source.server_key_file;
        }
        if db.node_tls.is_empty() {
            db.node_tls = source.node_tls;
        }
    }
    for (name, db) in databases.iter() {
        if db.primary_fallback && db.replicas_of.is_none() {
            return Err(invalid(
                format!("databases.{name}.primary_fallback"),
                "only a read-only endpoint (replicas_of) has a primary fallback",
            ));
        }
        if db.primary.is_empty() {
            return Err(invalid(
                format!("databases.{name}.primary"),
                "missing (or set replicas_of for a read-only endpoint)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(dbs: &str) -> Result<Config, String> {
        let text = format!("[[users]]\nname = \"app\"\npassword = \"x\"\n{dbs}");
        Config::from_toml_with_env(&text, std::iter::empty()).map_err(|e| e.to_string())
    }

    #[test]
    fn an_endpoint_takes_its_databases_servers() {
        let c = load(
            "[databases.app]\nprimary = \"127.0.0.1:5432\"\nreplicas = [\"127.0.0.1:5433\"]\n\
             dbname = \"prod\"\n[databases.app_ro]\nreplicas_of = \"app\"\npool_size = 3\n",
        )
        .unwrap();
        let ro = &c.databases["app_ro"];
        assert_eq!(ro.primary, "127.0.0.1:5432");
        assert_eq!(ro.replicas, c.databases["app"].replicas);
        assert_eq!(ro.dbname.as_deref(), Some("prod"));
        assert_eq!(ro.pool_size, Some(3));
        assert!(!ro.primary_fallback);
    }

    #[test]
    fn bad_endpoints_are_refused_with_their_key() {
        let base =
            "[databases.app]\nprimary = \"127.0.0.1:5432\"\nreplicas = [\"127.0.0.1:5433\"]\n";
        for (extra, key) in [
            (
                "[databases.ro]\nreplicas_of = \"nope\"\n",
                "databases.ro.replicas_of",
            ),
            (
                "[databases.ro]\nreplicas_of = \"app\"\nprimary = \"127.0.0.1:1\"\n",
                "databases.ro",
            ),
            (
                "[databases.ro]\nreplicas_of = \"app\"\n[databases.ro2]\nreplicas_of = \"ro\"\n",
                "databases.ro2.replicas_of",
            ),
            ("[databases.ro]\n", "databases.ro.primary"),
            (
                "[databases.x]\nprimary = \"127.0.0.1:1\"\nprimary_fallback = true\n",
                "databases.x.primary_fallback",
            ),
            (
                "[databases.solo]\nprimary = \"127.0.0.1:1\"\n[databases.ro]\nreplicas_of = \"solo\"\n",
                "databases.ro.replicas_of",
            ),
        ] {
            let err = load(&format!("{base}{extra}")).unwrap_err();
            assert!(err.starts_with(key), "{extra}: {err}");
        }
    }
}
