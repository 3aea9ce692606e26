//! One timely worker: builds the dataflow of the resolved graph, feeds the source
//! partitions it owns from their channels, and steps until every input is closed and
//! drained.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use marketflow_operators::{Bar, Calendar, IndicatorRow, Record, Tick};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concatenate, Inspect, Operator, Probe};
use timely::dataflow::{InputHandleVec as InputHandle, ProbeHandle, Scope, StreamVec};
use timely::worker::Worker;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::mpsc::Receiver;

use super::bars::{bars, BarsStage};
use super::checkpoint::{Checkpoints, Cutter, OperatorCheckpoint, Part};
use super::flow::{Control, PartitionAck, Pumped, MIN_PIECE};
use super::indicators::{indicators, IndicatorsStage};
use super::link;
use super::merge::merge_bars;
use super::revise::{cascade, revised_indicators, CascadeStage};
use super::tick_indicators::{tick_indicators, TickIndicatorsStage};
use super::{Shared, SinkSender};
use crate::connector::{SinkEvent, SourceEvent, StreamType};
use crate::metrics::metrics;
use crate::spec::operators::OperatorSpec;

/// A stream of any record type, as named in the pipeline.
#[derive(Clone)]
enum AnyStream<'s> {
    Ticks(StreamVec<'s, u64, Tick>),
    Bars(StreamVec<'s, u64, Bar>),
    Indicators(StreamVec<'s, u64, IndicatorRow>),
}

impl<'s> AnyStream<'s> {
    fn records(self) -> StreamVec<'s, u64, Record> {
        match self {
            AnyStream::Ticks(s) => s.map(Record::Tick),
            AnyStream::Bars(s) => s.map(Record::Bar),
            AnyStream::Indicators(s) => s.map(Record::Indicator),
        }
    }
}

/// The input handle of one source partition.
enum SourceInput {
    Ticks(InputHandle<u64, Tick>),
    Bars(InputHandle<u64, Bar>),
}

/// Timely times are watermarks in ms, never negative.
fn epoch(ms: i64) -> u64 {
    ms.max(0) as u64
}

impl SourceInput {
    fn time(&self) -> u64 {
        match self {
            SourceInput::Ticks(h) => *h.time(),
            SourceInput::Bars(h) => *h.time(),
        }
    }

    fn advance(&mut self, watermark: i64) {
        let t = epoch(watermark);
        match self {
            SourceInput::Ticks(h) if t > *h.time() => h.advance_to(t),
            SourceInput::Bars(h) if t > *h.time() => h.advance_to(t),
            _ => {}
        }
    }

    /// Sends a batch at the current time, then advances to the batch's last watermark.
    fn feed(&mut self, event: SourceEvent) -> Option<crate::connector::Position> {
        self.feed_piece(event, true)
    }

    /// [`SourceInput::feed`] for a piece of a batch: all but the last piece (`last` false)
    /// leave the time where it is, so every record of a batch has the batch's time however
    /// the flow control split it (the file sink orders records by time, then content).
    fn feed_piece(&mut self, event: SourceEvent, last: bool) -> Option<crate::connector::Position> {
        match (self, event) {
            (SourceInput::Ticks(h), SourceEvent::Ticks { records, position }) => {
                send_stamped(h, records, |t| &mut t.wm, last);
                Some(position)
            }
            (SourceInput::Bars(h), SourceEvent::Bars { records, position }) => {
                send_stamped(h, records, |b| &mut b.wm, last);
                Some(position)
            }
            (input, SourceEvent::Watermark(wm)) => {
                input.advance(wm);
                None
            }
            (_, event) => {
                tracing::error!("a source sent {event:?} on an input of another record type");
                None
            }
        }
    }
}

/// Sends `records` at the handle's time and, with `advance`, advances it to their last
/// watermark. A record stamped below the current time (its partition was idle and skipped
/// ahead) takes the current time as its watermark, so lateness is judged as the frontier was.
fn send_stamped<D: Clone + 'static>(
    h: &mut InputHandle<u64, D>,
    mut records: Vec<D>,
    wm: fn(&mut D) -> &mut i64,
    advance: bool,
) {
    let now = *h.time() as i64;
    if records.first_mut().is_some_and(|r| *wm(r) < now) {
        records.iter_mut().for_each(|r| *wm(r) = (*wm(r)).max(now));
    }
    let last = records.last_mut().map(|r| *wm(r)).filter(|_| advance);
    h.send_batch(&mut records);
    if let Some(t) = last.map(epoch).filter(|t| t > h.time()) {
        h.advance_to(t);
    }
}

