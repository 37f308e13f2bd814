//! A Router: one room's transports, producers and consumers, all owned by one shard.

use std::collections::{HashMap, HashSet};

use crate::command::{CommandOk, CommandResult, ConsumeCommand, ProduceCommand};
use crate::consumer::Consumer;
use crate::producer::Producer;

#[derive(Debug, Default)]
pub struct Router {
    pub id: String,
    /// Ids of this router's transports (the transports themselves live in the shard, which
    /// routes packets to them).
    pub transports: HashSet<String>,
    pub producers: HashMap<String, Producer>,
    pub consumers: HashMap<String, Consumer>,
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

    /// Closes a transport with everything on it: its producers (and their consumers on every
    /// transport) and its own consumers. Returns the ids of the consumers closed because their
    /// producer went away.
    pub fn close_transport(&mut self, transport_id: &str) -> Result<Vec<String>, String> {
        if !self.transports.remove(transport_id) {
            return Err(not_found("transport", transport_id));
        }
        let producers: Vec<String> = self
            .producers
            .values()
            .filter(|p| p.transport_id == transport_id)
            .map(|p| p.id.clone())
            .collect();
        let mut closed = Vec::new();
        for id in producers {
            closed.extend(self.close_producer(&id)?);
        }
        self.consumers.retain(|_, c| c.transport_id != transport_id);
        Ok(closed)
    }

    pub fn produce(&mut self, cmd: ProduceCommand) -> CommandResult {
        if !self.transports.contains(&cmd.transport_id) {
            return Err(not_found("transport", &cmd.transport_id));
        }
        if self.producers.contains_key(&cmd.producer_id) {
            return Err(format!(
                "a producer with id \"{}\" already exists",
                cmd.producer_id
            ));
        }
        let producer = Producer::new(cmd);
        self.producers.insert(producer.id.clone(), producer);
        Ok(CommandOk::Done)
    }

    /// Closes a producer and its consumers; returns the closed consumers' ids.
    pub fn close_producer(&mut self, producer_id: &str) -> Result<Vec<String>, String> {
        if self.producers.remove(producer_id).is_none() {
            return Err(not_found("producer", producer_id));
        }
        let closed: Vec<String> = self
            .consumers
            .values()
            .filter(|c| c.producer_id == producer_id)
            .map(|c| c.id.clone())
            .collect();
        for id in &closed {
            self.consumers.remove(id);
        }
        Ok(closed)
    }

    pub fn set_producer_paused(&mut self, producer_id: &str, paused: bool) -> CommandResult {
        let producer = self
            .producers
            .get_mut(producer_id)
            .ok_or_else(|| not_found("producer", producer_id))?;
        producer.paused = paused;
        for consumer in self
            .consumers
            .values_mut()
            .filter(|c| c.producer_id == producer_id)
        {
            consumer.producer_paused = paused;
        }
        Ok(CommandOk::Done)
    }

    pub fn consume(&mut self, cmd: ConsumeCommand) -> CommandResult {
        if !self.transports.contains(&cmd.transport_id) {
            return Err(not_found("transport", &cmd.transport_id));
        }
        let producer_paused = self
            .producers
            .get(&cmd.producer_id)
            .ok_or_else(|| not_found("producer", &cmd.producer_id))?
            .paused;
        if self.consumers.contains_key(&cmd.consumer_id) {
            return Err(format!(
                "a consumer with id \"{}\" already exists",
                cmd.consumer_id
            ));
        }
        let consumer = Consumer::new(cmd, producer_paused);
        self.consumers.insert(consumer.id.clone(), consumer);
        Ok(CommandOk::Done)
    }

    pub fn consumer_mut(&mut self, id: &str) -> Result<&mut Consumer, String> {
        self.consumers
            .get_mut(id)
            .ok_or_else(|| not_found("consumer", id))
    }

    pub fn consumer_score(&self, consumer_id: &str) -> CommandResult {
        let consumer = self
            .consumers
            .get(consumer_id)
            .ok_or_else(|| not_found("consumer", consumer_id))?;
        let producer_scores = self
            .producers
            .get(&consumer.producer_id)
            .map(|p| p.scores.as_slice())
            .unwrap_or(&[]);
        Ok(CommandOk::ConsumerScore(
            consumer.score_json(producer_scores),
        ))
    }
}
