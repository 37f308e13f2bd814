//! Sans-IO RTP building blocks for forwarding (mediasoup's worker `RTC::RtpPacket`, `SeqManager`,
//! `NackGenerator`, `RtpStreamRecv`, `RtpStreamSend`, `RtpRetransmissionBuffer`, `RtxStream` and
//! the codec payload parsers). Everything takes time explicitly and works on caller-provided
//! buffers; the packet path neither allocates nor panics on packet data (`tests_no_alloc` counts).
//!
//! How the pieces fit, per decrypted incoming packet of a producer:
//! 1. [`RtpPacket::parse`]; codec info from [`vp8`] / [`vp9`] / [`h264`];
//! 2. [`rtp_stream_recv::RtpStreamRecv::receive_packet`] (or, for RTX, [`rtx::decode`] into a
//!    scratch buffer then `receive_rtx_packet`): counters, NACKs to send, key frame needs;
//! 3. per consumer: its [`seq_manager::RtpSeqManager`] (and `TimestampManager`) map seq / ts,
//!    [`rewrite_into`] writes the consumer's copy (extension ids re-mapped, MID etc. added),
//!    [`vp8::Vp8Rewriter`] fixes PictureID / TL0PICIDX in place (or says drop → `SeqManager::drop`);
//! 4. [`rtp_stream_send::RtpStreamSend::packet_sent`] counts and stores it for NACKs; the transport
//!    stamps transport-wide seq / abs-send-time in place ([`packet::set_transport_wide_seq`]).
//!
//! Timers: `RtpStreamRecv::poll` / `poll_timeout` (NACK retries, inactivity). RTCP in: SR →
//! `receive_sender_report`, RR → `RtpStreamSend::receive_receiver_report`, NACK →
//! `RtpStreamSend::receive_nack`. RTCP out: `receiver_report_block`, `sender_report`.

pub mod h264;
pub mod nack_generator;
pub mod ntp;
pub mod packet;
pub mod packet_store;
pub mod rate_calculator;
pub mod retransmission_buffer;
pub mod rtp_stream;
pub mod rtp_stream_recv;
pub mod rtp_stream_send;
pub mod rtx;
pub mod seq_manager;
pub mod vp8;
pub mod vp9;

pub use packet::{rewrite_into, ExtensionMap, RtpError, RtpHeaderWriter, RtpPacket};
pub use rtp_stream_recv::{RtpStreamRecv, RtpStreamRecvParams};
pub use rtp_stream_send::{RtpStreamSend, RtpStreamSendParams, SenderReportFields};
pub use seq_manager::SeqManager;

#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_no_alloc;
