//! The unnamed statement in transaction mode, where the next unit may get another
//! server: kept, and re-sent where a later Bind or Describe of it would not find it.

use super::Core;
use super::replies::Act;
use crate::protocol::fe;

impl Core {
    /// The unnamed statement in transaction mode, where the next unit may get another
    /// server: a Parse meant for a later unit is kept (and re-sent, hidden, where a later
    /// Bind or Describe of it would not find it); a Parse running a mapped SQL statement is
    /// rewritten. True when the frame at `*fwd` was consumed here.
    pub(super) fn unnamed_policy(
        &mut self,
        fwd: &mut usize,
        tag: u8,
        len: usize,
        starts_unit: bool,
    ) -> bool {
        if self.server.is_none() {
            return false;
        }
        if tag == fe::PARSE && !self.map.names.sql.is_empty() {
            // A hidden `PREPARE` for a Parse of `EXECUTE p` must follow the frames before.
            self.flush_client_bytes(fwd);
        }
        let at = *fwd;
        let Some(att) = &mut self.server else {
            return false;
        };
        match tag {
            fe::QUERY => {
                // A simple Query drops the unnamed statement on PostgreSQL too.
                self.unnamed = None;
                false
            }
            fe::PARSE => {
                let Some(frame) = self.cin.get(at..at + len) else {
                    return false;
                };
                let rewritten =
                    self.map
                        .parse_of_execute(frame, &mut self.sout, &mut att.state.statements);
                let next = self.cin.get(at + len).copied();
                // Bound in the same unit: it need not outlive it.
                let kept = next != Some(fe::BIND);
                if rewritten.is_none() && !kept {
                    self.unnamed = None;
                    return false;
                }
                let before = std::mem::take(fwd);
                if before > 0 {
                    self.sout.push(self.cin.split_to(before).freeze());
                }
                let original = self.cin.split_to(len).freeze();
                // The client's own text is kept: a re-send maps it again where it lands.
                self.unnamed = kept.then(|| Box::new((original.clone(), Some(att.state.id))));
                let (msg, act) = match rewritten {
                    Some((msg, act)) => (msg, act),
                    None => (original, Act::Forward),
                };
                self.sout.push(msg);
                self.map.replies.expect(fe::PARSE, act);
                true
            }
            fe::BIND | fe::DESCRIBE if starts_unit => {
                let Some(kept) = &mut self.unnamed else {
                    return false;
                };
                let (parse, on) = &mut **kept;
                let before = std::mem::take(fwd);
                if before > 0 {
                    self.sout.push(self.cin.split_to(before).freeze());
                }
                // `EXECUTE p` names a statement this server may lack (another server,
                // or evicted since): it is prepared here first, hidden. PostgreSQL looks
                // the name up at Describe and Bind time, so the current mapping is right.
                // That `PREPARE` is a simple Query, which drops the unnamed statement.
                let queued = self.sout.len();
                let mapped =
                    self.map
                        .parse_of_execute(parse, &mut self.sout, &mut att.state.statements);
                if *on != Some(att.state.id) || self.sout.len() != queued {
                    let msg = match mapped {
                        Some((msg, _)) => msg,
                        None => parse.clone(),
                    };
                    self.sout.push(msg);
                    self.map.replies.expect_hidden_unnamed();
                    self.map.note_resent_parse(parse);
                    *on = Some(att.state.id);
                }
                false
            }
            _ => false,
        }
    }

    /// pgsluice sends a simple Query of its own to the held server, which drops the
    /// unnamed statement there: a kept one is re-sent before the client's next use.
    pub(super) fn unnamed_dropped(&mut self) {
        if let Some(kept) = &mut self.unnamed {
            kept.1 = None;
        }
    }
}