/// Bits of a record's sequence number above which the index of its source goes: ticks and
/// bars of several sources of one symbol keep distinct keys (the first source's numbers
/// are unchanged).
const SOURCE_SHIFT: u32 = 56;

/// Marks a batch with its source: the source's index in the sequence numbers, its name on
/// bars that do not say where they came from.
fn tag(event: &mut SourceEvent, source: usize, name: &str) {
    let high = (source as u64 & 0xff) << SOURCE_SHIFT;
    match event {
        SourceEvent::Ticks { records, .. } if high != 0 => {
            records.iter_mut().for_each(|t| t.seq |= high);
        }
        SourceEvent::Bars { records, .. } => {
            for bar in records.iter_mut() {
                bar.seq |= high;
                if bar.source.is_empty() {
                    bar.source = name.into();
                }
            }
        }
        _ => {}
    }
}

/// An owned source partition: its input, the channel that feeds it, and its positions.
struct Feed {
    source: usize,
    /// `None` once the partition ended (its input is closed).
    input: Option<SourceInput>,
    rx: Receiver<SourceEvent>,
    ack: PartitionAck,
    idle_timeout: Option<Duration>,
    last_event: Instant,
    /// Its index among the checkpoints' partitions and its cutter, when the pipeline
    /// takes checkpoints.
    cutter: Option<(usize, Cutter)>,
    /// Its source ended while the pipeline takes checkpoints: the input stays open until
    /// every partition has ended ([`Checkpoints::feed_ended`]).
    ended: bool,
    /// The rest of a batch split at the flow control's budget: it goes in first.
    rest: Option<SourceEvent>,
    /// Its records on their way to the sinks.
    pumped: Pumped,
}

/// The bits of a sequence number a source partition stamped (below its source's index).
const PARTITION_BITS: u64 = (1 << SOURCE_SHIFT) - 1;

impl Feed {
    /// Moves pending batches into the dataflow, up to `budget` records a step (a larger
    /// batch is split, its rest goes first next time); closes the input once the partition
    /// is done. Returns the records moved.
    fn pump(&mut self, shared: &Shared, name: &str, budget: usize) -> usize {
        let (flow, status) = (&shared.flow, &shared.status);
        if self.input.is_none() {
            return 0;
        }
        if self.ended {
            self.follow_ended(shared);
            return 0;
        }
        // Records moved (what the flow control counts), and events (a watermark counts one
        // against the budget, so that a stream of them ends the step too).
        let (mut moved, mut pumped) = (0, 0);
        while pumped < budget {
            // Held from here while the input moves, so that no checkpoint is announced
            // below it unseen; a cluster's leader may hold the partition where it is.
            let clock = match (&self.cutter, &shared.checkpoints) {
                (Some((feed, _)), Some(checkpoints)) => {
                    let clock = checkpoints.clock(*feed);
                    if checkpoints.frozen() {
                        break;
                    }
                    Some(clock)
                }
                _ => None,
            };
            let next = match self.rest.take() {
                Some(rest) => Ok(rest),
                None => self.rx.try_recv(),
            };
            match next {
                Ok(mut event) => {
                    // Pieces are not made smaller than this: a heavy fan-out splits a batch
                    // into a few, not into single records.
                    let room = (budget - pumped).max(MIN_PIECE);
                    let whole = event.record_count() <= room;
                    if !whole {
                        self.rest = Some(event.split_off(room));
                    }
                    pumped += event.record_count().max(1);
                    moved += event.record_count();
                    self.last_event = Instant::now();
                    tag(&mut event, self.source, name);
                    let Some(input) = &mut self.input else {
                        return moved;
                    };
                    let sent_at = input.time() as i64;
                    self.pumped.sent(input.time(), event.record_count());
                    let position = match (&mut self.cutter, &shared.checkpoints, clock) {
                        (Some((feed, cutter)), Some(checkpoints), Some(clock)) => {
                            let feed = (*feed, clock);
                            feed_cut(input, event, whole, cutter, checkpoints, feed)
                        }
                        _ => input.feed_piece(event, whole),
                    };
                    if let Some(position) = position.filter(|_| whole) {
                        self.ack.sent(sent_at, position);
                    }
                    flow.report_watermark(self.source, input.time() as i64);
                    status.watermark(name, input.time() as i64);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    drop(clock); // counting the end takes it again
                    match (&self.cutter, &shared.checkpoints) {
                        (Some((feed, _)), Some(checkpoints)) => {
                            checkpoints.feed_ended(*feed);
                            self.ended = true;
                        }
                        _ => self.input = None,
                    }
                    return moved;
                }
            }
        }
        // An idle partition stops holding the watermark back: it follows the most advanced
        // partition of its source in this process.
        if self
            .idle_timeout
            .is_some_and(|t| self.last_event.elapsed() >= t)
        {
            let to = flow.max_watermark(self.source);
            if let Some(input) = &mut self.input {
                match (&mut self.cutter, &shared.checkpoints) {
                    (Some((feed, cutter)), Some(checkpoints)) => {
                        let mut clock = checkpoints.clock(*feed);
                        if checkpoints.frozen() {
                            return moved;
                        }
                        if let Some(w) = checkpoints.next().filter(|w| *w > cutter.done && to >= *w)
                        {
                            cut_at(input, w, cutter, checkpoints, *feed);
                        }
                        input.advance(to);
                        *clock = input.time() as i64;
                    }
                    _ => input.advance(to),
                }
            }
        }
        moved
    }
}

