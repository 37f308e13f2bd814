//! The packets one producer received, stored once for the retransmission buffers of all its
//! consumers.
//!
//! A consumer's copy of a packet differs from the producer's only in its header (and, for VP8,
//! a few descriptor bytes at the start of the payload), so a consumer keeps just that head and a
//! [`StoredPacket`] handle to the rest here. Fanning a packet out to 50 consumers then writes one
//! 1.2 KB copy instead of 50, which kept the retransmission buffers from pushing everything else
//! out of the cache (measured: 13% of the server's CPU in a 1 → 50 broadcast).
//!
//! Slots are a ring indexed by a running id; a handle whose slot was overwritten since is simply
//! gone (the packet is too old to retransmit), never another packet's bytes.

use super::retransmission_buffer::MAX_PACKET_LEN;

/// Slots of a video producer's store: about 1 s of a 20 Mbit/s stream, 2.5 s at 8 Mbit/s.
pub const VIDEO_CAPACITY: usize = 2048;
/// Slots of an audio producer's store: 5 s at 50 packets/s.
pub const AUDIO_CAPACITY: usize = 256;

/// A packet in a [`PacketStore`], valid until its slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPacket {
    id: u64,
}

#[derive(Debug)]
pub struct PacketStore {
    data: Box<[u8]>,
    /// Per slot: the id stored there (0 = empty; ids start at 1) and the packet length.
    slots: Box<[(u64, u16)]>,
    next_id: u64,
}

impl PacketStore {
    /// `capacity` slots (at least 1) of [`MAX_PACKET_LEN`] bytes; the zeroed allocation is
    /// backed by memory only as slots get used.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            data: vec![0u8; capacity * MAX_PACKET_LEN].into_boxed_slice(),
            slots: vec![(0, 0); capacity].into_boxed_slice(),
            next_id: 1,
        }
    }

    /// Copies `packet` in, replacing the oldest; `None` if it is larger than [`MAX_PACKET_LEN`].
    pub fn insert(&mut self, packet: &[u8]) -> Option<StoredPacket> {
        if packet.len() > MAX_PACKET_LEN {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let idx = (id % self.slots.len() as u64) as usize;
        let start = idx * MAX_PACKET_LEN;
        self.data[start..start + packet.len()].copy_from_slice(packet);
        self.slots[idx] = (id, packet.len() as u16);
        Some(StoredPacket { id })
    }

    /// The packet, if its slot still holds it.
    pub fn get(&self, handle: StoredPacket) -> Option<&[u8]> {
        let idx = (handle.id % self.slots.len() as u64) as usize;
        let (id, len) = self.slots[idx];
        (id == handle.id).then(|| {
            let start = idx * MAX_PACKET_LEN;
            &self.data[start..start + len as usize]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_expire_when_their_slot_is_reused() {
        let mut s = PacketStore::new(2);
        let a = s.insert(b"first").expect("fits");
        let b = s.insert(b"second").expect("fits");
        assert_eq!(s.get(a), Some(&b"first"[..]));
        assert_eq!(s.get(b), Some(&b"second"[..]));
        let c = s.insert(b"third").expect("fits");
        assert_eq!(s.get(a), None, "overwritten: gone, not another packet");
        assert_eq!(s.get(b), Some(&b"second"[..]));
        assert_eq!(s.get(c), Some(&b"third"[..]));
        assert!(s.insert(&[0; MAX_PACKET_LEN + 1]).is_none());
    }
}
