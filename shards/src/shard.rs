//! One media shard's state: its routers and the counters of its sockets. Commands go in, results
//! and events come out; the I/O shell around it lives in `runtime`.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::command::{Command, CommandOk, CommandResult, ShardEvent, ShardStats};
use crate::router::Router;
use crate::transport::dtls_certificate::{DtlsCertificate, DtlsFingerprint};
use crate::transport::webrtc_transport::ListenInfo;

/// Counters of traffic the shard dropped, by kind (RFC 7983 first byte).
#[derive(Debug, Default, Clone)]
pub struct SocketCounters {
    pub udp_datagrams_received: u64,
    pub udp_bytes_received: u64,
    pub udp_dropped_stun: u64,
    pub udp_dropped_dtls: u64,
    pub udp_dropped_rtp: u64,
    pub udp_dropped_unknown: u64,
    pub tcp_connections_accepted: u64,
    pub tcp_frames_received: u64,
    pub tcp_dropped: u64,
}

/// What kind of packet a datagram is, by its first byte (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    Dtls,
    RtpOrRtcp,
    Unknown,
}

pub fn classify(datagram: &[u8]) -> PacketKind {
    match datagram.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) => PacketKind::RtpOrRtcp,
        _ => PacketKind::Unknown,
    }
}

pub struct Shard {
    pub index: usize,
    pub listen: ListenInfo,
    pub certificate: DtlsCertificate,
    fingerprints: Vec<DtlsFingerprint>,
    pub routers: HashMap<String, Router>,
    pub counters: SocketCounters,
    events: Vec<ShardEvent>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shard {
    pub fn new(index: usize, listen: ListenInfo, certificate: DtlsCertificate) -> Self {
        let fingerprints = certificate.fingerprints();
        Self {
            index,
            listen,
            certificate,
            fingerprints,
            routers: HashMap::new(),
            counters: SocketCounters::default(),
            events: Vec::new(),
        }
    }

    pub fn fingerprints(&self) -> &[DtlsFingerprint] {
        &self.fingerprints
    }

    /// Events produced since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, ShardEvent> {
        self.events.drain(..)
    }

    /// Counts a datagram received on the UDP socket. Until a transport claims it (by ICE
    /// username, then by validated tuple) it is dropped, and counted by kind.
    pub fn on_udp_datagram(&mut self, datagram: &[u8]) {
        self.counters.udp_datagrams_received += 1;
        self.counters.udp_bytes_received += datagram.len() as u64;
        match classify(datagram) {
            PacketKind::Stun => self.counters.udp_dropped_stun += 1,
            PacketKind::Dtls => self.counters.udp_dropped_dtls += 1,
            PacketKind::RtpOrRtcp => self.counters.udp_dropped_rtp += 1,
            PacketKind::Unknown => self.counters.udp_dropped_unknown += 1,
        }
    }

    fn router(&mut self, id: &str) -> Result<&mut Router, String> {
        self.routers
            .get_mut(id)
            .ok_or_else(|| format!("router with id \"{id}\" not found"))
    }

    pub fn stats(&self) -> ShardStats {
        let mut stats = ShardStats {
            shard: self.index,
            routers: self.routers.len(),
            udp_port: self.listen.local.port(),
            udp_datagrams_received: self.counters.udp_datagrams_received,
            udp_bytes_received: self.counters.udp_bytes_received,
            udp_dropped_stun: self.counters.udp_dropped_stun,
            udp_dropped_dtls: self.counters.udp_dropped_dtls,
            udp_dropped_rtp: self.counters.udp_dropped_rtp,
            udp_dropped_unknown: self.counters.udp_dropped_unknown,
            tcp_connections_accepted: self.counters.tcp_connections_accepted,
            tcp_frames_received: self.counters.tcp_frames_received,
            tcp_dropped: self.counters.tcp_dropped,
            ..Default::default()
        };
        for router in self.routers.values() {
            stats.transports += router.transports.len();
            stats.producers += router.producers.len();
            stats.consumers += router.consumers.len();
        }
        stats
    }