impl Feed {
    /// An ended partition of a pipeline taking checkpoints: follows the most advanced
    /// partition of any source (of any process), cutting at each checkpoint on the way; closes once
    /// every partition has ended, cutting first at the checkpoint still due.
    fn follow_ended(&mut self, shared: &Shared) {
        let (Some((feed, cutter)), Some(checkpoints), Some(input)) =
            (&mut self.cutter, &shared.checkpoints, &mut self.input)
        else {
            return;
        };
        let mut clock = checkpoints.clock(*feed);
        if checkpoints.frozen() {
            return;
        }
        let due = checkpoints.next().filter(|w| *w > cutter.done);
        if checkpoints.all_ended() {
            if let Some(w) = due {
                cut_at(input, w, cutter, checkpoints, *feed);
            }
            drop(clock);
            self.input = None;
            return;
        }
        // In a cluster, the most advanced partition may be in another process.
        let to = shared
            .flow
            .max_watermark_any()
            .max(checkpoints.remote_watermark());
        if let Some(w) = due.filter(|w| to >= *w) {
            cut_at(input, w, cutter, checkpoints, *feed);
        }
        input.advance(to);
        *clock = input.time() as i64;
    }
}

/// Feeds `event` through a partition taking checkpoints: records it already sent before a
/// restart are dropped; an announced checkpoint time is cut at (the records stamped below
/// it go in, the cut is reported, the input moves to it, the rest follow). Returns the
/// position the batch ends at. A piece of a split batch (`whole` false) does not move the
/// partition's position: its records count as sent past the last one.
fn feed_cut(
    input: &mut SourceInput,
    event: SourceEvent,
    whole: bool,
    cutter: &mut Cutter,
    checkpoints: &Checkpoints,
    (feed, mut clock): (usize, std::sync::MutexGuard<'_, i64>),
) -> Option<crate::connector::Position> {
    let due = checkpoints.next().filter(|w| *w > cutter.done);
    let position = match event {
        SourceEvent::Ticks {
            mut records,
            position,
        } => {
            let stamp = |t: &Tick| (t.seq & PARTITION_BITS, t.ts, t.wm);
            if let Some((w, before)) = split_at_cut(&mut records, cutter, due, stamp) {
                input.feed(SourceEvent::Ticks {
                    records: before,
                    position,
                });
                cut_at(input, w, cutter, checkpoints, feed);
            }
            records.iter().for_each(|t| cutter.observe_stamp(stamp(t)));
            input.feed_piece(SourceEvent::Ticks { records, position }, whole);
            whole.then(|| cutter.at(position));
            Some(position)
        }
        SourceEvent::Bars {
            mut records,
            position,
        } => {
            let stamp = |b: &Bar| (b.seq & PARTITION_BITS, b.start, b.wm);
            if let Some((w, before)) = split_at_cut(&mut records, cutter, due, stamp) {
                input.feed(SourceEvent::Bars {
                    records: before,
                    position,
                });
                cut_at(input, w, cutter, checkpoints, feed);
            }
            records.iter().for_each(|b| cutter.observe_stamp(stamp(b)));
            input.feed_piece(SourceEvent::Bars { records, position }, whole);
            whole.then(|| cutter.at(position));
            Some(position)
        }
        SourceEvent::Watermark(wm) => {
            if let Some(w) = due.filter(|w| wm >= *w) {
                cut_at(input, w, cutter, checkpoints, feed);
            }
            cutter.stamper.watermark = cutter.stamper.watermark.max(wm);
            input.advance(wm);
            None
        }
    };
    *clock = input.time() as i64;
    position
}

/// Drops what a restart must skip; when a due checkpoint falls inside the batch, takes
/// out the records stamped below it (noted by the cutter) and returns them with its time,
/// leaving the rest in `records` for after the cut.
fn split_at_cut<D>(
    records: &mut Vec<D>,
    cutter: &mut Cutter,
    due: Option<i64>,
    stamp: impl Fn(&D) -> (u64, i64, i64),
) -> Option<(i64, Vec<D>)> {
    if cutter.skip > 0 {
        let n = (cutter.skip as usize).min(records.len());
        records.drain(..n);
        cutter.skip -= n as u64;
    }
    let w = due?;
    let split = records.iter().position(|r| stamp(r).2 >= w)?;
    let rest = records.split_off(split);
    let before = std::mem::replace(records, rest);
    before.iter().for_each(|r| cutter.observe_stamp(stamp(r)));
    Some((w, before))
}

/// Cuts the partition at checkpoint time `w`: reports where it stands and moves its input
/// to `w`.
fn cut_at(
    input: &mut SourceInput,
    w: i64,
    cutter: &mut Cutter,
    checkpoints: &Checkpoints,
    feed: usize,
) {
    checkpoints.report(Part::Source {
        feed,
        time: w,
        cut: cutter.cut(),
    });
    cutter.done = w;
    input.advance(w);
}

/// Runs one worker to completion; returns the seconds it spent working.
pub fn run_worker(worker: &mut Worker, shared: &Shared) -> f64 {
    let index = worker.index();
    let local = shared.placement.local_worker(index);
    let senders = shared.take_sink_senders(local);
    let probe = ProbeHandle::new();
    let inputs = worker.dataflow::<u64, _, _>(|scope| build(scope, shared, senders, &probe));
    let mut control = worker.dataflow::<u64, _, _>(|scope| control_dataflow(scope, shared));
    let leader = index == 0;
    if local != 0 {
        control = None;
    }
    let mut link = match (&shared.checkpoints, shared.placement.processes) {
        (Some(_), 2..) => {
            worker.dataflow::<u64, _, _>(|scope| link::build(scope, shared, local == 0))
        }
        _ => None,
    };

    let mut feeds = Vec::new();
    for (source, partitions) in inputs.into_iter().enumerate() {
        for (partition, input) in partitions.into_iter().enumerate() {
            let Some((rx, acked)) = shared.take_partition(source, partition, index) else {
                continue; // dropping the input closes it: another worker feeds it
            };
            let mut input = input;
            let cutter = shared.checkpoints.as_ref().and_then(|checkpoints| {
                let feed = checkpoints.feed_index(source, partition)?;
                let name = &shared.pipeline.sources[source].name;
                let restored = shared.restored.as_ref().and_then(|c| {
                    let cut = c.sources.get(&(name.clone(), partition))?;
                    Some((c.time, serde_json::from_slice(cut).ok()?))
                });
                Some(match restored {
                    Some((time, cut)) => {
                        // Everything below the checkpoint went in before the restart.
                        input.advance(time);
                        let from = shared.pipeline.sources[source].spec.restart_from();
                        (feed, Cutter::restored(&cut, time, from))
                    }
                    None => (feed, Cutter::default()),
                })
            });
            feeds.push(Feed {
                source,
                input: Some(input),
                rx,
                ack: PartitionAck::new(&shared.pipeline.sources[source].name, partition, acked),
                idle_timeout: shared.pipeline.sources[source].spec.idle_timeout(),
                last_event: Instant::now(),
                cutter,
                ended: false,
                rest: None,
                pumped: Pumped::default(),
            });
        }
    }
    shared.waker.register(local);
    let mut collector = None;
    if let Some(checkpoints) = &shared.checkpoints {
        checkpoints.worker_built();
        if leader {
            collector = shared.collector.lock().ok().and_then(|mut c| c.take());
        }
    }
    let cpu_at_start = thread_cpu_seconds();
    let mut final_ack = None;
    let mut last_control = Control::default();
    let paused_seconds = &metrics().source_paused_seconds;
    loop {
        // With no budget a feed moves no record, but an ended or idle partition still
        // follows the others (and cuts at checkpoints).
        let open_feeds = feeds.iter().filter(|f| f.input.is_some()).count();
        let mut moved = 0;
        for feed in &mut feeds {
            let name = &shared.pipeline.sources[feed.source].name;
            let on_the_way = feed
                .input
                .as_ref()
                .map_or(0, |input| feed.pumped.before(input.time()));
            let budget = shared.flow.pump_budget(on_the_way, open_feeds);
            moved += feed.pump(shared, name, budget);
        }
        let step_started = Instant::now();
        if let Some(handle) = &mut control {
            let now = shared.control();
            if now != last_control {
                last_control = now;
                handle.send((shared.placement.process, now));
                handle.flush(); // the time never advances: deliver now
            }
            if probe.done() && settled(shared, &mut final_ack) {
                // The pipeline is drained: let the control dataflow and the link end.
                control = None;
                link = None;
            }
        }
        if let Some(checkpoints) = &shared.checkpoints {
            let mut out = Vec::new();
            if let Some(collector) = &mut collector {
                collector.step(checkpoints, &shared.sink_acks, &mut out);
            }
            if let Some(link) = &mut link {
                link.step(shared, checkpoints, collector.as_mut(), out);
            }
        }
        let acked = shared.flow.acked();
        feeds.iter_mut().for_each(|f| f.ack.acknowledged(acked));
        let open = feeds.iter().any(|f| f.input.is_some());
        // Once drained, wait for the sinks' last acknowledgement, so that the final
        // positions of the sources are acknowledged (and kept, for resumable ones).
        let awaiting_acks = !open && !settled(shared, &mut final_ack);
        let park = if open || control.is_some() || awaiting_acks {
            Some(Duration::from_millis(if shared.flow.paused() {
                5
            } else {
                100
            }))
        } else {
            None
        };
        let more = worker.step_or_park(park);
        let frontier = probe.with_frontier(|f| f.iter().next().copied());
        feeds
            .iter_mut()
            .for_each(|f| f.pumped.arrive(frontier, &shared.flow));
        if moved == 0 && open && shared.flow.paused() && local == 0 {
            paused_seconds.inc_by(step_started.elapsed().as_secs_f64());
        }
        if !more && !open && control.is_none() && !awaiting_acks {
            break;
        }
    }
    let worked = (thread_cpu_seconds() - cpu_at_start).max(0.0);
    metrics()
        .worker_busy_seconds
        .with_label_values(&[index.to_string().as_str()])
        .inc_by(worked);
    worked
}

/// How long a drained worker waits for the sinks' acknowledgement to move, before it gives
/// up on the final one (a stuck sink).
const FINAL_ACK_WAIT: Duration = Duration::from_secs(30);

/// Whether the sinks have acknowledged everything (or the run stopped early, or their
/// acknowledgement has not moved for [`FINAL_ACK_WAIT`] since the worker drained).
/// `progress` is the last acknowledgement seen while drained, and when it was first seen.
fn settled(shared: &Shared, progress: &mut Option<(i64, Instant)>) -> bool {
    let acked = shared.flow.acked();
    if acked == i64::MAX || shared.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        return true;
    }
    match progress {
        Some((seen, since)) if *seen == acked => since.elapsed() >= FINAL_ACK_WAIT,
        _ => {
            *progress = Some((acked, Instant::now()));
            false
        }
    }
}

