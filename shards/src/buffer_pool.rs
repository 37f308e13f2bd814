//! The shard's packet buffers: taken for each packet to send and given back once sent, so the
//! packet path allocates nothing once warm.

/// Capacity of every buffer: an MTU-sized packet plus SRTP's tag and room to spare.
pub const BUFFER_CAPACITY: usize = 1600;
/// Buffers kept for reuse (beyond this, returned buffers are freed).
const MAX_POOLED: usize = 4096;

#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    allocated: u64,
}

impl BufferPool {
    /// An empty buffer with at least [`BUFFER_CAPACITY`] bytes of capacity.
    pub fn take(&mut self) -> Vec<u8> {
        match self.free.pop() {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => {
                self.allocated += 1;
                Vec::with_capacity(BUFFER_CAPACITY)
            }
        }
    }

    /// Gives a buffer back.
    pub fn give(&mut self, buf: Vec<u8>) {
        if self.free.len() < MAX_POOLED && buf.capacity() >= BUFFER_CAPACITY {
            self.free.push(buf);
        }
    }

    /// Buffers ever allocated (flat once the pool is warm).
    pub fn allocated(&self) -> u64 {
        self.allocated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_buffers() {
        let mut pool = BufferPool::default();
        let mut a = pool.take();
        a.extend_from_slice(&[1, 2, 3]);
        pool.give(a);
        let b = pool.take();
        assert!(b.is_empty());
        assert!(b.capacity() >= BUFFER_CAPACITY);
        pool.give(b);
        for _ in 0..100 {
            let x = pool.take();
            pool.give(x);
        }
        assert_eq!(pool.allocated(), 1);
    }
}
