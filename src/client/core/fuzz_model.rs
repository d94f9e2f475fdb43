//! A small model of a PostgreSQL backend for the session core's fuzz target: it reads
//! what the core sends and answers as a server would, with errors injected at random.
//!
//! What it models: simple Query (rows, CommandComplete, ReadyForQuery with the right
//! transaction status; `BEGIN`/`COMMIT`/`ROLLBACK`; a failed transaction refusing all but
//! its end), the extended protocol (Parse `1`, Bind `2`, Describe `t`+`T`/`n`, Execute
//! `C`, Close `3`, Sync `Z`, and after an error nothing until Sync), prepared statements
//! and portals by name (both protocol and SQL level), `DISCARD ALL`, COPY in and out,
//! FunctionCall, a replica refusing writes (25006), and `FATAL` plus a closed connection
//! for a message no backend accepts.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};

use crate::protocol::{self, cstr};

/// One server connection.
#[derive(Debug)]
pub struct Model {
    pub id: u64,
    pub node: usize,
    replica: bool,
    /// `I`, `T` or `E`.
    pub status: u8,
    /// An extended-protocol message failed: everything up to Sync is ignored.
    pub skipping: bool,
    /// A Query arrived while skipping to Sync, and was discarded unanswered.
    pub swallowed: bool,
    /// Inside `COPY ... FROM STDIN`.
    pub copy_in: bool,
    /// Prepared statements (protocol and SQL level share names) and portals: their text.
    statements: HashMap<String, String>,
    portals: HashMap<String, String>,
    /// Bytes from the core not yet a whole message.
    input: Vec<u8>,
    /// Bytes for the core, not yet delivered.
    pub out: Vec<u8>,
    /// Sent FATAL: the connection closes once `out` is delivered.
    pub closed: bool,
    rng: u64,
    /// Chance in 256 that a statement fails.
    error_rate: u8,
}

impl Model {
    pub fn new(id: u64, node: usize, seed: u64, error_rate: u8) -> Model {
        Model {
            id,
            node,
            replica: node != 0,
            status: b'I',
            skipping: false,
            copy_in: false,
            swallowed: false,
            statements: HashMap::new(),
            portals: HashMap::new(),
            input: Vec::new(),
            out: Vec::new(),
            closed: false,
            rng: seed | 1,
            error_rate,
        }
    }

    /// Nothing in flight: idle, outside any transaction, nothing unread or unsent.
    pub fn idle(&self) -> bool {
        self.status == b'I'
            && !self.skipping
            && !self.copy_in
            && !self.closed
            && self.input.is_empty()
            && self.out.is_empty()
    }

    /// The ids of pgsluice's own statements (`sluice_N`) this backend holds.
    /// Whether a statement of this name is prepared here.
    pub fn holds_statement(&self, name: &str) -> bool {
        self.statements.contains_key(name)
    }

    pub fn statement_ids(&self) -> Vec<u64> {
        let ids = self
            .statements
            .keys()
            .filter_map(|n| n.strip_prefix(crate::prepare::SERVER_PREFIX)?.parse().ok());
        ids.collect()
    }

