//! One media shard's state: its routers, its transports and the indexes that route each packet of
//! its sockets to a transport (STUN by USERNAME, everything else by validated tuple). Commands and
//! packets go in, transmits and events come out; the I/O shell lives in `runtime`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::buffer_pool::BufferPool;
use crate::bwe::TransportCcServer;
use crate::egress::{Egress, TransportKey};
use crate::rtcp::{build as rtcp_build, parse_compound, RtcpPacket};
use crate::rtp::ntp::NtpTime;
use crate::rtp::packet::RtpPacket;
use crate::rtp::packet_store::PacketStore;
use crate::rtp::rtp_stream::KeyFrameRequestKind;
use crate::transport::rtp_listener::{HeaderExtensionIds, RtpListener};
use crate::transport::webrtc_transport::is_rtcp;

use crate::command::{Command, CommandOk, CommandResult, ShardEvent, ShardStats};
use crate::router::Router;
use crate::transport::dtls_certificate::{DtlsCertificate, DtlsFingerprint};
use crate::transport::ice_server::{IceOutcome, Protocol, TransportTuple};
use crate::transport::stun::StunMessage;
use crate::transport::webrtc_transport::{
    ListenInfo, Transmit, TransportDrop, TransportEvent, TransportOutput, WebRtcTransport,
};

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

/// Why the shard dropped a packet. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not STUN, DTLS or RTP/RTCP by its first byte.
    UnknownKind,
    /// STUN that does not parse.
    StunMalformed,
    /// STUN request whose USERNAME names no transport of this shard.
    StunUnknownUsername,
    /// STUN that a transport refused (answered 400/401/487 or dropped).
    StunRejected,
    /// DTLS from an address ICE has not validated.
    DtlsUnvalidated,
    /// DTLS the transport refused.
    DtlsInvalid,
    /// RTP/RTCP from an address ICE has not validated.
    RtpUnvalidated,
    /// RTP/RTCP before the DTLS handshake gave SRTP keys.
    SrtpNotReady,
    /// SRTP/SRTCP failing authentication, replay protection or framing.
    SrtpInvalid,
    /// Decrypted RTP whose header does not parse.
    RtpMalformed,
    /// RTP of no producer of the transport (unknown SSRC, MID or RID), or of an unknown codec.
    RtpUnknownStream,
    /// Decrypted RTCP whose compound framing is broken.
    RtcpMalformed,
    /// A datagram from the shard's own address: a loop (e.g. another socket sharing the port),
    /// never a peer; answering it would make the shard talk to itself.
    FromSelf,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::UnknownKind,
        DropReason::StunMalformed,
        DropReason::StunUnknownUsername,
        DropReason::StunRejected,
        DropReason::DtlsUnvalidated,
        DropReason::DtlsInvalid,
        DropReason::RtpUnvalidated,
        DropReason::SrtpNotReady,
        DropReason::SrtpInvalid,
        DropReason::RtpMalformed,
        DropReason::RtpUnknownStream,
        DropReason::RtcpMalformed,
        DropReason::FromSelf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownKind => "unknown_kind",
            DropReason::StunMalformed => "stun_malformed",
            DropReason::StunUnknownUsername => "stun_unknown_username",
            DropReason::StunRejected => "stun_rejected",
            DropReason::DtlsUnvalidated => "dtls_unvalidated",
            DropReason::DtlsInvalid => "dtls_invalid",
            DropReason::RtpUnvalidated => "rtp_unvalidated",
            DropReason::SrtpNotReady => "srtp_not_ready",
            DropReason::SrtpInvalid => "srtp_invalid",
            DropReason::RtpMalformed => "rtp_malformed",
            DropReason::RtpUnknownStream => "rtp_unknown_stream",
            DropReason::FromSelf => "from_self",
            DropReason::RtcpMalformed => "rtcp_malformed",
        }
    }
}

/// Counters of the shard's sockets.
#[derive(Debug, Default, Clone)]
pub struct SocketCounters {
    pub udp_datagrams_received: u64,
    pub udp_bytes_received: u64,
    /// Wake-ups of the UDP receive loop (datagrams received ÷ this = receive batch size).
    pub udp_recv_wakeups: u64,
    /// UDP datagrams handed to the kernel, and in how many flushes.
    pub udp_datagrams_sent: u64,
    pub udp_flushes: u64,
    /// UDP GSO sends and the datagrams they carried (segments ÷ bursts = burst size).
    pub udp_gso_bursts: u64,
    pub udp_gso_segments: u64,
    /// Datagrams the kernel refused (full send buffer, unreachable): dropped, never waited on.
    pub udp_send_errors: u64,
    pub tcp_connections_accepted: u64,
    pub tcp_frames_received: u64,
    pub tcp_framing_errors: u64,
    pub drops: [u64; DropReason::ALL.len()],
}

