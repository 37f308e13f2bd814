//! A protoo peer connection: reads frames, runs every request as its own task (the demo client
//! sends connectWebRtcTransport while our newConsumer request is pending), writes replies.

use std::rc::Rc;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures::channel::mpsc;
use futures::StreamExt;
use serde_json::json;

use super::io::Prefixed;
use super::protoo::{self, Incoming, ParseError, ProtooError};
use super::session::{Outgoing, Session};
use crate::app::{App, Counters};
use crate::room::{After, Caller, Room};

/// The version the demo client is told (the reference trace's mediasoup).
pub const MEDIASOUP_VERSION: &str = "3.22.0";
/// protoo-server's WebSocket keepalive period.
const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Invalid messages tolerated on one connection before it is closed.
const MAX_INVALID_MESSAGES: u32 = 64;

pub async fn run(
    app: Rc<App>,
    ws: WebSocketStream<Prefixed>,
    room_id: String,
    peer_id: String,
    consumer_replicas: String,
) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded::<Outgoing>();
    glommio::spawn_local(async move {
        while let Some(out) = rx.next().await {
            match out {
                Outgoing::Text(text) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Outgoing::Ping => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
                Outgoing::Close { code, reason } => {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    let _ = sink.close(Some(frame)).await;
                    return;
                }
            }
        }
        let _ = sink.close(None).await;
    })
    .detach();

    let session = Rc::new(Session::new(app.next_serial(), tx));
    session.notify("mediasoup-version", &json!({"version": MEDIASOUP_VERSION}));
    let pinger = Rc::downgrade(&session);
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(PING_INTERVAL).await;
            match pinger.upgrade() {
                Some(session) if session.ping() => {}
                _ => return,
            }
        }
    })
    .detach();
    let Some(room) = app.get_or_create_room(&room_id, &consumer_replicas) else {
        session.close(1011, "no media shard available");
        return;
    };
    log::info!("room {room_id}: peer {peer_id} connected");
    room.add_peer(&peer_id, session.clone()).await;
    let caller = Caller {
        peer_id: peer_id.clone(),
        session: session.clone(),
    };

    let mut invalid = 0u32;
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Message::Text(text)) => {
                if !on_text(&app, &room, &caller, text.as_str()) {
                    invalid += 1;
                    if invalid > MAX_INVALID_MESSAGES {
                        session.close(1008, "too many invalid protoo messages");
                    }
                }
            }
            // protoo-server ignores binary frames.
            Ok(Message::Binary(_)) => Counters::bump(&app.counters.invalid_messages),
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(WsError::Capacity(e)) => {
                log::info!("peer {peer_id}: {e}");
                session.close(1009, "message too big");
                break;
            }
            Err(e) => {
                log::debug!("peer {peer_id}: websocket error: {e}");
                break;
            }
        }
        if session.is_closed() {
            break;
        }
    }
    log::info!("room {room_id}: peer {peer_id} disconnected");
    session.mark_closed();
    app.peer_disconnected(&room, &peer_id, &session).await;
}

/// Handles one text frame; false when it was not a usable protoo message.
fn on_text(app: &Rc<App>, room: &Rc<Room>, caller: &Caller, text: &str) -> bool {
    match protoo::parse(text) {
        Ok(Incoming::Request { id, method, data }) => {
            Counters::bump(&app.counters.requests);
            let (app, room, caller) = (app.clone(), room.clone(), caller.clone());
            glommio::spawn_local(async move {
                let (reply, after) = room.handle_request(&caller, &method, data).await;
                if reply.is_err() {
                    Counters::bump(&app.counters.error_responses);
                }
                caller.session.respond(id, &reply);
                if reply.is_ok() {
                    match after {
                        After::Nothing => {}
                        After::Joined => room.after_join(&caller),
                        After::Produced(producer_id) => room.after_produce(&caller, &producer_id),
                    }
                }
            })
            .detach();
            true
        }
        Ok(Incoming::Response { id, result }) => {
            if !caller.session.on_response(id, result) {
                log::debug!("peer {}: response to unknown request {id}", caller.peer_id);
            }
            true
        }
        Ok(Incoming::Notification { method, .. }) => {
            log::debug!("peer {}: ignoring notification {method}", caller.peer_id);
            true
        }
        Err(ParseError::BadRequest { id, reason }) => {
            Counters::bump(&app.counters.invalid_messages);
            Counters::bump(&app.counters.error_responses);
            caller
                .session
                .respond(id, &Err(ProtooError::bad_request(reason)));
            false
        }
        Err(ParseError::Invalid(reason)) => {
            Counters::bump(&app.counters.invalid_messages);
            log::debug!(
                "peer {}: dropping invalid message: {reason}",
                caller.peer_id
            );
            false
        }
    }
}
