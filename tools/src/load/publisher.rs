//! A publisher's media: VP8-like video (one stream or three simulcast layers with L1T3 temporal
//! layers) or Opus-like audio at 50 packets/s, with what a browser's sender does around it —
//! key frames on a period and on PLI/FIR, RTX answers to NACKs from a history of sent packets,
//! transport-wide sequence numbers, abs-send-time, and a sender report per stream every second.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::channel::mpsc;
use rtc_rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc_rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use serde_json::{json, Value};

use super::payload::{now_ns, write_body, write_rtp_header, RtpHead, Trailer, Vp8Header};
use super::stats::{add, bump, RoleCounters, SentStream};
use crate::peer::rtp::rtcp;
use crate::peer::{MediaHandler, PacketKind, SrtpSession};

/// Header extension ids the publisher announces in `produce` (Chrome's numbering).
pub const EXT_AUDIO_LEVEL: u8 = 1;
pub const EXT_ABS_SEND_TIME: u8 = 2;
pub const EXT_TRANSPORT_CC: u8 = 3;
pub const EXT_MID: u8 = 4;
pub const EXT_RID: u8 = 10;
pub const EXT_REPAIRED_RID: u8 = 11;
pub const VP8_PT: u8 = 96;
pub const RTX_PT: u8 = 97;
pub const OPUS_PT: u8 = 111;
/// Sent packets kept per stream for RTX (a power of two).
const HISTORY: usize = 1024;
const RIDS: [&str; 3] = ["r0", "r1", "r2"];
/// Simulcast layer bitrates relative to `--bitrate` (the top layer), like Chrome's 1/4, 1/2, 1
/// resolution ladder.
const LAYER_SHARE: [f64; 3] = [0.1, 1.0 / 3.0, 1.0];
/// L1T3: temporal layer of each frame in the 4-frame pattern.
const L1T3: [u8; 4] = [0, 2, 1, 2];

/// What the server asked the publisher for, from its RTCP.
#[derive(Debug)]
pub enum Feedback {
    KeyFrame(u32),
    Nack(u32, Vec<u16>),
}

/// One RTP stream a publisher sends (a simulcast layer, the single video stream, or audio).
struct OutStream {
    stream_id: u32,
    ssrc: u32,
    rtx_ssrc: u32,
    rid: Option<&'static str>,
    layer: Option<u8>,
    seq: u16,
    rtx_seq: u16,
    counter: u64,
    timestamp: u32,
    octets: u64,
    /// Frame bytes owed (fractional packets carried to the next frame so the average bitrate
    /// is exact with full-size packets).
    carry: f64,
    bytes_per_frame: f64,
    picture_id: u16,
    tl0_pic_idx: u8,
    pattern: usize,
    key_requested: bool,
    width: u16,
    height: u16,
    history: Vec<Vec<u8>>,
}

impl OutStream {
    fn new(
        stream_id: u32,
        layer: Option<u8>,
        bytes_per_frame: f64,
        width: u16,
        height: u16,
    ) -> Self {
        Self {
            stream_id,
            ssrc: rand::random::<u32>() | 1,
            rtx_ssrc: rand::random::<u32>() | 1,
            rid: layer.map(|l| RIDS[usize::from(l)]),
            layer,
            seq: rand::random(),
            rtx_seq: rand::random(),
            counter: 0,
            timestamp: rand::random(),
            octets: 0,
            carry: 0.0,
            bytes_per_frame,
            picture_id: rand::random::<u16>() & 0x7fff,
            tl0_pic_idx: rand::random(),
            pattern: 0,
            key_requested: true,
            width,
            height,
            history: vec![Vec::new(); HISTORY],
        }
    }
}

/// What `produce` needs and how to send.
pub struct PublisherConfig {
    pub video: bool,
    pub simulcast: bool,
    pub bitrate: u64,
    pub fps: u32,
    pub packet_size: usize,
    pub audio_packet_size: usize,
    pub keyframe_interval: Duration,
    /// First stream id; layers take consecutive ids.
    pub stream_id_base: u32,
}

