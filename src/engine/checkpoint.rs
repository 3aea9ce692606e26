//! Checkpoints inside the dataflow (`recovery:` in a pipeline; see docs/recovery.md).
//!
//! Every `checkpoint_interval` of wall time the leader (worker 0) announces a checkpoint
//! time `W` above every source partition's input time, holding each partition's clock so
//! that none moves past `W` unseen. From then on:
//! - each partition cuts its input at `W`: the records stamped below `W` go in at their
//!   times, the input advances to `W`, and the cut (position, records since it, stamper
//!   state) is reported before the rest follows;
//! - each stateful operator instance keeps input at times `>= W` aside until its frontier
//!   reaches `W`, then reports its state (everything below `W` applied) and goes on;
//! - each sink is sent `Checkpoint(W)` when its input is complete below `W`.
//!
//! The leader commits the checkpoint to the recovery store once every part is in and
//! every sink has acknowledged `W`; only then is the next one announced. Times are
//! watermarks, a function of the input alone, so a resumed run sends every record after
//! the cut at the time the uninterrupted run would have, and produces the same output.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::connector::{Acknowledger, Position, Restart, RestartFrom, StamperState};
use crate::store::recovery::{Checkpoint, RecoveryStore};

/// Bumped when an operator's saved state changes layout: older checkpoints are refused.
pub const STATE_VERSION: u32 = 1;

/// Where a source partition's input was cut at a checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceCut {
    /// The last position the partition reported before the cut (`None`: its start).
    pub position: Option<Position>,
    /// Records after that position that went in before the cut.
    pub skip: u64,
    /// The stamper at the cut.
    pub stamper: StamperState,
    /// Records the partition had read up to the cut.
    pub records: u64,
    /// The stamper and the records read at `position`: where the source starts again
    /// (it stamps the `skip` records again, as before, and the engine drops them).
    pub at_position: (StamperState, u64),
}

impl SourceCut {
    /// Where its partition starts again: at its position, stamping the records after it
    /// again as before (the engine drops the `skip` that went in before the cut); or, for
    /// a source that goes on from now, with the stamper at the cut.
    pub fn restart(&self, from: RestartFrom) -> Restart {
        let (stamper, records) = match from {
            RestartFrom::Now => (self.stamper, self.records),
            _ => self.at_position,
        };
        Restart {
            position: self.position,
            stamper: (records > 0).then_some(stamper),
        }
    }
}

/// What the parts of the dataflow report to the leader (in a cluster, through the
/// checkpoint link: see `cluster.rs`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Part {
    Source {
        feed: usize,
        time: i64,
        cut: SourceCut,
    },
    Operator {
        name: String,
        worker: usize,
        time: i64,
        state: Vec<u8>,
    },
}

/// A frontier's time as a checkpoint time: a closed input's `u64::MAX` is `i64::MAX`
/// (cast, it would be -1, and input kept aside at a checkpoint would never go on).
pub fn frontier_time(upto: u64) -> i64 {
    i64::try_from(upto).unwrap_or(i64::MAX)
}

/// No checkpoint announced yet.
pub const NONE: i64 = i64::MIN;

/// What one process of a cluster tells the others about its part in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessStatus {
    /// Its workers whose dataflow is built.
    pub built: usize,
    /// Its stateful operator instances.
    pub operators: usize,
    /// Its partitions whose source has ended.
    pub ended: usize,
    /// Each sink's acknowledged time in this process, in pipeline order (`i64::MAX` for a
    /// sink that does not run here).
    pub sinks: Vec<i64>,
    /// The time of the checkpoint it resumed from ([`NONE`]: none).
    pub restored: i64,
    /// The highest watermark fed into its partitions: ended partitions elsewhere follow it.
    pub watermark: i64,
}

