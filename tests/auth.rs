//! Authentication without plaintext passwords (issue 12): `auth_query` against a role
//! created in PostgreSQL (no config change) and dropped (refused after the TTL), SCRAM
//! and md5 pass-through with a config that holds only verifiers / hashes, verifiers that
//! differ, passwords from files, access rules, and the warning for a readable config.

mod common;

use std::time::Duration;

use common::tls::{add_hba, primary_sql};
use common::{Cluster, Pooler, psql, psql_ok, wait_until};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A config for database app with the given `[[users]]` and `[auth]` lines.
fn config(c: &Cluster, auth: &str, users: &str) -> String {
    format!(
        "[general]\nlisten_addr = \"{{LISTEN}}\"\ndefault_pool_size = 2\n\n[auth]\n{auth}\n\n\
         {users}\n\n[databases.app]\nprimary = \"127.0.0.1:{}\"\n",
        c.primary_port
    )
}

/// The role's stored secret, as PostgreSQL keeps it.
fn stored_secret(c: &Cluster, role: &str) -> String {
    primary_sql(
        c,
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
    )
}

#[test]
fn auth_query_finds_new_roles_and_forgets_dropped_ones() {
    let c = Cluster::start(0);
    // The looked-up role must authenticate to the server with SCRAM too (pass-through).
    add_hba(&c, &["host all newbie 127.0.0.1/32 scram-sha-256"]);
    primary_sql(
        &c,
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE newbie LOGIN PASSWORD 'fresh_pw'; GRANT ALL ON DATABASE app TO newbie",
    );
    let p = Pooler::start(&config(
        &c,
        "type = \"scram-sha-256\"\nauth_user = \"postgres\"\nauth_cache_ttl = 1",
        "[[users]]\nname = \"postgres\"",
    ));
    let url = p.url("newbie", "fresh_pw", "app");
    assert_eq!(psql_ok(&url, "SELECT current_user"), "newbie");
    // The server really asked newbie for SCRAM, answered by pass-through.
    let out = psql(&p.url("newbie", "wrong", "app"), "SELECT 1");
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        stderr(&out)
    );
    // Unknown roles are refused like a wrong password.
    let out = psql(&p.url("nobody", "x", "app"), "SELECT 1");
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        stderr(&out)
    );
    // Dropped: refused once the cache entry is older than auth_cache_ttl.
    primary_sql(
        &c,
        "REVOKE ALL ON DATABASE app FROM newbie; DROP ROLE newbie",
    );
    let refused = wait_until(Duration::from_secs(15), || {
        !psql(&url, "SELECT 1").status.success()
    });
    assert!(refused, "a dropped role is refused after the TTL");
    let out = psql(&url, "SELECT 1");
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn scram_and_md5_pass_through_with_only_verifiers() {
    let c = Cluster::start(0);
    let app_verifier = stored_secret(&c, "app");
    let md5_hash = stored_secret(&c, "md5user");
    assert!(app_verifier.starts_with("SCRAM-SHA-256$"), "{app_verifier}");
    assert!(md5_hash.starts_with("md5"), "{md5_hash}");
    // A verifier for the same password with another salt: the server's differs.
    let other = postgres_protocol::password::scram_sha_256(b"plain_pw");
    let users = format!(
        "[[users]]\nname = \"app\"\npassword = \"{app_verifier}\"\n\n\
         [[users]]\nname = \"md5user\"\npassword = \"{md5_hash}\"\n\n\
         [[users]]\nname = \"plainuser\"\npassword = \"{other}\"\n"
    );
    for auth in ["scram-sha-256", "md5"] {
        let p = Pooler::start(&config(&c, &format!("type = \"{auth}\""), &users));
        // SCRAM pass-through: the server (pg_hba scram-sha-256 for app) accepts the
        // ClientKey recovered from the client's proof.
        assert_eq!(
            psql_ok(&p.url("app", "app_pw", "app"), "SELECT current_user"),
            "app"
        );
        // md5 pass-through: only when clients use md5 (a SCRAM exchange needs a
        // verifier); the server asks md5 for md5user.
        if auth == "md5" {
            assert_eq!(
                psql_ok(&p.url("md5user", "md5_pw", "app"), "SELECT current_user"),
                "md5user"
            );
        }
        // plainuser: the client logs in against pgsluice's verifier, but the server's
        // verifier differs (and asks for a cleartext password): refused with the cause.
        let out = psql(&p.url("plainuser", "plain_pw", "app"), "SELECT 1");
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("plainuser") || err.contains("pass-through"),
            "{err}"
        );
    }
    // The verifier differs from the server's, over SCRAM: 28P01 and a log line.
    add_hba(&c, &["host all plainuser 127.0.0.1/32 scram-sha-256"]);
    let p = Pooler::start(&config(&c, "type = \"scram-sha-256\"", &users));
    let out = psql(&p.url("plainuser", "plain_pw", "app"), "SELECT 1");
    assert!(
        stderr(&out).contains("verifiers differ"),
        "{}",
        stderr(&out)
    );
    assert!(p.log().contains("verifiers differ"), "{}", p.log());
    assert_eq!(psql_ok(&p.url("app", "app_pw", "app"), "SELECT 1"), "1");
}

#[test]
fn passwords_from_files_and_readable_config_warning() {
    let c = Cluster::start(0);
    let dir = common::unique_path("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let verifier = stored_secret(&c, "app");
    std::fs::write(dir.join("app.verifier"), format!("{verifier}\n")).unwrap();
    std::fs::write(dir.join("app.server"), "app_pw\n").unwrap();
    let users = format!(
        "[[users]]\nname = \"app\"\npassword_file = \"{}\"\nserver_password_file = \"{}\"\n",
        dir.join("app.verifier").display(),
        dir.join("app.server").display()
    );
    let p = Pooler::start(&config(&c, "type = \"scram-sha-256\"", &users));
    assert_eq!(psql_ok(&p.url("app", "app_pw", "app"), "SELECT 5"), "5");
    // The test harness writes the config with the default umask (0644): a WARN.
    assert!(
        p.log().contains("readable by group or others"),
        "{}",
        p.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn access_rules_first_match_wins() {
    let c = Cluster::start(0);
    let rules = "[[access]]\nuser = \"md5user\"\nmethod = \"reject\"\n\n\
                 [[access]]\ndatabase = \"app\"\nuser = [\"app\", \"plainuser\"]\n\
                 address = \"127.0.0.0/8\"\ntls = false\nmethod = \"scram-sha-256\"\n\n\
                 [[access]]\nuser = \"postgres\"\naddress = \"127.0.0.1/32\"\nmethod = \"trust\"\n";
    let mut cfg = c.pooler_config("transaction", "md5", 2);
    cfg.push_str(rules);
    let p = Pooler::start(&cfg);
    assert_eq!(psql_ok(&p.url("app", "app_pw", "app"), "SELECT 1"), "1");
    assert_eq!(psql_ok(&p.url("postgres", "", "app"), "SELECT 2"), "2");
    let out = psql(&p.url("md5user", "md5_pw", "app"), "SELECT 1");
    let err = stderr(&out);
    assert!(
        err.contains("access[0]") && err.contains("method = \"reject\""),
        "{err}"
    );
    // No rule matches plainuser on database postgres: refused, the client described.
    let out = psql(&p.url("plainuser", "plain_pw", "postgres"), "SELECT 1");
    let err = stderr(&out);
    assert!(
        err.contains("no access rule matches") && err.contains("plainuser"),
        "{err}"
    );
}