/// The sending state of one publisher.
pub struct Publisher {
    cfg: PublisherConfig,
    streams: Vec<OutStream>,
    transport_seq: u16,
    /// Our RTCP sender SSRC and CNAME.
    cname: String,
    frame: u64,
    last_key: Option<Instant>,
    last_sr: Instant,
}

impl Publisher {
    pub fn new(cfg: PublisherConfig) -> Self {
        let streams = if !cfg.video {
            vec![OutStream::new(cfg.stream_id_base, None, 0.0, 0, 0)]
        } else if cfg.simulcast {
            (0u8..3)
                .map(|l| {
                    let scale = 1u16 << (2 - l);
                    OutStream::new(
                        cfg.stream_id_base + u32::from(l),
                        Some(l),
                        cfg.bitrate as f64 * LAYER_SHARE[usize::from(l)] / 8.0 / f64::from(cfg.fps),
                        1280 / scale,
                        720 / scale,
                    )
                })
                .collect()
        } else {
            vec![OutStream::new(
                cfg.stream_id_base,
                None,
                cfg.bitrate as f64 / 8.0 / f64::from(cfg.fps),
                1280,
                720,
            )]
        };
        Self {
            cfg,
            streams,
            transport_seq: rand::random(),
            cname: format!("load{:08x}", rand::random::<u32>()),
            frame: 0,
            last_key: None,
            last_sr: Instant::now(),
        }
    }

    /// Time between two frames (video) or packets (audio).
    pub fn interval(&self) -> Duration {
        if self.cfg.video {
            Duration::from_secs_f64(1.0 / f64::from(self.cfg.fps))
        } else {
            Duration::from_millis(20)
        }
    }

    /// The `produce` request data (minus `transportId`), as mediasoup-client sends it for
    /// Chrome.
    pub fn produce_data(&self) -> Value {
        let fb = json!([
            {"type": "goog-remb", "parameter": ""},
            {"type": "transport-cc", "parameter": ""},
            {"type": "ccm", "parameter": "fir"},
            {"type": "nack", "parameter": ""},
            {"type": "nack", "parameter": "pli"},
        ]);
        let ext =
            |uri: &str, id: u8| json!({"uri": uri, "id": id, "encrypt": false, "parameters": {}});
        if !self.cfg.video {
            let s = &self.streams[0];
            return json!({
                "kind": "audio",
                "rtpParameters": {
                    "mid": "0",
                    "codecs": [{
                        "mimeType": "audio/opus", "payloadType": OPUS_PT, "clockRate": 48000,
                        "channels": 2,
                        "parameters": {"minptime": 10, "useinbandfec": 1, "sprop-stereo": 1, "usedtx": 1},
                        "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}, {"type": "nack", "parameter": ""}],
                    }],
                    "headerExtensions": [
                        ext("urn:ietf:params:rtp-hdrext:sdes:mid", EXT_MID),
                        ext("http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", EXT_ABS_SEND_TIME),
                        ext("http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", EXT_TRANSPORT_CC),
                        ext("urn:ietf:params:rtp-hdrext:ssrc-audio-level", EXT_AUDIO_LEVEL),
                    ],
                    "encodings": [{"ssrc": s.ssrc, "dtx": false}],
                    "rtcp": {"cname": self.cname, "reducedSize": true},
                },
                "appData": {"source": "mic"},
            });
        }
        let mut extensions = vec![
            ext("urn:ietf:params:rtp-hdrext:sdes:mid", EXT_MID),
            ext(
                "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                EXT_ABS_SEND_TIME,
            ),
            ext(
                "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
                EXT_TRANSPORT_CC,
            ),
        ];
        let encodings: Vec<Value> = if self.cfg.simulcast {
            extensions.push(ext(
                "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                EXT_RID,
            ));
            extensions.push(ext(
                "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
                EXT_REPAIRED_RID,
            ));
            self.streams
                .iter()
                .map(|s| {
                    let l = s.layer.unwrap_or(0);
                    json!({
                        "active": true, "scalabilityMode": "L1T3",
                        "scaleResolutionDownBy": f64::from(1u32 << (2 - l)),
                        "maxBitrate": (self.cfg.bitrate as f64 * LAYER_SHARE[usize::from(l)]) as u64,
                        "rid": s.rid, "dtx": false,
                    })
                })
                .collect()
        } else {
            let s = &self.streams[0];
            vec![json!({"ssrc": s.ssrc, "rtx": {"ssrc": s.rtx_ssrc}, "dtx": false})]
        };
        json!({
            "kind": "video",
            "rtpParameters": {
                "mid": "0",
                "codecs": [
                    {"mimeType": "video/VP8", "payloadType": VP8_PT, "clockRate": 90000,
                     "parameters": {}, "rtcpFeedback": fb},
                    {"mimeType": "video/rtx", "payloadType": RTX_PT, "clockRate": 90000,
                     "parameters": {"apt": VP8_PT}, "rtcpFeedback": []},
                ],
                "headerExtensions": extensions,
                "encodings": encodings,
                "rtcp": {"cname": self.cname, "reducedSize": true},
            },
            "appData": {"source": "webcam"},
        })
    }

