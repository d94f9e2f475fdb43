//! Bringing a configuration over from another pooler: read its files, write a
//! `pooler.toml`. Knows nothing of clients, pools or routing; the result is checked by
//! the same `Config` loader as any file.

pub mod ini;
pub mod pgbouncer;
pub mod userlist;

#[cfg(test)]
mod fuzz_tests;
