//! The checkpoint link of a cluster: a dataflow that carries [`Message`]s between the
//! first workers of its processes, so that checkpoints cover every process (see
//! [`Message`] for the protocol). A single process needs none: its workers share memory.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;

use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concatenate, Exchange, Inspect};
use timely::dataflow::{InputHandleVec as InputHandle, Scope};

use super::checkpoint::{Checkpoints, Collector, Message, Part, ProcessStatus, NONE};
use super::Shared;

/// One process's end of the link, held by its first worker.
pub struct Link {
    to_all: InputHandle<u64, Message>,
    to_leader: InputHandle<u64, Message>,
    incoming: Rc<RefCell<Vec<Message>>>,
    /// Outside process 0: the parts reported here, forwarded to the leader.
    parts: Option<mpsc::Receiver<Part>>,
    /// What this process said of itself last.
    said: Option<ProcessStatus>,
}

/// Builds the link's dataflow on a worker (every worker builds it, as timely requires);
/// gives the link to the first worker of each process.
pub fn build(scope: Scope<'_, u64>, shared: &Shared, first: bool) -> Option<Link> {
    let mut to_all = InputHandle::new();
    let mut to_leader = InputHandle::new();
    let incoming = Rc::new(RefCell::new(Vec::new()));
    let queue = incoming.clone();
    let everywhere = to_all.to_stream(scope).broadcast();
    // Through an operator first: an input's flush leaves records in an exchange's buffers
    // until the input's time moves (it never does here); an operator's output is flushed
    // at the end of each of its runs.
    let leader = to_leader
        .to_stream(scope)
        .map(|message| message)
        .exchange(|_| 0);
    scope
        .concatenate([everywhere, leader])
        .inspect(move |message: &Message| {
            if first {
                queue.borrow_mut().push(message.clone());
            }
        });
    let checkpoints = shared.checkpoints.as_ref()?;
    let parts = match (first, shared.placement.process) {
        (true, 1..) => checkpoints.take_inbox(),
        _ => None,
    };
    first.then_some(Link {
        to_all,
        to_leader,
        incoming,
        parts,
        said: None,
    })
}

impl Link {
    /// Says what changed here, forwards this process's parts, acts on what arrived (a
    /// freeze, an announcement; at the leader, answers and parts), and sends what the
    /// leader's `collector` has to say (`out`).
    pub fn step(
        &mut self,
        shared: &Shared,
        checkpoints: &Checkpoints,
        mut collector: Option<&mut Collector>,
        mut out: Vec<Message>,
    ) {
        let process = shared.placement.process;
        let restored = shared.restored.as_ref().map_or(NONE, |c| c.time);
        let watermark = shared.flow.max_watermark_any();
        let status = checkpoints.local_status(shared.sink_frontiers(), restored, watermark);
        if self.said.as_ref() != Some(&status) {
            self.said = Some(status.clone());
            out.push(Message::Status { process, status });
        }
        if let Some(parts) = &self.parts {
            out.extend(parts.try_iter().map(Message::Part));
        }
        let arrived = std::mem::take(&mut *self.incoming.borrow_mut());
        for message in arrived {
            if !matches!(message, Message::Part(_) | Message::Status { .. }) {
                tracing::debug!(?message, "checkpoint link: arrived");
            }
            match message {
                Message::Status {
                    process: from,
                    status,
                } if from != process => {
                    checkpoints.set_remote(from, shared.placement.processes, status);
                }
                Message::Status { .. } => {}
                Message::Freeze { round } => {
                    let (clock, ended) = checkpoints.freeze();
                    out.push(Message::Frozen {
                        process,
                        round,
                        clock,
                        ended,
                    });
                }
                Message::Announce { time, .. } => {
                    checkpoints.release(time);
                    (0..shared.placement.threads).for_each(|w| shared.waker.wake(w));
                }
                Message::Frozen {
                    process: from,
                    round,
                    clock,
                    ended,
                } => {
                    if let Some(collector) = collector.as_deref_mut() {
                        collector.frozen((from, round, clock, ended), checkpoints, &mut out);
                    }
                }
                Message::Part(part) => checkpoints.report(part),
            }
        }
        if out.is_empty() {
            return;
        }
        for message in out {
            match message.to_leader() {
                true => self.to_leader.send(message),
                false => self.to_all.send(message),
            }
        }
        // The time never advances: deliver now.
        self.to_all.flush();
        self.to_leader.flush();
    }
}
