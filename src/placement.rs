//! The signalling shard's handles to the media shards, and the choice of a shard for a new room.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use futures::channel::oneshot;
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};
use shards::command::{Command, CommandResult, ShardEvent, ShardMessage, ShardRequest};

/// One media shard seen from the signalling shard: commands go out in the order they were issued
/// (a room's CreateRouter always precedes its other commands), responses come back by id.
pub struct ShardClient {
    pub index: usize,
    pub udp_port: u16,
    queue: RefCell<VecDeque<ShardRequest>>,
    queue_ready: RefCell<Option<oneshot::Sender<()>>>,
    pending: RefCell<HashMap<u64, oneshot::Sender<CommandResult>>>,
    next_id: Cell<u64>,
    /// Rooms, transports and consumers placed here, as the signalling shard counts them.
    load: Cell<ShardLoad>,
}

/// The placement load of a shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardLoad {
    pub rooms: i64,
    pub transports: i64,
    pub consumers: i64,
}

impl ShardLoad {
    /// Consumers and transports are what cost CPU; a room counts as one so that empty rooms
    /// created in a row spread over the shards.
    pub fn weight(&self) -> i64 {
        self.rooms + self.transports + self.consumers
    }
}

const UNAVAILABLE: &str = "media shard unavailable";

impl ShardClient {
    pub fn new(index: usize, udp_port: u16) -> Self {
        Self {
            index,
            udp_port,
            queue: RefCell::new(VecDeque::new()),
            queue_ready: RefCell::new(None),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            load: Cell::new(ShardLoad::default()),
        }
    }

    /// Queues a command now (so issue order is send order) and returns its response later.
    pub fn request(&self, command: Command) -> impl std::future::Future<Output = CommandResult> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        self.queue
            .borrow_mut()
            .push_back(ShardRequest { id, command });
        if let Some(wake) = self.queue_ready.borrow_mut().take() {
            let _ = wake.send(());
        }
        async move { rx.await.unwrap_or_else(|_| Err(UNAVAILABLE.to_string())) }
    }

    pub fn load(&self) -> ShardLoad {
        self.load.get()
    }

    pub fn adjust_load(&self, rooms: i64, transports: i64, consumers: i64) {
        let mut load = self.load.get();
        load.rooms += rooms;
        load.transports += transports;
        load.consumers += consumers;
        self.load.set(load);
    }

    /// Moves queued commands onto the shard's channel, in order.
    pub async fn run_sender(self: Rc<Self>, sender: ConnectedSender<ShardRequest>) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            match next {
                Some(request) => {
                    let id = request.id;
                    if sender.send(request).await.is_err() {
                        if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                            let _ = tx.send(Err(UNAVAILABLE.to_string()));
                        }
                    }
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    *self.queue_ready.borrow_mut() = Some(tx);
                    let _ = rx.await;
                }
            }
        }
    }

    /// Reads the shard's responses and events; events go to `on_event`.
    pub async fn run_receiver(
        self: Rc<Self>,
        receiver: ConnectedReceiver<ShardMessage>,
        on_event: impl Fn(ShardEvent),
    ) {
        while let Some(message) = receiver.recv().await {
            match message {
                ShardMessage::Response { id, result } => {
                    if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                ShardMessage::Event(event) => on_event(event),
            }
        }
        log::error!("media shard {} went away", self.index);
        for (_, tx) in self.pending.borrow_mut().drain() {
            let _ = tx.send(Err(UNAVAILABLE.to_string()));
        }
    }
}

/// All media shards.
pub struct ShardPool {
    pub shards: Vec<Rc<ShardClient>>,
}

impl ShardPool {
    /// The least-loaded shard (lowest index on a tie).
    pub fn least_loaded(&self) -> Option<Rc<ShardClient>> {
        self.shards
            .iter()
            .min_by_key(|s| (s.load().weight(), s.index))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_least_loaded_shard() {
        let pool = ShardPool {
            shards: (0..3)
                .map(|i| Rc::new(ShardClient::new(i, 40000 + i as u16)))
                .collect(),
        };
        let first = pool.least_loaded().unwrap();
        assert_eq!(first.index, 0);
        first.adjust_load(1, 0, 0);
        assert_eq!(pool.least_loaded().unwrap().index, 1);
        pool.shards[1].adjust_load(1, 2, 3);
        pool.shards[2].adjust_load(1, 1, 0);
        assert_eq!(pool.least_loaded().unwrap().index, 0);
        first.adjust_load(0, 5, 0);
        assert_eq!(pool.least_loaded().unwrap().index, 2);
    }
}
