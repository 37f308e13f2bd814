//! A room as the demo server keeps it: its peers and the ids of their transports, producers and
//! consumers, placed on one media shard. Every protoo method of the demo has its handler here.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{json, Map, Value};
use shards::command::{Command, CommandOk, ConsumeCommand, ProduceCommand};
use shards::rtp_parameters::{
    self as ortc, MediaKind, ProducerType, RtpCapabilities, RtpParameters,
};
use shards::transport::webrtc_transport::{DtlsParameters, WebRtcTransportOptions};

use crate::placement::ShardClient;
use crate::signalling::protoo::ProtooError;
use crate::signalling::session::Session;

/// Demo server transport options (config.example.js).
const INITIAL_AVAILABLE_OUTGOING_BITRATE: u32 = 1_000_000;
const MAX_INCOMING_BITRATE: u32 = 1_500_000;
/// Caps that keep one client from exhausting a shard.
const MAX_TRANSPORTS_PER_PEER: usize = 8;
const MAX_PRODUCERS_PER_PEER: usize = 32;
const MAX_CONSUMER_REPLICAS: u32 = 16;
const MAX_DISPLAY_NAME: usize = 256;

/// A connected peer.
pub struct Peer {
    pub id: String,
    pub session: Rc<Session>,
    pub joined: bool,
    pub display_name: String,
    pub device: Value,
    pub rtp_capabilities: Option<RtpCapabilities>,
}

struct TransportRecord {
    serial: u64,
    consuming: bool,
    /// The CNAME fixed by the first producer on this transport.
    cname: Option<String>,
    next_mid: u32,
}

struct ProducerRecord {
    serial: u64,
    peer_id: String,
    transport_id: String,
    kind: MediaKind,
    producer_type: ProducerType,
    consumable: RtpParameters,
    paused: bool,
    app_data: Value,
}

struct ConsumerRecord {
    serial: u64,
    producer_id: String,
    transport_id: String,
}

#[derive(Default)]
struct RoomState {
    peers: HashMap<String, Peer>,
    transports: HashMap<String, TransportRecord>,
    producers: HashMap<String, ProducerRecord>,
    consumers: HashMap<String, ConsumerRecord>,
}

/// What to do once a successful response has been sent.
pub enum After {
    Nothing,
    Joined,
    Produced(String),
}

/// Who sent a request.
#[derive(Clone)]
pub struct Caller {
    pub peer_id: String,
    pub session: Rc<Session>,
}

impl Caller {
    fn serial(&self) -> u64 {
        self.session.serial
    }
}

/// What every room of the process shares: the router capabilities and the operator's settings.
pub struct RoomSettings {
    pub router_caps: RtpCapabilities,
    pub router_caps_json: Value,
    pub throttle_secret: Option<String>,
    pub ice_consent_timeout: u8,
}

pub struct Room {
    pub id: String,
    pub router_id: String,
    pub shard: Rc<ShardClient>,
    pub consumer_replicas: u32,
    settings: Rc<RoomSettings>,
    state: RefCell<RoomState>,
    closed: Cell<bool>,
}

type Reply = Result<Value, ProtooError>;

fn err(reason: impl Into<String>) -> ProtooError {
    ProtooError::internal(reason)
}

fn str_field<'a>(data: &'a Value, key: &str) -> Result<&'a str, ProtooError> {
    data.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("missing or invalid \"{key}\"")))
}

fn bool_field(data: &Value, key: &str) -> bool {
    data.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn peer_info(peer: &Peer) -> Value {
    json!({"id": peer.id, "displayName": peer.display_name, "device": peer.device})
}

fn random_cname() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 8)
}