    fn roll(&mut self) -> u8 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 24) as u8
    }

    fn inject(&mut self) -> bool {
        self.roll() < self.error_rate
    }

    /// Bytes the core sent: every whole message is answered.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.input.extend_from_slice(bytes);
        loop {
            let h = match protocol::header(&self.input, 1 << 30) {
                Ok(Some(h)) if self.input.len() >= h.frame_len => h,
                Ok(_) => return,
                Err(_) => return self.fatal("08P01", "invalid message length"),
            };
            let frame: Vec<u8> = self.input.drain(..h.frame_len).collect();
            self.message(h.tag, protocol::body(&frame));
            if self.closed {
                return;
            }
        }
    }

    fn message(&mut self, tag: u8, body: &[u8]) {
        if self.copy_in {
            return self.copy_message(tag, body);
        }
        // After an extended-protocol error PostgreSQL reads past everything but Sync.
        if self.skipping && tag != b'S' {
            self.swallowed |= tag == b'Q';
            return;
        }
        match tag {
            b'Q' => self.query(body),
            b'F' => {
                self.put(b'V', &(-1i32).to_be_bytes());
                self.ready();
            }
            b'S' => {
                self.skipping = false;
                if self.status == b'I' {
                    self.portals.clear();
                }
                self.ready();
            }
            b'H' | b'd' | b'c' | b'f' => {}
            b'X' => self.closed = true,
            b'P' => self.parse(body),
            b'B' => self.bind(body),
            b'D' => self.describe(body),
            b'E' => self.execute(body),
            b'C' => self.close(body),
            _ => self.fatal("08P01", "invalid frontend message type"),
        }
    }

    fn copy_message(&mut self, tag: u8, _body: &[u8]) {
        match tag {
            b'd' | b'H' | b'S' => {}
            b'c' => {
                self.copy_in = false;
                self.complete("COPY 1");
                self.ready();
            }
            b'f' => {
                self.copy_in = false;
                self.error("57014", "COPY from stdin failed");
                self.ready();
            }
            _ => {
                // PostgreSQL ends the COPY with an error; the message is lost.
                self.copy_in = false;
                self.error("08P01", "unexpected message type during COPY");
                self.ready();
            }
        }
    }

    fn query(&mut self, body: &[u8]) {
        let Some((text, _)) = cstr(body) else {
            self.error("08P01", "invalid string in message");
            return self.ready();
        };
        let text = text.to_string();
        if self.run(&text, true) {
            self.ready();
        }
    }

    /// Runs one statement text; false when the answer continues later (COPY FROM STDIN).
    fn run(&mut self, text: &str, simple: bool) -> bool {
        let sql = text
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_ascii_lowercase();
        // The first word ends where PostgreSQL's lexer ends it: `PREPARE--c` is
        // `PREPARE` and a comment.
        let first = sql
            .trim_start()
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .next()
            .unwrap_or_default()
            .to_string();
        let ends = matches!(first.as_str(), "commit" | "end" | "rollback" | "abort");
        if sql.is_empty() {
            self.put(b'I', b"");
            return true;
        }
        if self.status == b'E' && !ends {
            self.error("25P02", "current transaction is aborted");
            return true;
        }
        if !ends && !sql.starts_with("begin") && self.inject() {
            self.error("XX000", "injected failure");
            return true;
        }
        let writes = [
            "insert",
            "update",
            "delete",
            "create",
            "drop",
            "select nextval",
        ];
        // A standby refuses COPY FROM as it refuses any write, before CopyInResponse.
        let copy_in = first == "copy" && sql.contains("from stdin");
        if self.replica && (copy_in || writes.iter().any(|w| sql.starts_with(w))) {
            self.error("25006", "cannot execute in a read-only transaction");
            return true;
        }
        match first.as_str() {
            // pgsluice's own savepoint around hidden statements (`own_names.rs`): back
            // to the savepoint, the block is no longer failed.
            "rollback" if sql.starts_with("rollback to") => {
                if self.status == b'E' {
                    self.status = b'T';
                }
                self.complete("ROLLBACK");
            }
            "begin" | "start" => {
                self.status = b'T';
                self.complete("BEGIN");
            }
            "commit" | "end" => {
                let tag = if self.status == b'E' {
                    "ROLLBACK"
                } else {
                    "COMMIT"
                };
                self.end_transaction();
                self.complete(tag);
            }
            "rollback" | "abort" => {
                self.end_transaction();
                self.complete("ROLLBACK");
            }
            // `DISCARD ALL` and nothing run into it (`DISCARD ALLSELECT` is a syntax
            // error to PostgreSQL).
            "discard"
                if sql.strip_prefix("discard all").is_some_and(|rest| {
                    !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
                }) =>
            {
                if self.status != b'I' {
                    let msg = "DISCARD ALL cannot run inside a transaction block";
                    self.error("25001", msg);
                    return true;
                }
                self.statements.clear();
                self.portals.clear();
                self.complete("DISCARD ALL");
            }
            "prepare" => self.sql_prepare(text),
            "deallocate" => self.sql_deallocate(text),
            "execute" | "explain" | "create" if crate::sql::sql_execute(text).is_some() => {
                self.sql_execute(text, simple)
            }
            "copy" if sql.contains("from stdin") && simple => {
                self.put(b'G', &[0, 0, 0]);
                self.copy_in = true;
                return false;
            }
            "copy" if sql.contains("to stdout") && simple => {
                self.put(b'H', &[0, 0, 0]);
                self.put(b'd', b"1\n");
                self.put(b'c', b"");
                self.complete("COPY 1");
            }
            "copy" => self.error("0A000", "COPY here is not modelled"),
            "select" | "values" | "show" | "table" | "with" => self.rows(&sql, simple),
            "set" | "reset" => self.set(&sql, &first),
            _ => self.complete(&first.to_ascii_uppercase()),
        }
        true
    }

    fn rows(&mut self, sql: &str, simple: bool) {
        let value = if sql.contains("pg_current_wal_insert_lsn") {
            "0/3000000"
        } else if sql.contains("pg_last_wal_replay_lsn") {
            // A read-your-writes probe: the write replayed (a hit) or not yet (a miss).
            if self.roll() < 128 {
                "0/3000000"
            } else {
                "0/1"
            }
        } else {
            "1"
        };
        if simple {
            if self.roll() < 32 {
                let mut b = BytesMut::new();
                crate::protocol::build::notice(&mut b, "a notice");
                self.out.extend_from_slice(&b);
            }
            self.put(b'T', &row_description());
        }
        let n = if value == "1" { self.roll() % 3 } else { 1 };
        for _ in 0..n {
            self.put(b'D', &data_row(value));
        }
        self.complete(&format!("SELECT {n}"));
    }

    fn set(&mut self, sql: &str, first: &str) {
        for (name, value) in [("datestyle", "ISO, MDY"), ("application_name", "x")] {
            if sql.contains(name) {
                let mut b = Vec::new();
                b.extend_from_slice(name.as_bytes());
                b.push(0);
                b.extend_from_slice(value.as_bytes());
                b.push(0);
                self.put(b'S', &b);
            }
        }
        self.complete(&first.to_ascii_uppercase());
    }

    fn end_transaction(&mut self) {
        self.status = b'I';
        self.portals.clear();
    }

    fn sql_prepare(&mut self, text: &str) {
        let Some(p) = crate::sql::sql_prepare(text) else {
            return self.complete("PREPARE");
        };
        if self.statements.contains_key(&p.name) {
            return self.name_error("42P05", &p.name, "already exists");
        }
        self.statements.insert(p.name.clone(), p.body.to_string());
        self.complete("PREPARE");
    }

    fn sql_deallocate(&mut self, text: &str) {
        // `DEALLOCATE [PREPARE] ALL` and nothing after (anything else after ALL is a
        // syntax error on PostgreSQL).
        let lower = text.trim().trim_end_matches(';').to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().skip(1).collect();
        let words = words.strip_prefix(&["prepare"]).unwrap_or(&words);
        if words.first() == Some(&"all") {
            if words.len() > 1 {
                return self.error("42601", "syntax error");
            }
            self.statements.retain(|n, _| n.is_empty());
            return self.complete("DEALLOCATE ALL");
        }
        match super::text::deallocate_target(text) {
            Some(name) if self.statements.remove(&name).is_some() => self.complete("DEALLOCATE"),
            Some(name) => self.name_error("26000", &name, "does not exist"),
            None => self.complete("DEALLOCATE"),
        }
    }

    fn sql_execute(&mut self, text: &str, simple: bool) {
        let Some(e) = crate::sql::sql_execute(text) else {
            return self.complete("EXECUTE");
        };
        match self.statements.get(&e.name).cloned() {
            Some(body) => {
                let sql = body.to_ascii_lowercase();
                self.rows(&sql, simple)
            }
            None => self.name_error("26000", &e.name, "does not exist"),
        }
    }

    /// An extended-protocol message failed.
    fn fail(&mut self, code: &str, message: &str) {
        self.error(code, message);
        self.fail_extended();
    }

    fn fail_extended(&mut self) {
        self.skipping = true;
    }

    /// An error naming a prepared statement, as PostgreSQL words it.
    fn name_error(&mut self, code: &str, name: &str, what: &str) {
        let msg = format!("prepared statement \"{name}\" {what}");
        self.error(code, &msg);
    }

    fn error(&mut self, code: &str, message: &str) {
        let mut b = BytesMut::new();
        crate::protocol::build::error(&mut b, "ERROR", code, message);
        self.out.extend_from_slice(&b);
        if self.status == b'T' {
            self.status = b'E';
        }
    }

    fn fatal(&mut self, code: &str, message: &str) {
        let mut b = BytesMut::new();
        crate::protocol::build::error(&mut b, "FATAL", code, message);
        self.out.extend_from_slice(&b);
        self.closed = true;
    }

    fn complete(&mut self, tag: &str) {
        let mut b = tag.as_bytes().to_vec();
        b.push(0);
        self.put(b'C', &b);
    }

    fn ready(&mut self) {
        let status = self.status;
        self.put(b'Z', &[status]);
    }

    fn put(&mut self, tag: u8, body: &[u8]) {
        let mut b = BytesMut::with_capacity(body.len() + 5);
        b.put_u8(tag);
        b.put_i32(body.len() as i32 + 4);
        b.put_slice(body);
        self.out.extend_from_slice(&b);
    }
}

fn row_description() -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u16(1);
    b.put_slice(b"c\0");
    b.put_u32(0);
    b.put_u16(0);
    b.put_u32(25);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_u16(0);
    b.to_vec()
}

fn data_row(value: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u16(1);
    b.put_i32(value.len() as i32);
    b.put_slice(value.as_bytes());
    b.to_vec()
}

#[path = "fuzz_model_ext.rs"]
mod ext;
