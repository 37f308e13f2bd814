//! A Router: one room's transports, producers and consumers, all owned by one shard. Producers own
//! their consumers, so a packet's fan-out is a walk over one list.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::command::{CommandOk, CommandResult, ConsumeCommand, ProduceCommand, ShardEvent};
use crate::consumer::{Consumer, ConsumerEvent};
use crate::egress::{Egress, TransportKey};
use crate::producer::Producer;
use crate::rtcp::{build as rtcp_build, FirEntry};
use crate::rtp::packet::RtpPacket;
use crate::rtp::rtp_stream::KeyFrameRequest;

/// At most one key frame request per producer stream in this interval (mediasoup's
/// KeyFrameRequestManager delays repeated requests the same way).
const KEY_FRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

#[derive(Debug, Default)]
pub struct Router {
    pub id: String,
    /// Ids of this router's transports (the transports themselves live in the shard, which
    /// routes packets to them).
    pub transports: HashSet<String>,
    pub producers: HashMap<String, Producer>,
    /// consumer id → its producer's id.
    consumer_index: HashMap<String, String>,
    pub key_frame_requests_sent: u64,
    audio_level_observer: crate::audio_level_observer::AudioLevelObserver,
}

fn not_found(what: &str, id: &str) -> String {
    format!("{what} with id \"{id}\" not found")
}

impl Router {
    pub fn new(id: String) -> Self {
        Self {
            id,
            ..Default::default()
        }
    }

    pub fn consumer_count(&self) -> usize {
        self.consumer_index.len()
    }

    /// Closes a transport with everything on it: its producers (and their consumers on every
    /// transport) and its own consumers.
    pub fn close_transport(&mut self, transport_id: &str) -> Result<(), String> {
        if !self.transports.remove(transport_id) {
            return Err(not_found("transport", transport_id));
        }
        let producers: Vec<String> = self
            .producers
            .values()
            .filter(|p| p.transport_id == transport_id)
            .map(|p| p.id.clone())
            .collect();
        for id in producers {
            self.close_producer(&id)?;
        }
        for producer in self.producers.values_mut() {
            producer
                .consumers
                .retain(|c| c.transport_id != transport_id);
        }
        let producers = &self.producers;
        self.consumer_index.retain(|consumer_id, producer_id| {
            producers
                .get(producer_id)
                .is_some_and(|p| p.consumers.iter().any(|c| &c.id == consumer_id))
        });
        Ok(())
    }

    pub fn produce(&mut self, cmd: ProduceCommand, transport_key: TransportKey) -> CommandResult {
        if !self.transports.contains(&cmd.transport_id) {
            return Err(not_found("transport", &cmd.transport_id));
        }
        if self.producers.contains_key(&cmd.producer_id) {
            return Err(format!(
                "a producer with id \"{}\" already exists",
                cmd.producer_id
            ));
        }
        let producer = Producer::new(cmd, transport_key);
        self.producers.insert(producer.id.clone(), producer);
        Ok(CommandOk::Done)
    }

    /// Closes a producer and its consumers.
    pub fn close_producer(&mut self, producer_id: &str) -> Result<(), String> {
        let producer = self
            .producers
            .remove(producer_id)
            .ok_or_else(|| not_found("producer", producer_id))?;
        for consumer in &producer.consumers {
            self.consumer_index.remove(&consumer.id);
        }
        Ok(())
    }

    pub fn set_producer_paused(&mut self, producer_id: &str, paused: bool) -> CommandResult {
        let producer = self
            .producers
            .get_mut(producer_id)
            .ok_or_else(|| not_found("producer", producer_id))?;
        producer.paused = paused;
        for consumer in &mut producer.consumers {
            consumer.set_producer_paused(paused);
        }
        Ok(CommandOk::Done)
    }

    pub fn consume(&mut self, cmd: ConsumeCommand, transport_key: TransportKey) -> CommandResult {
        if !self.transports.contains(&cmd.transport_id) {
            return Err(not_found("transport", &cmd.transport_id));
        }
        if self.consumer_index.contains_key(&cmd.consumer_id) {
            return Err(format!(
                "a consumer with id \"{}\" already exists",
                cmd.consumer_id
            ));
        }
        let producer = self
            .producers
            .get_mut(&cmd.producer_id)
            .ok_or_else(|| not_found("producer", &cmd.producer_id))?;
        let consumer = Consumer::new(
            cmd,
            transport_key,
            &producer.rtp_parameters,
            producer.paused,
        );
        self.consumer_index
            .insert(consumer.id.clone(), producer.id.clone());
        producer.consumers.push(consumer);
        Ok(CommandOk::Done)
    }

    pub fn consumer_mut(&mut self, id: &str) -> Result<&mut Consumer, String> {
        self.consumer_index
            .get(id)
            .and_then(|p| self.producers.get_mut(p))
            .and_then(|p| p.consumer_mut(id))
            .ok_or_else(|| not_found("consumer", id))
    }

    /// A consumer with its producer's packet store (for NACKs).
    pub fn consumer_with_store(
        &mut self,
        id: &str,
    ) -> Option<(&mut Consumer, &crate::rtp::packet_store::PacketStore)> {
        self.consumer_index
            .get(id)
            .and_then(|p| self.producers.get_mut(p))
            .and_then(|p| p.consumer_with_store(id))
    }

    pub fn consumer(&self, id: &str) -> Option<(&Producer, &Consumer)> {
        let producer = self.producers.get(self.consumer_index.get(id)?)?;
        let consumer = producer.consumers.iter().find(|c| c.id == id)?;
        Some((producer, consumer))
    }

