//! One peer's protoo connection as the rooms see it: send notifications and requests, answer
//! requests, close. The socket itself is driven by `connection`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use serde_json::Value;

use super::protoo::{self, ProtooError};

/// What the connection's writer task sends.
#[derive(Debug)]
pub enum Outgoing {
    Text(String),
    /// A WebSocket ping (protoo-server's keepalive; browsers answer on their own).
    Ping,
    Close {
        code: u16,
        reason: String,
    },
}

/// protoo-server's timeout for a server request: 2 s × (15 + 0.1 × pending).
fn request_timeout(pending: usize) -> Duration {
    Duration::from_millis((2000.0 * (15.0 + 0.1 * pending as f64)) as u64)
}

pub struct Session {
    /// Unique per connection, so a replaced peer's leftovers are told apart from its successor.
    pub serial: u64,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Result<Value, ProtooError>>>>,
    closed: Cell<bool>,
}

impl Session {
    pub fn new(serial: u64, outgoing: mpsc::UnboundedSender<Outgoing>) -> Self {
        Self {
            serial,
            outgoing,
            pending: RefCell::new(HashMap::new()),
            closed: Cell::new(false),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn send(&self, message: Outgoing) {
        if !self.closed.get() {
            let _ = self.outgoing.unbounded_send(message);
        }
    }

    pub fn notify(&self, method: &str, data: &Value) {
        self.send(Outgoing::Text(protoo::notification(method, data)));
    }

    pub fn respond(&self, id: u64, result: &Result<Value, ProtooError>) {
        self.send(Outgoing::Text(protoo::response(id, result)));
    }

    /// Sends a server → client request and waits for its answer (or protoo-server's timeout).
    pub async fn request(&self, method: &str, data: &Value) -> Result<Value, ProtooError> {
        if self.closed.get() {
            return Err(ProtooError::internal("peer closed"));
        }
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut pending = self.pending.borrow_mut();
            let mut id = rand::random_range(0..10_000_000u64);
            while pending.contains_key(&id) {
                id = rand::random_range(0..10_000_000u64);
            }
            pending.insert(id, tx);
            id
        };
        let timeout = request_timeout(self.pending.borrow().len());
        self.send(Outgoing::Text(protoo::request(id, method, data)));
        let answer = futures::future::select(rx, Box::pin(glommio::timer::sleep(timeout))).await;
        match answer {
            futures::future::Either::Left((Ok(result), _)) => result,
            futures::future::Either::Left((Err(_), _)) => Err(ProtooError::internal("peer closed")),
            futures::future::Either::Right(_) => {
                self.pending.borrow_mut().remove(&id);
                Err(ProtooError::internal("request timeout"))
            }
        }
    }

    /// Routes a client's response to the request waiting for it; unknown ids are ignored.
    pub fn on_response(&self, id: u64, result: Result<Value, ProtooError>) -> bool {
        match self.pending.borrow_mut().remove(&id) {
            Some(tx) => {
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    /// Sends a WebSocket ping; false once the connection is gone.
    pub fn ping(&self) -> bool {
        if self.closed.get() {
            return false;
        }
        self.outgoing.unbounded_send(Outgoing::Ping).is_ok()
    }

    /// Closes the connection with a WebSocket close code (4000: closed by the server for good).
    pub fn close(&self, code: u16, reason: &str) {
        self.send(Outgoing::Close {
            code,
            reason: reason.to_string(),
        });
        self.mark_closed();
    }

    /// The socket is gone: fail every pending request.
    pub fn mark_closed(&self) {
        self.closed.set(true);
        self.pending.borrow_mut().clear();
        // Queued frames (a close frame among them) still go out; nothing new is accepted.
        self.outgoing.close_channel();
    }
}