impl Room {
    pub fn new(
        id: String,
        shard: Rc<ShardClient>,
        consumer_replicas: u32,
        settings: Rc<RoomSettings>,
    ) -> Rc<Self> {
        let room = Rc::new(Self {
            id,
            router_id: uuid::Uuid::new_v4().to_string(),
            shard,
            consumer_replicas: consumer_replicas.min(MAX_CONSUMER_REPLICAS),
            settings,
            state: RefCell::new(RoomState::default()),
            closed: Cell::new(false),
        });
        room.shard.adjust_load(1, 0, 0);
        let create = room.shard.request(Command::CreateRouter {
            router_id: room.router_id.clone(),
        });
        let room_id = room.id.clone();
        glommio::spawn_local(async move {
            if let Err(e) = create.await {
                log::error!("room {room_id}: cannot create its router: {e}");
            }
        })
        .detach();
        room
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub fn peer_count(&self) -> usize {
        self.state.borrow().peers.len()
    }

    /// Attaches a new connection. A peer with the same id is replaced: its socket closes with
    /// 4000 and its objects go, but the room stays (unlike the demo, which loses the room when
    /// that peer was alone in it).
    pub async fn add_peer(self: &Rc<Self>, peer_id: &str, session: Rc<Session>) {
        let old = self.state.borrow_mut().peers.insert(
            peer_id.to_string(),
            Peer {
                id: peer_id.to_string(),
                session,
                joined: false,
                display_name: String::new(),
                device: json!({}),
                rtp_capabilities: None,
            },
        );
        if let Some(old) = old {
            log::info!(
                "room {}: peer {peer_id} reconnected, closing its old connection",
                self.id
            );
            old.session.close(4000, "closed by protoo-server");
            self.cleanup_peer(peer_id, old.session.serial, old.joined)
                .await;
        }
    }

    /// A connection ended: tell the others, close its transports (and with them its producers
    /// and consumers) on the shard; close the room when it was the last peer.
    pub async fn remove_peer(self: &Rc<Self>, peer_id: &str, serial: u64) -> bool {
        let removed = {
            let mut state = self.state.borrow_mut();
            match state.peers.get(peer_id) {
                Some(p) if p.session.serial == serial => state.peers.remove(peer_id),
                _ => None,
            }
        };
        if let Some(peer) = &removed {
            peer.session.mark_closed();
        }
        self.cleanup_peer(peer_id, serial, removed.is_some_and(|p| p.joined))
            .await;
        let empty = self.state.borrow().peers.is_empty();
        if empty && !self.closed.get() {
            self.close().await;
            return true;
        }
        false
    }

    async fn cleanup_peer(self: &Rc<Self>, peer_id: &str, serial: u64, was_joined: bool) {
        if was_joined {
            self.notify_others(serial, "peerClosed", &json!({"peerId": peer_id}));
        }
        let transports: Vec<String> = self
            .state
            .borrow()
            .transports
            .iter()
            .filter(|(_, t)| t.serial == serial)
            .map(|(id, _)| id.clone())
            .collect();
        for transport_id in transports {
            self.close_transport(&transport_id).await;
        }
    }

    /// Closes a transport on the shard and drops its records; consumers of its producers are
    /// announced as closed to their owners.
    async fn close_transport(self: &Rc<Self>, transport_id: &str) {
        let (producers, own_consumers) = {
            let mut state = self.state.borrow_mut();
            if state.transports.remove(transport_id).is_none() {
                return;
            }
            let producers: Vec<String> = state
                .producers
                .iter()
                .filter(|(_, p)| p.transport_id == transport_id)
                .map(|(id, _)| id.clone())
                .collect();
            let own: Vec<String> = state
                .consumers
                .iter()
                .filter(|(_, c)| c.transport_id == transport_id)
                .map(|(id, _)| id.clone())
                .collect();
            (producers, own)
        };
        self.shard.adjust_load(0, -1, 0);
        let result = self
            .shard
            .request(Command::CloseTransport {
                router_id: self.router_id.clone(),
                transport_id: transport_id.to_string(),
            })
            .await;
        if let Err(e) = result {
            log::warn!("room {}: closing transport {transport_id}: {e}", self.id);
        }
        for producer_id in producers {
            self.forget_producer(&producer_id);
        }
        let mut state = self.state.borrow_mut();
        for id in own_consumers {
            if state.consumers.remove(&id).is_some() {
                self.shard.adjust_load(0, 0, -1);
            }
        }
        drop(state);
    }

    /// Drops a producer's record and its consumers' records, telling each consumer's owner
    /// `consumerClosed` (the producer closed under them).
    fn forget_producer(&self, producer_id: &str) {
        let mut state = self.state.borrow_mut();
        if state.producers.remove(producer_id).is_none() {
            return;
        }
        let closed: Vec<(String, u64)> = state
            .consumers
            .iter()
            .filter(|(_, c)| c.producer_id == producer_id)
            .map(|(id, c)| (id.clone(), c.serial))
            .collect();
        for (consumer_id, serial) in closed {
            state.consumers.remove(&consumer_id);
            self.shard.adjust_load(0, 0, -1);
            if let Some(peer) = state.peers.values().find(|p| p.session.serial == serial) {
                peer.session
                    .notify("consumerClosed", &json!({"consumerId": consumer_id}));
            }
        }
    }

    /// Closes the room and its router.
    pub async fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let (transports, consumers) = {
            let mut state = self.state.borrow_mut();
            let counts = (state.transports.len() as i64, state.consumers.len() as i64);
            *state = RoomState::default();
            counts
        };
        self.shard.adjust_load(-1, -transports, -consumers);
        let result = self
            .shard
            .request(Command::CloseRouter {
                router_id: self.router_id.clone(),
            })
            .await;
        if let Err(e) = result {
            log::warn!("room {}: closing router: {e}", self.id);
        }
        log::info!("room {} closed", self.id);
    }