impl SocketCounters {
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}

pub(crate) struct TransportEntry {
    router_id: Rc<str>,
    transport: WebRtcTransport,
    /// The ufrags currently indexed for this transport.
    ufrags: Vec<String>,
    /// Which producer stream an incoming RTP packet belongs to.
    rtp_listener: RtpListener,
    /// The browser's ids of the extensions read on incoming RTP.
    ext_ids: HeaderExtensionIds,
    /// SSRC of each consumer sending on this transport → consumer id (RTCP feedback routing).
    consumer_ssrcs: HashMap<u32, Rc<str>>,
    /// Transport-wide congestion control feedback to the publisher (once a producer sends the
    /// transport-wide sequence number extension).
    tcc: Option<TransportCcServer>,
}

/// The shard's [`Egress`]: pooled buffers, and sending through its transports.
struct ShardEgress<'a> {
    now: Instant,
    transports: &'a mut HashMap<TransportKey, TransportEntry>,
    pool: &'a mut BufferPool,
    transmits: &'a mut VecDeque<Transmit>,
}

impl Egress for ShardEgress<'_> {
    fn buffer(&mut self) -> Vec<u8> {
        self.pool.take()
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    fn send_rtp(&mut self, transport: TransportKey, mut buf: Vec<u8>, tcc_id: Option<u8>) -> bool {
        let now = self.now;
        let tuple = self
            .transports
            .get_mut(&transport)
            .and_then(|e| e.transport.protect_rtp(&mut buf, tcc_id, now));
        self.queue(tuple, buf)
    }

    fn next_transport_wide_seq(&mut self, transport: TransportKey) -> Option<u16> {
        self.transports
            .get_mut(&transport)
            .map(|e| e.transport.next_transport_wide_seq())
    }

    fn send_rtcp(&mut self, transport: TransportKey, mut buf: Vec<u8>) -> bool {
        let now = self.now;
        let tuple = self
            .transports
            .get_mut(&transport)
            .and_then(|e| e.transport.protect_rtcp(&mut buf, now));
        self.queue(tuple, buf)
    }
}

impl ShardEgress<'_> {
    /// Queues an encrypted packet for its tuple, or gives the buffer back when it cannot go.
    fn queue(&mut self, tuple: Option<TransportTuple>, buf: Vec<u8>) -> bool {
        match tuple {
            Some(tuple) => {
                self.transmits.push_back(Transmit { tuple, data: buf });
                true
            }
            None => {
                self.pool.give(buf);
                false
            }
        }
    }
}

pub struct Shard {
    pub index: usize,
    pub listen: ListenInfo,
    certificate: DtlsCertificate,
    fingerprints: Vec<DtlsFingerprint>,
    pub routers: HashMap<String, Router>,
    transports: HashMap<TransportKey, TransportEntry>,
    transport_keys: HashMap<String, TransportKey>,
    by_ufrag: HashMap<String, TransportKey>,
    by_tuple: HashMap<(SocketAddr, Protocol), TransportKey>,
    next_key: TransportKey,
    pub counters: SocketCounters,
    events: Vec<ShardEvent>,
    transmits: VecDeque<Transmit>,
    pool: BufferPool,
    /// When RR/SR reports are next due.
    next_reports: Option<Instant>,
}