    fn next_transport_seq(&mut self) -> [u8; 2] {
        self.transport_seq = self.transport_seq.wrapping_add(1);
        self.transport_seq.to_be_bytes()
    }

    /// The packets of the next frame (video, every layer) or the next audio packet, as plain
    /// RTP; appended to `out`.
    pub fn next_packets(&mut self, out: &mut Vec<Vec<u8>>, counters: &RoleCounters) {
        let now = Instant::now();
        let periodic = self.cfg.video
            && !self.cfg.keyframe_interval.is_zero()
            && self
                .last_key
                .is_none_or(|t| now.duration_since(t) >= self.cfg.keyframe_interval);
        if periodic {
            self.last_key = Some(now);
        }
        let abs = abs_send_time();
        for i in 0..self.streams.len() {
            if self.cfg.video {
                self.video_frame(i, periodic, abs, out, counters);
            } else {
                self.audio_packet(abs, out, counters);
            }
        }
        self.frame += 1;
    }

    fn audio_packet(&mut self, abs: [u8; 3], out: &mut Vec<Vec<u8>>, counters: &RoleCounters) {
        let tseq = self.next_transport_seq();
        let size = self.cfg.audio_packet_size;
        let s = &mut self.streams[0];
        let mut p = Vec::with_capacity(size);
        write_rtp_header(
            &mut p,
            false,
            OPUS_PT,
            s.seq,
            s.timestamp,
            s.ssrc,
            &[
                (EXT_MID, b"0"),
                (EXT_ABS_SEND_TIME, &abs),
                (EXT_TRANSPORT_CC, &tseq),
                // Voice, -30 dBov: loud enough to be an active speaker.
                (EXT_AUDIO_LEVEL, &[0x80 | 30]),
            ],
        );
        let body = size.saturating_sub(p.len());
        write_body(&mut p, body, &trailer(s.stream_id, s.counter));
        finish_packet(s, &p, counters);
        s.timestamp = s.timestamp.wrapping_add(960);
        out.push(p);
    }

