//! Sans-IO RTP building blocks for forwarding (mediasoup's worker `RTC::RtpPacket`, `SeqManager`,
//! `NackGenerator`, `RtpStreamRecv`, `RtpStreamSend`, `RtpRetransmissionBuffer`, `RtxStream` and
//! the codec payload parsers). Everything takes time explicitly and works on caller-provided
//! buffers; the packet path neither allocates nor panics on packet data.

pub mod h264;
pub mod nack_generator;
pub mod ntp;
pub mod packet;
pub mod rate_calculator;
pub mod retransmission_buffer;
pub mod rtp_stream;
pub mod rtp_stream_recv;
pub mod rtx;
pub mod seq_manager;
pub mod vp8;
pub mod vp9;

pub use packet::{rewrite_into, ExtensionMap, RtpError, RtpHeaderWriter, RtpPacket};
pub use seq_manager::SeqManager;
