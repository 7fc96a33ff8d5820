//! The server API's questions about one user's connections (list, close, revoke, deliver an
//! app event), asked of every node that holds some: this node answers its own share at once,
//! the others over the bus on each node's own topic, within [`ANSWER_WAIT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix::prelude::*;
use actix_ws::CloseCode;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Node;
use super::connection::TOKEN_REVOKED;
use super::hub::ToUser;
use super::registry::Kick;
use super::revocations;
use crate::bus::{Answer, BusEvent, Delivered, Question, Topic};
use crate::domain::Error;
use crate::store::Revocation;
use crate::wire::Push;

/// Longest the server API waits for the other nodes' answers; a node that has not answered
/// by then (frozen, cut off) is left out of the answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Close code of a connection the server API closed asking the client to reconnect.
pub const KICKED_RECONNECT: u16 = 4000;

/// This node's questions waiting for answers, by id.
#[derive(Default)]
pub struct Asks {
    pending: Mutex<HashMap<Uuid, mpsc::UnboundedSender<Answer>>>,
}

impl Asks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, mpsc::UnboundedSender<Answer>>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Takes a question out of [`Asks`] however its asker ends (answered, timed out, dropped).
struct Waiting<'a> {
    asks: &'a Asks,
    id: Uuid,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.asks.lock().remove(&self.id);
    }
}

/// Asks `question` of every node holding the user's connections, this one included; their
/// answers (this node's first).
pub async fn ask(node: &Node, question: Question) -> Result<Vec<Answer>, Error> {
    let others = node.presence.other_nodes_holding(question.user().clone()).await?;
    let mut answers = vec![answer(node, question.clone()).await];
    if others.is_empty() {
        return Ok(answers);
    }
    let id = Uuid::new_v4();
    let (sender, mut received) = mpsc::unbounded_channel();
    node.asks.lock().insert(id, sender);
    let _waiting = Waiting { asks: &node.asks, id };
    for other in &others {
        let ask = BusEvent::Ask { id, reply_to: node.node.clone(), question: question.clone() };
        node.bus.publish(Topic::Node(other.clone()), ask);
    }
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    while answers.len() <= others.len() {
        match tokio::time::timeout_at(deadline, received.recv()).await {
            Ok(Some(answer)) => answers.push(answer),
            Ok(None) | Err(_) => {
                tracing::warn!(
                    missing = others.len() + 1 - answers.len(),
                    "nodes did not answer the server API in time"
                );
                break;
            }
        }
    }
    Ok(answers)
}

/// How many connections the answers say were reached.
pub fn reached(answers: &[Answer]) -> usize {
    answers.iter().map(|answer| if let Answer::Reached { count } = answer { *count } else { 0 }).sum()
}

/// This node's answer to `question`.
async fn answer(node: &Node, question: Question) -> Answer {
    match question {
        Question::Connections { user_id } => {
            Answer::Connections { connections: node.connections.of(&user_id, &node.node) }
        }
        Question::Close { user_id, reconnect } => {
            let kick = if reconnect {
                Kick {
                    code: CloseCode::Other(KICKED_RECONNECT),
                    reason: "disconnected by the server: reconnect",
                    issued_before: None,
                }
            } else {
                Kick {
                    code: CloseCode::Other(TOKEN_REVOKED),
                    reason: "disconnected by the server",
                    issued_before: None,
                }
            };
            Answer::Reached { count: node.connections.kick(&user_id, &kick) }
        }
        Question::Revoke { user_id, before } => {
            let revocation = Revocation { user: user_id, before, at: before };
            Answer::Reached { count: revocations::apply(node, revocation) }
        }
        Question::Deliver { user_id, event, data } => {
            let count = node.hub.send(ToUser { user: user_id, push: Push::App { event, data } }).await.unwrap_or(0);
            Answer::Reached { count }
        }
    }
}

/// The sink of this node's own topic: answers the other nodes' questions and hands their
/// answers to this node's waiting questions.
pub struct Desk {
    node: Weak<Node>,
}

impl Desk {
    /// Starts listening on this node's topic.
    pub fn start(node: &Arc<Node>) {
        let desk = Desk { node: Arc::downgrade(node) }.start();
        node.bus.subscribe(Topic::Node(node.node.clone()), desk.recipient());
    }
}

impl Actor for Desk {
    type Context = Context<Self>;
}

impl Handler<Delivered> for Desk {
    type Result = ();

    fn handle(&mut self, msg: Delivered, ctx: &mut Self::Context) {
        let Some(node) = self.node.upgrade() else { return ctx.stop() };
        match &msg.envelope.event {
            BusEvent::Ask { id, reply_to, question } => {
                let (id, reply_to, question) = (*id, reply_to.clone(), question.clone());
                actix::spawn(async move {
                    let answer = answer(&node, question).await;
                    node.bus.publish(Topic::Node(reply_to), BusEvent::Answer { id, answer });
                });
            }
            BusEvent::Answer { id, answer } => {
                if let Some(waiting) = node.asks.lock().get(id) {
                    let _ = waiting.send(answer.clone());
                }
            }
            _ => {}
        }
    }
}