    fn video_frame(
        &mut self,
        i: usize,
        periodic_key: bool,
        abs: [u8; 3],
        out: &mut Vec<Vec<u8>>,
        counters: &RoleCounters,
    ) {
        let packet_size = self.cfg.packet_size;
        let simulcast = self.cfg.simulcast;
        let key = periodic_key || self.streams[i].key_requested;
        let (temporal_id, mut bytes) = {
            let s = &mut self.streams[i];
            if key {
                s.key_requested = false;
                s.pattern = 0;
                bump(&counters.keyframes_sent);
            }
            let tid = if simulcast { L1T3[s.pattern % 4] } else { 0 };
            s.pattern += 1;
            if tid == 0 {
                s.tl0_pic_idx = s.tl0_pic_idx.wrapping_add(1);
            }
            s.picture_id = (s.picture_id + 1) & 0x7fff;
            // Key frames are three times an average frame, as an encoder's are (bigger still
            // in practice); the carry keeps the average at the configured bitrate.
            let frame = s.bytes_per_frame * if key { 3.0 } else { 1.0 };
            s.carry += frame;
            (tid, s.carry)
        };
        let n = ((bytes / packet_size as f64).floor() as usize).max(1);
        bytes -= (n * packet_size) as f64;
        self.streams[i].carry = bytes.max(-(packet_size as f64) * 4.0);
        for k in 0..n {
            let tseq = self.next_transport_seq();
            let s = &mut self.streams[i];
            let last = k + 1 == n;
            let mut p = Vec::with_capacity(packet_size);
            let rid = s.rid.map(str::as_bytes);
            let mut exts: [(u8, &[u8]); 4] = [
                (EXT_MID, b"0"),
                (EXT_ABS_SEND_TIME, &abs),
                (EXT_TRANSPORT_CC, &tseq),
                (EXT_RID, b""),
            ];
            let ext_count = if let Some(rid) = rid {
                exts[3] = (EXT_RID, rid);
                4
            } else {
                3
            };
            write_rtp_header(
                &mut p,
                last,
                VP8_PT,
                s.seq,
                s.timestamp,
                s.ssrc,
                &exts[..ext_count],
            );
            let vp8 = Vp8Header {
                start_of_frame: k == 0,
                key_frame: key,
                picture_id: s.picture_id,
                tl0_pic_idx: s.tl0_pic_idx,
                temporal_id,
                width: s.width,
                height: s.height,
            };
            vp8.write(&mut p);
            let body = packet_size.saturating_sub(p.len());
            write_body(&mut p, body, &trailer(s.stream_id, s.counter));
            finish_packet(s, &p, counters);
            out.push(p);
        }
        let s = &mut self.streams[i];
        s.timestamp = s.timestamp.wrapping_add(90_000 / self.cfg.fps.max(1));
    }

    /// Marks the stream with `ssrc` for a key frame at its next frame.
    pub fn request_key_frame(&mut self, ssrc: u32) -> bool {
        match self.streams.iter_mut().find(|s| s.ssrc == ssrc) {
            Some(s) => {
                s.key_requested = true;
                true
            }
            None => false,
        }
    }

    /// RTX packets (RFC 4588) for the sequence numbers of `ssrc` still in the history.
    pub fn retransmit(&mut self, ssrc: u32, seqs: &[u16], out: &mut Vec<Vec<u8>>) {
        let abs = abs_send_time();
        let simulcast = self.cfg.simulcast;
        let Some(i) = self.streams.iter().position(|s| s.ssrc == ssrc) else {
            return;
        };
        if !self.cfg.video {
            return; // Opus has no RTX in the demo's capabilities.
        }
        for &seq in seqs {
            let tseq = self.next_transport_seq();
            let s = &mut self.streams[i];
            let stored = &s.history[usize::from(seq) % HISTORY];
            let Some(head) = RtpHead::parse(stored).filter(|h| h.seq == seq) else {
                continue;
            };
            let payload = &stored[head.payload_offset..];
            let mut p = Vec::with_capacity(stored.len() + 8);
            let rid = s.rid.map(str::as_bytes).unwrap_or_default();
            let mut exts: Vec<(u8, &[u8])> = vec![
                (EXT_MID, b"0"),
                (EXT_ABS_SEND_TIME, &abs),
                (EXT_TRANSPORT_CC, &tseq),
            ];
            if simulcast {
                exts.push((EXT_REPAIRED_RID, rid));
            }
            write_rtp_header(
                &mut p,
                head.marker,
                RTX_PT,
                s.rtx_seq,
                head.timestamp,
                s.rtx_ssrc,
                &exts,
            );
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(payload);
            s.rtx_seq = s.rtx_seq.wrapping_add(1);
            out.push(p);
        }
    }

