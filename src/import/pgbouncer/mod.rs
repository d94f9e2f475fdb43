//! `pgsluice import-pgbouncer pgbouncer.ini [userlist.txt]`: a `pooler.toml` with every
//! PgBouncer setting that has a pgsluice counterpart, and a comment for each that has
//! none, saying why. Where PgBouncer's default differs from pgsluice's (`pool_mode`,
//! `max_client_conn`, `auth_type`), PgBouncer's is written out, so the pooler behaves as
//! before.

mod out;
mod settings;
mod tls;

use std::path::Path;

use super::ini::{Ini, parse_connstr};
use super::userlist;
use crate::config;
use out::{Out, Section};

/// Why the import could not run at all (anything less is a comment in its output).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The users file: where it is, and its text or why it could not be read.
pub struct UserFile {
    pub source: String,
    pub text: Result<String, String>,
}

/// Reads `ini` and the users file (`userlist`, or else the `auth_file` the ini names,
/// relative to the ini's directory) and returns the pooler.toml text.
pub fn import_files(ini: &Path, userlist: Option<&Path>) -> Result<String, ImportError> {
    let text = std::fs::read_to_string(ini).map_err(|source| ImportError::Read {
        path: ini.display().to_string(),
        source,
    })?;
    let parsed = Ini::parse(&text);
    let users = match userlist {
        Some(p) => Some(UserFile {
            source: p.display().to_string(),
            text: Ok(
                std::fs::read_to_string(p).map_err(|source| ImportError::Read {
                    path: p.display().to_string(),
                    source,
                })?,
            ),
        }),
        None => parsed
            .section("pgbouncer")
            .find(|e| e.key.eq_ignore_ascii_case("auth_file"))
            .map(|e| {
                let path = ini.parent().unwrap_or(Path::new(".")).join(&e.value);
                UserFile {
                    source: path.display().to_string(),
                    text: std::fs::read_to_string(&path).map_err(|e| e.to_string()),
                }
            }),
    };
    Ok(translate(&parsed, &ini.display().to_string(), users))
}

/// The pooler.toml for a parsed pgbouncer.ini (`source` names it in the header) and its
/// users file.
pub fn translate(ini: &Ini, source: &str, users: Option<UserFile>) -> String {
    let mut out = Out::new(source);
    general(&mut out, ini);
    for (line, text) in &ini.unreadable {
        out.remark(
            Section::General,
            format!("line {line} not read (not key = value): {text}"),
        );
    }
    for target in &ini.includes {
        out.remark(
            Section::General,
            format!("%include {target}: not followed; import that file separately and merge"),
        );
    }
    if let Some(file) = users {
        user_file(&mut out, file);
    }
    for e in ini.section("users") {
        user_line(&mut out, &e.key, &e.value, e.line);
    }
    for e in ini.section("databases") {
        database(&mut out, &e.key, &e.value, e.line);
    }
    for e in ini
        .entries
        .iter()
        .filter(|e| !["pgbouncer", "users", "databases", "peers"].contains(&e.section.as_str()))
    {
        out.note(
            Section::General,
            &format!("[{}] {}", e.section, e.key),
            &e.value,
            e.line,
            "not a PgBouncer section this import knows",
        );
    }
    if let Some(name) = out.text(Section::Auth, "auth_user")
        && !out.has_user(&name)
    {
        let sec = out.user(&name);
        out.remark(
            sec,
            "auth_user: not in the auth_file; pgsluice logs in as it to run auth_query: set \
             password or password_file"
                .into(),
        );
    }
    for key in ["admin_users", "stats_users"] {
        for name in out.auth_list(key) {
            if !out.has_user(&name) {
                out.remark(
                    Section::Auth,
                    format!("{key}: {name} has no [[users]] entry (not in the auth_file): it cannot log in until it has one"),
                );
            }
        }
    }
    out.render()
}