    fn notify_others(&self, except_serial: u64, method: &str, data: &Value) {
        for peer in self.state.borrow().peers.values() {
            if peer.joined && peer.session.serial != except_serial {
                peer.session.notify(method, data);
            }
        }
    }

    fn require_joined(&self, caller: &Caller) -> Result<(), ProtooError> {
        let state = self.state.borrow();
        match state.peers.get(&caller.peer_id) {
            Some(p) if p.session.serial == caller.serial() && p.joined => Ok(()),
            _ => Err(err("Peer not yet joined")),
        }
    }

    fn own_transport(&self, caller: &Caller, transport_id: &str) -> Result<(), ProtooError> {
        match self.state.borrow().transports.get(transport_id) {
            Some(t) if t.serial == caller.serial() => Ok(()),
            _ => Err(err(format!(
                "transport with id \"{transport_id}\" not found"
            ))),
        }
    }

    fn own_producer(&self, caller: &Caller, producer_id: &str) -> Result<(), ProtooError> {
        match self.state.borrow().producers.get(producer_id) {
            Some(p) if p.serial == caller.serial() => Ok(()),
            _ => Err(err(format!("producer with id \"{producer_id}\" not found"))),
        }
    }

    fn own_consumer(&self, caller: &Caller, consumer_id: &str) -> Result<(), ProtooError> {
        match self.state.borrow().consumers.get(consumer_id) {
            Some(c) if c.serial == caller.serial() => Ok(()),
            _ => Err(err(format!("consumer with id \"{consumer_id}\" not found"))),
        }
    }

    async fn shard_request(&self, command: Command) -> Result<CommandOk, ProtooError> {
        self.shard.request(command).await.map_err(err)
    }