/// CPU time of the calling thread so far (Linux; 0 elsewhere): a worker's busy time, as
/// parked time costs none.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// The dataflow that carries the sinks' acknowledgements and backpressure from each
/// process's first worker (the sinks of a process run beside its workers) to every worker
/// of every process, which combines them: the least acknowledgement, paused if any is.
fn control_dataflow(
    scope: Scope<'_, u64>,
    shared: &Shared,
) -> Option<InputHandle<u64, (usize, Control)>> {
    let mut handle = InputHandle::new();
    let flow = shared.flow.clone();
    let mut by_process = vec![Control::default(); shared.placement.processes];
    handle
        .to_stream(scope)
        .broadcast()
        .inspect(move |(process, control): &(usize, Control)| {
            if let Some(slot) = by_process.get_mut(*process) {
                *slot = *control;
            }
            flow.apply(Control {
                acked: by_process.iter().map(|c| c.acked).min().unwrap_or(i64::MIN),
                paused: by_process.iter().any(|c| c.paused),
            });
        });
    Some(handle)
}

/// Builds the dataflow on one worker; returns the input handles by source and partition.
fn build<'s>(
    scope: Scope<'s, u64>,
    shared: &Shared,
    senders: Vec<Option<SinkSender>>,
    probe: &ProbeHandle<u64>,
) -> Vec<Vec<SourceInput>> {
    let pipeline = &shared.pipeline;
    let mut streams: Vec<AnyStream<'s>> = Vec::new();
    let mut inputs = Vec::new();
    for (i, source) in pipeline.sources.iter().enumerate() {
        let (stream, handles) =
            source_stream(scope, &pipeline.streams[i], source.spec.partitions());
        streams.push(stream);
        inputs.push(handles);
    }
    for (i, op) in pipeline.operators.iter().enumerate() {
        let inputs = &pipeline.operator_inputs[i];
        let output = match inputs.as_slice() {
            [input] => operator(shared, scope.index(), op, &streams[*input], inputs, false),
            _ => {
                let merged = merge_inputs(scope, shared, &op.name, inputs, &streams);
                operator(shared, scope.index(), op, &merged, inputs, true)
            }
        };
        streams.push(output);
    }
    for ((sink, sender), stream_ids) in pipeline
        .sinks
        .iter()
        .zip(senders)
        .zip(&pipeline.sink_inputs)
    {
        let parts: Vec<_> = stream_ids
            .iter()
            .map(|&s| streams[s].clone().records())
            .collect();
        let records = scope.concatenate(parts).probe_with(probe);
        let to_process_0 = shared.placement.processes > 1 && !sink.spec.parallel();
        sink_operator(
            scope,
            records,
            &sink.name,
            (sender, shared.placement.threads, to_process_0),
            shared.checkpoints.clone(),
        );
    }
    // Sources close last: once their streams and the sinks' inputs are done, so is the run.
    for stream in &streams[..pipeline.sources.len()] {
        match stream.clone() {
            AnyStream::Ticks(s) => drop(s.probe_with(probe)),
            AnyStream::Bars(s) => drop(s.probe_with(probe)),
            AnyStream::Indicators(s) => drop(s.probe_with(probe)),
        }
    }
    inputs
}

