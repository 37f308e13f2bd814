//! The packets a consumer stream sent recently, kept for NACK-triggered retransmission (mediasoup's
//! `RTC::RtpRetransmissionBuffer`).
//!
//! mediasoup keeps shared pointers to packet clones in a deque; here every slot is a fixed
//! [`MAX_PACKET_LEN`]-byte region of one allocation made in the constructor, indexed by the
//! (extended) output sequence number, so storing a packet is a `memcpy` and nothing is freed.
//! The zeroed allocation is only backed by memory as slots get used (the OS maps zero pages
//! lazily), so a quiet stream costs little despite the capacity.

use std::time::{Duration, Instant};

use super::packet_store::StoredPacket;

/// Largest packet stored (mediasoup's `MtuSize`).
pub const MAX_PACKET_LEN: usize = 1500;
/// Room per slot for the head of a packet whose tail is shared (header + payload prefix):
/// heads sit densely in their own region, so storing one touches one or two cache lines next to
/// the previous packet's rather than a new line 1500 bytes away (and a new page every few).
pub const HEAD_LEN: usize = 128;
/// Default number of slots.
pub const DEFAULT_CAPACITY: usize = 1000;
/// How long a video packet may be retransmitted after it was sent (mediasoup).
pub const MAX_RETRANSMISSION_DELAY_VIDEO: Duration = Duration::from_millis(2000);
/// Same for audio.
pub const MAX_RETRANSMISSION_DELAY_AUDIO: Duration = Duration::from_millis(1000);
/// Default cap on retransmissions of one packet (the browser's NACK module gives up after 10 too).
pub const DEFAULT_MAX_RESENDS: u8 = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Extended sequence number stored here (0 = empty; real values start at 2^16).
    ext_seq: u64,
    len: u16,
    sent_at: Option<Instant>,
    resent_at: Option<Instant>,
    resend_count: u8,
    /// The packet continues in the producer's store (see [`SharedTail`]).
    tail: Option<SharedTail>,
}

/// Where the rest of a packet stored as a head lives: `stored`'s bytes from `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedTail {
    pub stored: StoredPacket,
    pub offset: u16,
}

/// A packet handed out for retransmission.
#[derive(Debug, Clone, Copy)]
pub struct Resend<'a> {
    /// The whole packet, or its head when `tail` is set.
    pub packet: &'a [u8],
    pub tail: Option<SharedTail>,
    pub sent_at: Instant,
    /// Times resent including this one; 1 = first retransmission ("repaired" in mediasoup stats).
    pub resend_count: u8,
}

/// Why [`RetransmissionBuffer::resend`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendRefusal {
    /// Never stored, overwritten, or older than the max age.
    NotFound,
    /// Already resent less than `min_interval` (≈ RTT) ago.
    TooSoon,
    /// Resent the maximum number of times.
    TooMany,
}

#[derive(Debug)]
pub struct RetransmissionBuffer {
    data: Box<[u8]>,
    /// Heads of split slots, [`HEAD_LEN`] bytes per slot.
    heads: Box<[u8]>,
    slots: Box<[Slot]>,
    /// Highest extended sequence number stored.
    newest: Option<u64>,
    max_age: Duration,
    max_resends: u8,
}