    /// Executes one command.
    pub fn handle(&mut self, command: Command) -> CommandResult {
        match command {
            Command::CreateRouter { router_id } => {
                if self.routers.contains_key(&router_id) {
                    return Err(format!("a router with id \"{router_id}\" already exists"));
                }
                self.routers
                    .insert(router_id.clone(), Router::new(router_id));
                Ok(CommandOk::Done)
            }
            Command::CloseRouter { router_id } => self
                .routers
                .remove(&router_id)
                .map(|_| CommandOk::Done)
                .ok_or_else(|| format!("router with id \"{router_id}\" not found")),
            Command::CreateWebRtcTransport {
                router_id,
                transport_id,
                options,
            } => {
                let listen = self.listen.clone();
                let fingerprints = self.fingerprints.clone();
                self.router(&router_id)?.create_webrtc_transport(
                    transport_id,
                    options,
                    &listen,
                    fingerprints,
                )
            }
            Command::ConnectWebRtcTransport {
                router_id,
                transport_id,
                dtls_parameters,
            } => self
                .router(&router_id)?
                .connect_webrtc_transport(&transport_id, dtls_parameters),
            Command::RestartIce {
                router_id,
                transport_id,
            } => self.router(&router_id)?.restart_ice(&transport_id),
            Command::CloseTransport {
                router_id,
                transport_id,
            } => {
                self.router(&router_id)?.close_transport(&transport_id)?;
                Ok(CommandOk::Done)
            }
            Command::Produce(cmd) => {
                let router_id = cmd.router_id.clone();
                self.router(&router_id)?.produce(*cmd)
            }
            Command::CloseProducer {
                router_id,
                producer_id,
            } => {
                self.router(&router_id)?.close_producer(&producer_id)?;
                Ok(CommandOk::Done)
            }
            Command::PauseProducer {
                router_id,
                producer_id,
            } => self
                .router(&router_id)?
                .set_producer_paused(&producer_id, true),
            Command::ResumeProducer {
                router_id,
                producer_id,
            } => self
                .router(&router_id)?
                .set_producer_paused(&producer_id, false),
            Command::Consume(cmd) => {
                let router_id = cmd.router_id.clone();
                self.router(&router_id)?.consume(*cmd)
            }
            Command::CloseConsumer {
                router_id,
                consumer_id,
            } => {
                let router = self.router(&router_id)?;
                router
                    .consumers
                    .remove(&consumer_id)
                    .map(|_| CommandOk::Done)
                    .ok_or_else(|| format!("consumer with id \"{consumer_id}\" not found"))
            }
            Command::PauseConsumer {
                router_id,
                consumer_id,
            } => {
                self.router(&router_id)?.consumer_mut(&consumer_id)?.paused = true;
                Ok(CommandOk::Done)
            }
            Command::ResumeConsumer {
                router_id,
                consumer_id,
            } => {
                let consumer = self.router(&router_id)?.consumer_mut(&consumer_id)?;
                consumer.paused = false;
                // A resumed consumer needs a key frame to start decoding (the packet path sends
                // the PLI/FIR upstream once media flows).
                consumer.key_frame_requests += 1;
                Ok(CommandOk::Done)
            }
            Command::SetConsumerPreferredLayers {
                router_id,
                consumer_id,
                spatial_layer,
                temporal_layer,
            } => {
                self.router(&router_id)?
                    .consumer_mut(&consumer_id)?
                    .set_preferred_layers(spatial_layer, temporal_layer);
                Ok(CommandOk::Done)
            }
            Command::SetConsumerPriority {
                router_id,
                consumer_id,
                priority,
            } => {
                if priority < 1 {
                    return Err("wrong priority (must be higher than 0)".into());
                }
                self.router(&router_id)?
                    .consumer_mut(&consumer_id)?
                    .priority = priority;
                Ok(CommandOk::Done)
            }
            Command::RequestConsumerKeyFrame {
                router_id,
                consumer_id,
            } => {
                self.router(&router_id)?
                    .consumer_mut(&consumer_id)?
                    .key_frame_requests += 1;
                Ok(CommandOk::Done)
            }
            Command::GetTransportStats {
                router_id,
                transport_id,
            } => {
                let now = now_ms();
                let transport = self.router(&router_id)?.transport_mut(&transport_id)?;
                Ok(CommandOk::Stats(serde_json::Value::Array(vec![
                    transport.stats(now)
                ])))
            }
            Command::GetProducerStats {
                router_id,
                producer_id,
            } => {
                let now = now_ms();
                let router = self.router(&router_id)?;
                let producer = router
                    .producers
                    .get(&producer_id)
                    .ok_or_else(|| format!("producer with id \"{producer_id}\" not found"))?;
                Ok(CommandOk::Stats(producer.stats(now)))
            }
            Command::GetConsumerStats {
                router_id,
                consumer_id,
            } => {
                let now = now_ms();
                let consumer = self.router(&router_id)?.consumer_mut(&consumer_id)?;
                Ok(CommandOk::Stats(consumer.stats(now)))
            }
            Command::GetConsumerScore {
                router_id,
                consumer_id,
            } => self.router(&router_id)?.consumer_score(&consumer_id),
            Command::GetShardStats => Ok(CommandOk::ShardStats(self.stats())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_first_byte() {
        assert_eq!(classify(&[0, 1]), PacketKind::Stun);
        assert_eq!(classify(&[22, 254]), PacketKind::Dtls);
        assert_eq!(classify(&[0x80, 96]), PacketKind::RtpOrRtcp);
        assert_eq!(classify(&[64]), PacketKind::Unknown);
        assert_eq!(classify(&[]), PacketKind::Unknown);
    }
}
