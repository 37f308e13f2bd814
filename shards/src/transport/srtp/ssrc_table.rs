//! Per-SSRC state of one direction: a bounded table that allocates only when an SSRC it has not
//! seen appears (and never once it is full), looked up per packet through a small open-addressing
//! index. When full, a new SSRC replaces the least recently used one.

/// No entry in this slot of the index.
const EMPTY: u16 = u16::MAX;

struct Entry<S> {
    ssrc: u32,
    last_used: u64,
    state: S,
}

pub(super) struct SsrcTable<S> {
    entries: Vec<Entry<S>>,
    /// Positions in `entries`, by SSRC hash with linear probing; a power of two at least twice
    /// `entries.capacity()` long (or empty), so probing always meets an `EMPTY` slot.
    slots: Vec<u16>,
    cap: usize,
    clock: u64,
}

impl<S> SsrcTable<S> {
    /// A table of at most `cap` SSRCs (1..=16384); allocates nothing until the first insert.
    pub(super) const fn new(cap: usize) -> Self {
        let cap = if cap == 0 {
            1
        } else if cap > 16_384 {
            16_384
        } else {
            cap
        };
        Self {
            entries: Vec::new(),
            slots: Vec::new(),
            cap,
            clock: 0,
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn home(&self, ssrc: u32) -> usize {
        let hash = (u64::from(ssrc).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        hash & (self.slots.len().wrapping_sub(1))
    }

    /// The position in `entries` of `ssrc`.
    fn find(&self, ssrc: u32) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut slot = self.home(ssrc);
        for _ in 0..self.slots.len() {
            let at = *self.slots.get(slot)?;
            if at == EMPTY {
                return None;
            }
            if self.entries.get(usize::from(at))?.ssrc == ssrc {
                return Some(usize::from(at));
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// The state of `ssrc`, marked as just used.
    pub(super) fn get_mut(&mut self, ssrc: u32) -> Option<&mut S> {
        let at = self.find(ssrc)?;
        self.clock += 1;
        let entry = self.entries.get_mut(at)?;
        entry.last_used = self.clock;
        Some(&mut entry.state)
    }

    /// The state of `ssrc`, inserting `make()` if it has none.
    pub(super) fn get_or_insert_with(&mut self, ssrc: u32, make: impl FnOnce() -> S) -> &mut S {
        match self.find(ssrc) {
            Some(at) => {
                self.clock += 1;
                let entry = &mut self.entries[at];
                entry.last_used = self.clock;
                &mut entry.state
            }
            None => self.insert(ssrc, make()),
        }
    }

    /// Adds `ssrc` (which must not be in the table), evicting the least recently used SSRC if the
    /// table is full.
    pub(super) fn insert(&mut self, ssrc: u32, state: S) -> &mut S {
        self.clock += 1;
        let entry = Entry {
            ssrc,
            last_used: self.clock,
            state,
        };
        let at = if self.entries.len() >= self.cap {
            let lru = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map_or(0, |(i, _)| i);
            self.entries[lru] = entry;
            self.reindex();
            lru
        } else {
            let capacity = self.entries.capacity();
            self.entries.push(entry);
            let at = self.entries.len() - 1;
            if self.entries.capacity() != capacity || self.slots.is_empty() {
                self.reindex();
            } else {
                self.place(at);
            }
            at
        };
        &mut self.entries[at].state
    }

    /// Rebuilds the index for the current entries and capacity.
    fn reindex(&mut self) {
        let len = (2 * self.entries.capacity()).next_power_of_two().max(8);
        self.slots.clear();
        self.slots.resize(len, EMPTY);
        for at in 0..self.entries.len() {
            self.place(at);
        }
    }

    fn place(&mut self, at: usize) {
        let mask = self.slots.len() - 1;
        let mut slot = self.home(self.entries[at].ssrc);
        while self.slots[slot] != EMPTY {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = at as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_and_evicts_the_least_recent() {
        let mut table = SsrcTable::new(64);
        assert!(table.get_mut(1).is_none());
        for ssrc in 0..64u32 {
            *table.insert(ssrc.wrapping_mul(0x0101_0101), ssrc) += 1000;
        }
        for ssrc in 0..64u32 {
            assert_eq!(
                table.get_mut(ssrc.wrapping_mul(0x0101_0101)),
                Some(&mut (ssrc + 1000))
            );
        }
        // Touch all but #7, so #7 is the least recently used.
        for ssrc in (0..64u32).filter(|&s| s != 7) {
            table.get_mut(ssrc.wrapping_mul(0x0101_0101));
        }
        *table.get_or_insert_with(999, || 5) += 1;
        assert_eq!(table.len(), 64);
        assert!(table.get_mut(7u32.wrapping_mul(0x0101_0101)).is_none());
        assert_eq!(table.get_mut(999), Some(&mut 6));
        assert_eq!(
            table.get_mut(8u32.wrapping_mul(0x0101_0101)),
            Some(&mut 1008)
        );
        // Many more SSRCs than the cap: still bounded, the newest all present.
        for ssrc in 10_000..20_000u32 {
            table.insert(ssrc, ssrc);
        }
        assert_eq!(table.len(), 64);
        for ssrc in 20_000 - 64..20_000u32 {
            assert_eq!(table.get_mut(ssrc), Some(&mut { ssrc }));
        }
        assert!(table.get_mut(20_000 - 65).is_none());
    }

    #[test]
    fn colliding_ssrcs_are_told_apart() {
        // SSRCs that share low bits and hash neighbourhoods.
        let mut table = SsrcTable::new(1024);
        for i in 0..1024u32 {
            table.insert(i << 20, i);
        }
        for i in 0..1024u32 {
            assert_eq!(table.get_mut(i << 20), Some(&mut { i }));
        }
        assert!(table.get_mut(1).is_none());
    }
}
