//! One timely worker: builds the dataflow of the resolved graph, feeds the inputs it owns
//! from their source channels, and steps until every input is closed and drained.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marketflow_operators::{Bar, Calendar, IndicatorRow, Record, Tick};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concatenate, Operator};
use timely::dataflow::{InputHandleVec as InputHandle, Scope, StreamVec};
use timely::worker::Worker;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{self, Receiver};

use super::bars::{bars, BarsStage};
use super::bridge::{SinkSender, Waker};
use super::indicators::{indicators, IndicatorsStage};
use super::OperatorSpec;
use crate::dead_letter::DeadLetters;
use crate::metrics::metrics;
use crate::sinks::SinkEvent;
use crate::sources::SourceEvent;
use crate::spec::graph::StreamType;
use crate::spec::Pipeline;

/// What every worker of this process shares.
pub struct Shared {
    pub pipeline: Pipeline,
    /// Worker threads per process.
    pub threads: usize,
    /// Source channel receivers by source index, taken by the owning worker.
    pub receivers: Mutex<Vec<Option<Receiver<SourceEvent>>>>,
    /// Sink senders by local worker then sink index, each taken by its worker.
    pub sink_senders: Mutex<Vec<Vec<Option<SinkSender>>>>,
    pub waker: Waker,
    pub dead_letters: DeadLetters,
    pub interrupted: Arc<AtomicBool>,
}

/// The global worker that owns source `index`.
pub fn source_owner(index: usize, peers: usize) -> usize {
    index % peers
}

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

/// The input handle of one source.
enum SourceInput {
    Ticks(InputHandle<u64, Tick>),
    Bars(InputHandle<u64, Bar>),
}

/// Timely times are watermarks in ms, never negative.
fn epoch(ms: i64) -> u64 {
    ms.max(0) as u64
}

impl SourceInput {
    fn advance(&mut self, watermark: i64) {
        let t = epoch(watermark);
        match self {
            SourceInput::Ticks(h) if t > *h.time() => h.advance_to(t),
            SourceInput::Bars(h) if t > *h.time() => h.advance_to(t),
            _ => {}
        }
    }

    /// Sends a batch at the current watermark, then advances to the batch's last one.
    fn feed(&mut self, event: SourceEvent) {
        match (self, event) {
            (SourceInput::Ticks(h), SourceEvent::Ticks(mut ticks)) => {
                let last = ticks.last().map(|t| t.wm);
                h.send_batch(&mut ticks);
                if let Some(wm) = last.map(epoch).filter(|t| t > h.time()) {
                    h.advance_to(wm);
                }
            }
            (SourceInput::Bars(h), SourceEvent::Bars(mut bars)) => {
                let last = bars.last().map(|b| b.wm);
                h.send_batch(&mut bars);
                if let Some(wm) = last.map(epoch).filter(|t| t > h.time()) {
                    h.advance_to(wm);
                }
            }
            (input, SourceEvent::Watermark(wm)) => input.advance(wm),
            (_, event) => {
                tracing::error!("a source sent {event:?} on an input of another record type")
            }
        }
    }
}

/// An owned input and the channel that feeds it.
struct Feed {
    input: SourceInput,
    rx: Receiver<SourceEvent>,
}

