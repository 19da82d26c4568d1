//! Which frame of a message each subscriber takes ([`Class`]), and one topic's subscribers
//! kept a set per class ([`Subscribers`]).
//!
//! Nearly every topic has plain subscribers only, so a topic holds one set inline and the
//! sets of the other classes only once one of them has a member: an index of many small
//! rooms costs no more per topic than before there were classes.

use indexmap::IndexSet;

/// Which frame of a message a subscriber is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The plain frame of each message.
    Plain = 0,
    /// The compressed frame of each message where there is one (permessage-deflate).
    Deflate = 1,
    /// Messages that reach the shard together as one newline-delimited text message
    /// (`?batch=1`), plain.
    Batch = 2,
    /// The same, compressed once per shard (`?batch=1` with permessage-deflate).
    BatchDeflate = 3,
}

impl Class {
    /// Every class, in index order.
    pub const ALL: [Class; 4] = [
        Class::Plain,
        Class::Deflate,
        Class::Batch,
        Class::BatchDeflate,
    ];

    /// The class of a connection that did or did not negotiate deflate and ask for batches.
    pub fn of(deflate: bool, batch: bool) -> Class {
        match (deflate, batch) {
            (false, false) => Class::Plain,
            (true, false) => Class::Deflate,
            (false, true) => Class::Batch,
            (true, true) => Class::BatchDeflate,
        }
    }

    /// Whether its clients negotiated permessage-deflate.
    pub fn deflate(self) -> bool {
        matches!(self, Class::Deflate | Class::BatchDeflate)
    }

    /// Whether its clients take runs of messages as one message.
    pub fn batch(self) -> bool {
        matches!(self, Class::Batch | Class::BatchDeflate)
    }
}

/// One topic's subscribers, a set per [`Class`]; the non-plain sets are allocated with their
/// first member and given back with their last.
#[derive(Debug, Default)]
pub(super) struct Subscribers {
    plain: IndexSet<usize>,
    others: Option<Box<[IndexSet<usize>; 3]>>,
}

impl Subscribers {
    /// The set of `class`, if it has one.
    pub(super) fn get(&self, class: Class) -> Option<&IndexSet<usize>> {
        match class {
            Class::Plain => Some(&self.plain),
            other => self.others.as_ref().map(|o| &o[other as usize - 1]),
        }
    }

    /// Members of `class`.
    pub(super) fn count(&self, class: Class) -> usize {
        self.get(class).map_or(0, IndexSet::len)
    }

    /// Members that negotiated deflate (batched or not).
    pub(super) fn deflate_count(&self) -> usize {
        self.count(Class::Deflate) + self.count(Class::BatchDeflate)
    }

    /// Every member.
    pub(super) fn len(&self) -> usize {
        self.plain.len()
            + self
                .others
                .as_ref()
                .map_or(0, |o| o.iter().map(IndexSet::len).sum())
    }

    /// Whether it has no member.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `token` to `class`; false if it was there.
    pub(super) fn insert(&mut self, token: usize, class: Class) -> bool {
        match class {
            Class::Plain => self.plain.insert(token),
            other => self.others.get_or_insert_default()[other as usize - 1].insert(token),
        }
    }

    /// Removes `token` from whichever class holds it; returns that class.
    pub(super) fn remove(&mut self, token: usize) -> Option<Class> {
        if self.plain.swap_remove(&token) {
            return Some(Class::Plain);
        }
        let others = self.others.as_mut()?;
        let class = Class::ALL[1..]
            .iter()
            .copied()
            .find(|&c| others[c as usize - 1].swap_remove(&token))?;
        if others.iter().all(IndexSet::is_empty) {
            self.others = None;
        }
        Some(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_classes_are_allocated_only_while_used() {
        let mut s = Subscribers::default();
        assert!(s.insert(1, Class::Plain) && !s.insert(1, Class::Plain));
        assert!(s.others.is_none());
        assert!(s.insert(2, Class::BatchDeflate));
        assert!(s.insert(3, Class::Deflate));
        assert_eq!(
            (s.len(), s.deflate_count(), s.count(Class::Batch)),
            (3, 2, 0)
        );
        assert_eq!(s.remove(2), Some(Class::BatchDeflate));
        assert_eq!(s.remove(3), Some(Class::Deflate));
        assert!(s.others.is_none(), "given back with the last member");
        assert_eq!(s.remove(9), None);
        assert_eq!(s.remove(1), Some(Class::Plain));
        assert!(s.is_empty());
        for (deflate, batch) in [(false, false), (true, false), (false, true), (true, true)] {
            let c = Class::of(deflate, batch);
            assert_eq!((c.deflate(), c.batch()), (deflate, batch));
        }
    }
}