/// One input handle per partition, merged into the source's stream.
fn source_stream<'s>(
    scope: Scope<'s, u64>,
    output: &StreamType,
    partitions: usize,
) -> (AnyStream<'s>, Vec<SourceInput>) {
    if let StreamType::Bars { .. } = output {
        let mut handles: Vec<InputHandle<u64, Bar>> =
            (0..partitions).map(|_| InputHandle::new()).collect();
        let parts: Vec<_> = handles.iter_mut().map(|h| h.to_stream(scope)).collect();
        let stream = AnyStream::Bars(scope.concatenate(parts));
        (stream, handles.into_iter().map(SourceInput::Bars).collect())
    } else {
        let mut handles: Vec<InputHandle<u64, Tick>> =
            (0..partitions).map(|_| InputHandle::new()).collect();
        let parts: Vec<_> = handles.iter_mut().map(|h| h.to_stream(scope)).collect();
        let stream = AnyStream::Ticks(scope.concatenate(parts));
        (
            stream,
            handles.into_iter().map(SourceInput::Ticks).collect(),
        )
    }
}

/// Several inputs of one operator as one stream: ticks side by side; bars merged window by
/// window, the first listed input that has a window giving its bar (validation makes them
/// one type).
fn merge_inputs<'s>(
    scope: Scope<'s, u64>,
    shared: &Shared,
    name: &str,
    inputs: &[usize],
    streams: &[AnyStream<'s>],
) -> AnyStream<'s> {
    let mut ticks = Vec::new();
    let mut bars = Vec::new();
    for &i in inputs {
        match streams[i].clone() {
            AnyStream::Ticks(s) => ticks.push(s),
            AnyStream::Bars(s) => bars.push(s),
            AnyStream::Indicators(_) => {}
        }
    }
    if bars.is_empty() {
        AnyStream::Ticks(scope.concatenate(ticks))
    } else {
        let merge = format!("{name}:merge");
        AnyStream::Bars(merge_bars(
            scope,
            bars,
            &merge,
            shared.dead_letters.clone(),
            operator_checkpoint(shared, &merge, scope.index()),
            shared.pipeline.inputs_revise_for(inputs),
        ))
    }
}