    /// Handles one protoo request of `caller`.
    pub async fn handle_request(
        self: &Rc<Self>,
        caller: &Caller,
        method: &str,
        data: Value,
    ) -> (Reply, After) {
        if self.closed.get() {
            return (Err(err("room closed")), After::Nothing);
        }
        let mut after = After::Nothing;
        let reply = match method {
            "getRouterRtpCapabilities" => Ok(self.settings.router_caps_json.clone()),
            "join" => {
                let reply = self.join(caller, &data);
                if reply.is_ok() {
                    after = After::Joined;
                }
                reply
            }
            "createWebRtcTransport" => self.create_webrtc_transport(caller, &data).await,
            "connectWebRtcTransport" => self.connect_webrtc_transport(caller, &data).await,
            "restartIce" => self.restart_ice(caller, &data).await,
            "produce" => match self.produce(caller, &data).await {
                Ok(id) => {
                    after = After::Produced(id.clone());
                    Ok(json!({"id": id}))
                }
                Err(e) => Err(e),
            },
            "closeProducer" => self.close_producer(caller, &data).await,
            "pauseProducer" => self.set_producer_paused(caller, &data, true).await,
            "resumeProducer" => self.set_producer_paused(caller, &data, false).await,
            "pauseConsumer" | "resumeConsumer" | "requestConsumerKeyFrame" => {
                self.consumer_command(caller, method, &data).await
            }
            "setConsumerPreferredLayers" => self.set_consumer_preferred_layers(caller, &data).await,
            "setConsumerPriority" => self.set_consumer_priority(caller, &data).await,
            "changeDisplayName" => self.change_display_name(caller, &data),
            "getTransportStats" => self.get_transport_stats(caller, &data).await,
            "getProducerStats" => self.get_producer_stats(caller, &data).await,
            "getConsumerStats" => self.get_consumer_stats(caller, &data).await,
            "getDataProducerStats" => Err(err(format!(
                "dataProducer with id \"{}\" not found",
                data.get("dataProducerId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ))),
            "getDataConsumerStats" => Err(err(format!(
                "dataConsumer with id \"{}\" not found",
                data.get("dataConsumerId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ))),
            "produceData" => self.require_joined(caller).and_then(|_| {
                Err(err(
                    "produceData is not supported yet: DataChannels (SCTP) arrive in a later \
                     Shardcast release",
                ))
            }),
            "applyNetworkThrottle" | "resetNetworkThrottle" => self.network_throttle(method, &data),
            other => Err(err(format!("unknown request.method \"{other}\""))),
        };
        (reply, after)
    }

    fn join(&self, caller: &Caller, data: &Value) -> Reply {
        let rtp_capabilities = match data.get("rtpCapabilities") {
            None | Some(Value::Null) => None,
            Some(v) => Some(ortc::parse_rtp_capabilities(v).map_err(|e| err(e.to_string()))?),
        };
        let display_name: String = data
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(MAX_DISPLAY_NAME)
            .collect();
        let device = match data.get("device") {
            Some(Value::Object(o)) => Value::Object(o.clone()),
            _ => json!({}),
        };
        let mut state = self.state.borrow_mut();
        let others: Vec<Value> = state
            .peers
            .values()
            .filter(|p| p.joined && p.session.serial != caller.serial())
            .map(peer_info)
            .collect();
        let peer = state
            .peers
            .get_mut(&caller.peer_id)
            .filter(|p| p.session.serial == caller.serial())
            .ok_or_else(|| err("peer closed"))?;
        if peer.joined {
            return Err(err("Peer already joined"));
        }
        peer.joined = true;
        peer.display_name = display_name;
        peer.device = device;
        peer.rtp_capabilities = rtp_capabilities;
        Ok(json!({"peers": others}))
    }

    /// After `join` was answered: consumers for every existing producer, then `newPeer`.
    pub fn after_join(self: &Rc<Self>, caller: &Caller) {
        let (producers, info) = {
            let state = self.state.borrow();
            let producers: Vec<String> = state
                .producers
                .iter()
                .filter(|(_, p)| p.serial != caller.serial())
                .filter(|(_, p)| {
                    state
                        .peers
                        .get(&p.peer_id)
                        .is_some_and(|peer| peer.joined && peer.session.serial == p.serial)
                })
                .map(|(id, _)| id.clone())
                .collect();
            let info = state.peers.get(&caller.peer_id).map(peer_info);
            (producers, info)
        };
        for producer_id in producers {
            self.spawn_create_consumer(caller.clone(), producer_id);
        }
        if let Some(info) = info {
            self.notify_others(caller.serial(), "newPeer", &info);
        }
    }

    /// After `produce` was answered: a consumer on every other joined peer.
    pub fn after_produce(self: &Rc<Self>, caller: &Caller, producer_id: &str) {
        let consumers: Vec<Caller> = self
            .state
            .borrow()
            .peers
            .values()
            .filter(|p| p.joined && p.session.serial != caller.serial())
            .map(|p| Caller {
                peer_id: p.id.clone(),
                session: p.session.clone(),
            })
            .collect();
        for consumer in consumers {
            self.spawn_create_consumer(consumer, producer_id.to_string());
        }
    }

    fn spawn_create_consumer(self: &Rc<Self>, consumer_peer: Caller, producer_id: String) {
        let room = self.clone();
        glommio::spawn_local(async move {
            for _ in 0..=room.consumer_replicas {
                if let Err(e) = room.create_consumer(&consumer_peer, &producer_id).await {
                    log::warn!(
                        "room {}: consumer of {producer_id} for {}: {}",
                        room.id,
                        consumer_peer.peer_id,
                        e.reason
                    );
                    return;
                }
            }
        })
        .detach();
    }

    /// The demo's `_createConsumer`: created paused, announced with a `newConsumer` request,
    /// resumed once the client has answered, then its score notified.
    async fn create_consumer(
        self: &Rc<Self>,
        peer: &Caller,
        producer_id: &str,
    ) -> Result<(), ProtooError> {
        let serial = peer.serial();
        let (command, announcement) = {
            let mut state = self.state.borrow_mut();
            let caps = match state.peers.get(&peer.peer_id) {
                Some(p) if p.session.serial == serial && p.joined => match &p.rtp_capabilities {
                    Some(caps) => caps.clone(),
                    None => return Ok(()),
                },
                _ => return Ok(()),
            };
            let Some(producer) = state.producers.get(producer_id) else {
                return Ok(());
            };
            if !ortc::can_consume(&producer.consumable, &caps).unwrap_or(false) {
                return Ok(());
            }
            let mut rtp_parameters =
                ortc::get_consumer_rtp_parameters(&producer.consumable, &caps, false, true)
                    .map_err(|e| err(e.to_string()))?;
            let kind = producer.kind;
            let consumer_type = producer.producer_type;
            let producer_paused = producer.paused;
            let producer_peer_id = producer.peer_id.clone();
            let app_data = producer.app_data.clone();
            let consumable_rtp_encodings = producer.consumable.encodings.clone();
            let Some((transport_id, transport)) = state
                .transports
                .iter_mut()
                .find(|(_, t)| t.serial == serial && t.consuming)
            else {
                return Ok(());
            };
            let mid = transport.next_mid;
            transport.next_mid = (transport.next_mid + 1) % 100_000_000;
            rtp_parameters.mid = Some(mid.to_string());
            let consumer_id = uuid::Uuid::new_v4().to_string();
            let transport_id = transport_id.clone();
            state.consumers.insert(
                consumer_id.clone(),
                ConsumerRecord {
                    serial,
                    producer_id: producer_id.to_string(),
                    transport_id: transport_id.clone(),
                },
            );
            self.shard.adjust_load(0, 0, 1);
            let announcement = json!({
                "peerId": producer_peer_id,
                "producerId": producer_id,
                "id": consumer_id,
                "kind": kind,
                "rtpParameters": rtp_parameters,
                "type": consumer_type,
                "appData": app_data,
                "producerPaused": producer_paused,
            });
            let command = Command::Consume(Box::new(ConsumeCommand {
                router_id: self.router_id.clone(),
                transport_id,
                consumer_id,
                producer_id: producer_id.to_string(),
                kind,
                rtp_parameters,
                consumer_type,
                consumable_rtp_encodings,
                paused: true,
            }));
            (command, announcement)
        };
        let consumer_id = announcement["id"].as_str().unwrap_or_default().to_string();
        if let Err(e) = self.shard_request(command).await {
            let mut state = self.state.borrow_mut();
            if state.consumers.remove(&consumer_id).is_some() {
                self.shard.adjust_load(0, 0, -1);
            }
            return Err(e);
        }
        peer.session.request("newConsumer", &announcement).await?;
        if !self.state.borrow().consumers.contains_key(&consumer_id) {
            return Ok(());
        }
        self.shard_request(Command::ResumeConsumer {
            router_id: self.router_id.clone(),
            consumer_id: consumer_id.clone(),
        })
        .await?;
        if let CommandOk::ConsumerScore(score) = self
            .shard_request(Command::GetConsumerScore {
                router_id: self.router_id.clone(),
                consumer_id: consumer_id.clone(),
            })
            .await?
        {
            peer.session.notify(
                "consumerScore",
                &json!({"consumerId": consumer_id, "score": score}),
            );
        }
        Ok(())
    }

    async fn create_webrtc_transport(&self, caller: &Caller, data: &Value) -> Reply {
        let count = self
            .state
            .borrow()
            .transports
            .values()
            .filter(|t| t.serial == caller.serial())
            .count();
        if count >= MAX_TRANSPORTS_PER_PEER {
            return Err(err(format!(
                "too many transports (at most {MAX_TRANSPORTS_PER_PEER} per peer)"
            )));
        }
        let transport_id = uuid::Uuid::new_v4().to_string();
        let options = WebRtcTransportOptions {
            force_tcp: bool_field(data, "forceTcp"),
            ice_consent_timeout: self.settings.ice_consent_timeout,
            initial_available_outgoing_bitrate: INITIAL_AVAILABLE_OUTGOING_BITRATE,
            max_incoming_bitrate: Some(MAX_INCOMING_BITRATE),
        };
        // Recorded before the shard answers so that a concurrent close finds it.
        self.state.borrow_mut().transports.insert(
            transport_id.clone(),
            TransportRecord {
                serial: caller.serial(),
                consuming: bool_field(data, "consuming"),
                cname: None,
                next_mid: 0,
            },
        );
        self.shard.adjust_load(0, 1, 0);
        let result = self
            .shard_request(Command::CreateWebRtcTransport {
                router_id: self.router_id.clone(),
                transport_id: transport_id.clone(),
                options,
            })
            .await;
        match result {
            Ok(CommandOk::WebRtcTransport(data)) => {
                serde_json::to_value(&*data).map_err(|e| err(e.to_string()))
            }
            other => {
                if self
                    .state
                    .borrow_mut()
                    .transports
                    .remove(&transport_id)
                    .is_some()
                {
                    self.shard.adjust_load(0, -1, 0);
                }
                Err(match other {
                    Err(e) => e,
                    Ok(_) => err("unexpected shard answer"),
                })
            }
        }
    }

    async fn connect_webrtc_transport(&self, caller: &Caller, data: &Value) -> Reply {
        let transport_id = str_field(data, "transportId")?;
        self.own_transport(caller, transport_id)?;
        let dtls_parameters: DtlsParameters = data
            .get("dtlsParameters")
            .cloned()
            .ok_or_else(|| err("missing \"dtlsParameters\""))
            .and_then(|v| {
                serde_json::from_value(v).map_err(|e| err(format!("invalid dtlsParameters: {e}")))
            })?;
        self.shard_request(Command::ConnectWebRtcTransport {
            router_id: self.router_id.clone(),
            transport_id: transport_id.to_string(),
            dtls_parameters,
        })
        .await?;
        Ok(json!({}))
    }

    async fn restart_ice(&self, caller: &Caller, data: &Value) -> Reply {
        let transport_id = str_field(data, "transportId")?;
        self.own_transport(caller, transport_id)?;
        match self
            .shard_request(Command::RestartIce {
                router_id: self.router_id.clone(),
                transport_id: transport_id.to_string(),
            })
            .await?
        {
            CommandOk::IceParameters(p) => serde_json::to_value(p).map_err(|e| err(e.to_string())),
            _ => Err(err("unexpected shard answer")),
        }
    }

    async fn produce(&self, caller: &Caller, data: &Value) -> Result<String, ProtooError> {
        self.require_joined(caller)?;
        let transport_id = str_field(data, "transportId")?;
        self.own_transport(caller, transport_id)?;
        let kind = match data.get("kind").and_then(Value::as_str) {
            Some("audio") => MediaKind::Audio,
            Some("video") => MediaKind::Video,
            _ => return Err(err("invalid kind (must be audio or video)")),
        };
        let mut rtp_parameters = ortc::parse_rtp_parameters(
            data.get("rtpParameters")
                .ok_or_else(|| err("missing \"rtpParameters\""))?,
        )
        .map_err(|e| err(e.to_string()))?;
        let prefix = match kind {
            MediaKind::Audio => "audio/",
            MediaKind::Video => "video/",
        };
        if let Some(codec) = rtp_parameters
            .codecs
            .iter()
            .find(|c| !c.mime_type.to_ascii_lowercase().starts_with(prefix))
        {
            return Err(err(format!(
                "invalid rtpParameters: codec {} does not match kind",
                codec.mime_type
            )));
        }
        let app_data = match data.get("appData") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(_) => return Err(err("appData must be an object")),
        };
        let rtp_mapping =
            ortc::get_producer_rtp_parameters_mapping(&rtp_parameters, &self.settings.router_caps)
                .map_err(|e| err(e.to_string()))?;
        {
            let mut state = self.state.borrow_mut();
            let producers = state
                .producers
                .values()
                .filter(|p| p.serial == caller.serial())
                .count();
            if producers >= MAX_PRODUCERS_PER_PEER {
                return Err(err(format!(
                    "too many producers (at most {MAX_PRODUCERS_PER_PEER} per peer)"
                )));
            }
            let transport = state
                .transports
                .get_mut(transport_id)
                .ok_or_else(|| err(format!("transport with id \"{transport_id}\" not found")))?;
            let cname = transport
                .cname
                .get_or_insert_with(|| {
                    rtp_parameters
                        .rtcp
                        .cname
                        .clone()
                        .filter(|c| !c.is_empty())
                        .unwrap_or_else(random_cname)
                })
                .clone();
            rtp_parameters.rtcp.cname = Some(cname);
        }
        let consumable = ortc::get_consumable_rtp_parameters(
            kind,
            &rtp_parameters,
            &self.settings.router_caps,
            &rtp_mapping,
        );
        let producer_type = ortc::producer_type(&rtp_parameters);
        let producer_id = uuid::Uuid::new_v4().to_string();
        self.shard_request(Command::Produce(Box::new(ProduceCommand {
            router_id: self.router_id.clone(),
            transport_id: transport_id.to_string(),
            producer_id: producer_id.clone(),
            kind,
            rtp_parameters,
            rtp_mapping,
            producer_type,
            paused: false,
        })))
        .await?;
        let mut app_data = app_data;
        app_data.insert("peerId".into(), json!(caller.peer_id));
        let mut state = self.state.borrow_mut();
        if !state.transports.contains_key(transport_id) {
            // The transport closed while the shard was creating the producer.
            return Err(err(format!(
                "transport with id \"{transport_id}\" not found"
            )));
        }
        state.producers.insert(
            producer_id.clone(),
            ProducerRecord {
                serial: caller.serial(),
                peer_id: caller.peer_id.clone(),
                transport_id: transport_id.to_string(),
                kind,
                producer_type,
                consumable,
                paused: false,
                app_data: Value::Object(app_data),
            },
        );
        Ok(producer_id)
    }

    async fn close_producer(&self, caller: &Caller, data: &Value) -> Reply {
        self.require_joined(caller)?;
        let producer_id = str_field(data, "producerId")?;
        self.own_producer(caller, producer_id)?;
        self.shard_request(Command::CloseProducer {
            router_id: self.router_id.clone(),
            producer_id: producer_id.to_string(),
        })
        .await?;
        self.forget_producer(producer_id);
        Ok(json!({}))
    }

    async fn set_producer_paused(&self, caller: &Caller, data: &Value, paused: bool) -> Reply {
        self.require_joined(caller)?;
        let producer_id = str_field(data, "producerId")?;
        self.own_producer(caller, producer_id)?;
        let command = if paused {
            Command::PauseProducer {
                router_id: self.router_id.clone(),
                producer_id: producer_id.to_string(),
            }
        } else {
            Command::ResumeProducer {
                router_id: self.router_id.clone(),
                producer_id: producer_id.to_string(),
            }
        };
        self.shard_request(command).await?;
        let mut state = self.state.borrow_mut();
        let changed = match state.producers.get_mut(producer_id) {
            Some(p) if p.paused != paused => {
                p.paused = paused;
                true
            }
            _ => false,
        };
        if changed {
            let method = if paused {
                "consumerPaused"
            } else {
                "consumerResumed"
            };
            for (consumer_id, consumer) in state
                .consumers
                .iter()
                .filter(|(_, c)| c.producer_id == producer_id)
            {
                if let Some(peer) = state
                    .peers
                    .values()
                    .find(|p| p.session.serial == consumer.serial)
                {
                    peer.session
                        .notify(method, &json!({"consumerId": consumer_id}));
                }
            }
        }
        Ok(json!({}))
    }

    async fn consumer_command(&self, caller: &Caller, method: &str, data: &Value) -> Reply {
        self.require_joined(caller)?;
        let consumer_id = str_field(data, "consumerId")?.to_string();
        self.own_consumer(caller, &consumer_id)?;
        let router_id = self.router_id.clone();
        let command = match method {
            "pauseConsumer" => Command::PauseConsumer {
                router_id,
                consumer_id,
            },
            "resumeConsumer" => Command::ResumeConsumer {
                router_id,
                consumer_id,
            },
            _ => Command::RequestConsumerKeyFrame {
                router_id,
                consumer_id,
            },
        };
        self.shard_request(command).await?;
        Ok(json!({}))
    }

    async fn set_consumer_preferred_layers(&self, caller: &Caller, data: &Value) -> Reply {
        self.require_joined(caller)?;
        let consumer_id = str_field(data, "consumerId")?;
        self.own_consumer(caller, consumer_id)?;
        let spatial_layer = data
            .get("spatialLayer")
            .and_then(Value::as_u64)
            .ok_or_else(|| err("missing or invalid \"spatialLayer\""))?;
        let temporal_layer = match data.get("temporalLayer") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| err("invalid \"temporalLayer\""))?),
        };
        self.shard_request(Command::SetConsumerPreferredLayers {
            router_id: self.router_id.clone(),
            consumer_id: consumer_id.to_string(),
            spatial_layer: spatial_layer.min(u8::MAX as u64) as u8,
            temporal_layer: temporal_layer.map(|t| t.min(u8::MAX as u64) as u8),
        })
        .await?;
        Ok(json!({}))
    }

    async fn set_consumer_priority(&self, caller: &Caller, data: &Value) -> Reply {
        self.require_joined(caller)?;
        let consumer_id = str_field(data, "consumerId")?;
        self.own_consumer(caller, consumer_id)?;
        let priority = data
            .get("priority")
            .and_then(Value::as_f64)
            .ok_or_else(|| err("missing or invalid \"priority\""))?;
        if priority < 1.0 {
            return Err(err("wrong priority (must be higher than 0)"));
        }
        self.shard_request(Command::SetConsumerPriority {
            router_id: self.router_id.clone(),
            consumer_id: consumer_id.to_string(),
            priority: priority.min(255.0) as u8,
        })
        .await?;
        Ok(json!({}))
    }

    fn change_display_name(&self, caller: &Caller, data: &Value) -> Reply {
        self.require_joined(caller)?;
        let display_name: String = str_field(data, "displayName")?
            .chars()
            .take(MAX_DISPLAY_NAME)
            .collect();
        let old = {
            let mut state = self.state.borrow_mut();
            let peer = state
                .peers
                .get_mut(&caller.peer_id)
                .ok_or_else(|| err("peer closed"))?;
            std::mem::replace(&mut peer.display_name, display_name.clone())
        };
        self.notify_others(
            caller.serial(),
            "peerDisplayNameChanged",
            &json!({"peerId": caller.peer_id, "displayName": display_name, "oldDisplayName": old}),
        );
        Ok(json!({}))
    }

    async fn stats(&self, command: Command) -> Reply {
        match self.shard_request(command).await? {
            CommandOk::Stats(v) => Ok(v),
            _ => Err(err("unexpected shard answer")),
        }
    }

    async fn get_transport_stats(&self, caller: &Caller, data: &Value) -> Reply {
        let transport_id = str_field(data, "transportId")?;
        self.own_transport(caller, transport_id)?;
        self.stats(Command::GetTransportStats {
            router_id: self.router_id.clone(),
            transport_id: transport_id.to_string(),
        })
        .await
    }

    async fn get_producer_stats(&self, caller: &Caller, data: &Value) -> Reply {
        let producer_id = str_field(data, "producerId")?;
        self.own_producer(caller, producer_id)?;
        self.stats(Command::GetProducerStats {
            router_id: self.router_id.clone(),
            producer_id: producer_id.to_string(),
        })
        .await
    }

    async fn get_consumer_stats(&self, caller: &Caller, data: &Value) -> Reply {
        let consumer_id = str_field(data, "consumerId")?;
        self.own_consumer(caller, consumer_id)?;
        self.stats(Command::GetConsumerStats {
            router_id: self.router_id.clone(),
            consumer_id: consumer_id.to_string(),
        })
        .await
    }

    fn network_throttle(&self, method: &str, data: &Value) -> Reply {
        let secret = data.get("secret").and_then(Value::as_str);
        match (&self.settings.throttle_secret, secret) {
            (Some(expected), Some(given)) if expected == given => Err(err(format!(
                "{method} is not supported yet: per-peer network throttling arrives in a later \
                 Shardcast release"
            ))),
            _ => Err(ProtooError::forbidden(
                "operation NOT allowed, modda fuckaa",
            )),
        }
    }

    /// Routes a shard event about one of this room's objects to the peer that must hear of it.
    pub fn on_shard_event(&self, event: &shards::command::ShardEvent) {
        use shards::command::ShardEvent as E;
        let state = self.state.borrow();
        let owner_of = |serial: u64| state.peers.values().find(|p| p.session.serial == serial);
        match event {
            E::ProducerScore {
                producer_id, score, ..
            } => {
                if let Some(peer) = state
                    .producers
                    .get(producer_id)
                    .and_then(|p| owner_of(p.serial))
                {
                    peer.session.notify(
                        "producerScore",
                        &json!({"producerId": producer_id, "score": score}),
                    );
                }
            }
            E::ConsumerScore {
                consumer_id, score, ..
            } => {
                if let Some(peer) = state
                    .consumers
                    .get(consumer_id)
                    .and_then(|c| owner_of(c.serial))
                {
                    peer.session.notify(
                        "consumerScore",
                        &json!({"consumerId": consumer_id, "score": score}),
                    );
                }
            }
            E::ConsumerLayersChanged {
                consumer_id,
                spatial_layer,
                temporal_layer,
                ..
            } => {
                if let Some(peer) = state
                    .consumers
                    .get(consumer_id)
                    .and_then(|c| owner_of(c.serial))
                {
                    peer.session.notify(
                        "consumerLayersChanged",
                        &json!({
                            "consumerId": consumer_id,
                            "spatialLayer": spatial_layer,
                            "temporalLayer": temporal_layer,
                        }),
                    );
                }
            }
            E::ActiveSpeaker {
                producer_id,
                volume,
                ..
            } => {
                // {peerId, volume} for the loudest producer, {peerId: null} for silence; a
                // producer without a peerId in its appData (a broadcaster) sends no peerId.
                let data = match (producer_id, volume) {
                    (Some(id), Some(volume)) => {
                        let Some(producer) = state.producers.get(id) else {
                            return;
                        };
                        let mut data = json!({"volume": volume});
                        if let Some(peer_id) = producer.app_data.get("peerId") {
                            data["peerId"] = peer_id.clone();
                        }
                        data
                    }
                    _ => json!({"peerId": null}),
                };
                for peer in state.peers.values().filter(|p| p.joined) {
                    peer.session.notify("activeSpeaker", &data);
                }
            }
            E::TransportIceStateChanged {
                transport_id,
                ice_state,
                ..
            } => {
                // The demo closes the whole peer when its transport's ICE is gone.
                if ice_state == "disconnected" || ice_state == "closed" {
                    if let Some(peer) = state
                        .transports
                        .get(transport_id)
                        .and_then(|t| owner_of(t.serial))
                    {
                        log::info!(
                            "room {}: closing peer {}: transport {transport_id} iceState {ice_state}",
                            self.id,
                            peer.id
                        );
                        peer.session.close(4000, "closed by protoo-server");
                    }
                }
            }
            E::TransportDtlsStateChanged {
                transport_id,
                dtls_state,
                ..
            } => {
                if dtls_state == "failed" || dtls_state == "closed" {
                    if let Some(peer) = state
                        .transports
                        .get(transport_id)
                        .and_then(|t| owner_of(t.serial))
                    {
                        log::info!(
                            "room {}: closing peer {}: transport {transport_id} dtlsState {dtls_state}",
                            self.id,
                            peer.id
                        );
                        peer.session.close(4000, "closed by protoo-server");
                    }
                }
            }
        }
    }
}
