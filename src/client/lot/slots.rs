//! The loop's slots: one per client, indexed by the token its socket has in the epoll set.

use super::Entry;

/// The slots, a free list in the vacant ones' places.
#[derive(Default)]
pub(super) struct Slots {
    pub(super) list: Vec<Option<Entry>>,
    pub(super) free: Vec<usize>,
}

impl Slots {
    pub(super) fn put(&mut self, entry: Entry) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.list[i] = Some(entry);
                i
            }
            None => {
                self.list.push(Some(entry));
                self.list.len() - 1
            }
        }
    }

    pub(super) fn take(&mut self, i: usize) -> Option<Entry> {
        let e = self.list.get_mut(i)?.take()?;
        self.free.push(i);
        if self.free.len() == self.list.len() {
            // Every client left: the lists' memory goes too.
            *self = Slots::default();
        }
        Some(e)
    }

    /// How many slots hold a client.
    pub(super) fn occupied(&self) -> usize {
        self.list.len() - self.free.len()
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut Entry> {
        self.list.get_mut(i)?.as_mut()
    }
}