/// The `[pgbouncer]` section.
fn general(out: &mut Out, ini: &Ini) {
    let get = |k: &str| {
        ini.section("pgbouncer")
            .filter(|e| e.key.eq_ignore_ascii_case(k))
            .last()
    };
    listen(
        out,
        get("listen_addr").map(|e| e.value.as_str()),
        get("listen_port").map(|e| e.value.as_str()),
    );
    match get("pool_mode") {
        Some(e) if ["session", "transaction", "statement"].contains(&e.value.as_str()) => {
            out.set(Section::General, "pool_mode", e.value.clone().into(), None)
        }
        Some(e) => out.note(
            Section::General,
            &e.key,
            &e.value,
            e.line,
            "not a pool mode",
        ),
        None => out.set(
            Section::General,
            "pool_mode",
            "session".into(),
            Some("PgBouncer's default (pgsluice's is transaction)".into()),
        ),
    }
    auth_type(out, get("auth_type"));
    for e in ini.section("pgbouncer") {
        let k = e.key.to_ascii_lowercase();
        if ![
            "listen_addr",
            "listen_port",
            "pool_mode",
            "auth_type",
            "auth_file",
        ]
        .contains(&k.as_str())
        {
            settings::carry(out, &e.key, &e.value, e.line);
        }
    }
    if !out.has(Section::General, "unix_socket_dir") {
        out.set(
            Section::General,
            "unix_socket_dir",
            "/tmp".into(),
            Some("PgBouncer's default (pgsluice's is \"\": TCP only)".into()),
        );
    }
    if !out.has(Section::General, "max_client_conn") {
        out.set(
            Section::General,
            "max_client_conn",
            toml::Value::Integer(100),
            Some("PgBouncer's default (pgsluice's is 10000)".into()),
        );
    }
}

/// `listen_addr` and `listen_port` → `general.listen_addr`.
fn listen(out: &mut Out, addr: Option<&str>, port: Option<&str>) {
    let port_n = match port.map(str::parse::<u16>) {
        None => 6432,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            out.remark(
                Section::General,
                format!(
                    "listen_port = {} is not a port: 6432 used",
                    port.unwrap_or("")
                ),
            );
            6432
        }
    };
    let from = format!(
        "listen_addr = {}, listen_port = {port_n}",
        addr.unwrap_or("(unset)")
    );
    let mut hosts = addr
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty());
    let host = match hosts.next() {
        None => {
            out.remark(
                Section::General,
                "PgBouncer listened on its Unix socket only (no listen_addr); pgsluice \
                 listens on TCP as well as on its socket (unix_socket_dir): 127.0.0.1 assumed"
                    .into(),
            );
            "127.0.0.1".to_string()
        }
        Some("*") => "0.0.0.0".to_string(),
        Some("localhost") => "127.0.0.1".to_string(),
        Some(h) if h.contains(':') => format!("[{}]", h.trim_matches(['[', ']'])),
        Some(h) => h.to_string(),
    };
    let rest: Vec<&str> = hosts.collect();
    if !rest.is_empty() {
        out.remark(
            Section::General,
            format!(
                "not carried over: listen addresses {} (pgsluice listens on one address)",
                rest.join(", ")
            ),
        );
    }
    out.set(
        Section::General,
        "listen_addr",
        format!("{host}:{port_n}").into(),
        Some(from),
    );
}

/// `auth_type` → `auth.type`.
fn auth_type(out: &mut Out, entry: Option<&super::ini::Entry>) {
    let Some(e) = entry else {
        out.set(
            Section::Auth,
            "type",
            "md5".into(),
            Some("PgBouncer's default auth_type".into()),
        );
        return;
    };
    match e.value.as_str() {
        v @ ("trust" | "md5" | "scram-sha-256") => out.set(Section::Auth, "type", v.into(), None),
        "any" => {
            out.set(Section::Auth, "type", "trust".into(), Some("auth_type = any".into()));
            out.remark(
                Section::Auth,
                "auth_type = any also ignored the user name; pgsluice's trust still needs the \
                 user in [[users]] to log in to the server"
                    .into(),
            );
        }
        "plain" => {
            out.set(Section::Auth, "type", "md5".into(), Some("auth_type = plain".into()));
            out.remark(Section::Auth, "pgsluice never asks clients for a cleartext password: md5 instead".into());
        }
        v => out.note(
            Section::Auth,
            &e.key,
            v,
            e.line,
            "pgsluice authenticates clients with trust, md5 or scram-sha-256 only (pgsluice's default, scram-sha-256, applies)",
        ),
    }
}

