//! One simulated peer: the mediasoup-demo client's join sequence over protoo, its transports,
//! its producer (if a publisher) and its consumers (answering `newConsumer`), then media until
//! the run ends.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;
use serde_json::{json, Value};

use super::publisher::{Feedback, Publisher, PublisherConfig, PublisherRtcp};
use super::shard::{Phase, ShardCtx};
use super::stats::{bump, record, Role};
use super::subscriber::Receiver;
use crate::peer::{PeerTransport, PeerTransportOptions};
use crate::protoo::{ConnectOptions, ProtooClient, ServerEvent};

/// UDP receive buffer per transport: a subscriber gets a publisher's key frame as one burst.
const RECV_BUFFER: usize = 2 << 20;

/// Where and what one simulated peer is.
#[derive(Debug, Clone)]
pub struct PeerPlan {
    pub index: usize,
    pub room: String,
    pub peer_id: String,
    pub role: Role,
    pub consumes: bool,
    /// When to start joining, from the start of the run.
    pub start_at: Duration,
}

/// The room URL for a peer: `url?roomId=..&peerId=..`.
pub fn peer_url(base: &str, room: &str, peer: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let base = if base.contains('?') || base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    };
    format!("{base}{sep}roomId={room}&peerId={peer}")
}

/// The `join.rtpCapabilities` a Chrome device derives from the router's: Opus, VP8 and VP8's
/// RTX, with every header extension the router offers.
pub fn device_capabilities(router: &Value) -> Value {
    let codecs = router["codecs"].as_array().cloned().unwrap_or_default();
    let vp8_pt = codecs
        .iter()
        .find(|c| {
            c["mimeType"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case("video/VP8"))
        })
        .and_then(|c| c["preferredPayloadType"].as_u64());
    let keep: Vec<Value> = codecs
        .into_iter()
        .filter(|c| {
            let mime = c["mimeType"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            mime == "audio/opus"
                || mime == "video/vp8"
                || (mime == "video/rtx"
                    && c["parameters"]["apt"].as_u64() == vp8_pt
                    && vp8_pt.is_some())
        })
        .collect();
    json!({
        "codecs": keep,
        "headerExtensions": router["headerExtensions"].clone(),
    })
}

/// Runs one peer for the whole run; never panics on what the server sends.
pub async fn run_peer(plan: PeerPlan, ctx: Rc<ShardCtx>) {
    let counters = ctx.sinks.counters.role(plan.role);
    let start = ctx.t0 + plan.start_at;
    let now = Instant::now();
    if start > now {
        glommio::timer::sleep(start - now).await;
    }
    if ctx.phase() >= Phase::StopMedia {
        return;
    }
    let began = Instant::now();
    let session = match join(&plan, &ctx).await {
        Ok(s) => s,
        Err(e) => {
            bump(&counters.join_failed);
            ctx.error(format!("{}: {e}", plan.peer_id));
            return;
        }
    };
    {
        let mut hist = ctx.histograms.borrow_mut();
        let h = &mut hist[plan.role.index()];
        record(&mut h.join_ms, began.elapsed().as_millis() as u64);
    }
    bump(&counters.joined);

    if let Some(publisher) = session.publisher.clone() {
        let tasks = media_loop(&plan, &ctx, &session, publisher);
        tasks.await;
    }
    while ctx.phase() < Phase::Finish {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    // Results.
    if let Some(receiver) = &session.receiver {
        let mut hist = ctx.histograms.borrow_mut();
        let h = &mut hist[plan.role.index()];
        if let Some(first) = receiver.first_packet_at() {
            record(
                &mut h.first_packet_ms,
                first.saturating_duration_since(began).as_millis() as u64,
            );
        }
        let (deliveries, latency) = receiver.finish(&plan.peer_id, &mut h.jitter_us);
        let _ = h.latency_us.add(&latency);
        ctx.final_.borrow_mut().deliveries.extend(deliveries);
    }
    if let Some(publisher) = &session.publisher {
        let sent = publisher.borrow().sent_streams(&plan.peer_id);
        ctx.final_.borrow_mut().sent.extend(sent);
    }
    session.client.close();
    if let Some(t) = session.send_transport.and_then(|t| Rc::try_unwrap(t).ok()) {
        t.close().await;
    }
    let recv = session.recv_transport.borrow_mut().take();
    drop(recv);
}

struct Session {
    client: ProtooClient,
    publisher: Option<Rc<RefCell<Publisher>>>,
    send_transport: Option<Rc<PeerTransport>>,
    feedback: RefCell<Option<mpsc::UnboundedReceiver<Feedback>>>,
    receiver: Option<Rc<Receiver>>,
    recv_transport: RefCell<Option<Rc<PeerTransport>>>,
}

async fn request(client: &ProtooClient, method: &str, data: Value) -> Result<Value, String> {
    client
        .request(method, data)
        .await
        .map_err(|e| format!("{method}: {e}"))
}

fn transport_request(producing: bool) -> Value {
    json!({ "forceTcp": false, "producing": producing, "consuming": !producing })
}

/// connect → getRouterRtpCapabilities → createWebRtcTransport (send, recv) → join, with
/// `newConsumer` answered from the start; then, for publishers, connectWebRtcTransport, ICE +
/// DTLS and produce — the demo client's order.
async fn join(plan: &PeerPlan, ctx: &Rc<ShardCtx>) -> Result<Session, String> {
    let args = &ctx.args;
    let url = peer_url(&args.url, &plan.room, &plan.peer_id);
    let client = ProtooClient::connect(&url, ConnectOptions::default())
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let router = request(&client, "getRouterRtpCapabilities", json!({})).await?;
    let publishes = plan.role != Role::Subscriber;
    let send_answer = if publishes {
        Some(request(&client, "createWebRtcTransport", transport_request(true)).await?)
    } else {
        None
    };
    let (receiver, recv_transport) = if plan.consumes {
        let answer = request(&client, "createWebRtcTransport", transport_request(false)).await?;
        let receiver = Rc::new(Receiver::new(plan.role, args.verify, ctx.sinks.clone()));
        let opts = PeerTransportOptions {
            media_handler: Some(receiver.clone()),
            connect_timeout: Duration::from_secs(20),
            recv_buffer: Some(RECV_BUFFER),
            poll_receive: args.poll_us.map(Duration::from_micros),
            ..PeerTransportOptions::default()
        };
        let transport = PeerTransport::new(&answer, opts)
            .await
            .map_err(|e| format!("recv transport: {e}"))?;
        (Some(receiver), Some((Rc::new(transport), answer)))
    } else {
        (None, None)
    };
    // Answer server requests from now on (newConsumer arrives right after join).
    if let (Some(receiver), Some((transport, answer))) = (&receiver, &recv_transport) {
        glommio::spawn_local(consumer_events(
            client.clone(),
            receiver.clone(),
            transport.clone(),
            answer["id"].clone(),
            ctx.clone(),
        ))
        .detach();
    } else {
        glommio::spawn_local(ignore_events(client.clone(), ctx.clone())).detach();
    }
    let mut join = json!({
        "displayName": plan.peer_id,
        "device": { "flag": "chrome", "name": "Chrome", "version": "156.0.0.0" },
    });
    if plan.consumes {
        join["rtpCapabilities"] = device_capabilities(&router);
    }
    request(&client, "join", join).await?;

    let mut session = Session {
        client: client.clone(),
        publisher: None,
        send_transport: None,
        feedback: RefCell::new(None),
        receiver,
        recv_transport: RefCell::new(recv_transport.map(|(t, _)| t)),
    };
    if let Some(answer) = send_answer {
        let (tx, rx) = mpsc::unbounded();
        let handler = Rc::new(PublisherRtcp {
            counters: ctx.sinks.counters.clone(),
            role: plan.role,
            tx,
        });
        let opts = PeerTransportOptions {
            media_handler: Some(handler),
            connect_timeout: Duration::from_secs(20),
            recv_buffer: Some(RECV_BUFFER),
            poll_receive: args.poll_us.map(Duration::from_micros),
            ..PeerTransportOptions::default()
        };
        let transport = PeerTransport::new(&answer, opts)
            .await
            .map_err(|e| format!("send transport: {e}"))?;
        request(
            &client,
            "connectWebRtcTransport",
            json!({"transportId": answer["id"], "dtlsParameters": transport.local_dtls_parameters()}),
        )
        .await?;
        transport
            .connect()
            .await
            .map_err(|e| format!("send transport ICE/DTLS: {e}"))?;
        let publisher = Publisher::new(PublisherConfig {
            video: plan.role == Role::VideoPublisher,
            simulcast: args.simulcast,
            bitrate: args.bitrate,
            fps: args.fps,
            packet_size: args.packet_size,
            audio_packet_size: args.audio_packet_size,
            keyframe_interval: Duration::from_secs_f64(args.keyframe_interval),
            stream_id_base: (plan.index as u32) * 4,
        });
        let mut produce = publisher.produce_data();
        produce["transportId"] = answer["id"].clone();
        request(&client, "produce", produce).await?;
        session.publisher = Some(Rc::new(RefCell::new(publisher)));
        session.send_transport = Some(Rc::new(transport));
        *session.feedback.borrow_mut() = Some(rx);
    }
    Ok(session)
}

/// Sends frames on schedule and answers PLI/FIR/NACK until the media phase ends.
async fn media_loop(
    plan: &PeerPlan,
    ctx: &Rc<ShardCtx>,
    session: &Session,
    publisher: Rc<RefCell<Publisher>>,
) {
    let Some(transport) = session.send_transport.clone() else {
        return;
    };
    let counters = ctx.sinks.counters.role(plan.role);
    let feedback = session.feedback.borrow_mut().take();
    let feedback_task = feedback.map(|mut rx| {
        let publisher = publisher.clone();
        let transport = transport.clone();
        let ctx = ctx.clone();
        let role = plan.role;
        glommio::spawn_local(async move {
            let counters = ctx.sinks.counters.role(role);
            let mut out = Vec::new();
            while let Some(fb) = rx.next().await {
                match fb {
                    Feedback::KeyFrame(ssrc) => {
                        publisher.borrow_mut().request_key_frame(ssrc);
                    }
                    Feedback::Nack(ssrc, seqs) => {
                        if ctx.phase() >= Phase::Finish {
                            continue;
                        }
                        publisher.borrow_mut().retransmit(ssrc, &seqs, &mut out);
                        for p in out.drain(..) {
                            if transport.send_rtp(&p).await.is_ok() {
                                bump(&counters.rtx_sent);
                            }
                        }
                    }
                }
            }
        })
    });
    let interval = publisher.borrow().interval();
    let mut next = Instant::now();
    let mut out = Vec::new();
    let failed = Cell::new(false);
    while ctx.phase() < Phase::StopMedia {
        publisher.borrow_mut().next_packets(&mut out, counters);
        for p in out.drain(..) {
            if let Err(e) = transport.send_rtp(&p).await {
                if !failed.replace(true) {
                    ctx.error(format!("{}: send: {e}", plan.peer_id));
                }
            }
        }
        let sr = publisher.borrow_mut().sender_reports();
        if let Some(sr) = sr {
            if transport.send_rtcp(&sr).await.is_ok() {
                bump(&counters.sr_sent);
            }
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            glommio::timer::sleep(next - now).await;
        } else if now - next > interval * 4 {
            // Far behind (an overloaded tool): skip frames rather than burst them.
            next = now;
        }
    }
    // One last frame after the media phase ends: receivers no longer simulate loss, so it
    // reveals any gap at the very end of the stream, which is then NACKed and repaired.
    publisher.borrow_mut().next_packets(&mut out, counters);
    for p in out.drain(..) {
        let _ = transport.send_rtp(&p).await;
    }
    // Keep answering NACKs through the drain phase, then stop.
    while ctx.phase() < Phase::Finish {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    drop(feedback_task);
}

/// Answers `newConsumer` (connecting the receive transport on the first, as mediasoup-client
/// does), runs the receiver's RTCP timer, and takes every other event.
async fn consumer_events(
    client: ProtooClient,
    receiver: Rc<Receiver>,
    transport: Rc<PeerTransport>,
    transport_id: Value,
    ctx: Rc<ShardCtx>,
) {
    let connected = Rc::new(Cell::new(false));
    let rtcp_task = {
        let receiver = receiver.clone();
        let transport = transport.clone();
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while ctx.phase() < Phase::Finish {
                glommio::timer::sleep(Duration::from_millis(20)).await;
                if transport.selected_profile().is_none() {
                    continue;
                }
                for p in receiver.due_rtcp() {
                    let _ = transport.send_rtcp(&p).await;
                }
            }
        })
    };
    let mut taken = 0u32;
    while let Some((id, method, data)) = next_request(&client, &ctx, &mut taken).await {
        if method != "newConsumer" {
            client.respond(
                id,
                Err((500, format!("{method} is not supported by shardcast-load"))),
            );
            continue;
        }
        if let Err(e) = receiver.add_consumer(&data) {
            client.respond(id, Err((500, e)));
            continue;
        }
        if !connected.replace(true) {
            let result = client
                .request(
                    "connectWebRtcTransport",
                    json!({"transportId": transport_id, "dtlsParameters": transport.local_dtls_parameters()}),
                )
                .await;
            if let Err(e) = result {
                ctx.error(format!("connectWebRtcTransport (recv): {e}"));
            }
            let t = transport.clone();
            let ctx2 = ctx.clone();
            glommio::spawn_local(async move {
                if let Err(e) = t.connect().await {
                    ctx2.error(format!("recv transport ICE/DTLS: {e}"));
                }
            })
            .detach();
        }
        client.respond(id, Ok(json!({})));
    }
    drop(rtcp_task);
}

/// For peers that consume nothing: takes events so none pile up; rejects requests.
async fn ignore_events(client: ProtooClient, ctx: Rc<ShardCtx>) {
    let mut taken = 0u32;
    while let Some((id, method, _)) = next_request(&client, &ctx, &mut taken).await {
        client.respond(
            id,
            Err((500, format!("{method}: this peer does not consume"))),
        );
    }
}

/// The next server request, taking (and forgetting) notifications on the way; `None` once the
/// run finishes or the connection closes.
async fn next_request(
    client: &ProtooClient,
    ctx: &ShardCtx,
    taken: &mut u32,
) -> Option<(u64, String, Value)> {
    while ctx.phase() < Phase::Finish && !client.closed() {
        let Some(event) = client.next_event(Duration::from_millis(200)).await else {
            continue;
        };
        *taken += 1;
        if taken.is_multiple_of(64) {
            client.forget_taken();
        }
        if let ServerEvent::Request { id, method, data } = event {
            return Some((id, method, data));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_room_and_peer() {
        assert_eq!(
            peer_url("wss://h:4443", "r", "p"),
            "wss://h:4443/?roomId=r&peerId=p"
        );
        assert_eq!(
            peer_url("wss://h:4443/?x=1", "r", "p"),
            "wss://h:4443/?x=1&roomId=r&peerId=p"
        );
    }

    #[test]
    fn device_capabilities_keep_opus_vp8_and_its_rtx() {
        let router = json!({
            "codecs": [
                {"mimeType": "audio/opus", "preferredPayloadType": 100},
                {"mimeType": "video/VP8", "preferredPayloadType": 101},
                {"mimeType": "video/rtx", "preferredPayloadType": 102, "parameters": {"apt": 101}},
                {"mimeType": "video/H264", "preferredPayloadType": 105},
                {"mimeType": "video/rtx", "preferredPayloadType": 106, "parameters": {"apt": 105}},
            ],
            "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid"}],
        });
        let caps = device_capabilities(&router);
        let pts: Vec<u64> = caps["codecs"]
            .as_array()
            .expect("codecs")
            .iter()
            .filter_map(|c| c["preferredPayloadType"].as_u64())
            .collect();
        assert_eq!(pts, vec![100, 101, 102]);
        assert_eq!(caps["headerExtensions"].as_array().map(Vec::len), Some(1));
    }
}