/// The checkpoint schedule shared by every worker of the process.
pub struct Checkpoints {
    interval: Duration,
    /// The announced checkpoint time, or [`NONE`].
    next: AtomicI64,
    /// Each partition's input time, held while it feeds and while a time is announced.
    clocks: Vec<Mutex<i64>>,
    /// (source, partition) of each clock.
    pub feeds: Vec<(usize, usize)>,
    parts: Mutex<mpsc::Sender<Part>>,
    inbox: Mutex<Option<mpsc::Receiver<Part>>>,
    /// Workers whose dataflow is built (the leader waits for all before announcing).
    built: AtomicUsize,
    /// Stateful operator instances that will report.
    operators: AtomicUsize,
    /// Partitions whose source has ended (each counted under its clock).
    ended: AtomicUsize,
    /// In a cluster: no partition moves its input while a leader's freeze holds (set and
    /// cleared under every clock), and what the other processes said of themselves.
    frozen: AtomicBool,
    remote: Mutex<Vec<ProcessStatus>>,
    /// Why checkpoints stopped: the run fails with it.
    failure: Mutex<Option<String>>,
}

impl Checkpoints {
    /// `feeds`: every (source, partition) of the pipeline; `start`: the restored time.
    pub fn new(interval: Duration, feeds: Vec<(usize, usize)>, start: i64) -> Checkpoints {
        let (tx, rx) = mpsc::channel();
        Checkpoints {
            interval,
            next: AtomicI64::new(NONE),
            clocks: feeds.iter().map(|_| Mutex::new(start)).collect(),
            feeds,
            parts: Mutex::new(tx),
            inbox: Mutex::new(Some(rx)),
            built: AtomicUsize::new(0),
            operators: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            frozen: AtomicBool::new(false),
            remote: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
        }
    }