/// The users file: one `[[users]]` entry per line.
fn user_file(out: &mut Out, file: UserFile) {
    let text = match file.text {
        Ok(t) => t,
        Err(e) => {
            out.remark(
                Section::Auth,
                format!("auth_file {} could not be read ({e}): no users carried over; give it as the second argument", file.source),
            );
            return;
        }
    };
    let (pairs, bad) = userlist::parse(&text);
    for n in bad {
        out.remark(
            Section::Auth,
            format!("{} line {n}: not a \"user\" \"password\" pair", file.source),
        );
    }
    if pairs.is_empty() {
        out.remark(
            Section::Auth,
            format!("{} lists no users: add [[users]] entries", file.source),
        );
    }
    for (name, password) in pairs {
        let sec = out.user(&name);
        if password.is_empty() {
            out.remark(
                sec,
                format!(
                    "no password in {}: set password or password_file",
                    file.source
                ),
            );
            continue;
        }
        let hashed = (password.starts_with("md5") && password.len() == 35)
            || password.starts_with("SCRAM-SHA-256$");
        out.set(sec, "password", password.into(), None);
        if hashed {
            out.remark(
                sec,
                "the password is stored as a hash: enough to check clients, but to log in to \
                 a server that asks for a password pgsluice needs the plaintext: set \
                 server_password (or server_password_file)"
                    .into(),
            );
        }
    }
}

/// A `[users]` line: per-user pool settings.
fn user_line(out: &mut Out, name: &str, value: &str, line: usize) {
    let sec = out.user(name);
    let kv = match parse_connstr(value) {
        Ok(kv) => kv,
        Err(e) => return out.note(sec, name, value, line, &e),
    };
    if !out.has(sec, "password") {
        out.remark(
            sec,
            "not in the auth_file: set password or password_file".into(),
        );
    }
    for (k, v) in kv {
        match k.as_str() {
            "pool_mode" if ["session", "transaction", "statement"].contains(&v.as_str()) => {
                out.set(sec, "pool_mode", v.into(), None)
            }
            "pool_size" => match v.parse::<i64>() {
                Ok(n) if n > 0 => out.set(sec, "pool_size", toml::Value::Integer(n), None),
                _ => out.note(sec, &k, &v, line, "not a pool size"),
            },
            "max_user_connections" | "max_user_client_connections" | "reserve_pool_size" => {
                match v.parse::<i64>() {
                    Ok(n) if n >= 0 => out.set(sec, &k, toml::Value::Integer(n), None),
                    _ => out.note(sec, &k, &v, line, "not a count"),
                }
            }
            "query_timeout"
            | "transaction_timeout"
            | "client_idle_timeout"
            | "idle_transaction_timeout" => match v.parse::<f64>() {
                Ok(n) if (0.0..=1e9).contains(&n) => out.set(sec, &k, toml::Value::Float(n), None),
                _ => out.note(sec, &k, &v, line, "not a number of seconds"),
            },
            _ => out.note(sec, &k, &v, line, "not a user setting this import knows"),
        }
    }
}

