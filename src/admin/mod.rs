//! The admin console's database names. The console itself is not built yet: a client
//! naming one of these databases is refused with a clear error.

/// Names clients use to reach the admin console (`pgbouncer` for existing tools).
pub const ADMIN_DATABASES: &[&str] = &["pgsluice", "pgbouncer"];

pub fn is_admin_db(name: &str) -> bool {
    ADMIN_DATABASES.contains(&name)
}