impl Feed {
    /// Moves up to a few pending batches into the dataflow; false once the source is done.
    fn pump(&mut self) -> bool {
        for _ in 0..8 {
            match self.rx.try_recv() {
                Ok(event) => self.input.feed(event),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }
}

/// Runs one worker to completion.
pub fn run_worker(worker: &mut Worker, shared: &Shared) {
    let index = worker.index();
    let peers = worker.peers();
    let local = index % shared.threads;
    let senders = shared
        .sink_senders
        .lock()
        .map(|mut all| all.get_mut(local).map(std::mem::take).unwrap_or_default())
        .unwrap_or_default();
    let inputs = worker.dataflow::<u64, _, _>(|scope| build(scope, shared, senders));

    let mut feeds = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let owned = source_owner(i, peers) == index;
        let rx = if owned {
            shared
                .receivers
                .lock()
                .ok()
                .and_then(|mut r| r.get_mut(i).and_then(Option::take))
        } else {
            None
        };
        match rx {
            Some(rx) => feeds.push(Feed { input, rx }),
            None => drop(input), // closes it: another worker (or nobody) feeds this source
        }
    }
    shared.waker.register(local);
    loop {
        feeds.retain_mut(Feed::pump);
        let park = if feeds.is_empty() {
            None
        } else {
            Some(Duration::from_millis(100))
        };
        if !worker.step_or_park(park) && feeds.is_empty() {
            break;
        }
    }
}

/// Builds the dataflow on one worker; returns the input handles in source order.
fn build<'s>(
    scope: Scope<'s, u64>,
    shared: &Shared,
    senders: Vec<Option<SinkSender>>,
) -> Vec<SourceInput> {
    let pipeline = &shared.pipeline;
    let mut streams: HashMap<String, AnyStream<'s>> = HashMap::new();
    let source_names: HashSet<&str> = pipeline.sources.iter().map(|s| s.name.as_str()).collect();
    let mut inputs = Vec::new();
    for source in &pipeline.sources {
        match source.spec.output() {
            StreamType::Bars { .. } => {
                let mut handle = InputHandle::new();
                streams.insert(
                    source.name.clone(),
                    AnyStream::Bars(handle.to_stream(scope)),
                );
                inputs.push(SourceInput::Bars(handle));
            }
            _ => {
                let mut handle = InputHandle::new();
                streams.insert(
                    source.name.clone(),
                    AnyStream::Ticks(handle.to_stream(scope)),
                );
                inputs.push(SourceInput::Ticks(handle));
            }
        }
    }
    for op in &pipeline.operators {
        let input = streams[&op.spec.inputs()[0].value].clone();
        let input_type = &pipeline.types[&op.spec.inputs()[0].value];
        let output = match &op.spec {
            OperatorSpec::Bars(config) => {
                let stage = BarsStage {
                    name: op.name.clone(),
                    interval: config.interval.value,
                    calendar: config.calendar(),
                    dead_letters: shared.dead_letters.clone(),
                    interrupted: shared.interrupted.clone(),
                };
                match input {
                    AnyStream::Ticks(s) => AnyStream::Bars(bars(s, stage)),
                    AnyStream::Bars(s) => AnyStream::Bars(bars(s, stage)),
                    AnyStream::Indicators(_) => unreachable!("rejected by validation"),
                }
            }
            OperatorSpec::Indicators(config) => {
                let StreamType::Bars { interval, session } = input_type else {
                    unreachable!("rejected by validation")
                };
                let calendar = session
                    .as_ref()
                    .map_or(Calendar::Utc, |s| Calendar::Session(s.session.clone()));
                let AnyStream::Bars(mut stream) = input else {
                    unreachable!("rejected by validation")
                };
                if source_names.contains(op.spec.inputs()[0].value.as_str()) {
                    // Bars read from a source may arrive out of order: pass them through a
                    // bars operator of their own interval, which orders them by watermark.
                    let stage = BarsStage {
                        name: format!("{}:order", op.name),
                        interval: *interval,
                        calendar: calendar.clone(),
                        dead_letters: shared.dead_letters.clone(),
                        interrupted: shared.interrupted.clone(),
                    };
                    stream = bars(stream, stage);
                }
                let stage = IndicatorsStage {
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
                AnyStream::Indicators(indicators(stream, stage))
            }
        };
        streams.insert(op.name.clone(), output);
    }
    for (sink, sender) in pipeline.sinks.iter().zip(senders) {
        let parts: Vec<_> = sink
            .spec
            .inputs()
            .iter()
            .map(|name| streams[&name.value].clone().records())
            .collect();
        let records = scope.concatenate(parts);
        sink_operator(records, &sink.name, sender);
    }
    inputs
}

/// Routes a sink's records to worker 0, which hands them to the sink task. A sink that
/// stopped (failed) makes the run stop: records are not silently dropped.
fn sink_operator(records: StreamVec<'_, u64, Record>, name: &str, sender: Option<SinkSender>) {
    let label = name.to_owned();
    let mut sender = sender;
    let mut last_progress = i64::MIN;
    records.sink(
        Exchange::new(|_: &Record| 0),
        &format!("sink:{name}"),
        move |(input, frontier)| {
            // Containers are handed over whole: copying records into one larger batch
            // cost more than the extra channel sends.
            let mut ok = true;
            input.for_each(|_cap, data| {
                if let (true, Some(tx)) = (ok, &sender) {
                    if !data.is_empty() {
                        ok = tx
                            .blocking_send(SinkEvent::Records(std::mem::take(data)))
                            .is_ok();
                    }
                }
            });
            let Some(tx) = &sender else { return };
            let progress = frontier
                .frontier()
                .iter()
                .next()
                .map_or(i64::MAX, |t| *t as i64);
            if ok && progress > last_progress {
                last_progress = progress;
                ok = tx.blocking_send(SinkEvent::Progress(progress)).is_ok();
            }
            if !ok {
                metrics()
                    .sink_errors
                    .with_label_values(&[label.as_str()])
                    .inc();
                tracing::error!(sink = %label, "sink stopped; records for it are being discarded");
                sender = None;
            }
        },
    );
}

/// A channel pair for a sink.
pub fn sink_channel() -> (SinkSender, mpsc::Receiver<SinkEvent>) {
    mpsc::channel(super::bridge::SINK_CHANNEL)
}
