//! PgBouncer's TLS settings: `client_tls_sslmode` becomes `[tls] client_mode` (and
//! `client_cert`), and the global `server_tls_*` become each database's `server_tls*`.
//! The files carry over as paths; protocols, ciphers and curves stay rustls's choice.

use super::out::{Out, Section};

/// `client_tls_sslmode` → `tls.client_mode` (and `tls.client_cert` for the verify modes).
pub fn client_mode(out: &mut Out, key: &str, value: &str, line: usize) {
    let v = value.to_ascii_lowercase();
    let (mode, verify) = match v.as_str() {
        "disable" => ("disable", false),
        // pgsluice has no "prefer": it offers TLS to a client that asks, as PgBouncer's
        // allow and prefer both do.
        "allow" | "prefer" => ("allow", false),
        "require" => ("require", false),
        "verify-ca" | "verify-full" => ("require", true),
        _ => return out.note(Section::Tls, key, value, line, "not an sslmode"),
    };
    let from = Some(format!("client_tls_sslmode = {value}"));
    out.set(Section::Tls, "client_mode", mode.into(), from.clone());
    if verify {
        out.set(Section::Tls, "client_cert", "verify-ca".into(), from);
        if v == "verify-full" {
            out.remark(
                Section::Tls,
                "client_tls_sslmode = verify-full: pgsluice verifies client certificates \
                 against tls.ca_file; the certificate's name is checked only for \
                 tls.cert_login"
                    .into(),
            );
        }
    }
}

/// `server_tls_sslmode`, `server_tls_ca_file`, `server_tls_cert_file`,
/// `server_tls_key_file` → the same setting in every `[databases.NAME]` table (added
/// before or after this line).
pub fn server(out: &mut Out, key: &str, value: &str, line: usize) {
    let (to, v) = match key {
        "server_tls_sslmode" => {
            let mode = match value.to_ascii_lowercase().as_str() {
                "disable" => "disable",
                "allow" | "prefer" => "prefer",
                "require" => "require",
                "verify-ca" => "verify-ca",
                "verify-full" => "verify-full",
                _ => return out.note(Section::General, key, value, line, "not an sslmode"),
            };
            if value.eq_ignore_ascii_case("allow") {
                out.remark(
                    Section::General,
                    "server_tls_sslmode = allow: pgsluice has no \"allow\" (plain first, TLS \
                     if refused); \"prefer\" (TLS first, plain if refused) instead"
                        .into(),
                );
            }
            ("server_tls", mode.to_string())
        }
        "server_tls_ca_file" => ("server_ca_file", value.to_string()),
        "server_tls_cert_file" => ("server_cert_file", value.to_string()),
        _ => ("server_key_file", value.to_string()),
    };
    let from = format!("{key} = {value} in [pgbouncer]");
    let value = toml::Value::String(v);
    out.server_tls.retain(|(k, ..)| k != to);
    out.server_tls
        .push((to.to_string(), value.clone(), from.clone()));
    out.apply_to_databases(to, value, from);
}