impl RetransmissionBuffer {
    /// Allocates `capacity` slots (at least 1) of [`MAX_PACKET_LEN`] bytes.
    pub fn new(capacity: usize, max_age: Duration, max_resends: u8) -> Self {
        let capacity = capacity.max(1);
        Self {
            data: vec![0u8; capacity * MAX_PACKET_LEN].into_boxed_slice(),
            heads: vec![0u8; capacity * HEAD_LEN].into_boxed_slice(),
            slots: vec![Slot::default(); capacity].into_boxed_slice(),
            newest: None,
            max_age,
            max_resends,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn extend(&self, seq: u16) -> u64 {
        match self.newest {
            None => (1 << 16) + seq as u64,
            Some(newest) => {
                let d = seq.wrapping_sub(newest as u16);
                if d < 0x8000 {
                    newest + d as u64
                } else {
                    newest - (0x1_0000 - d as u64)
                }
            }
        }
    }

    fn slot_index(&self, ext_seq: u64) -> usize {
        (ext_seq % self.slots.len() as u64) as usize
    }

    /// Whether `ext_seq` is inside the window the slots can hold.
    fn in_window(&self, ext_seq: u64) -> bool {
        self.newest
            .is_some_and(|n| ext_seq <= n && ext_seq + self.slots.len() as u64 > n)
    }

    /// Stores a sent packet under its output sequence number. False if it is larger than
    /// [`MAX_PACKET_LEN`], older than the window, or already stored.
    pub fn insert(&mut self, seq: u16, packet: &[u8], now: Instant) -> bool {
        self.insert_split(seq, packet, None, now)
    }

    /// Like [`insert`](Self::insert), but `packet` is only the start of the packet (at most
    /// [`HEAD_LEN`] bytes) when `tail` says where the rest is: only the head is copied.
    pub fn insert_split(
        &mut self,
        seq: u16,
        packet: &[u8],
        tail: Option<SharedTail>,
        now: Instant,
    ) -> bool {
        // A head must fit its region (callers keep longer ones whole).
        if packet.len() > MAX_PACKET_LEN || (tail.is_some() && packet.len() > HEAD_LEN) {
            return false;
        }
        let ext_seq = self.extend(seq);
        match self.newest {
            Some(n) if ext_seq > n => self.newest = Some(ext_seq),
            None => self.newest = Some(ext_seq),
            _ => {}
        }
        if !self.in_window(ext_seq) {
            return false;
        }
        let idx = self.slot_index(ext_seq);
        if self.slots[idx].ext_seq == ext_seq {
            return false;
        }
        if tail.is_some() {
            let start = idx * HEAD_LEN;
            self.heads[start..start + packet.len()].copy_from_slice(packet);
        } else {
            let start = idx * MAX_PACKET_LEN;
            self.data[start..start + packet.len()].copy_from_slice(packet);
        }
        self.slots[idx] = Slot {
            ext_seq,
            len: packet.len() as u16,
            sent_at: Some(now),
            resent_at: None,
            resend_count: 0,
            tail,
        };
        true
    }

    fn find(&self, seq: u16, now: Instant) -> Option<usize> {
        let ext_seq = self.extend(seq);
        if !self.in_window(ext_seq) {
            return None;
        }
        let idx = self.slot_index(ext_seq);
        let slot = &self.slots[idx];
        let sent_at = slot.sent_at?;
        (slot.ext_seq == ext_seq && now.saturating_duration_since(sent_at) <= self.max_age)
            .then_some(idx)
    }

    fn bytes(&self, idx: usize) -> &[u8] {
        let len = self.slots[idx].len as usize;
        if self.slots[idx].tail.is_some() {
            &self.heads[idx * HEAD_LEN..idx * HEAD_LEN + len]
        } else {
            &self.data[idx * MAX_PACKET_LEN..idx * MAX_PACKET_LEN + len]
        }
    }

    /// The stored packet (its head only, for a split slot) and when it was first sent, if still
    /// within the max age.
    pub fn get(&self, seq: u16, now: Instant) -> Option<(&[u8], Instant)> {
        let idx = self.find(seq, now)?;
        Some((self.bytes(idx), self.slots[idx].sent_at?))
    }

    /// How often `seq` was resent so far.
    pub fn resend_count(&self, seq: u16, now: Instant) -> Option<u8> {
        self.find(seq, now).map(|idx| self.slots[idx].resend_count)
    }

    /// Hands out `seq` for retransmission and records it, unless it is gone, was resent less than
    /// `min_interval` ago (mediasoup: the RTT) or was resent the maximum number of times.
    pub fn resend(
        &mut self,
        seq: u16,
        now: Instant,
        min_interval: Duration,
    ) -> Result<Resend<'_>, ResendRefusal> {
        let idx = self.find(seq, now).ok_or(ResendRefusal::NotFound)?;
        let slot = &mut self.slots[idx];
        if slot
            .resent_at
            .is_some_and(|at| now.saturating_duration_since(at) <= min_interval)
        {
            return Err(ResendRefusal::TooSoon);
        }
        if slot.resend_count >= self.max_resends {
            return Err(ResendRefusal::TooMany);
        }
        slot.resent_at = Some(now);
        slot.resend_count += 1;
        let (sent_at, resend_count, tail) =
            (slot.sent_at.unwrap_or(now), slot.resend_count, slot.tail);
        Ok(Resend {
            packet: self.bytes(idx),
            tail,
            sent_at,
            resend_count,
        })
    }

    /// Forgets everything (mediasoup clears on pause), keeping the allocation.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.newest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(100);

    #[test]
    fn split_slots_keep_heads_apart_from_whole_packets() {
        use crate::rtp::packet_store::PacketStore;
        let t0 = Instant::now();
        let mut store = PacketStore::new(4);
        let stored = store.insert(&[9; 200]).expect("fits");
        let tail = SharedTail {
            stored,
            offset: 100,
        };
        let mut b = RetransmissionBuffer::new(8, Duration::from_secs(2), 3);
        assert!(b.insert_split(1, &[1; 40], Some(tail), t0));
        assert!(b.insert(2, &[2; 300], t0));
        // A head longer than its region is refused, not truncated.
        assert!(!b.insert_split(3, &[3; HEAD_LEN + 1], Some(tail), t0));
        let r = b.resend(1, t0, RTT).expect("stored");
        assert_eq!((r.packet, r.tail), (&[1u8; 40][..], Some(tail)));
        let r = b.resend(2, t0, RTT).expect("stored");
        assert_eq!((r.packet, r.tail), (&[2u8; 300][..], None));
        assert!(b.resend(3, t0, RTT).is_err());
    }

    fn pkt(seq: u16) -> [u8; 4] {
        let [a, b] = seq.to_be_bytes();
        [a, b, 0xAB, 0xCD]
    }

    #[test]
    fn stores_and_returns_by_seq_with_wraparound_and_reordering() {
        let t0 = Instant::now();
        let mut b = RetransmissionBuffer::new(8, Duration::from_secs(2), 3);
        for seq in [65533u16, 65534, 0, 65535, 1] {
            assert!(b.insert(seq, &pkt(seq), t0), "seq {seq}");
        }
        for seq in [65533u16, 65534, 65535, 0, 1] {
            assert_eq!(b.get(seq, t0).unwrap().0, &pkt(seq)[..]);
        }
        assert!(b.get(2, t0).is_none());
        assert!(b.get(65532, t0).is_none());
        // Duplicates are refused and keep the original.
        assert!(!b.insert(1, &[9, 9], t0));
        assert_eq!(b.get(1, t0).unwrap().0, &pkt(1)[..]);
    }

    #[test]
    fn window_and_age_limits() {
        let t0 = Instant::now();
        let mut b = RetransmissionBuffer::new(4, Duration::from_secs(1), 3);
        for seq in 10..20u16 {
            b.insert(seq, &pkt(seq), t0 + Duration::from_millis(seq as u64 * 10));
        }
        // Only the last 4 fit.
        assert!(b.get(15, t0 + Duration::from_millis(200)).is_none());
        assert!(b.get(16, t0 + Duration::from_millis(200)).is_some());
        // Older than the window: refused on insert.
        assert!(!b.insert(12, &pkt(12), t0));
        // Too old in time.
        assert!(b.get(16, t0 + Duration::from_millis(1161)).is_none());
        assert!(b.get(19, t0 + Duration::from_millis(1161)).is_some());
        // Too large.
        assert!(!b.insert(20, &[0; MAX_PACKET_LEN + 1], t0));
        b.clear();
        assert!(b.get(19, t0).is_none());
    }

    #[test]
    fn resend_respects_interval_and_count() {
        let t0 = Instant::now();
        let mut b = RetransmissionBuffer::new(16, Duration::from_secs(2), 2);
        b.insert(5, &pkt(5), t0);
        let r = b.resend(5, t0, RTT).unwrap();
        assert_eq!((r.packet, r.resend_count), (&pkt(5)[..], 1));
        assert_eq!(
            b.resend(5, t0 + Duration::from_millis(50), RTT)
                .unwrap_err(),
            ResendRefusal::TooSoon
        );
        assert_eq!(
            b.resend(5, t0 + Duration::from_millis(150), RTT)
                .unwrap()
                .resend_count,
            2
        );
        assert_eq!(
            b.resend(5, t0 + Duration::from_millis(300), RTT)
                .unwrap_err(),
            ResendRefusal::TooMany
        );
        assert_eq!(b.resend_count(5, t0), Some(2));
        assert_eq!(b.resend(6, t0, RTT).unwrap_err(), ResendRefusal::NotFound);
    }

    #[test]
    fn far_jump_invalidates_old_slots() {
        let t0 = Instant::now();
        let mut b = RetransmissionBuffer::new(4, Duration::from_secs(2), 2);
        b.insert(1, &pkt(1), t0);
        b.insert(10_001, &pkt(10_001), t0);
        assert!(b.get(1, t0).is_none());
        assert!(b.get(10_001, t0).is_some());
        assert_eq!(b.capacity(), 4);
    }
}
