//! mediasoup's `RTC::IceServer` as a sans-IO state machine: ICE-lite, always controlled, answering the
//! browser's connectivity checks and tracking which remote addresses (tuples) are validated and which
//! one is selected.
//!
//! Inputs are parsed STUN messages, tuples and explicit `Instant`s; outputs are bytes written into a
//! caller's buffer (the response, to be sent to `tuple.remote`) and [`IceEvent`]s drained with
//! [`IceServer::poll_event`]. The event queue is allocated once in [`IceServer::new`] and stays
//! within that capacity when the caller drains it after every call, so nothing allocates per packet.
//!
//! Behaviour follows mediasoup 3.14 (`IceServer.cpp`):
//! * only Binding requests are processed; other requests get 400, indications and responses are
//!   ignored (ICE-lite sends no requests of its own);
//! * a request without FINGERPRINT or PRIORITY gets 400, one without USERNAME or MESSAGE-INTEGRITY
//!   400, one whose USERNAME is not `<our ufrag>:<remote ufrag>` or whose MESSAGE-INTEGRITY fails 401,
//!   one carrying ICE-CONTROLLED 487; a FINGERPRINT that does not match means "not STUN": dropped
//!   without an answer (mediasoup's parser refuses such packets).
//! * An unknown ufrag is answered 401 here, like mediasoup's IceServer. With a shared port
//!   (mediasoup's WebRtcServer) the demultiplexer looks up the transport by the ufrag before
//!   reaching any IceServer and drops (and counts) unknown ones, as mediasoup does.
//! * Up to 8 tuples; the oldest one that is neither the new nor the selected one is evicted.
//! * Consent freshness (RFC 7675, receive side only): once connected, every valid request restarts a
//!   `consent_timeout` timer; expiry drops all tuples and moves to `disconnected`.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::stun::{
    write_binding_error_response, write_binding_success_response, StunClass, StunMessage,
};

/// mediasoup keeps at most this many validated tuples per transport.
pub const MAX_TUPLES: usize = 8;
/// mediasoup clamps `iceConsentTimeout` to this range (0 disables it).
pub const MIN_CONSENT_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`MIN_CONSENT_TIMEOUT`].
pub const MAX_CONSENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Room for the events of one call (consent expiry with 8 tuples is the largest: 9).
const EVENT_QUEUE_CAPACITY: usize = 2 * MAX_TUPLES + 4;

/// Transport protocol of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// UDP.
    Udp,
    /// TCP (RFC 4571 framing), one connection per tuple.
    Tcp,
}

/// A local/remote address pair over one protocol: where a check came from and where answers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportTuple {
    /// Our socket's address.
    pub local: SocketAddr,
    /// The peer's address (what XOR-MAPPED-ADDRESS reports back).
    pub remote: SocketAddr,
    /// UDP or TCP.
    pub protocol: Protocol,
}

/// ICE state as mediasoup reports `iceState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceState {
    /// No valid check yet.
    #[default]
    New,
    /// A valid check arrived, nothing nominated yet.
    Connected,
    /// The browser nominated a tuple.
    Completed,
    /// Consent expired or every tuple went away; a new valid check reconnects.
    Disconnected,
    /// The transport was closed.
    Closed,
}

/// Something the transport must act on (mediasoup's `IceServer::Listener` callbacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// `iceState` changed.
    StateChanged(IceState),
    /// Media and DTLS must now be sent to this tuple (`iceselectedtuplechange`).
    SelectedTupleChanged(TransportTuple),
    /// A new tuple was validated (a shared-port demultiplexer maps it to this transport).
    TupleAdded(TransportTuple),
    /// A tuple is no longer valid (evicted, consent expired, TCP closed, or closing).
    TupleRemoved(TransportTuple),
    /// After an ICE restart, the first check with the new credentials arrived: the previous ufrag
    /// is no longer accepted (a ufrag demultiplexer may forget it).
    OldUsernameFragmentRemoved,
}

/// What was done with a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceOutcome {
    /// A valid Binding request: answered with a success response, tuple handled.
    Accepted,
    /// A request answered with this STUN error code (400, 401 or 487).
    Rejected(u16),
    /// An indication or a response: nothing to do.
    Ignored,
    /// Not answered: FINGERPRINT mismatch, or the server is closed.
    Dropped,
}

/// The result of [`IceServer::handle_stun`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceResponse {
    /// Bytes at the start of `out` to send to `tuple.remote`; 0 when there is nothing to send
    /// (including when `out` was too small, which is a caller bug: 128 bytes are always enough).
    pub len: usize,
    /// What happened, for the caller's counters and logs.
    pub outcome: IceOutcome,
}

impl IceResponse {
    fn new(len: usize, outcome: IceOutcome) -> Self {
        IceResponse { len, outcome }
    }
}

struct Credentials {
    username_fragment: String,
    password: String,
}

/// How a request's USERNAME and MESSAGE-INTEGRITY compare with our credentials.
enum Authentication {
    Ok,
    Unauthorized,
    BadMessage,
}