/// Where the records read from `inputs` come from: the names of the sources upstream,
/// joined by `+`.
fn origin(pipeline: &crate::spec::Pipeline, inputs: &[usize]) -> String {
    fn sources(pipeline: &crate::spec::Pipeline, index: usize, out: &mut Vec<String>) {
        match index.checked_sub(pipeline.sources.len()) {
            None => {
                let name = &pipeline.sources[index].name;
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            Some(op) => {
                for &input in &pipeline.operator_inputs[op] {
                    sources(pipeline, input, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    inputs.iter().for_each(|&i| sources(pipeline, i, &mut out));
    out.join("+")
}

/// Instance `worker` of operator `name`'s part in checkpoints, when the pipeline takes them,
/// with its restored state.
fn operator_checkpoint(shared: &Shared, name: &str, worker: usize) -> Option<OperatorCheckpoint> {
    let checkpoints = shared.checkpoints.clone()?;
    let restored = shared.restored.as_ref().and_then(|c| {
        let state = c.operators.get(&(name.to_owned(), worker))?;
        Some((c.time, state.clone()))
    });
    Some(OperatorCheckpoint::new(checkpoints, name, worker, restored))
}

/// The timely operator of a configured operator, on its (validated) input; `ordered`: the
/// input is a merge, already in window order.
fn operator<'s>(
    shared: &Shared,
    worker: usize,
    op: &crate::spec::Named<OperatorSpec>,
    input: &AnyStream<'s>,
    inputs: &[usize],
    ordered: bool,
) -> AnyStream<'s> {
    let pipeline = &shared.pipeline;
    let input_index = inputs[0];
    let checkpoint = |name: &str| operator_checkpoint(shared, name, worker);
    let bars_stage = |name: String, interval, calendar, revise_for| BarsStage {
        checkpoint: checkpoint(&name),
        name,
        interval,
        calendar,
        origin: origin(pipeline, inputs).into(),
        dead_letters: shared.dead_letters.clone(),
        interrupted: shared.interrupted.clone(),
        revise_for,
    };
    // The input is revised by late records: so is everything built from it.
    let revised_input = pipeline.inputs_revise_for(inputs);
    match (&op.spec, input.clone()) {
        (OperatorSpec::Bars(config), AnyStream::Ticks(s)) => AnyStream::Bars(bars(
            s,
            bars_stage(
                op.name.clone(),
                config.interval.value,
                config.calendar(),
                config.revise_for(),
            ),
        )),
        // A merge of bars of its own interval: one bar per window already, each saying
        // which input it came from.
        (OperatorSpec::Bars(config), AnyStream::Bars(s))
            if ordered
                && matches!(&pipeline.streams[input_index],
                    StreamType::Bars { interval, .. } if *interval == config.interval.value) =>
        {
            AnyStream::Bars(s)
        }
        (OperatorSpec::Bars(config), AnyStream::Bars(s)) => match revised_input {
            Some(upstream) => AnyStream::Bars(cascade(
                s,
                CascadeStage {
                    name: op.name.clone(),
                    interval: config.interval.value,
                    calendar: config.calendar(),
                    origin: origin(pipeline, inputs).into(),
                    revise_for: config.revise_for().max(Some(upstream)).unwrap_or(upstream),
                    dead_letters: shared.dead_letters.clone(),
                    checkpoints: checkpoint(&format!("{}:changes", op.name))
                        .zip(checkpoint(&format!("{}:upserts", op.name))),
                },
            )),
            None => AnyStream::Bars(bars(
                s,
                bars_stage(
                    op.name.clone(),
                    config.interval.value,
                    config.calendar(),
                    config.revise_for(),
                ),
            )),
        },
        (OperatorSpec::Indicators(config), AnyStream::Bars(mut stream)) => {
            let StreamType::Bars { interval, session } = &pipeline.streams[input_index] else {
                return AnyStream::Bars(stream);
            };
            let calendar = session
                .as_ref()
                .map_or(Calendar::Utc, |s| Calendar::Session(s.session.clone()));
            if pipeline.is_source_stream(input_index) && !ordered {
                // Bars read from a source may arrive out of order: pass them through a
                // bars operator of their own interval, which orders them by watermark.
                let stage = bars_stage(
                    format!("{}:order", op.name),
                    *interval,
                    calendar.clone(),
                    None,
                );
                stream = bars(stream, stage);
            }
            let stage = IndicatorsStage {
                checkpoint: checkpoint(&op.name),
                name: op.name.clone(),
                interval: *interval,
                calendar,
                specs: config
                    .indicators
                    .value
                    .iter()
                    .map(|e| e.spec.clone())
                    .collect(),
            };
            match revised_input {
                Some(revise_for) => {
                    AnyStream::Indicators(revised_indicators(stream, stage, revise_for))
                }
                None => AnyStream::Indicators(indicators(stream, stage)),
            }
        }
        (OperatorSpec::TickIndicators(config), AnyStream::Ticks(stream)) => {
            let stage = TickIndicatorsStage {
                checkpoint: checkpoint(&op.name),
                name: op.name.clone(),
                every: config.every.value,
                specs: config
                    .indicators
                    .value
                    .iter()
                    .map(|e| e.spec.clone())
                    .collect(),
                dead_letters: shared.dead_letters.clone(),
                interrupted: shared.interrupted.clone(),
            };
            AnyStream::Indicators(tick_indicators(stream, stage))
        }
        // Validation lets no other pairing through; an empty stream keeps the graph whole.
        (_, other) => other,
    }
}

/// Hands a sink the records of this worker with their time, then the worker's progress.
/// A sink written in parallel takes them here, in its instance beside this worker, with
/// no exchange. Any other runs in process 0, where every worker hands it what it holds
/// (the sink's inlet combines their progress); with `to_process_0`, this process is not
/// that one and sends its records to the worker of the same local index there.
fn sink_operator(
    scope: Scope<'_, u64>,
    records: StreamVec<'_, u64, Record>,
    name: &str,
    (sender, threads, to_process_0): (Option<SinkSender>, usize, bool),
    checkpoints: Option<Arc<Checkpoints>>,
) {
    if to_process_0 {
        let to = (scope.index() % threads.max(1)) as u64;
        let pact = super::route::by_key(move |_: &Record| to);
        sink_stage(scope, records, name, pact, sender, checkpoints);
    } else {
        sink_stage(scope, records, name, Pipeline, sender, checkpoints);
    }
}

/// The sink operator of [`sink_operator`]. A full sink channel does not block the worker:
/// what cannot be sent waits here, counted in the sink's queue with what the channel
/// holds, and the flow control lets no more source records in while the queue is at its
/// limit. A sink that stopped (failed) makes the run stop: records are not silently
/// dropped.
fn sink_stage<P>(
    scope: Scope<'_, u64>,
    records: StreamVec<'_, u64, Record>,
    name: &str,
    pact: P,
    sender: Option<SinkSender>,
    checkpoints: Option<Arc<Checkpoints>>,
) where
    P: ParallelizationContract<u64, Vec<Record>>,
{
    let label = name.to_owned();
    records.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        pact,
        &format!("sink:{name}"),
        move |capability, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            // Held while records wait for the sink, so the dataflow is not finished (and
            // the worker does not exit) before they are handed over.
            let mut hold = Some(capability);
            let mut sender = sender;
            let mut waiting: VecDeque<SinkEvent> = VecDeque::new();
            let mut last_progress = i64::MIN;
            let mut checkpointed = i64::MIN;
            move |(input, frontier), _output| {
                input.for_each(|capability, data| {
                    let time = capability.least().map_or(i64::MAX, |t| *t as i64);
                    if let Some(s) = sender.as_ref().filter(|_| !data.is_empty()) {
                        let mut records = std::mem::take(data);
                        // A batch of one time can be a few records in room for many (sparse
                        // history): it would hold that room until the sink takes it.
                        if records.len() * 4 < records.capacity() {
                            records.shrink_to_fit();
                        }
                        let event = SinkEvent::Records { time, records };
                        s.queue.add(event.queued_bytes());
                        waiting.push_back(event);
                    }
                });
                let Some(SinkSender {
                    tx, queue, slot, ..
                }) = &sender
                else {
                    hold.take();
                    return;
                };
                let progress = frontier
                    .frontier()
                    .iter()
                    .next()
                    .map_or(i64::MAX, |t| *t as i64);
                if let Some(w) = checkpoints
                    .as_ref()
                    .and_then(|c| c.next())
                    .filter(|w| *w > checkpointed && progress >= *w)
                {
                    checkpointed = w;
                    waiting.push_back(SinkEvent::Checkpoint(w));
                }
                if progress > last_progress {
                    last_progress = progress;
                    waiting.push_back(SinkEvent::Progress(progress));
                }
                while let Some(event) = waiting.pop_front() {
                    match tx.try_send((*slot, event)) {
                        Ok(()) => {}
                        Err(TrySendError::Full((_, event))) => {
                            waiting.push_front(event);
                            break;
                        }
                        Err(TrySendError::Closed((_, event))) => {
                            metrics().sink_errors.with_label_values(&[label.as_str()]).inc();
                            tracing::error!(sink = %label, "sink stopped; records for it are being discarded");
                            let dropped: usize = waiting.iter().chain([&event]).map(SinkEvent::queued_bytes).sum();
                            queue.remove(dropped);
                            waiting.clear();
                            sender = None;
                            break;
                        }
                    }
                }
                if !waiting.is_empty() {
                    activator.activate_after(Duration::from_millis(1));
                } else if frontier.frontier().is_empty() {
                    hold.take();
                }
            }
        },
    );
}
