//! WebRtcTransport: ICE-lite, DTLS, SRTP and the parameters handed to the client.

pub mod dtls_certificate;
pub mod dtls_transport;
pub mod ice_server;
pub mod rtp_listener;
mod srtp;
pub mod srtp_session;
pub mod stun;
pub mod webrtc_transport;