fn check_authentication(msg: &StunMessage<'_>, creds: &Credentials) -> Authentication {
    let Some(username) = msg.username_bytes() else {
        return Authentication::BadMessage;
    };
    if !msg.has_message_integrity() {
        return Authentication::BadMessage;
    }
    // `<our ufrag>:<their ufrag>`; mediasoup does not look at the remote part.
    let ufrag = creds.username_fragment.as_bytes();
    let matches = username.len() > ufrag.len()
        && username.starts_with(ufrag)
        && username.get(ufrag.len()) == Some(&b':');
    if matches && msg.verify_integrity(creds.password.as_bytes()) {
        Authentication::Ok
    } else {
        Authentication::Unauthorized
    }
}

/// ICE-lite server of one WebRtcTransport.
pub struct IceServer {
    credentials: Credentials,
    /// The credentials before the last `restart_ice`, accepted until a check uses the new ones.
    old_credentials: Option<Credentials>,
    consent_timeout: Option<Duration>,
    consent_deadline: Option<Instant>,
    state: IceState,
    /// Oldest first.
    tuples: Vec<TransportTuple>,
    selected_tuple: Option<TransportTuple>,
    remote_nomination: u32,
    events: VecDeque<IceEvent>,
}

impl fmt::Debug for IceServer {
    // Leaves the passwords out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("username_fragment", &self.credentials.username_fragment)
            .field("state", &self.state)
            .field("tuples", &self.tuples)
            .field("selected_tuple", &self.selected_tuple)
            .field("remote_nomination", &self.remote_nomination)
            .field("consent_deadline", &self.consent_deadline)
            .finish_non_exhaustive()
    }
}

impl IceServer {
    /// `consent_timeout`: `None` or zero disables consent checking; other values are clamped to
    /// 10..=60 s like mediasoup's `iceConsentTimeout`.
    pub fn new(
        username_fragment: String,
        password: String,
        consent_timeout: Option<Duration>,
    ) -> Self {
        let consent_timeout = consent_timeout
            .filter(|t| !t.is_zero())
            .map(|t| t.clamp(MIN_CONSENT_TIMEOUT, MAX_CONSENT_TIMEOUT));
        IceServer {
            credentials: Credentials {
                username_fragment,
                password,
            },
            old_credentials: None,
            consent_timeout,
            consent_deadline: None,
            state: IceState::New,
            tuples: Vec::with_capacity(MAX_TUPLES + 1),
            selected_tuple: None,
            remote_nomination: 0,
            events: VecDeque::with_capacity(EVENT_QUEUE_CAPACITY),
        }
    }

    /// Current `iceState`.
    pub fn state(&self) -> IceState {
        self.state
    }

    /// The tuple media goes to, once connected.
    pub fn selected_tuple(&self) -> Option<TransportTuple> {
        self.selected_tuple
    }

    /// Every validated tuple, oldest first.
    pub fn tuples(&self) -> &[TransportTuple] {
        &self.tuples
    }

    /// Our ufrag (`iceParameters.usernameFragment`).
    pub fn local_username_fragment(&self) -> &str {
        &self.credentials.username_fragment
    }

    /// Our password (`iceParameters.password`).
    pub fn local_password(&self) -> &str {
        &self.credentials.password
    }

    /// The ufrag before the last ICE restart while it is still accepted.
    pub fn old_username_fragment(&self) -> Option<&str> {
        self.old_credentials
            .as_ref()
            .map(|c| c.username_fragment.as_str())
    }

    /// The consent timeout in force after clamping (`None`: disabled).
    pub fn consent_timeout(&self) -> Option<Duration> {
        self.consent_timeout
    }

    /// Whether DTLS/RTP/RTCP from `remote` over `protocol` may be accepted: it passed a check.
    pub fn is_valid_tuple(&self, remote: SocketAddr, protocol: Protocol) -> bool {
        self.tuples
            .iter()
            .any(|t| t.remote == remote && t.protocol == protocol)
    }

