//! `pg_listening_channels()` in the client's terms where pgsluice's listener holds its
//! LISTENs (`listen.rs`): the core keeps the channels the listener confirmed, in the order
//! the client listened, and a Query or Parse calling the function is rewritten (see
//! [`crate::sql::rewrite_listening_channels`]) to list them, followed by those its server
//! listens on itself (a LISTEN inside a transaction block runs there and pins the client).
//!
//! The listener's own table cannot answer for the core: it lives in another task, by
//! channel, and the core is sans-IO. `UNLISTEN`, `UNLISTEN *`, and a `DISCARD ALL` or
//! `UNLISTEN *` the server ran (inside a transaction block they go to the server) take
//! channels away; a `DISCARD ALL` also has the listener drop them, as PostgreSQL does.

use super::Core;
use super::statements::frame;
use super::{Action, prepared_view::split};
use crate::listen::Request;
use crate::protocol::{self, fe};
use crate::sql::{may_call_listening_channels, rewrite_listening_channels};

/// Bytes the channel names may add to one call: a client with more channels than fit
/// sees the first ones it listened on.
const NAMES_BUDGET: usize = 1 << 20;

/// The channels the listener holds for the client, in the order it listened (as
/// PostgreSQL's `pg_listening_channels()` lists them).
#[derive(Debug, Default)]
pub(super) struct Channels {
    list: Vec<String>,
}

impl Channels {
    /// A request the listener confirmed.
    pub(super) fn apply(&mut self, request: &Request) {
        match request {
            Request::Listen(ch) => {
                if !self.list.contains(ch) {
                    self.list.push(ch.clone());
                }
            }
            Request::Unlisten(ch) => self.list.retain(|c| c != ch),
            Request::UnlistenAll => self.list.clear(),
        }
    }

    pub(super) fn names(&self) -> Vec<&str> {
        self.list.iter().map(String::as_str).collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl Core {
    /// A whole Query or Parse at `*fwd`, about to go to the held server: rewritten when it
    /// calls `pg_listening_channels()`; the rewritten frame's length, at the buffer's
    /// head. Statements without the name cost one byte scan.
    pub(super) fn listening_channels(
        &mut self,
        fwd: &mut usize,
        tag: u8,
        len: usize,
        calls: Option<bool>,
    ) -> Option<usize> {
        let msg = self.cin.get(*fwd..*fwd + len)?;
        // The text's one scan (`sql::TextFacts`) says, or the prefilter over the body.
        if !calls.unwrap_or_else(|| may_call_listening_channels(protocol::body(msg))) {
            return None;
        }
        let (name, text, types) = split(tag, protocol::body(msg))?;
        let sql = std::str::from_utf8(text).ok()?;
        let names = self
            .notes
            .as_ref()
            .map(|n| n.channels.names())
            .unwrap_or_default();
        let budget = self
            .limits
            .max_message
            .saturating_sub(len + 4096)
            .min(NAMES_BUDGET);
        let new = rewrite_listening_channels(sql, &names, budget)?;
        let rebuilt = match tag {
            fe::PARSE => frame(fe::PARSE, &[name, b"\0", new.as_bytes(), b"\0", types]),
            _ => frame(fe::QUERY, &[new.as_bytes(), b"\0"]),
        };
        self.flush_client_bytes(fwd);
        let new_len = rebuilt.len();
        let rest = self.cin.split_off(len);
        self.cin.clear();
        self.cin.extend_from_slice(&rebuilt);
        self.cin.unsplit(rest);
        Some(new_len)
    }

    /// The server ran a `DISCARD ALL` or `UNLISTEN *` of the client's: its channels with
    /// the listener go too. The listener's answer is not the client's (see
    /// [`Core::listen_done`]).
    pub(super) fn unlisten_everything(&mut self) {
        let Some(notes) = &mut self.notes else {
            return;
        };
        if notes.channels.is_empty() {
            return;
        }
        notes.channels.apply(&Request::UnlistenAll);
        notes.silent += 1;
        self.actions.push_back(Action::Listen(Request::UnlistenAll));
    }
}

#[cfg(test)]
#[path = "channels_tests.rs"]
mod tests;