/// A `[databases]` line: `name = host=... port=... dbname=... pool_size=...`.
fn database(out: &mut Out, name: &str, value: &str, line: usize) {
    let kv = match parse_connstr(value) {
        Ok(kv) => kv,
        Err(e) => {
            return out.note(
                Section::General,
                &format!("[databases] {name}"),
                value,
                line,
                &e,
            );
        }
    };
    let sec = out.database(name);
    let get = |k: &str| {
        kv.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let port = get("port").unwrap_or("5432");
    let host = match get("host").map(|h| h.split(',').map(str::trim).collect::<Vec<_>>()) {
        // No host: PgBouncer connects over the Unix socket in its unix_socket_dir.
        None => match out
            .text(Section::General, "unix_socket_dir")
            .filter(|d| d.starts_with('/'))
        {
            Some(dir) => {
                out.remark(
                    sec,
                    format!("no host: PgBouncer's Unix socket directory {dir} (unix_socket_dir)"),
                );
                dir
            }
            None => {
                out.remark(
                    sec,
                    "no host and no Unix socket directory: 127.0.0.1 assumed".into(),
                );
                "127.0.0.1".to_string()
            }
        },
        Some(hosts) => {
            if hosts.len() > 1 {
                out.remark(sec, format!("not carried over: hosts {} (pgsluice's primary is one host; replicas are for read-only copies)", hosts[1..].join(", ")));
            }
            match hosts[0] {
                // A Unix socket directory: pgsluice connects over it as libpq does.
                h if h.starts_with('/') => h.to_string(),
                h if h.contains(':') => format!("[{h}]"),
                h => h.to_string(),
            }
        }
    };
    if name == config::WILDCARD_DB {
        // The wildcard serves each database under the name the client asks for.
        out.remark(sec, "the wildcard database: any other name clients ask for, on this server (its pools are dropped when unused)".into());
        if let Some(d) = get("dbname") {
            out.note(
                sec,
                "dbname",
                d,
                line,
                "the wildcard database serves each name as asked",
            );
        }
    } else {
        out.set(sec, "dbname", get("dbname").unwrap_or(name).into(), None);
    }
    out.set(
        sec,
        "primary",
        format!("{host}:{port}").into(),
        Some(format!(
            "host = {}, port = {port}",
            get("host").unwrap_or("(unset)")
        )),
    );
    for (k, v) in &kv {
        match k.as_str() {
            "host" | "port" | "dbname" => {}
            "pool_size" | "min_pool_size" => match v.parse::<i64>() {
                Ok(n) if n >= 0 && !(n == 0 && k == "pool_size") => out.set(sec, k, toml::Value::Integer(n), None),
                _ => out.note(sec, k, v, line, "not a pool size"),
            },
            "pool_mode" if ["session", "transaction", "statement"].contains(&v.as_str()) => {
                out.set(sec, "pool_mode", v.as_str().into(), None)
            }
            "user" => out.note(sec, k, v, line, "pgsluice logs in to the server as the client's own user (no forced user)"),
            "password" => out.note(sec, k, v, line, "pgsluice logs in to the server with the user's [[users]] password"),
            "auth_user" => out.note(sec, k, v, line, "pgsluice has one auth_user for every database ([auth] auth_user)"),
            "reserve_pool" | "reserve_pool_size" | "max_db_connections" | "max_db_client_connections" => match v.parse::<i64>() {
                Ok(n) if n >= 0 => {
                    let to = if k == "reserve_pool" { "reserve_pool_size" } else { k.as_str() };
                    out.set(sec, to, toml::Value::Integer(n), (to != k).then(|| format!("{k} = {v}")))
                }
                _ => out.note(sec, k, v, line, "not a count"),
            },
            "connect_query" => out.note(sec, k, v, line, "pgsluice runs no query on new server connections"),
            "client_encoding" | "datestyle" | "timezone" | "application_name" => out.note(
                sec,
                k,
                v,
                line,
                "pgsluice sets no server parameters per database: use ALTER DATABASE ... SET, or let clients set it (it is replayed)",
            ),
            _ => out.note(sec, k, v, line, "not a database setting this import knows"),
        }
    }
}

#[cfg(test)]
mod tests;
