//! The model backend's extended protocol: Parse, Bind, Describe, Execute and Close of
//! named statements and portals (see `fuzz_model.rs`).

use super::{Model, row_description};
use crate::protocol::cstr;

impl Model {
    pub(super) fn parse(&mut self, body: &[u8]) {
        let Some((name, rest)) = cstr(body) else {
            return self.fail("08P01", "invalid message format");
        };
        let Some((text, _)) = cstr(rest) else {
            return self.fail("08P01", "invalid message format");
        };
        let (name, text) = (name.to_string(), text.to_string());
        let lower = text.trim().to_ascii_lowercase();
        let ends = ["commit", "end", "rollback", "abort"]
            .iter()
            .any(|w| lower.starts_with(w));
        if self.status == b'E' && !ends {
            return self.fail("25P02", "current transaction is aborted");
        }
        if !name.is_empty() && self.statements.contains_key(&name) {
            self.name_error("42P05", &name, "already exists");
            self.skipping = true;
            return;
        }
        if self.inject() {
            self.error("42601", "injected syntax error");
            return self.fail_extended();
        }
        self.statements.insert(name, text);
        self.put(b'1', b"");
    }

    pub(super) fn bind(&mut self, body: &[u8]) {
        let parsed = cstr(body).and_then(|(portal, rest)| Some((portal, cstr(rest)?.0)));
        let Some((portal, name)) = parsed else {
            return self.fail("08P01", "invalid message format");
        };
        let (portal, name) = (portal.to_string(), name.to_string());
        let Some(text) = self.statements.get(&name).cloned() else {
            self.name_error("26000", &name, "does not exist");
            return self.fail_extended();
        };
        if self.status == b'E' {
            return self.fail("25P02", "current transaction is aborted");
        }
        self.portals.insert(portal, text);
        self.put(b'2', b"");
    }

    pub(super) fn describe(&mut self, body: &[u8]) {
        let Some((&kind, rest)) = body.split_first() else {
            return self.fail("08P01", "invalid message format");
        };
        let Some((name, _)) = cstr(rest) else {
            return self.fail("08P01", "invalid message format");
        };
        let name = name.to_string();
        let found = match kind {
            b'S' => self.statements.get(&name).cloned(),
            b'P' => self.portals.get(&name).cloned(),
            _ => return self.fail("08P01", "invalid DESCRIBE message subtype"),
        };
        let Some(text) = found else {
            if kind == b'S' {
                self.name_error("26000", &name, "does not exist");
                return self.fail_extended();
            }
            return self.fail("34000", "portal does not exist");
        };
        if kind == b'S' {
            self.put(b't', &[0, 0]);
        }
        if text.trim_start().to_ascii_lowercase().starts_with("select") {
            self.put(b'T', &row_description());
        } else {
            self.put(b'n', b"");
        }
    }

    pub(super) fn execute(&mut self, body: &[u8]) {
        let Some((portal, _)) = cstr(body) else {
            return self.fail("08P01", "invalid message format");
        };
        let Some(text) = self.portals.get(portal).cloned() else {
            return self.fail("34000", "portal does not exist");
        };
        let before = self.out.len();
        self.run(&text, false);
        // An error inside Execute puts the server into skip-to-Sync.
        if self.out.get(before) == Some(&b'E') {
            self.fail_extended();
        }
    }

    pub(super) fn close(&mut self, body: &[u8]) {
        let Some((&kind, rest)) = body.split_first() else {
            return self.fail("08P01", "invalid message format");
        };
        let name = cstr(rest).map(|(n, _)| n.to_string()).unwrap_or_default();
        match kind {
            b'S' => self.statements.remove(&name),
            _ => self.portals.remove(&name),
        };
        self.put(b'3', b"");
    }
}