/// Sender SSRC of the shard's own RTCP (RR to publishers, feedback).
const RTCP_SENDER_SSRC: u32 = 1;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn not_found(what: &str, id: &str) -> String {
    format!("{what} with id \"{id}\" not found")
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
            transports: HashMap::new(),
            transport_keys: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_tuple: HashMap::new(),
            next_key: 1,
            counters: SocketCounters::default(),
            events: Vec::new(),
            transmits: VecDeque::with_capacity(1024),
            pool: BufferPool::default(),
            next_reports: None,
        }
    }

    /// Gives back the buffer of a transmit once sent.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    /// Buffers the pool ever allocated (flat once warm: the packet path allocates none).
    pub fn pool_allocations(&self) -> u64 {
        self.pool.allocated()
    }

    pub fn fingerprints(&self) -> &[DtlsFingerprint] {
        &self.fingerprints
    }

    /// Events produced since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, ShardEvent> {
        self.events.drain(..)
    }

    /// The next datagram (or TCP frame) to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// One datagram (UDP) or RFC 4571 frame (TCP) from `remote`, routed by RFC 7983's first byte:
    /// STUN by USERNAME, DTLS and SRTP by validated tuple. Everything else is counted and dropped.
    pub fn handle_packet(
        &mut self,
        protocol: Protocol,
        remote: SocketAddr,
        data: &mut [u8],
        now: Instant,
    ) {
        let local = self.listen.local;
        let own_ip =
            local.ip() == remote.ip() || (local.ip().is_unspecified() && remote.ip().is_loopback());
        if remote.port() == local.port() && own_ip {
            return self.counters.drop(DropReason::FromSelf);
        }
        let tuple = TransportTuple {
            local: self.listen.local,
            remote,
            protocol,
        };
        match classify(data) {
            PacketKind::Stun => self.handle_stun(tuple, data, now),
            PacketKind::Dtls => {
                let Some(&key) = self.by_tuple.get(&(remote, protocol)) else {
                    return self.counters.drop(DropReason::DtlsUnvalidated);
                };
                let mut out = TransportOutput::default();
                let result = match self.transports.get_mut(&key) {
                    Some(entry) => entry.transport.handle_dtls(data, tuple, now, &mut out),
                    None => Err(TransportDrop::Dtls),
                };
                if result.is_err() {
                    self.counters.drop(DropReason::DtlsInvalid);
                }
                self.apply(key, out);
            }
            PacketKind::RtpOrRtcp => {
                let Some(&key) = self.by_tuple.get(&(remote, protocol)) else {
                    return self.counters.drop(DropReason::RtpUnvalidated);
                };
                let Some(entry) = self.transports.get_mut(&key) else {
                    return self.counters.drop(DropReason::RtpUnvalidated);
                };
                match entry.transport.handle_srtp(data, now) {
                    Ok(len) if is_rtcp(&data[..len]) => self.handle_rtcp(key, &data[..len], now),
                    Ok(len) => self.handle_rtp(key, &data[..len], now),
                    Err(TransportDrop::SrtpNotReady) => {
                        self.counters.drop(DropReason::SrtpNotReady)
                    }
                    Err(_) => self.counters.drop(DropReason::SrtpInvalid),
                }
            }
            PacketKind::Unknown => self.counters.drop(DropReason::UnknownKind),
        }
    }

    /// A decrypted RTP packet: find its producer stream and forward it.
    fn handle_rtp(&mut self, key: TransportKey, data: &[u8], now: Instant) {
        let Ok(packet) = RtpPacket::parse(data) else {
            return self.counters.drop(DropReason::RtpMalformed);
        };
        let Some(entry) = self.transports.get_mut(&key) else {
            return;
        };
        let ids = entry.ext_ids;
        if let (Some(tcc), Some(id)) = (entry.tcc.as_mut(), ids.transport_wide_cc) {
            if let Some(seq) = packet.transport_wide_seq(id) {
                tcc.incoming_packet(seq, now, packet.ssrc());
            }
        }
        let ext = |id: Option<u8>| id.and_then(|id| packet.extension(id));
        let Some(stream) = entry.rtp_listener.find(
            packet.ssrc(),
            packet.payload_type(),
            ext(ids.mid),
            ext(ids.rid),
            ext(ids.rrid),
        ) else {
            return self.counters.drop(DropReason::RtpUnknownStream);
        };
        let router_id = entry.router_id.clone();
        let Some(router) = self.routers.get_mut(&*router_id) else {
            return;
        };
        let mut egress = ShardEgress {
            now,
            transports: &mut self.transports,
            pool: &mut self.pool,
            transmits: &mut self.transmits,
        };
        let used = router.receive_rtp(
            &stream.producer_id,
            stream.encoding,
            stream.rtx,
            &packet,
            now,
            &mut egress,
            &mut self.events,
        );
        if !used {
            self.counters.drop(DropReason::RtpUnknownStream);
        }
    }

    /// A decrypted RTCP compound: feedback about our consumers (PLI/FIR → key frame upstream),
    /// reports about producers.
    fn handle_rtcp(&mut self, key: TransportKey, data: &[u8], now: Instant) {
        let Ok(packets) = parse_compound(data) else {
            return self.counters.drop(DropReason::RtcpMalformed);
        };
        let Some(entry) = self.transports.get(&key) else {
            return;
        };
        let router_id = entry.router_id.clone();
        let arrival = NtpTime::from_system_time(SystemTime::now());
        for packet in packets.flatten() {
            match &packet {
                RtcpPacket::Pli(pli) => {
                    self.consumer_feedback(key, &router_id, pli.media_ssrc, now, |c, _, _| {
                        c.receive_key_frame_request(KeyFrameRequestKind::Pli)
                    });
                }
                RtcpPacket::Fir(fir) => {
                    for entry in &fir.entries {
                        self.consumer_feedback(key, &router_id, entry.ssrc, now, |c, _, _| {
                            c.receive_key_frame_request(KeyFrameRequestKind::Fir)
                        });
                    }
                }
                RtcpPacket::Nack(nack) => {
                    self.consumer_feedback(
                        key,
                        &router_id,
                        nack.media_ssrc,
                        now,
                        |c, store, eg| {
                            c.receive_nack(&nack.lost, now, Some(store), eg);
                        },
                    );
                }
                RtcpPacket::ReceiverReport(rr) => {
                    for block in &rr.reports {
                        self.consumer_feedback(key, &router_id, block.ssrc, now, |c, _, _| {
                            c.receive_receiver_report(block, arrival, now)
                        });
                    }
                }
                RtcpPacket::SenderReport(sr) => {
                    for block in &sr.reports {
                        self.consumer_feedback(key, &router_id, block.ssrc, now, |c, _, _| {
                            c.receive_receiver_report(block, arrival, now)
                        });
                    }
                    // A publisher's SR: timestamps and score of its stream.
                    let stream = self
                        .transports
                        .get_mut(&key)
                        .and_then(|e| e.rtp_listener.find(sr.ssrc, 0, None, None, None));
                    let Some(stream) = stream.filter(|s| !s.rtx) else {
                        continue;
                    };
                    if let Some(producer) = self
                        .routers
                        .get_mut(&*router_id)
                        .and_then(|r| r.producers.get_mut(&*stream.producer_id))
                    {
                        if let Some(recv) = producer
                            .streams
                            .get_mut(stream.encoding)
                            .and_then(|s| s.as_mut())
                        {
                            let ntp = NtpTime::new(sr.ntp_sec, sr.ntp_frac);
                            if recv
                                .inner
                                .receive_sender_report(ntp, sr.rtp_ts, now)
                                .is_some()
                            {
                                producer.score_changed = true;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(router) = self.routers.get_mut(&*router_id) {
            let mut egress = ShardEgress {
                now,
                transports: &mut self.transports,
                pool: &mut self.pool,
                transmits: &mut self.transmits,
            };
            router.flush(now, &mut egress, &mut self.events);
        }
    }

    /// Runs `f` on the consumer sending SSRC `ssrc` on transport `key`, if any.
    fn consumer_feedback(
        &mut self,
        key: TransportKey,
        router_id: &str,
        ssrc: u32,
        now: Instant,
        f: impl FnOnce(&mut crate::consumer::Consumer, &PacketStore, &mut dyn Egress),
    ) {
        let Some(consumer_id) = self
            .transports
            .get(&key)
            .and_then(|e| e.consumer_ssrcs.get(&ssrc))
            .cloned()
        else {
            return;
        };
        let Some((consumer, store)) = self
            .routers
            .get_mut(router_id)
            .and_then(|r| r.consumer_with_store(&consumer_id))
        else {
            return;
        };
        let mut egress = ShardEgress {
            now,
            transports: &mut self.transports,
            pool: &mut self.pool,
            transmits: &mut self.transmits,
        };
        f(consumer, store, &mut egress);
    }

    /// Lets every router send what its consumers asked for (key frames after a resume).
    fn flush_routers(&mut self, now: Instant) {
        let mut egress = ShardEgress {
            now,
            transports: &mut self.transports,
            pool: &mut self.pool,
            transmits: &mut self.transmits,
        };
        for router in self.routers.values_mut() {
            router.flush(now, &mut egress, &mut self.events);
        }
    }

    fn handle_stun(&mut self, tuple: TransportTuple, data: &[u8], now: Instant) {
        let Ok(msg) = StunMessage::parse(data) else {
            return self.counters.drop(DropReason::StunMalformed);
        };
        // USERNAME is "<our ufrag>:<their ufrag>".
        let local_ufrag = msg
            .username()
            .and_then(|u| u.split_once(':'))
            .map(|(local, _)| local);
        let Some(&key) = local_ufrag.and_then(|u| self.by_ufrag.get(u)) else {
            return self.counters.drop(DropReason::StunUnknownUsername);
        };
        let Some(entry) = self.transports.get_mut(&key) else {
            return self.counters.drop(DropReason::StunUnknownUsername);
        };
        let mut out = TransportOutput::default();
        let outcome =
            entry
                .transport
                .handle_stun(&msg, tuple, data.len(), &self.certificate, now, &mut out);
        if !matches!(outcome, IceOutcome::Accepted | IceOutcome::Ignored) {
            self.counters.drop(DropReason::StunRejected);
        }
        self.apply(key, out);
    }

    /// A TCP connection closed: its tuple is gone.
    pub fn handle_tcp_closed(&mut self, remote: SocketAddr, now: Instant) {
        let Some(&key) = self.by_tuple.get(&(remote, Protocol::Tcp)) else {
            return;
        };
        let tuple = TransportTuple {
            local: self.listen.local,
            remote,
            protocol: Protocol::Tcp,
        };
        let mut out = TransportOutput::default();
        if let Some(entry) = self.transports.get_mut(&key) {
            entry
                .transport
                .remove_tuple(&tuple, &self.certificate, now, &mut out);
        }
        self.apply(key, out);
    }

    /// The earliest time any transport needs `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transports
            .values()
            .filter_map(|e| e.transport.poll_timeout())
            .min()
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<TransportKey> = self
            .transports
            .iter()
            .filter(|(_, e)| e.transport.poll_timeout().is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let mut out = TransportOutput::default();
            if let Some(entry) = self.transports.get_mut(&key) {
                entry
                    .transport
                    .handle_timeout(&self.certificate, now, &mut out);
            }
            self.apply(key, out);
        }
        self.send_transport_feedback(now);
        self.poll_streams(now);
    }

    /// Every tick: NACK retries and inactivity of receive streams. About once a second: RR to
    /// publishers for their streams, SR + SDES from every consumer to its subscriber.
    fn poll_streams(&mut self, now: Instant) {
        let reports_due = self.next_reports.is_none_or(|t| t <= now);
        if reports_due {
            // RFC 3550 randomises the interval; mediasoup uses ×[1, 1.5] around 1 s.
            let jitter = rand::random_range(0..500u64);
            self.next_reports = Some(now + Duration::from_millis(1000 + jitter));
        }
        let ntp = NtpTime::from_system_time(SystemTime::now());
        let mut egress = ShardEgress {
            now,
            transports: &mut self.transports,
            pool: &mut self.pool,
            transmits: &mut self.transmits,
        };
        for router in self.routers.values_mut() {
            for producer in router.producers.values_mut() {
                producer.poll(now, &mut egress);
                if !reports_due {
                    continue;
                }
                let blocks: Vec<_> = producer
                    .streams
                    .iter_mut()
                    .flatten()
                    .map(|s| s.inner.receiver_report_block(now))
                    .collect();
                if !blocks.is_empty() {
                    let mut buf = egress.buffer();
                    rtcp_build::receiver_report(&mut buf, RTCP_SENDER_SSRC, &blocks);
                    egress.send_rtcp(producer.transport_key, buf);
                }
                for consumer in &mut producer.consumers {
                    let mut buf = egress.buffer();
                    if consumer.write_sender_report(now, ntp, &mut buf) {
                        egress.send_rtcp(consumer.transport_key, buf);
                    } else {
                        egress.recycle(buf);
                    }
                }
            }
            router.observe_audio_levels(now, &mut self.events);
            router.flush(now, &mut egress, &mut self.events);
        }
    }

    /// Transport-wide congestion control feedback (every 100 ms) and the incoming bitrate limit
    /// (REMB every 1.5 s) to publishers.
    fn send_transport_feedback(&mut self, now: Instant) {
        let keys: Vec<TransportKey> = self
            .transports
            .iter()
            .filter(|(_, e)| {
                e.tcc
                    .as_ref()
                    .is_some_and(|t| t.poll_timeout(now).is_some_and(|at| at <= now))
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let mut egress = ShardEgress {
                now,
                transports: &mut self.transports,
                pool: &mut self.pool,
                transmits: &mut self.transmits,
            };
            loop {
                let mut buf = egress.buffer();
                let written = match egress.transports.get_mut(&key).and_then(|e| e.tcc.as_mut()) {
                    Some(tcc) => tcc.poll_feedback(now, &mut buf) || tcc.poll_remb(now, &mut buf),
                    None => false,
                };
                if !written {
                    egress.recycle(buf);
                    break;
                }
                egress.send_rtcp(key, buf);
            }
        }
    }

    /// Queues a transport's transmits, keeps the indexes in step and relays state changes.
    fn apply(&mut self, key: TransportKey, out: TransportOutput) {
        self.transmits.extend(out.transmits);
        let Some(entry) = self.transports.get_mut(&key) else {
            return;
        };
        for event in out.events {
            match event {
                TransportEvent::TupleAdded(t) => {
                    self.by_tuple.insert((t.remote, t.protocol), key);
                }
                TransportEvent::TupleRemoved(t) => {
                    if self.by_tuple.get(&(t.remote, t.protocol)) == Some(&key) {
                        self.by_tuple.remove(&(t.remote, t.protocol));
                    }
                }
                TransportEvent::UsernameFragmentsChanged => {
                    let current = entry.transport.username_fragments();
                    for old in entry.ufrags.iter().filter(|u| !current.contains(u)) {
                        self.by_ufrag.remove(old);
                    }
                    for ufrag in &current {
                        self.by_ufrag.insert(ufrag.clone(), key);
                    }
                    entry.ufrags = current;
                }
                TransportEvent::IceState(state) => {
                    self.events.push(ShardEvent::TransportIceStateChanged {
                        router_id: entry.router_id.to_string(),
                        transport_id: entry.transport.id.clone(),
                        ice_state: serde_json::to_value(state)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                    });
                }
                TransportEvent::DtlsState(state) => {
                    self.events.push(ShardEvent::TransportDtlsStateChanged {
                        router_id: entry.router_id.to_string(),
                        transport_id: entry.transport.id.clone(),
                        dtls_state: state.as_str().to_string(),
                    });
                }
            }
        }
    }

    fn router(&mut self, id: &str) -> Result<&mut Router, String> {
        self.routers
            .get_mut(id)
            .ok_or_else(|| format!("router with id \"{id}\" not found"))
    }

    /// The transport `transport_id` of router `router_id`.
    fn transport_key(&self, router_id: &str, transport_id: &str) -> Result<TransportKey, String> {
        self.transport_keys
            .get(transport_id)
            .copied()
            .filter(|k| {
                self.transports
                    .get(k)
                    .is_some_and(|e| &*e.router_id == router_id)
            })
            .ok_or_else(|| not_found("transport", transport_id))
    }

    /// Closes a transport and frees at once its ufrags, tuples and keys.
    fn close_transport_entry(&mut self, key: TransportKey, now: Instant) {
        let Some(mut entry) = self.transports.remove(&key) else {
            return;
        };
        let mut out = TransportOutput::default();
        entry.transport.close(now, &mut out);
        self.transmits.extend(out.transmits);
        self.transport_keys.remove(&entry.transport.id);
        self.by_ufrag.retain(|_, k| *k != key);
        self.by_tuple.retain(|_, k| *k != key);
    }

    pub fn stats(&self) -> ShardStats {
        let c = &self.counters;
        let mut stats = ShardStats {
            shard: self.index,
            routers: self.routers.len(),
            transports: self.transports.len(),
            udp_port: self.listen.local.port(),
            udp_datagrams_received: c.udp_datagrams_received,
            udp_bytes_received: c.udp_bytes_received,
            udp_recv_wakeups: c.udp_recv_wakeups,
            udp_datagrams_sent: c.udp_datagrams_sent,
            udp_flushes: c.udp_flushes,
            udp_gso_bursts: c.udp_gso_bursts,
            udp_gso_segments: c.udp_gso_segments,
            udp_send_errors: c.udp_send_errors,
            tcp_connections_accepted: c.tcp_connections_accepted,
            tcp_frames_received: c.tcp_frames_received,
            tcp_framing_errors: c.tcp_framing_errors,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), c.dropped(*r)))
                .collect(),
            ..Default::default()
        };
        for router in self.routers.values() {
            stats.producers += router.producers.len();
            stats.consumers += router.consumer_count();
        }
        stats
    }

    /// Drops the RTCP routes of consumers that no longer exist.
    fn forget_closed_consumers(&mut self) {
        let routers = &self.routers;
        for entry in self.transports.values_mut() {
            let router = routers.get(&*entry.router_id);
            entry
                .consumer_ssrcs
                .retain(|_, id| router.is_some_and(|r| r.consumer(id).is_some()));
        }
    }

    /// Executes one command, then sends what it made necessary (key frame requests).
    pub fn handle(&mut self, command: Command, now: Instant) -> CommandResult {
        let result = self.execute(command, now);
        self.flush_routers(now);
        result
    }

    fn execute(&mut self, command: Command, now: Instant) -> CommandResult {
        match command {
            Command::CreateRouter { router_id } => {
                if self.routers.contains_key(&router_id) {
                    return Err(format!("a router with id \"{router_id}\" already exists"));
                }
                self.routers
                    .insert(router_id.clone(), Router::new(router_id));
                Ok(CommandOk::Done)
            }
            Command::CloseRouter { router_id } => {
                let router = self
                    .routers
                    .remove(&router_id)
                    .ok_or_else(|| format!("router with id \"{router_id}\" not found"))?;
                for transport_id in &router.transports {
                    if let Some(key) = self.transport_keys.get(transport_id).copied() {
                        self.close_transport_entry(key, now);
                    }
                }
                Ok(CommandOk::Done)
            }
            Command::CreateWebRtcTransport {
                router_id,
                transport_id,
                options,
            } => {
                if self.transport_keys.contains_key(&transport_id) {
                    return Err(format!(
                        "a transport with id \"{transport_id}\" already exists"
                    ));
                }
                let transport = WebRtcTransport::new(
                    transport_id.clone(),
                    options,
                    &self.listen,
                    self.fingerprints.clone(),
                );
                let data = transport.data();
                self.router(&router_id)?
                    .transports
                    .insert(transport_id.clone());
                let key = self.next_key;
                self.next_key = self.next_key.wrapping_add(1).max(1);
                let ufrags = transport.username_fragments();
                for ufrag in &ufrags {
                    self.by_ufrag.insert(ufrag.clone(), key);
                }
                self.transport_keys.insert(transport_id, key);
                self.transports.insert(
                    key,
                    TransportEntry {
                        router_id: Rc::from(router_id),
                        transport,
                        ufrags,
                        rtp_listener: RtpListener::default(),
                        ext_ids: HeaderExtensionIds::default(),
                        consumer_ssrcs: HashMap::new(),
                        tcc: None,
                    },
                );
                Ok(CommandOk::WebRtcTransport(Box::new(data)))
            }
            Command::ConnectWebRtcTransport {
                router_id,
                transport_id,
                dtls_parameters,
            } => {
                let key = self.transport_key(&router_id, &transport_id)?;
                let mut out = TransportOutput::default();
                let result = match self.transports.get_mut(&key) {
                    Some(entry) => {
                        entry
                            .transport
                            .connect(dtls_parameters, &self.certificate, now, &mut out)
                    }
                    None => Err(not_found("transport", &transport_id)),
                };
                self.apply(key, out);
                result.map(|_| CommandOk::Done)
            }
            Command::RestartIce {
                router_id,
                transport_id,
            } => {
                let key = self.transport_key(&router_id, &transport_id)?;
                let entry = self
                    .transports
                    .get_mut(&key)
                    .ok_or_else(|| not_found("transport", &transport_id))?;
                let parameters = entry.transport.restart_ice(now);
                let out = TransportOutput {
                    events: vec![TransportEvent::UsernameFragmentsChanged],
                    ..Default::default()
                };
                self.apply(key, out);
                Ok(CommandOk::IceParameters(parameters))
            }
            Command::CloseTransport {
                router_id,
                transport_id,
            } => {
                let key = self.transport_key(&router_id, &transport_id)?;
                self.router(&router_id)?.close_transport(&transport_id)?;
                self.close_transport_entry(key, now);
                self.forget_closed_consumers();
                Ok(CommandOk::Done)
            }
            Command::Produce(cmd) => {
                let key = self.transport_key(&cmd.router_id, &cmd.transport_id)?;
                let entry = self
                    .transports
                    .get_mut(&key)
                    .ok_or_else(|| not_found("transport", &cmd.transport_id))?;
                entry
                    .rtp_listener
                    .add_producer(&cmd.producer_id, &cmd.rtp_parameters)?;
                entry.ext_ids.learn(&cmd.rtp_parameters);
                if entry.ext_ids.transport_wide_cc.is_some() && entry.tcc.is_none() {
                    let mut tcc = TransportCcServer::default();
                    if let Some(max) = entry.transport.options.max_incoming_bitrate {
                        tcc.set_max_incoming_bitrate(max);
                    }
                    entry.tcc = Some(tcc);
                }
                let producer_id = cmd.producer_id.clone();
                let router_id = cmd.router_id.clone();
                let result = self.router(&router_id).and_then(|r| r.produce(*cmd, key));
                if result.is_err() {
                    if let Some(entry) = self.transports.get_mut(&key) {
                        entry.rtp_listener.remove_producer(&producer_id);
                    }
                }
                result
            }
            Command::CloseProducer {
                router_id,
                producer_id,
            } => {
                let router = self.router(&router_id)?;
                let key = router
                    .producers
                    .get(&producer_id)
                    .map(|p| p.transport_key)
                    .ok_or_else(|| not_found("producer", &producer_id))?;
                router.close_producer(&producer_id)?;
                if let Some(entry) = self.transports.get_mut(&key) {
                    entry.rtp_listener.remove_producer(&producer_id);
                }
                self.forget_closed_consumers();
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
                let key = self.transport_key(&cmd.router_id, &cmd.transport_id)?;
                let consumer_id: Rc<str> = Rc::from(cmd.consumer_id.as_str());
                let ssrcs: Vec<u32> = cmd
                    .rtp_parameters
                    .encodings
                    .iter()
                    .flat_map(|e| [e.ssrc, e.rtx.as_ref().map(|r| r.ssrc)])
                    .flatten()
                    .collect();
                let router_id = cmd.router_id.clone();
                let result = self.router(&router_id)?.consume(*cmd, key)?;
                if let Some(entry) = self.transports.get_mut(&key) {
                    for ssrc in ssrcs {
                        entry.consumer_ssrcs.insert(ssrc, consumer_id.clone());
                    }
                }
                Ok(result)
            }
            Command::CloseConsumer {
                router_id,
                consumer_id,
            } => {
                self.router(&router_id)?.close_consumer(&consumer_id)?;
                self.forget_closed_consumers();
                Ok(CommandOk::Done)
            }
            Command::PauseConsumer {
                router_id,
                consumer_id,
            } => {
                self.router(&router_id)?
                    .consumer_mut(&consumer_id)?
                    .set_paused(true);
                Ok(CommandOk::Done)
            }
            Command::ResumeConsumer {
                router_id,
                consumer_id,
            } => {
                // A resumed video consumer asks for a key frame (sent by the flush below).
                self.router(&router_id)?
                    .consumer_mut(&consumer_id)?
                    .set_paused(false);
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
                    .request_key_frame();
                Ok(CommandOk::Done)
            }
            Command::GetTransportStats {
                router_id,
                transport_id,
            } => {
                let key = self.transport_key(&router_id, &transport_id)?;
                let entry = self
                    .transports
                    .get(&key)
                    .ok_or_else(|| not_found("transport", &transport_id))?;
                Ok(CommandOk::Stats(serde_json::Value::Array(vec![entry
                    .transport
                    .stats(now, now_ms())])))
            }
            Command::GetProducerStats {
                router_id,
                producer_id,
            } => {
                let router = self.router(&router_id)?;
                let producer = router
                    .producers
                    .get(&producer_id)
                    .ok_or_else(|| not_found("producer", &producer_id))?;
                Ok(CommandOk::Stats(producer.stats(now, now_ms())))
            }
            Command::GetConsumerStats {
                router_id,
                consumer_id,
            } => {
                let now_ms = now_ms();
                let (producer, consumer) = self
                    .router(&router_id)?
                    .consumer(&consumer_id)
                    .ok_or_else(|| not_found("consumer", &consumer_id))?;
                let mut stats = vec![consumer.stats(now, now_ms)];
                // Then the producer stream being forwarded, as mediasoup does.
                if let Some(encoding) = consumer.current_encoding().or(Some(0)) {
                    if let Some(inbound) = producer
                        .streams
                        .get(encoding)
                        .and_then(|s| s.as_ref())
                        .map(|s| s.stats_json(now, now_ms))
                    {
                        stats.push(inbound);
                    }
                }
                Ok(CommandOk::Stats(serde_json::Value::Array(stats)))
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

    #[test]
    fn datagrams_from_the_shards_own_address_are_dropped() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let listen = ListenInfo {
            local,
            announced_address: "127.0.0.1".into(),
        };
        let mut shard = Shard::new(0, listen, DtlsCertificate::generate().unwrap());
        // A binding request header (type 0x0001, length 0, magic cookie).
        let mut stun = [0u8; 20];
        stun[1] = 1;
        stun[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        let now = Instant::now();
        shard.handle_packet(Protocol::Udp, local, &mut stun.clone(), now);
        assert_eq!(shard.counters.dropped(DropReason::FromSelf), 1);
        // The same from anyone else is judged as STUN (here: malformed, no USERNAME).
        let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        shard.handle_packet(Protocol::Udp, other, &mut stun, now);
        assert_eq!(shard.counters.dropped(DropReason::FromSelf), 1);
        assert!(shard.poll_transmit().is_none());
    }
}
