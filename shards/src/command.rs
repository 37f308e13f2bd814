//! The messages between the signalling shard and a media shard: commands in (each answered by one
//! response), events out. They cross threads by value over glommio's shared channels, so everything
//! here is plain owned data.

use serde_json::Value;

use crate::rtp_parameters::{MediaKind, ProducerType, RtpMapping, RtpParameters};
use crate::transport::webrtc_transport::{
    DtlsParameters, IceParameters, WebRtcTransportData, WebRtcTransportOptions,
};

/// A command, addressed to a router (a room) on the shard.
#[derive(Debug)]
pub enum Command {
    CreateRouter {
        router_id: String,
    },
    CloseRouter {
        router_id: String,
    },
    CreateWebRtcTransport {
        router_id: String,
        transport_id: String,
        options: WebRtcTransportOptions,
    },
    ConnectWebRtcTransport {
        router_id: String,
        transport_id: String,
        dtls_parameters: DtlsParameters,
    },
    RestartIce {
        router_id: String,
        transport_id: String,
    },
    CloseTransport {
        router_id: String,
        transport_id: String,
    },
    Produce(Box<ProduceCommand>),
    CloseProducer {
        router_id: String,
        producer_id: String,
    },
    PauseProducer {
        router_id: String,
        producer_id: String,
    },
    ResumeProducer {
        router_id: String,
        producer_id: String,
    },
    Consume(Box<ConsumeCommand>),
    CloseConsumer {
        router_id: String,
        consumer_id: String,
    },
    PauseConsumer {
        router_id: String,
        consumer_id: String,
    },
    ResumeConsumer {
        router_id: String,
        consumer_id: String,
    },
    SetConsumerPreferredLayers {
        router_id: String,
        consumer_id: String,
        spatial_layer: u8,
        temporal_layer: Option<u8>,
    },
    SetConsumerPriority {
        router_id: String,
        consumer_id: String,
        priority: u8,
    },
    RequestConsumerKeyFrame {
        router_id: String,
        consumer_id: String,
    },
    GetTransportStats {
        router_id: String,
        transport_id: String,
    },
    GetProducerStats {
        router_id: String,
        producer_id: String,
    },
    GetConsumerStats {
        router_id: String,
        consumer_id: String,
    },
    GetConsumerScore {
        router_id: String,
        consumer_id: String,
    },
    GetShardStats,
}

/// `produce`, with the parameters already validated and mapped by the signalling shard (mediasoup
/// does ORTC on the Node side too, and hands the worker the results).
#[derive(Debug)]
pub struct ProduceCommand {
    pub router_id: String,
    pub transport_id: String,
    pub producer_id: String,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub rtp_mapping: RtpMapping,
    pub producer_type: ProducerType,
    pub paused: bool,
}

/// `consume`, with the consumer's final RtpParameters (MID and CNAME included).
#[derive(Debug)]
pub struct ConsumeCommand {
    pub router_id: String,
    pub transport_id: String,
    pub consumer_id: String,
    pub producer_id: String,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub consumer_type: ProducerType,
    /// The consumable encodings of the producer (mapped SSRCs), one per producer stream.
    pub consumable_rtp_encodings: Vec<crate::rtp_parameters::RtpEncodingParameters>,
    pub paused: bool,
}

/// The successful answer to a command.
#[derive(Debug)]
pub enum CommandOk {
    Done,
    WebRtcTransport(Box<WebRtcTransportData>),
    IceParameters(IceParameters),
    /// A stats array, already in mediasoup's JSON shape.
    Stats(Value),
    ConsumerScore(Value),
    ShardStats(ShardStats),
}

/// A command's failure, worded for a protoo `errorReason`.
pub type CommandResult = Result<CommandOk, String>;

/// What a shard holds and has seen, for `/metrics` and placement checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: usize,
    pub routers: usize,
    pub transports: usize,
    pub producers: usize,
    pub consumers: usize,
    pub udp_port: u16,
    pub udp_datagrams_received: u64,
    pub udp_bytes_received: u64,
    pub udp_recv_wakeups: u64,
    pub udp_datagrams_sent: u64,
    pub udp_flushes: u64,
    pub udp_gso_bursts: u64,
    pub udp_gso_segments: u64,
    pub udp_send_errors: u64,
    pub tcp_connections_accepted: u64,
    pub tcp_frames_received: u64,
    pub tcp_framing_errors: u64,
    /// Packets dropped, by reason (see `shard::DropReason`).
    pub drops: Vec<(&'static str, u64)>,
}

/// Something that happened on the shard that the signalling shard must relay (mediasoup's
/// worker notifications).
#[derive(Debug, Clone)]
pub enum ShardEvent {
    ProducerScore {
        router_id: String,
        producer_id: String,
        score: Value,
    },
    ConsumerScore {
        router_id: String,
        consumer_id: String,
        score: Value,
    },
    /// The room's loudest speaker (`None`: silence), from the audio level observer.
    ActiveSpeaker {
        router_id: String,
        producer_id: Option<String>,
        volume: Option<i32>,
    },
    ConsumerLayersChanged {
        router_id: String,
        consumer_id: String,
        spatial_layer: Option<u8>,
        temporal_layer: Option<u8>,
    },
    TransportIceStateChanged {
        router_id: String,
        transport_id: String,
        ice_state: String,
    },
    TransportDtlsStateChanged {
        router_id: String,
        transport_id: String,
        dtls_state: String,
    },
}

/// A command with the id its response will carry.
#[derive(Debug)]
pub struct ShardRequest {
    pub id: u64,
    pub command: Command,
}

/// What flows back from a shard: responses and events on one ordered channel, so an event about an
/// object never overtakes the response that created it.
#[derive(Debug)]
pub enum ShardMessage {
    Response { id: u64, result: CommandResult },
    Event(ShardEvent),
}
