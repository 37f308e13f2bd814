//! What routers, producers and consumers need from the shard to put packets on the wire: pooled
//! buffers, and sending through a transport (which encrypts and addresses them).

/// Shard-local number of a transport on the packet path.
pub type TransportKey = u32;

pub trait Egress {
    /// A buffer from the shard's pool.
    fn buffer(&mut self) -> Vec<u8>;
    /// Gives back a buffer that will not be sent.
    fn recycle(&mut self, buf: Vec<u8>);
    /// Encrypts and sends a plain RTP packet through a transport, stamping the transport-wide
    /// sequence number into extension `transport_wide_cc_id` when given. False if not sent.
    fn send_rtp(
        &mut self,
        transport: TransportKey,
        buf: Vec<u8>,
        transport_wide_cc_id: Option<u8>,
    ) -> bool;
    /// The next transport-wide sequence number of a transport (to stamp a packet before it is
    /// stored for retransmission, so that a resend is byte-identical).
    fn next_transport_wide_seq(&mut self, transport: TransportKey) -> Option<u16>;
    /// Encrypts and sends a plain RTCP compound through a transport.
    fn send_rtcp(&mut self, transport: TransportKey, buf: Vec<u8>) -> bool;
}