    /// Why checkpoints stopped, if they did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok()?.clone()
    }

    /// Whether a cluster's leader holds every partition where it is (read under a clock).
    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Holds every partition of this process where it is, for the leader of a cluster to
    /// choose a checkpoint time above all of them; gives their greatest input time and the
    /// partitions ended here.
    pub fn freeze(&self) -> (i64, usize) {
        let held = self.hold_clocks();
        self.frozen.store(true, Ordering::SeqCst);
        let clock = held.iter().map(|t| **t).max().unwrap_or(0);
        (clock, self.ended.load(Ordering::SeqCst))
    }

    /// Lets the partitions move again, with checkpoint `time` announced (none: every
    /// partition of the cluster had ended).
    pub fn release(&self, time: Option<i64>) {
        let _held = self.hold_clocks();
        if let Some(time) = time {
            self.next.store(time, Ordering::SeqCst);
        }
        self.frozen.store(false, Ordering::SeqCst);
    }

    fn hold_clocks(&self) -> Vec<std::sync::MutexGuard<'_, i64>> {
        (0..self.clocks.len()).map(|i| self.clock(i)).collect()
    }

    /// This process's part, for the other processes of a cluster.
    pub fn local_status(&self, sinks: Vec<i64>, restored: i64, watermark: i64) -> ProcessStatus {
        ProcessStatus {
            watermark,
            built: self.built.load(Ordering::SeqCst),
            operators: self.operators.load(Ordering::SeqCst),
            ended: self.ended.load(Ordering::SeqCst),
            sinks,
            restored,
        }
    }

    /// What process `process` (of `processes`) said of itself last.
    pub fn set_remote(&self, process: usize, processes: usize, status: ProcessStatus) {
        if let Ok(mut remote) = self.remote.lock() {
            remote.resize(processes, ProcessStatus::default());
            if let Some(slot) = remote.get_mut(process) {
                *slot = status;
            }
        }
    }

    /// The other processes' statuses (empty in a single process).
    pub fn remote(&self) -> Vec<ProcessStatus> {
        self.remote.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The highest watermark the other processes fed in (`i64::MIN` in a single process).
    pub fn remote_watermark(&self) -> i64 {
        self.remote
            .lock()
            .map(|r| r.iter().map(|s| s.watermark).max().unwrap_or(i64::MIN))
            .unwrap_or(i64::MIN)
    }

    /// `(built, operators, ended)` of the whole cluster, as far as this process knows.
    fn totals(&self) -> (usize, usize, usize) {
        let remote = self.remote.lock();
        let others = remote.as_deref().map(|r| r.as_slice()).unwrap_or(&[]);
        (
            self.built.load(Ordering::SeqCst) + others.iter().map(|s| s.built).sum::<usize>(),
            self.operators.load(Ordering::SeqCst)
                + others.iter().map(|s| s.operators).sum::<usize>(),
            self.ended.load(Ordering::SeqCst) + others.iter().map(|s| s.ended).sum::<usize>(),
        )
    }

    /// The announced checkpoint time, if any.
    pub fn next(&self) -> Option<i64> {
        Some(self.next.load(Ordering::SeqCst)).filter(|t| *t != NONE)
    }

    pub fn feed_index(&self, source: usize, partition: usize) -> Option<usize> {
        self.feeds.iter().position(|f| *f == (source, partition))
    }

    /// Holds partition `feed`'s clock while it moves its input.
    pub fn clock(&self, feed: usize) -> std::sync::MutexGuard<'_, i64> {
        self.clocks[feed]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The receiving end of [`Checkpoints::report`], once: the leader's collector's, or in
    /// another process of a cluster, what forwards the parts to the leader.
    pub fn take_inbox(&self) -> Option<mpsc::Receiver<Part>> {
        self.inbox.lock().ok()?.take()
    }

    pub fn report(&self, part: Part) {
        if let Ok(tx) = self.parts.lock() {
            let _ = tx.send(part);
        }
    }

    /// An operator instance that will report its state at every checkpoint.
    pub fn register_operator(&self) {
        self.operators.fetch_add(1, Ordering::SeqCst);
    }

    pub fn worker_built(&self) {
        self.built.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts partition `feed` as ended, under its clock. Its input stays open and follows
    /// the other sources until every partition has ended: operators fed only by it would
    /// otherwise close every window at once, ahead of any checkpoint time announced later.
    pub fn feed_ended(&self, feed: usize) {
        let _clock = self.clock(feed);
        self.ended.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether every partition has ended: no checkpoint is announced any more, and the
    /// inputs close (after cutting at the one announced, if it is still due).
    pub fn all_ended(&self) -> bool {
        self.totals().2 >= self.clocks.len()
    }

    /// [`Checkpoints::announce`], for the operators' tests.
    #[cfg(test)]
    pub fn announce_now(&self) -> Option<i64> {
        self.announce()
    }

    /// Announces a checkpoint above every partition's input time; none once every
    /// partition has ended.
    fn announce(&self) -> Option<i64> {
        let held = self.hold_clocks();
        if self.all_ended() {
            return None;
        }
        let time = held.iter().map(|t| **t).max().unwrap_or(0).max(0) + 1;
        self.next.store(time, Ordering::SeqCst);
        drop(held);
        Some(time)
    }
}

/// A partition's side: cuts its input at announced times.
#[derive(Debug)]
pub struct Cutter {
    pub last_position: Option<Position>,
    /// Records since `last_position`.
    pub since_position: u64,
    pub stamper: StamperState,
    pub records: u64,
    /// The last checkpoint time it cut at.
    pub done: i64,
    /// Records still to drop after a restart (they went in before the cut).
    pub skip: u64,
    /// The stamper and records read when the partition was last at a position.
    at_position: (StamperState, u64),
}

impl Default for Cutter {
    fn default() -> Cutter {
        Cutter {
            last_position: None,
            since_position: 0,
            stamper: StamperState {
                max_seen: i64::MIN,
                ..StamperState::default()
            },
            records: 0,
            done: i64::MIN,
            skip: 0,
            at_position: (
                StamperState {
                    max_seen: i64::MIN,
                    ..StamperState::default()
                },
                0,
            ),
        }
    }
}

impl Cutter {
    /// The cutter of a partition restarted from `cut` at checkpoint `time`.
    pub fn restored(cut: &SourceCut, time: i64, from: RestartFrom) -> Cutter {
        if from == RestartFrom::Now {
            // Nothing is read again: it goes on from the cut itself.
            return Cutter {
                last_position: cut.position,
                since_position: 0,
                stamper: cut.stamper,
                records: cut.records,
                done: time,
                skip: 0,
                at_position: (cut.stamper, cut.records),
            };
        }
        Cutter {
            last_position: cut.position,
            since_position: cut.skip,
            stamper: cut.stamper,
            records: cut.records,
            done: time,
            skip: cut.skip,
            at_position: cut.at_position,
        }
    }

    pub fn cut(&self) -> SourceCut {
        SourceCut {
            position: self.last_position,
            skip: self.since_position,
            stamper: self.stamper,
            records: self.records,
            at_position: self.at_position,
        }
    }

    /// Notes one record that goes in: its untagged sequence number, event time, watermark.
    #[inline]
    pub fn observe_stamp(&mut self, (seq, at, watermark): (u64, i64, i64)) {
        self.stamper.seq = seq + 1;
        self.stamper.max_seen = self.stamper.max_seen.max(at);
        self.stamper.watermark = self.stamper.watermark.max(watermark);
        self.since_position += 1;
        self.records += 1;
    }

    /// A batch has gone in whole: the partition is at `position` (a batch that did not
    /// move it, an empty one, leaves the count since the position as it is).
    pub fn at(&mut self, position: Position) {
        if self.last_position != Some(position) {
            self.last_position = Some(position);
            self.since_position = 0;
            self.at_position = (self.stamper, self.records);
        }
    }
}

/// What the processes of a cluster taking checkpoints tell each other (the checkpoint
/// link of `dataflow.rs` carries them). Choosing a checkpoint time above every partition
/// of the cluster takes one round trip: the leader freezes every process's partitions,
/// each answers with its greatest input time, and the leader announces the time above
/// them all, which releases the partitions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Message {
    /// To every process: what a process says of itself, whenever it changes.
    Status {
        process: usize,
        status: ProcessStatus,
    },
    /// To every process: hold your partitions and answer with [`Message::Frozen`].
    Freeze { round: u64 },
    /// To the leader: a process's partitions are held; their greatest input time, and
    /// how many have ended.
    Frozen {
        process: usize,
        round: u64,
        clock: i64,
        ended: usize,
    },
    /// To every process: the checkpoint time chosen in `round` (none: every partition
    /// had ended); partitions move again.
    Announce { round: u64, time: Option<i64> },
    /// To the leader: a part of the pending checkpoint.
    Part(Part),
}

impl Message {
    /// Whether it goes to the leader alone (else to every process).
    pub fn to_leader(&self) -> bool {
        matches!(self, Message::Frozen { .. } | Message::Part(_))
    }
}

/// The leader's side: gathers the parts of the announced checkpoint and commits it.
pub struct Collector {
    store: RecoveryStore,
    inbox: mpsc::Receiver<Part>,
    /// Workers of the whole cluster, and its processes.
    peers: usize,
    processes: usize,
    last: Instant,
    pending: Option<Pending>,
    /// In a cluster: the freeze round asked for, and the processes' answers so far.
    round: u64,
    asked: Option<BTreeMap<usize, (i64, usize)>>,
    /// The checkpoint this process resumed from ([`NONE`]: none); every process must have
    /// resumed from the same.
    restored: i64,
    /// Names of the sources and sinks (for the store's keys), and which sinks resume at
    /// an offset.
    source_names: Vec<String>,
    sinks: Vec<(String, bool)>,
    pub committed: u64,
}

struct Pending {
    time: i64,
    sources: BTreeMap<usize, SourceCut>,
    operators: BTreeMap<(String, usize), Vec<u8>>,
}

impl Collector {
    /// `peers` and `processes`: the shape of the cluster (1 process: no freeze round).
    pub fn new(
        store: RecoveryStore,
        checkpoints: &Checkpoints,
        (peers, processes): (usize, usize),
        restored: i64,
        source_names: Vec<String>,
        sinks: Vec<(String, bool)>,
    ) -> Option<Collector> {
        let inbox = checkpoints.take_inbox()?;
        Some(Collector {
            store,
            inbox,
            peers,
            processes,
            last: Instant::now(),
            pending: None,
            round: 0,
            asked: None,
            restored,
            source_names,
            sinks,
            committed: 0,
        })
    }

    /// A process's answer to the freeze of `round`: once every process has answered, the
    /// checkpoint time is chosen and announced (in `out`).
    pub fn frozen(
        &mut self,
        (process, round, clock, ended): (usize, u64, i64, usize),
        checkpoints: &Checkpoints,
        out: &mut Vec<Message>,
    ) {
        let Some(answers) = self.asked.as_mut().filter(|_| round == self.round) else {
            return;
        };
        answers.insert(process, (clock, ended));
        if answers.len() < self.processes {
            return;
        }
        let clock = answers.values().map(|a| a.0).max().unwrap_or(0);
        let ended: usize = answers.values().map(|a| a.1).sum();
        self.asked = None;
        let time = (ended < checkpoints.feeds.len()).then(|| clock.max(0) + 1);
        if let Some(time) = time {
            self.pending = Some(Pending::new(time));
        }
        out.push(Message::Announce { round, time });
    }

    /// Takes in what was reported; commits the pending checkpoint when complete, or
    /// announces the next when it is time (in a cluster, starts a freeze round: `out`
    /// takes the messages to send). Errors are logged: a missed checkpoint only means a
    /// longer replay after a crash.
    pub fn step(
        &mut self,
        checkpoints: &Checkpoints,
        acks: &[Acknowledger],
        out: &mut Vec<Message>,
    ) {
        while let Ok(part) = self.inbox.try_recv() {
            match part {
                Part::Source { feed, time, cut } => {
                    if let Some(p) = self.pending.as_mut().filter(|p| p.time == time) {
                        p.sources.insert(feed, cut);
                    }
                }
                Part::Operator {
                    name,
                    worker,
                    time,
                    state,
                } => {
                    if let Some(p) = self.pending.as_mut().filter(|p| p.time == time) {
                        p.operators.insert((name, worker), state);
                    }
                }
            }
        }
        if checkpoints.failure().is_some() {
            return;
        }
        let remote = checkpoints.remote();
        // A process that has not said anything yet is all defaults (nothing built).
        if let Some(other) = remote
            .iter()
            .filter(|s| s.built > 0)
            .map(|s| s.restored)
            .find(|r| *r != self.restored)
        {
            let failure = format!(
                "the processes of the cluster resumed from different checkpoints ({} and {}): give every process the same recovery store (`database:`, or a `path:` they all reach)",
                time_text(self.restored),
                time_text(other)
            );
            tracing::error!(%failure, "no more checkpoints");
            if let Ok(mut slot) = checkpoints.failure.lock() {
                *slot = Some(failure);
            }
            return;
        }
        let (built, operators, _) = checkpoints.totals();
        let Some(pending) = &self.pending else {
            let ready = built >= self.peers && self.asked.is_none();
            if ready && self.last.elapsed() >= checkpoints.interval {
                // The interval runs from announcement to announcement: a checkpoint that
                // takes longer to complete than it is followed at once by the next.
                self.last = Instant::now();
                if self.processes > 1 {
                    self.round += 1;
                    self.asked = Some(BTreeMap::new());
                    out.push(Message::Freeze { round: self.round });
                    return;
                }
                let Some(time) = checkpoints.announce() else {
                    return;
                };
                self.pending = Some(Pending::new(time));
            }
            return;
        };
        let time = pending.time;
        let feeds = checkpoints.feeds.len();
        let sources_in = (0..feeds).all(|f| pending.sources.contains_key(&f));
        let operators_in = pending.operators.len() >= operators;
        let sinks_in = self
            .sinks
            .iter()
            .zip(acks)
            .enumerate()
            .all(|(i, ((_, offset), ack))| {
                let elsewhere = remote
                    .iter()
                    .filter_map(|s| s.sinks.get(i))
                    .all(|t| *t >= time);
                ack.frontier() >= time && elsewhere && (!offset || ack.offset_at(time).is_some())
            });
        if !(sources_in && operators_in && sinks_in) {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        self.commit(pending, checkpoints, acks);
    }

    fn commit(&mut self, pending: Pending, checkpoints: &Checkpoints, acks: &[Acknowledger]) {
        let time = pending.time;
        let mut checkpoint = Checkpoint {
            time,
            committed_at: chrono::Utc::now().timestamp_millis(),
            ..Checkpoint::default()
        };
        for (feed, &(source, partition)) in checkpoints.feeds.iter().enumerate() {
            let cut = pending.sources.get(&feed).copied().unwrap_or_default();
            checkpoint.records += cut.records;
            let name = self.source_names[source].clone();
            checkpoint.sources.insert(
                (name, partition),
                serde_json::to_vec(&cut).unwrap_or_default(),
            );
        }
        checkpoint.operators = pending.operators;
        for ((name, offset), ack) in self.sinks.iter().zip(acks) {
            if let Some(at) = ack.offset_at(time).filter(|_| *offset) {
                checkpoint.sinks.insert(name.clone(), at);
            }
        }
        match self.store.commit(&checkpoint) {
            Ok(()) => {
                self.committed += 1;
                crate::metrics::metrics().checkpoints.inc();
                tracing::info!(
                    time = %marketflow_operators::time::format_timestamp(time),
                    records = checkpoint.records,
                    "checkpoint committed"
                );
            }
            Err(e) => tracing::warn!(error = %e, "a checkpoint could not be written"),
        }
    }
}

impl Pending {
    fn new(time: i64) -> Pending {
        Pending {
            time,
            sources: BTreeMap::new(),
            operators: BTreeMap::new(),
        }
    }
}

/// A checkpoint time for messages: "none" for [`NONE`].
fn time_text(time: i64) -> String {
    match time {
        NONE => "none".into(),
        t => marketflow_operators::time::format_timestamp(t).to_string(),
    }
}

/// A stateful operator instance's part in checkpoints.
#[derive(Clone)]
pub struct OperatorCheckpoint {
    checkpoints: std::sync::Arc<Checkpoints>,
    name: String,
    worker: usize,
    restored: Option<Vec<u8>>,
    /// The last checkpoint time it saved its state at.
    done: i64,
}

impl OperatorCheckpoint {
    /// Registers instance `worker` of operator `name`, restored from `restored` (its state
    /// at checkpoint time `since`).
    pub fn new(
        checkpoints: std::sync::Arc<Checkpoints>,
        name: &str,
        worker: usize,
        restored: Option<(i64, Vec<u8>)>,
    ) -> OperatorCheckpoint {
        checkpoints.register_operator();
        let (done, restored) = match restored {
            Some((time, state)) => (time, Some(state)),
            None => (NONE, None),
        };
        OperatorCheckpoint {
            checkpoints,
            name: name.to_owned(),
            worker,
            restored,
            done,
        }
    }

    /// The checkpoint time its state was restored from, if it was.
    pub fn restored_time(&self) -> Option<i64> {
        Some(self.done).filter(|t| *t != NONE)
    }

    /// The state to start from, once.
    pub fn take_restored(&mut self) -> Option<Vec<u8>> {
        self.restored.take()
    }

    /// The announced checkpoint it has not saved its state at yet.
    pub fn due(&self) -> Option<i64> {
        self.checkpoints.next().filter(|w| *w > self.done)
    }

    /// Reports its state with everything below `time` applied.
    pub fn save(&mut self, time: i64, state: Vec<u8>) {
        self.done = time;
        self.checkpoints.report(Part::Operator {
            name: self.name.clone(),
            worker: self.worker,
            time,
            state,
        });
    }
}