    pub fn close_consumer(&mut self, id: &str) -> Result<(), String> {
        let producer_id = self
            .consumer_index
            .remove(id)
            .ok_or_else(|| not_found("consumer", id))?;
        if let Some(producer) = self.producers.get_mut(&producer_id) {
            producer.consumers.retain(|c| c.id != id);
        }
        Ok(())
    }

    pub fn consumer_score(&self, consumer_id: &str) -> CommandResult {
        let (producer, consumer) = self
            .consumer(consumer_id)
            .ok_or_else(|| not_found("consumer", consumer_id))?;
        Ok(CommandOk::ConsumerScore(
            consumer.score_json(&producer.scores()),
        ))
    }

    /// A decrypted RTP packet (or RTX packet, to unwrap) of one of this router's producers.
    #[allow(clippy::too_many_arguments)]
    pub fn receive_rtp(
        &mut self,
        producer_id: &str,
        encoding: usize,
        rtx: bool,
        packet: &RtpPacket<'_>,
        now: Instant,
        egress: &mut dyn Egress,
        events: &mut Vec<ShardEvent>,
    ) -> bool {
        let Some(producer) = self.producers.get_mut(producer_id) else {
            return false;
        };
        let used = if rtx {
            producer.receive_rtx(encoding, packet, now, egress)
        } else {
            producer.receive_rtp(encoding, packet, now, egress)
        };
        self.flush_producer(producer_id, now, egress, events);
        used
    }

    /// Sends the key frame requests the producer's consumers raised, and relays their events.
    pub fn flush_producer(
        &mut self,
        producer_id: &str,
        now: Instant,
        egress: &mut dyn Egress,
        events: &mut Vec<ShardEvent>,
    ) {
        let Some(producer) = self.producers.get_mut(producer_id) else {
            return;
        };
        if std::mem::take(&mut producer.score_changed) {
            events.push(ShardEvent::ProducerScore {
                router_id: self.id.clone(),
                producer_id: producer.id.clone(),
                score: producer.score_json(),
            });
        }
        // Only built when a consumer needs it (no allocation on the usual packet).
        let producer_scores = if producer.consumers.iter().any(|c| c.score_changed) {
            producer.scores()
        } else {
            Vec::new()
        };
        for consumer in &mut producer.consumers {
            if std::mem::take(&mut consumer.score_changed) {
                events.push(ShardEvent::ConsumerScore {
                    router_id: self.id.clone(),
                    consumer_id: consumer.id.clone(),
                    score: consumer.score_json(&producer_scores),
                });
            }
            for event in consumer.events.drain(..) {
                match event {
                    ConsumerEvent::LayersChanged { spatial, temporal } => {
                        events.push(ShardEvent::ConsumerLayersChanged {
                            router_id: self.id.clone(),
                            consumer_id: consumer.id.clone(),
                            spatial_layer: spatial,
                            temporal_layer: temporal,
                        })
                    }
                }
            }
        }
        // Per encoding, no list built: this runs for every packet while a request is pending.
        for encoding in 0..producer.streams.len() {
            if !producer
                .consumers
                .iter()
                .any(|c| c.key_frame_requested == Some(encoding))
            {
                continue;
            }
            if producer.last_key_frame_request[encoding]
                .is_some_and(|t| now.saturating_duration_since(t) < KEY_FRAME_REQUEST_INTERVAL)
            {
                continue;
            }
            let Some(stream) = producer.streams.get_mut(encoding).and_then(|s| s.as_mut()) else {
                continue;
            };
            let media_ssrc = stream.ssrc();
            let mut buf = egress.buffer();
            match stream.inner.request_key_frame() {
                Some(KeyFrameRequest::Pli) => {
                    rtcp_build::pli(&mut buf, 0, media_ssrc);
                }
                Some(KeyFrameRequest::Fir { seq_nr }) => {
                    rtcp_build::fir(
                        &mut buf,
                        0,
                        &[FirEntry {
                            ssrc: media_ssrc,
                            seq_nr,
                        }],
                    );
                }
                None => {
                    egress.recycle(buf);
                    continue;
                }
            }
            if egress.send_rtcp(producer.transport_key, buf) {
                self.key_frame_requests_sent += 1;
                producer.last_key_frame_request[encoding] = Some(now);
            }
        }
    }

    /// Every 800 ms: the loudest audio producer (the demo's `activeSpeaker`).
    pub fn observe_audio_levels(&mut self, now: Instant, events: &mut Vec<ShardEvent>) {
        use crate::audio_level_observer::ObserverEvent;
        if !self.audio_level_observer.due(now) {
            return;
        }
        let averages: Vec<(String, i32)> = self
            .producers
            .values_mut()
            .filter_map(|p| p.audio_levels.take_average().map(|v| (p.id.clone(), v)))
            .collect();
        let event = self
            .audio_level_observer
            .report(averages.iter().map(|(id, v)| (id.as_str(), *v)));
        match event {
            Some(ObserverEvent::Volume {
                producer_id,
                volume,
            }) => events.push(ShardEvent::ActiveSpeaker {
                router_id: self.id.clone(),
                producer_id: Some(producer_id),
                volume: Some(volume),
            }),
            Some(ObserverEvent::Silence) => events.push(ShardEvent::ActiveSpeaker {
                router_id: self.id.clone(),
                producer_id: None,
                volume: None,
            }),
            None => {}
        }
    }

    /// Runs [`flush_producer`](Self::flush_producer) for every producer (after commands).
    pub fn flush(&mut self, now: Instant, egress: &mut dyn Egress, events: &mut Vec<ShardEvent>) {
        let ids: Vec<String> = self.producers.keys().cloned().collect();
        for id in ids {
            self.flush_producer(&id, now, egress, events);
        }
    }
}
