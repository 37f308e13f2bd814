//! The signalling shard's state: rooms by id, the media shards, counters.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write;
use std::rc::Rc;

use shards::command::{Command, CommandOk, ShardEvent};
use shards::rtp_parameters as ortc;

use crate::config::Config;
use crate::placement::ShardPool;
use crate::room::{Room, RoomSettings};
use crate::signalling::session::Session;

/// Counters of the signalling shard, exported on /metrics.
#[derive(Default)]
pub struct Counters {
    pub connections: Cell<u64>,
    pub invalid_messages: Cell<u64>,
    pub requests: Cell<u64>,
    pub error_responses: Cell<u64>,
    pub refused_upgrades: Cell<u64>,
}

impl Counters {
    pub fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
}

pub struct App {
    pub config: Config,
    pub pool: ShardPool,
    pub settings: Rc<RoomSettings>,
    rooms: RefCell<HashMap<String, Rc<Room>>>,
    next_serial: Cell<u64>,
    pub counters: Counters,
}

impl App {
    pub fn new(config: Config, pool: ShardPool) -> Result<Self, String> {
        let caps = ortc::generate_router_rtp_capabilities(&ortc::demo_media_codecs())
            .map_err(|e| format!("router capabilities: {e}"))?;
        let caps_json = serde_json::to_value(&caps).map_err(|e| e.to_string())?;
        let settings = Rc::new(RoomSettings {
            router_caps: caps,
            router_caps_json: caps_json,
            throttle_secret: config.throttle_secret.clone(),
            ice_consent_timeout: config.ice_consent_timeout,
        });
        Ok(Self {
            config,
            pool,
            settings,
            rooms: RefCell::new(HashMap::new()),
            next_serial: Cell::new(1),
            counters: Counters::default(),
        })
    }

    pub fn next_serial(&self) -> u64 {
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        serial
    }

    /// The room, created and placed on the least-loaded shard if new. `consumerReplicas` comes
    /// from the connection that creates the room (junk such as "undefined" means 0).
    pub fn get_or_create_room(&self, room_id: &str, consumer_replicas: &str) -> Option<Rc<Room>> {
        if let Some(room) = self.rooms.borrow().get(room_id) {
            if !room.is_closed() {
                return Some(room.clone());
            }
        }
        let shard = self.pool.least_loaded()?;
        let replicas = consumer_replicas.trim().parse::<f64>().ok();
        let replicas = replicas
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| r as u32)
            .unwrap_or(0);
        log::info!("room {room_id}: created on media shard {}", shard.index);
        let room = Room::new(room_id.to_string(), shard, replicas, self.settings.clone());
        self.rooms
            .borrow_mut()
            .insert(room_id.to_string(), room.clone());
        Some(room)
    }

    /// A connection ended: the room forgets the peer and may close.
    pub async fn peer_disconnected(&self, room: &Rc<Room>, peer_id: &str, session: &Session) {
        let closed = room.remove_peer(peer_id, session.serial).await;
        if closed {
            let mut rooms = self.rooms.borrow_mut();
            if rooms.get(&room.id).is_some_and(|r| Rc::ptr_eq(r, room)) {
                rooms.remove(&room.id);
            }
        }
    }

    pub fn on_shard_event(&self, event: ShardEvent) {
        let router_id = match &event {
            ShardEvent::ProducerScore { router_id, .. }
            | ShardEvent::ConsumerScore { router_id, .. }
            | ShardEvent::ConsumerLayersChanged { router_id, .. }
            | ShardEvent::ActiveSpeaker { router_id, .. }
            | ShardEvent::TransportIceStateChanged { router_id, .. }
            | ShardEvent::TransportDtlsStateChanged { router_id, .. } => router_id,
        };
        let room = self
            .rooms
            .borrow()
            .values()
            .find(|r| &r.router_id == router_id)
            .cloned();
        if let Some(room) = room {
            room.on_shard_event(&event);
        }
    }

    /// Prometheus text: per-shard gauges (asked of each shard) and signalling counters.
    pub async fn metrics(&self) -> String {
        let mut out = String::new();
        let rooms = self.rooms.borrow().len();
        let _ = writeln!(out, "# TYPE shardcast_rooms gauge\nshardcast_rooms {rooms}");
        let c = &self.counters;
        for (name, value) in [
            ("shardcast_connections_total", c.connections.get()),
            (
                "shardcast_protoo_invalid_messages_total",
                c.invalid_messages.get(),
            ),
            ("shardcast_protoo_requests_total", c.requests.get()),
            (
                "shardcast_protoo_error_responses_total",
                c.error_responses.get(),
            ),
            ("shardcast_refused_upgrades_total", c.refused_upgrades.get()),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {value}");
        }
        for shard in &self.pool.shards {
            let i = shard.index;
            let load = shard.load();
            let _ = writeln!(
                out,
                "shardcast_shard_load{{shard=\"{i}\"}} {}",
                load.weight()
            );
            let _ = writeln!(
                out,
                "shardcast_shard_placed_rooms{{shard=\"{i}\"}} {}",
                load.rooms
            );
            match shard.request(Command::GetShardStats).await {
                Ok(CommandOk::ShardStats(s)) => {
                    for (name, value) in [
                        ("routers", s.routers as u64),
                        ("transports", s.transports as u64),
                        ("producers", s.producers as u64),
                        ("consumers", s.consumers as u64),
                        ("udp_port", s.udp_port as u64),
                        ("udp_datagrams_received_total", s.udp_datagrams_received),
                        ("udp_bytes_received_total", s.udp_bytes_received),
                        ("udp_recv_wakeups_total", s.udp_recv_wakeups),
                        ("udp_datagrams_sent_total", s.udp_datagrams_sent),
                        ("udp_flushes_total", s.udp_flushes),
                        ("udp_gso_bursts_total", s.udp_gso_bursts),
                        ("udp_gso_segments_total", s.udp_gso_segments),
                        ("udp_send_errors_total", s.udp_send_errors),
                        ("tcp_connections_accepted_total", s.tcp_connections_accepted),
                        ("tcp_frames_received_total", s.tcp_frames_received),
                        ("tcp_framing_errors_total", s.tcp_framing_errors),
                    ] {
                        let _ = writeln!(out, "shardcast_shard_{name}{{shard=\"{i}\"}} {value}");
                    }
                    for (reason, value) in &s.drops {
                        let _ = writeln!(
                            out,
                            "shardcast_shard_packets_dropped_total{{shard=\"{i}\",reason=\"{reason}\"}} {value}"
                        );
                    }
                }
                _ => {
                    let _ = writeln!(out, "shardcast_shard_up{{shard=\"{i}\"}} 0");
                }
            }
        }
        out
    }
}