    /// Next event to act on; drain after every call so the queue never grows.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.consent_deadline
    }

    /// Fires the consent timer when due: no valid check for `consent_timeout` → `disconnected`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.consent_deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        self.consent_deadline = None;
        if matches!(self.state, IceState::Connected | IceState::Completed) {
            self.remove_all_tuples();
            self.remote_nomination = 0;
            self.set_state(IceState::Disconnected);
        }
    }

    /// New local credentials (`restartIce`). The old ufrag/password keep being accepted until the
    /// first valid check with the new ones; the consent timer restarts to give the browser time.
    pub fn restart_ice(&mut self, username_fragment: String, password: String, now: Instant) {
        if self.state == IceState::Closed {
            return;
        }
        let old = std::mem::replace(
            &mut self.credentials,
            Credentials {
                username_fragment,
                password,
            },
        );
        self.old_credentials = Some(old);
        self.remote_nomination = 0;
        if self.consent_deadline.is_some() {
            self.restart_consent(now);
        }
    }

    /// Forget a tuple whose TCP connection closed. If it was the selected one another becomes
    /// selected, or, if none is left, the state becomes `disconnected`.
    pub fn remove_tuple(&mut self, tuple: &TransportTuple, now: Instant) {
        let Some(index) = self.tuples.iter().position(|t| t == tuple) else {
            return;
        };
        let removed = self.tuples.remove(index);
        self.events.push_back(IceEvent::TupleRemoved(removed));
        if self.selected_tuple != Some(removed) {
            return;
        }
        self.selected_tuple = None;
        let connected = matches!(self.state, IceState::Connected | IceState::Completed);
        match self.tuples.last().copied() {
            // mediasoup picks the most recently added one.
            Some(next) if connected => {
                self.set_selected_tuple(next);
                self.restart_consent(now);
            }
            _ => {
                self.remote_nomination = 0;
                self.consent_deadline = None;
                if connected {
                    self.set_state(IceState::Disconnected);
                }
            }
        }
    }

    /// The transport closed: every tuple goes, state `closed`; later input is dropped.
    pub fn close(&mut self) {
        if self.state == IceState::Closed {
            return;
        }
        self.remove_all_tuples();
        self.consent_deadline = None;
        self.old_credentials = None;
        self.set_state(IceState::Closed);
    }

    /// Handles one STUN message received on `tuple`, writing any answer into `out` (128 bytes are
    /// always enough). Events go to the queue read by [`poll_event`](Self::poll_event).
    pub fn handle_stun(
        &mut self,
        msg: &StunMessage<'_>,
        tuple: TransportTuple,
        now: Instant,
        out: &mut [u8],
    ) -> IceResponse {
        if self.state == IceState::Closed {
            return IceResponse::new(0, IceOutcome::Dropped);
        }
        if msg.has_fingerprint() && !msg.verify_fingerprint() {
            return IceResponse::new(0, IceOutcome::Dropped);
        }
        if msg.class() != StunClass::Request {
            return IceResponse::new(0, IceOutcome::Ignored);
        }
        if !msg.is_binding() || !msg.has_fingerprint() || msg.priority().unwrap_or(0) == 0 {
            return Self::reject(msg, out, 400, None);
        }

        // Which password authenticated the request; it also signs the answer.
        let use_old = match check_authentication(msg, &self.credentials) {
            Authentication::Ok => {
                if self.old_credentials.take().is_some() {
                    self.events.push_back(IceEvent::OldUsernameFragmentRemoved);
                }
                false
            }
            Authentication::BadMessage => return Self::reject(msg, out, 400, None),
            Authentication::Unauthorized => match &self.old_credentials {
                Some(old) if matches!(check_authentication(msg, old), Authentication::Ok) => true,
                _ => return Self::reject(msg, out, 401, None),
            },
        };
        let password = match (&self.old_credentials, use_old) {
            (Some(old), true) => old.password.as_bytes(),
            _ => self.credentials.password.as_bytes(),
        };

        // We are controlled; the browser must be controlling.
        if msg.ice_controlled().is_some() {
            return Self::reject(msg, out, 487, Some(password));
        }

        // Chrome checks from its LAN address even towards 127.0.0.1: answer whatever sent it.
        let len = write_binding_success_response(out, msg.transaction_id(), tuple.remote, password)
            .unwrap_or(0);

        self.handle_tuple(tuple, msg.use_candidate(), msg.nomination());
        if matches!(self.state, IceState::Connected | IceState::Completed) {
            self.restart_consent(now);
        }
        IceResponse::new(len, IceOutcome::Accepted)
    }

    fn reject(
        msg: &StunMessage<'_>,
        out: &mut [u8],
        code: u16,
        password: Option<&[u8]>,
    ) -> IceResponse {
        let len =
            write_binding_error_response(out, msg.transaction_id(), code, password).unwrap_or(0);
        IceResponse::new(len, IceOutcome::Rejected(code))
    }

    /// mediasoup's `HandleTuple`: store the tuple, and on nomination (USE-CANDIDATE, or a NOMINATION
    /// higher than the last one) select it.
    fn handle_tuple(
        &mut self,
        tuple: TransportTuple,
        use_candidate: bool,
        nomination: Option<u32>,
    ) {
        self.add_tuple(tuple);
        let nominated = use_candidate || nomination.is_some();
        // A NOMINATION not above the last one is stale: it does not move anything, even with
        // USE-CANDIDATE (mediasoup).
        let nomination_wins = nomination.is_none_or(|n| n > self.remote_nomination);
        match self.state {
            IceState::New | IceState::Disconnected => {
                // Selection first, as mediasoup notifies it before `connected`/`completed`.
                if !nominated {
                    self.set_selected_tuple(tuple);
                    self.set_state(IceState::Connected);
                } else if nomination_wins {
                    self.set_selected_tuple(tuple);
                    self.set_state(IceState::Completed);
                    self.update_nomination(nomination);
                }
            }
            IceState::Connected | IceState::Completed => {
                if nominated && nomination_wins {
                    self.set_selected_tuple(tuple);
                    self.set_state(IceState::Completed);
                    self.update_nomination(nomination);
                }
            }
            IceState::Closed => {}
        }
    }

    fn update_nomination(&mut self, nomination: Option<u32>) {
        if let Some(n) = nomination {
            self.remote_nomination = self.remote_nomination.max(n);
        }
    }

    fn add_tuple(&mut self, tuple: TransportTuple) {
        if self.tuples.contains(&tuple) {
            return;
        }
        self.tuples.push(tuple);
        self.events.push_back(IceEvent::TupleAdded(tuple));
        if self.tuples.len() > MAX_TUPLES {
            let selected = self.selected_tuple;
            if let Some(index) = self
                .tuples
                .iter()
                .position(|t| *t != tuple && Some(*t) != selected)
            {
                let removed = self.tuples.remove(index);
                self.events.push_back(IceEvent::TupleRemoved(removed));
            }
        }
    }

    fn remove_all_tuples(&mut self) {
        for t in self.tuples.drain(..) {
            self.events.push_back(IceEvent::TupleRemoved(t));
        }
        self.selected_tuple = None;
    }

    fn set_selected_tuple(&mut self, tuple: TransportTuple) {
        if self.selected_tuple != Some(tuple) {
            self.selected_tuple = Some(tuple);
            self.events.push_back(IceEvent::SelectedTupleChanged(tuple));
        }
    }

    fn set_state(&mut self, state: IceState) {
        if self.state != state {
            self.state = state;
            self.events.push_back(IceEvent::StateChanged(state));
        }
    }

    fn restart_consent(&mut self, now: Instant) {
        self.consent_deadline = self.consent_timeout.map(|t| now + t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::stun::{BindingRequest, StunMessage};

    const UFRAG: &str = "serverufrag";
    const PWD: &str = "serverpassword0123456789abcdefgh";

    fn tuple(port: u16) -> TransportTuple {
        TransportTuple {
            local: "127.0.0.1:40000".parse().expect("addr"),
            remote: SocketAddr::new("192.168.1.20".parse().expect("ip"), port),
            protocol: Protocol::Udp,
        }
    }

    fn server() -> IceServer {
        IceServer::new(
            UFRAG.to_owned(),
            PWD.to_owned(),
            Some(Duration::from_secs(20)),
        )
    }

    fn check<'a>(username: &'a str, password: &'a str) -> BindingRequest<'a> {
        BindingRequest::controlling([1; 12], username, password.as_bytes(), 1_845_501_695, 77)
    }

    /// What the server answered, as the browser would read it.
    struct Answer {
        class: StunClass,
        code: Option<u16>,
        mapped: Option<SocketAddr>,
        /// MESSAGE-INTEGRITY verifies with the password given to `send`.
        integrity_ok: bool,
        has_integrity: bool,
    }

    /// The outcome of one check sent with `send`, with the events it produced.
    struct Exchange {
        outcome: IceOutcome,
        answer: Option<Answer>,
        events: Vec<IceEvent>,
    }

    fn send(
        ice: &mut IceServer,
        req: &BindingRequest<'_>,
        t: TransportTuple,
        now: Instant,
        pwd: &str,
    ) -> Exchange {
        let mut buf = [0u8; 512];
        let n = req.write(&mut buf).expect("write");
        let msg = StunMessage::parse(&buf[..n]).expect("parse");
        let mut out = [0u8; 128];
        let r = ice.handle_stun(&msg, t, now, &mut out);
        let answer = (r.len > 0).then(|| {
            let a = StunMessage::parse(&out[..r.len]).expect("answer parses");
            assert_eq!(a.transaction_id(), &req.transaction_id);
            assert!(a.verify_fingerprint(), "answers carry FINGERPRINT");
            Answer {
                class: a.class(),
                code: a.error_code(),
                mapped: a.xor_mapped_address(),
                integrity_ok: a.verify_integrity(pwd.as_bytes()),
                has_integrity: a.has_message_integrity(),
            }
        });
        let events = std::iter::from_fn(|| ice.poll_event()).collect();
        Exchange {
            outcome: r.outcome,
            answer,
            events,
        }
    }

    fn username() -> String {
        format!("{UFRAG}:chromeufrag")
    }

    #[test]
    fn valid_check_connects_and_answers_source_address() {
        let mut ice = server();
        let now = Instant::now();
        let u = username();
        let x = send(&mut ice, &check(&u, PWD), tuple(5000), now, PWD);
        assert_eq!(x.outcome, IceOutcome::Accepted);
        let a = x.answer.expect("answered");
        assert_eq!(a.class, StunClass::SuccessResponse);
        assert_eq!(a.code, None);
        assert_eq!(a.mapped, Some(tuple(5000).remote));
        assert!(a.integrity_ok);
        assert_eq!(
            x.events,
            vec![
                IceEvent::TupleAdded(tuple(5000)),
                IceEvent::SelectedTupleChanged(tuple(5000)),
                IceEvent::StateChanged(IceState::Connected),
            ]
        );
        assert_eq!(ice.state(), IceState::Connected);
        assert_eq!(ice.selected_tuple(), Some(tuple(5000)));
        assert!(ice.is_valid_tuple(tuple(5000).remote, Protocol::Udp));
        assert!(!ice.is_valid_tuple(tuple(5000).remote, Protocol::Tcp));
        assert!(!ice.is_valid_tuple(tuple(5001).remote, Protocol::Udp));
        assert_eq!(ice.poll_timeout(), Some(now + Duration::from_secs(20)));
    }

    #[test]
    fn wrong_password_is_401_without_integrity() {
        let mut ice = server();
        let u = username();
        let x = send(&mut ice, &check(&u, "nope"), tuple(1), Instant::now(), PWD);
        assert_eq!(x.outcome, IceOutcome::Rejected(401));
        let a = x.answer.expect("answered");
        assert_eq!(a.class, StunClass::ErrorResponse);
        assert_eq!(a.code, Some(401));
        assert!(!a.has_integrity);
        assert!(x.events.is_empty());
        assert_eq!(ice.state(), IceState::New);
        assert!(!ice.is_valid_tuple(tuple(1).remote, Protocol::Udp));
    }

    #[test]
    fn unknown_ufrag_is_401() {
        let mut ice = server();
        for u in [
            "otherufrag:chrome",
            "serverufra:x",
            "serverufragx:chrome",
            UFRAG,
        ] {
            let x = send(&mut ice, &check(u, PWD), tuple(1), Instant::now(), PWD);
            assert_eq!(x.outcome, IceOutcome::Rejected(401), "{u}");
        }
        assert_eq!(ice.state(), IceState::New);
    }

    #[test]
    fn missing_attributes_are_400() {
        let mut ice = server();
        let now = Instant::now();
        let u = username();
        let cases = [
            BindingRequest {
                fingerprint: false,
                ..check(&u, PWD)
            },
            BindingRequest {
                priority: None,
                ..check(&u, PWD)
            },
            BindingRequest {
                priority: Some(0),
                ..check(&u, PWD)
            },
            BindingRequest {
                username: None,
                ..check(&u, PWD)
            },
            BindingRequest {
                password: None,
                ..check(&u, PWD)
            },
        ];
        for (i, req) in cases.iter().enumerate() {
            let x = send(&mut ice, req, tuple(1), now, PWD);
            assert_eq!(x.outcome, IceOutcome::Rejected(400), "case {i}");
            let a = x.answer.expect("answered");
            assert_eq!(
                (a.class, a.code, a.has_integrity),
                (StunClass::ErrorResponse, Some(400), false)
            );
        }
        assert_eq!(ice.state(), IceState::New);
        assert!(ice.tuples().is_empty());
    }

    #[test]
    fn ice_controlled_is_487_with_integrity() {
        let mut ice = server();
        let u = username();
        let req = BindingRequest {
            ice_controlling: None,
            ice_controlled: Some(5),
            ..check(&u, PWD)
        };
        let x = send(&mut ice, &req, tuple(1), Instant::now(), PWD);
        assert_eq!(x.outcome, IceOutcome::Rejected(487));
        let a = x.answer.expect("answered");
        assert_eq!(a.code, Some(487));
        assert!(a.integrity_ok);
        assert_eq!(ice.state(), IceState::New);
    }

    #[test]
    fn indications_and_responses_are_ignored_and_bad_fingerprint_dropped() {
        let mut ice = server();
        let mut out = [0u8; 128];
        let mut buf = [0u8; 128];
        let n = write_binding_success_response(&mut buf, &[2; 12], tuple(1).remote, b"x")
            .expect("write");
        let msg = StunMessage::parse(&buf[..n]).expect("parse");
        let r = ice.handle_stun(&msg, tuple(1), Instant::now(), &mut out);
        assert_eq!(r, IceResponse::new(0, IceOutcome::Ignored));

        let u = username();
        let n = check(&u, PWD).write(&mut buf).expect("write");
        buf[n - 1] ^= 0xff;
        let msg = StunMessage::parse(&buf[..n]).expect("parse");
        let r = ice.handle_stun(&msg, tuple(1), Instant::now(), &mut out);
        assert_eq!(r, IceResponse::new(0, IceOutcome::Dropped));
        assert_eq!(ice.state(), IceState::New);
        assert!(ice.poll_event().is_none());
    }

    #[test]
    fn use_candidate_selects_and_completes() {
        let mut ice = server();
        let now = Instant::now();
        let u = username();
        send(&mut ice, &check(&u, PWD), tuple(1), now, PWD);
        let x = send(&mut ice, &check(&u, PWD), tuple(2), now, PWD);
        assert_eq!(x.events, vec![IceEvent::TupleAdded(tuple(2))]);
        assert_eq!(ice.selected_tuple(), Some(tuple(1)));
        let nominate = BindingRequest {
            use_candidate: true,
            ..check(&u, PWD)
        };
        let x = send(&mut ice, &nominate, tuple(2), now, PWD);
        assert_eq!(
            x.events,
            vec![
                IceEvent::SelectedTupleChanged(tuple(2)),
                IceEvent::StateChanged(IceState::Completed),
            ]
        );
        assert_eq!(ice.state(), IceState::Completed);
        assert_eq!(ice.selected_tuple(), Some(tuple(2)));
        // A nomination straight from `new` completes at once.
        let mut ice = server();
        send(&mut ice, &nominate, tuple(3), now, PWD);
        assert_eq!(ice.state(), IceState::Completed);
        assert_eq!(ice.selected_tuple(), Some(tuple(3)));
    }

    #[test]
    fn renomination_moves_selected_tuple_only_upwards() {
        let mut ice = server();
        let now = Instant::now();
        let u = username();
        let nominate = |n| BindingRequest {
            nomination: Some(n),
            ..check(&u, PWD)
        };
        send(&mut ice, &nominate(1), tuple(1), now, PWD);
        assert_eq!(ice.state(), IceState::Completed);
        assert_eq!(ice.selected_tuple(), Some(tuple(1)));
        let x = send(&mut ice, &nominate(2), tuple(2), now, PWD);
        assert_eq!(
            x.events,
            vec![
                IceEvent::TupleAdded(tuple(2)),
                IceEvent::SelectedTupleChanged(tuple(2)),
            ]
        );
        // Stale (not higher) nomination: stored, but the selection stays.
        let x = send(&mut ice, &nominate(2), tuple(3), now, PWD);
        assert_eq!(x.outcome, IceOutcome::Accepted);
        assert_eq!(x.events, vec![IceEvent::TupleAdded(tuple(3))]);
        assert_eq!(ice.selected_tuple(), Some(tuple(2)));
        // Even with USE-CANDIDATE, a stale NOMINATION does not win (mediasoup).
        let stale = BindingRequest {
            use_candidate: true,
            ..nominate(1)
        };
        send(&mut ice, &stale, tuple(3), now, PWD);
        assert_eq!(ice.selected_tuple(), Some(tuple(2)));
        send(&mut ice, &nominate(3), tuple(1), now, PWD);
        assert_eq!(ice.selected_tuple(), Some(tuple(1)));
    }

    #[test]
    fn consent_expiry_disconnects_and_a_check_recovers() {
        let mut ice = server();
        let t0 = Instant::now();
        let u = username();
        let nominate = BindingRequest {
            use_candidate: true,
            ..check(&u, PWD)
        };
        send(&mut ice, &nominate, tuple(1), t0, PWD);
        send(&mut ice, &check(&u, PWD), tuple(2), t0, PWD);
        // Checks keep consent alive.
        let t1 = t0 + Duration::from_secs(15);
        send(&mut ice, &check(&u, PWD), tuple(1), t1, PWD);
        assert_eq!(ice.poll_timeout(), Some(t1 + Duration::from_secs(20)));
        ice.handle_timeout(t0 + Duration::from_secs(21));
        assert_eq!(ice.state(), IceState::Completed);
        // Silence for the timeout: disconnected, tuples dropped.
        ice.handle_timeout(t1 + Duration::from_secs(20));
        let events: Vec<_> = std::iter::from_fn(|| ice.poll_event()).collect();
        assert_eq!(
            events,
            vec![
                IceEvent::TupleRemoved(tuple(1)),
                IceEvent::TupleRemoved(tuple(2)),
                IceEvent::StateChanged(IceState::Disconnected),
            ]
        );
        assert_eq!(ice.state(), IceState::Disconnected);
        assert_eq!(ice.selected_tuple(), None);
        assert!(!ice.is_valid_tuple(tuple(1).remote, Protocol::Udp));
        assert_eq!(ice.poll_timeout(), None);
        // A later valid check brings it back.
        let t2 = t1 + Duration::from_secs(30);
        let x = send(&mut ice, &check(&u, PWD), tuple(1), t2, PWD);
        assert_eq!(x.outcome, IceOutcome::Accepted);
        assert_eq!(ice.state(), IceState::Connected);
        assert_eq!(ice.selected_tuple(), Some(tuple(1)));
        assert_eq!(ice.poll_timeout(), Some(t2 + Duration::from_secs(20)));
        send(&mut ice, &nominate, tuple(1), t2, PWD);
        assert_eq!(ice.state(), IceState::Completed);
    }

    #[test]
    fn consent_disabled_and_clamped() {
        let t0 = Instant::now();
        let u = username();
        for timeout in [None, Some(Duration::ZERO)] {
            let mut ice = IceServer::new(UFRAG.into(), PWD.into(), timeout);
            send(&mut ice, &check(&u, PWD), tuple(1), t0, PWD);
            assert_eq!(ice.poll_timeout(), None);
            ice.handle_timeout(t0 + Duration::from_secs(3600));
            assert_eq!(ice.state(), IceState::Connected);
        }
        let ice = IceServer::new(UFRAG.into(), PWD.into(), Some(Duration::from_secs(1)));
        assert_eq!(ice.consent_timeout(), Some(Duration::from_secs(10)));
        let ice = IceServer::new(UFRAG.into(), PWD.into(), Some(Duration::from_secs(600)));
        assert_eq!(ice.consent_timeout(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn restart_ice_accepts_old_until_new_is_used() {
        let mut ice = server();
        let t0 = Instant::now();
        let old_u = username();
        send(&mut ice, &check(&old_u, PWD), tuple(1), t0, PWD);
        let t1 = t0 + Duration::from_secs(10);
        ice.restart_ice("newufrag".into(), "newpassword".into(), t1);
        assert_eq!(ice.local_username_fragment(), "newufrag");
        assert_eq!(ice.local_password(), "newpassword");
        assert_eq!(ice.old_username_fragment(), Some(UFRAG));
        // The consent timer restarted.
        assert_eq!(ice.poll_timeout(), Some(t1 + Duration::from_secs(20)));
        // Old credentials still work, answered with the old password.
        let x = send(&mut ice, &check(&old_u, PWD), tuple(1), t1, PWD);
        assert_eq!(x.outcome, IceOutcome::Accepted);
        assert!(x.answer.expect("answered").integrity_ok);
        // The first check with the new ones retires the old ones.
        let new_u = "newufrag:chrome2";
        let x = send(
            &mut ice,
            &check(new_u, "newpassword"),
            tuple(1),
            t1,
            "newpassword",
        );
        assert_eq!(x.outcome, IceOutcome::Accepted);
        assert!(x.answer.expect("answered").integrity_ok);
        assert_eq!(x.events, vec![IceEvent::OldUsernameFragmentRemoved]);
        assert_eq!(ice.old_username_fragment(), None);
        let x = send(&mut ice, &check(&old_u, PWD), tuple(1), t1, PWD);
        assert_eq!(x.outcome, IceOutcome::Rejected(401));
        // New ufrag with the old password is not accepted either.
        let x = send(&mut ice, &check(new_u, PWD), tuple(1), t1, PWD);
        assert_eq!(x.outcome, IceOutcome::Rejected(401));
    }

    #[test]
    fn eight_tuple_cap_evicts_oldest_unselected() {
        let mut ice = server();
        let now = Instant::now();
        let u = username();
        for port in 1..=MAX_TUPLES as u16 {
            send(&mut ice, &check(&u, PWD), tuple(port), now, PWD);
        }
        assert_eq!(ice.tuples().len(), MAX_TUPLES);
        assert_eq!(ice.selected_tuple(), Some(tuple(1)));
        // The 9th evicts the oldest one that is not selected: port 2.
        let x = send(&mut ice, &check(&u, PWD), tuple(9), now, PWD);
        assert_eq!(
            x.events,
            vec![
                IceEvent::TupleAdded(tuple(9)),
                IceEvent::TupleRemoved(tuple(2)),
            ]
        );
        assert_eq!(ice.tuples().len(), MAX_TUPLES);
        assert!(ice.is_valid_tuple(tuple(1).remote, Protocol::Udp));
        assert!(!ice.is_valid_tuple(tuple(2).remote, Protocol::Udp));
        assert!(ice.is_valid_tuple(tuple(9).remote, Protocol::Udp));
    }

    #[test]
    fn remove_tuple_reselects_then_disconnects() {
        let mut ice = server();
        let now = Instant::now();
        let u = username();
        let tcp = |port| TransportTuple {
            protocol: Protocol::Tcp,
            ..tuple(port)
        };
        send(&mut ice, &check(&u, PWD), tcp(1), now, PWD);
        send(&mut ice, &check(&u, PWD), tcp(2), now, PWD);
        // Not selected: just removed.
        ice.remove_tuple(&tcp(2), now);
        assert_eq!(ice.poll_event(), Some(IceEvent::TupleRemoved(tcp(2))));
        assert_eq!(ice.poll_event(), None);
        send(&mut ice, &check(&u, PWD), tcp(3), now, PWD);
        // Selected: the newest other becomes selected.
        let later = now + Duration::from_secs(5);
        ice.remove_tuple(&tcp(1), later);
        let events: Vec<_> = std::iter::from_fn(|| ice.poll_event()).collect();
        assert_eq!(
            events,
            vec![
                IceEvent::TupleRemoved(tcp(1)),
                IceEvent::SelectedTupleChanged(tcp(3)),
            ]
        );
        assert_eq!(ice.poll_timeout(), Some(later + Duration::from_secs(20)));
        // Last one: disconnected.
        ice.remove_tuple(&tcp(3), later);
        let events: Vec<_> = std::iter::from_fn(|| ice.poll_event()).collect();
        assert_eq!(
            events,
            vec![
                IceEvent::TupleRemoved(tcp(3)),
                IceEvent::StateChanged(IceState::Disconnected),
            ]
        );
        assert_eq!(ice.poll_timeout(), None);
        // Unknown tuple: nothing.
        ice.remove_tuple(&tcp(9), later);
        assert_eq!(ice.poll_event(), None);
    }

    #[test]
    fn close_drops_everything() {
        let mut ice = server();
        let now = Instant::now();
        let u = username();
        send(&mut ice, &check(&u, PWD), tuple(1), now, PWD);
        ice.close();
        let events: Vec<_> = std::iter::from_fn(|| ice.poll_event()).collect();
        assert_eq!(
            events,
            vec![
                IceEvent::TupleRemoved(tuple(1)),
                IceEvent::StateChanged(IceState::Closed),
            ]
        );
        let x = send(&mut ice, &check(&u, PWD), tuple(1), now, PWD);
        assert_eq!(x.outcome, IceOutcome::Dropped);
        assert!(x.answer.is_none());
        assert_eq!(ice.state(), IceState::Closed);
        assert_eq!(ice.poll_timeout(), None);
    }

    #[test]
    fn ice_state_serializes_like_mediasoup() {
        let names: Vec<String> = [
            IceState::New,
            IceState::Connected,
            IceState::Completed,
            IceState::Disconnected,
            IceState::Closed,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).expect("json"))
        .collect();
        assert_eq!(
            names,
            [
                "\"new\"",
                "\"connected\"",
                "\"completed\"",
                "\"disconnected\"",
                "\"closed\""
            ]
        );
        assert_eq!(
            serde_json::to_string(&Protocol::Udp).expect("json"),
            "\"udp\""
        );
    }

    /// Deterministic xorshift so the fuzz run is reproducible without extra crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn assert_invariants(ice: &IceServer) {
        assert!(ice.tuples().len() <= MAX_TUPLES);
        match ice.state() {
            IceState::Connected | IceState::Completed => {
                let s = ice.selected_tuple().expect("selected when connected");
                assert!(ice.tuples().contains(&s));
            }
            IceState::New | IceState::Disconnected | IceState::Closed => {
                assert_eq!(ice.selected_tuple(), None);
            }
        }
        if ice.poll_timeout().is_some() {
            assert!(matches!(
                ice.state(),
                IceState::Connected | IceState::Completed
            ));
        }
    }

    /// Random, truncated and mutated buffers through parse + handle_stun, and random valid or
    /// nearly valid checks interleaved with timeouts, restarts and removals: no panic, invariants
    /// hold, the event queue never outgrows its initial capacity.
    #[test]
    fn fuzz_parse_and_state_machine() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut ice = server();
        let cap = ice.events.capacity();
        let mut now = Instant::now();
        let mut out = [0u8; 128];
        let u = username();
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        for (uc, nom) in [(false, None), (true, None), (false, Some(5))] {
            let mut b = [0u8; 256];
            let req = BindingRequest {
                use_candidate: uc,
                nomination: nom,
                ..check(&u, PWD)
            };
            let n = req.write(&mut b).expect("write");
            seeds.push(b[..n].to_vec());
        }
        let mut accepted = 0;
        for i in 0..40_000u32 {
            let mut buf: Vec<u8> = match rng.below(4) {
                0 => (0..rng.below(120)).map(|_| rng.next() as u8).collect(),
                _ => seeds[rng.below(seeds.len() as u64) as usize].clone(),
            };
            // Mutate, truncate, or fix up the header so deeper parsing is reached.
            for _ in 0..rng.below(4) {
                if !buf.is_empty() {
                    let at = rng.below(buf.len() as u64) as usize;
                    buf[at] = rng.next() as u8;
                }
            }
            if rng.below(4) == 0 {
                let len = rng.below(buf.len() as u64 + 1) as usize;
                buf.truncate(len);
            }
            if rng.below(2) == 0 && buf.len() >= 20 {
                buf[0] &= 0x01;
                buf[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
                let body = ((buf.len() - 20) & !3) as u16;
                buf.truncate(20 + body as usize);
                buf[2..4].copy_from_slice(&body.to_be_bytes());
            }
            let t = tuple(1 + rng.below(12) as u16);
            if let Ok(msg) = StunMessage::parse(&buf) {
                let _ = msg.verify_fingerprint();
                let _ = msg.verify_integrity(PWD.as_bytes());
                let r = ice.handle_stun(&msg, t, now, &mut out);
                assert!(r.len <= out.len());
                if r.len > 0 {
                    assert!(StunMessage::parse(&out[..r.len]).is_ok());
                }
            }
            // Valid checks with random nominations from random tuples.
            if rng.below(3) == 0 {
                let req = BindingRequest {
                    use_candidate: rng.below(4) == 0,
                    nomination: (rng.below(4) == 0).then(|| rng.below(6) as u32),
                    ..check(&u, PWD)
                };
                let x = send(&mut ice, &req, t, now, PWD);
                if x.outcome == IceOutcome::Accepted {
                    accepted += 1;
                }
            }
            match rng.below(200) {
                0 => ice.remove_tuple(&t, now),
                1 => now += Duration::from_secs(rng.below(40)),
                2 => ice.handle_timeout(now),
                _ => {}
            }
            if i % 5000 == 4999 {
                now += Duration::from_secs(25);
                ice.handle_timeout(now);
            }
            assert_invariants(&ice);
            while ice.poll_event().is_some() {}
            assert_eq!(ice.events.capacity(), cap, "event queue reallocated");
        }
        assert!(accepted > 1000, "state machine was exercised: {accepted}");
    }
}