    /// Sender reports (one per stream, compound) once a second; `None` in between.
    pub fn sender_reports(&mut self) -> Option<Vec<u8>> {
        let now = Instant::now();
        if now.duration_since(self.last_sr) < Duration::from_secs(1) {
            return None;
        }
        self.last_sr = now;
        let ntp = ntp_now();
        let packets: Vec<Vec<u8>> = self
            .streams
            .iter()
            .filter(|s| s.counter > 0)
            .map(|s| {
                rtcp::sender_report(s.ssrc, ntp, s.timestamp, s.counter as u32, s.octets as u32)
            })
            .collect();
        (!packets.is_empty()).then(|| rtcp::compound(&packets))
    }

    /// Packets sent per stream, for the delivery check.
    pub fn sent_streams(&self, publisher: &str) -> Vec<SentStream> {
        self.streams
            .iter()
            .map(|s| SentStream {
                stream_id: s.stream_id,
                publisher: publisher.to_owned(),
                kind: if self.cfg.video { "video" } else { "audio" },
                layer: s.layer,
                packets: s.counter,
            })
            .collect()
    }
}

fn trailer(stream_id: u32, counter: u64) -> Trailer {
    Trailer {
        stream_id,
        counter,
        send_ns: now_ns(),
    }
}

/// Counts the packet, keeps it for RTX and advances the stream.
fn finish_packet(s: &mut OutStream, p: &[u8], counters: &RoleCounters) {
    let slot = &mut s.history[usize::from(s.seq) % HISTORY];
    slot.clear();
    slot.extend_from_slice(p);
    s.seq = s.seq.wrapping_add(1);
    s.counter += 1;
    s.octets += p.len() as u64;
    bump(&counters.rtp_sent);
    add(&counters.bytes_sent, p.len() as u64);
}

/// abs-send-time: 6.18 fixed-point seconds, 24 bits.
fn abs_send_time() -> [u8; 3] {
    let ns = now_ns();
    let v = ((u128::from(ns) << 18) / 1_000_000_000) as u32 & 0x00ff_ffff;
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// The wall clock as a 64-bit NTP timestamp.
pub fn ntp_now() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    secs << 32 | frac
}

/// Reads the publisher's incoming RTCP (PLI, FIR, NACK; RR, REMB and transport-cc are counted)
/// and hands requests to the publisher's task.
pub struct PublisherRtcp {
    pub counters: Arc<super::stats::LiveCounters>,
    pub role: super::stats::Role,
    pub tx: mpsc::UnboundedSender<Feedback>,
}

impl MediaHandler for PublisherRtcp {
    fn on_media(&self, packet: &[u8], kind: PacketKind, srtp: &mut SrtpSession) -> bool {
        let c = self.counters.role(self.role);
        if kind != PacketKind::Rtcp {
            bump(&c.unknown_ssrc);
            return true;
        }
        let Ok(plain) = srtp.unprotect_rtcp(packet) else {
            bump(&c.verify_failed);
            return true;
        };
        let Ok(packets) = rtcp::parse(&plain) else {
            return true;
        };
        for p in packets {
            bump(&c.rtcp_received);
            let any = p.as_any();
            if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                bump(&c.plis_received);
                let _ = self.tx.unbounded_send(Feedback::KeyFrame(pli.media_ssrc));
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                bump(&c.plis_received);
                for e in &fir.fir {
                    let _ = self.tx.unbounded_send(Feedback::KeyFrame(e.ssrc));
                }
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                let seqs: Vec<u16> = nack
                    .nacks
                    .iter()
                    .flat_map(|pair| pair.packet_list())
                    .collect();
                add(&c.nack_seqs_received, seqs.len() as u64);
                let _ = self
                    .tx
                    .unbounded_send(Feedback::Nack(nack.media_ssrc, seqs));
            }
        }
        true
    }
}

/// Shared handle used by the peer's tasks.
pub type SharedPublisher = Rc<RefCell<Publisher>>;
