//! Operator `bars`: exact event-time OHLCV windows, a thin timely shell around
//! [`BarBuilder`].
//!
//! Window `[s, e)` closes when the input frontier reaches `e` and its bars are emitted at
//! time `e - 1`, which the capability retained from the window's first record allows.
//! Nothing is emitted on a processing-time timer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::route::by_key;
use marketflow_operators::revise::Revise;
use marketflow_operators::time::format_timestamp;
use marketflow_operators::{
    Bar, BarBuilder, BarInput, Calendar, Interval, Placement, Revisions, Tick,
};
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::checkpoint::OperatorCheckpoint;
use crate::dead_letter::{DeadLetters, Rejected};
use crate::metrics::metrics;

/// What the bars operator needs besides its input.
#[derive(Clone)]
pub struct BarsStage {
    pub name: String,
    pub interval: Interval,
    pub calendar: Calendar,
    /// What its bars say they come from (`Bar::source`).
    pub origin: compact_str::CompactString,
    pub dead_letters: DeadLetters,
    /// Set when the run was interrupted: open windows are then incomplete and dropped.
    pub interrupted: Arc<AtomicBool>,
    /// Its part in checkpoints, when the pipeline takes them.
    pub checkpoint: Option<OperatorCheckpoint>,
    /// With `late: revise`: how long closed bars stay revisable (ms).
    pub revise_for: Option<i64>,
}

/// Late records that will revise closed bars, by the time the revision is given at.
type LateRecords<R> = BTreeMap<u64, (Capability<u64>, Vec<R>)>;

/// A record the bars operator can report to the dead-letter path.
pub trait Rejectable {
    fn rejected(&self) -> Rejected<'_>;
}

impl Rejectable for Tick {
    fn rejected(&self) -> Rejected<'_> {
        Rejected::Tick(self)
    }
}

impl Rejectable for Bar {
    fn rejected(&self) -> Rejected<'_> {
        Rejected::Bar(self)
    }
}

/// Builds bars of `stage.interval` from `input`; records are exchanged by symbol so that
/// every symbol's windows live on one worker.
pub fn bars<'s, R>(input: StreamVec<'s, u64, R>, stage: BarsStage) -> StreamVec<'s, u64, Bar>
where
    R: BarInput + Rejectable + ExchangeData + Clone,
{
    let name = stage.name.clone();
    let exchange = by_key(|r: &R| r.symbol().route_hash());
    input.unary_frontier(exchange, &name, move |capability, _info| {
        let mut builder = BarBuilder::new(stage.interval, stage.calendar.clone());
        // One capability per open window end, at `end - 1`.
        let mut capabilities: BTreeMap<i64, Capability<u64>> = BTreeMap::new();
        let mut revisions = stage
            .revise_for
            .map(|rf| Revisions::new(stage.interval, stage.calendar.clone(), rf));
        let mut late: LateRecords<R> = BTreeMap::new();
        let mut checkpoint = stage.checkpoint.clone();
        if let Some(state) = checkpoint.as_mut().and_then(OperatorCheckpoint::take_restored) {
            if let Err(e) = restore(&mut builder, revisions.as_mut(), &mut late, &capability, &state) {
                tracing::error!(operator = %stage.name, error = %e, "its saved state was not restored");
            }
            for end in builder.open_window_ends() {
                capabilities.insert(end, capability.delayed(&((end - 1).max(0) as u64)));
            }
        }
        drop(capability);
        // Input at or after an announced checkpoint, kept aside until the state is saved.
        let mut stash: Vec<(Capability<u64>, Vec<R>)> = Vec::new();
        let m = metrics();
        let counters = Counters {
            records_in: m.operator_in.with_label_values(&[stage.name.as_str()]),
            late: m.late_records.with_label_values(&[stage.name.as_str()]),
            outside: m.outside_session.with_label_values(&[stage.name.as_str()]),
        };
        let revised = m.revised_records.with_label_values(&[stage.name.as_str()]);
        let records_out = m.operator_out.with_label_values(&[stage.name.as_str()]);
        let discarded = m
            .discarded_at_shutdown
            .with_label_values(&[stage.name.as_str()]);

        move |(input, frontier), output| {
            let due = checkpoint.as_ref().and_then(OperatorCheckpoint::due);
            input.for_each(|capability, data| {
                let time = capability.least().copied().unwrap_or(u64::MAX);
                if due.is_some_and(|w| time as i64 >= w) {
                    if let Some(held) = capability.retain_least(0) {
                        stash.push((held, std::mem::take(data)));
                    }
                    return;
                }
                let delayed = |t: u64| capability.delayed(&t, 0);
                let revising = revisions.as_ref().map(|r| (r, &mut late));
                apply(&stage, &counters, &mut builder, &mut capabilities, (time, data), delayed, revising);
            });

            let upto = match frontier.frontier().iter().next() {
                Some(t) => *t as i64,
                None if stage.interrupted.load(Ordering::SeqCst) => {
                    discarded.inc_by(builder.discard_open() as u64);
                    capabilities.clear();
                    late.clear();
                    stash.clear(); // its capabilities would hold the run open
                    return;
                }
                None => i64::MAX,
            };
            // Closes the windows ending by `upto` and revises the bars of the late records
            // given before it.
            let mut advance = |builder: &mut BarBuilder, capabilities: &mut BTreeMap<i64, Capability<u64>>, revisions: Option<&mut Revisions>, late: &mut LateRecords<R>, upto: i64| {
                let mut revisions = revisions;
                builder.close_keeping(upto, revisions.as_deref_mut(), |window, bars| {
                    if let Some(capability) = capabilities.remove(&window.end) {
                        records_out.inc_by(bars.len() as u64);
                        bars.iter_mut()
                            .for_each(|b| b.source.clone_from(&stage.origin));
                        output.session(&capability).give_container(bars);
                    }
                });
                let Some(revisions) = revisions else { return };
                while let Some(entry) = late.first_entry().filter(|e| (*e.key() as i64) < upto) {
                    let (capability, records) = entry.remove();
                    for record in &records {
                        if revisions.fold(record) == Revise::OutsideSession {
                            counters.outside.inc();
                        }
                    }
                    let mut bars = Vec::new();
                    revisions.take_revised(|mut bar| {
                        bar.source.clone_from(&stage.origin);
                        bars.push(bar);
                    });
                    revised.inc_by(bars.len() as u64);
                    records_out.inc_by(bars.len() as u64);
                    output.session(&capability).give_container(&mut bars);
                }
                revisions.expire(upto);
            };
            if let (Some(w), Some(c)) = (due.filter(|w| upto >= *w), checkpoint.as_mut()) {
                advance(&mut builder, &mut capabilities, revisions.as_mut(), &mut late, w);
                c.save(w, save(&builder, revisions.as_ref(), &late));
                for (held, data) in std::mem::take(&mut stash) {
                    let delayed = |t: u64| held.delayed(&t);
                    let revising = revisions.as_ref().map(|r| (r, &mut late));
                    apply(&stage, &counters, &mut builder, &mut capabilities, (*held.time(), &data), delayed, revising);
                }
            }
            advance(&mut builder, &mut capabilities, revisions.as_mut(), &mut late, upto);
        }
    })
}

/// The operator's state for a checkpoint: the open windows and, with `late: revise`, the
/// closed windows kept and the late records waiting to revise them.
fn save<R: serde::Serialize>(
    builder: &BarBuilder,
    revisions: Option<&Revisions>,
    late: &LateRecords<R>,
) -> Vec<u8> {
    let Some(revisions) = revisions else {
        return builder.save();
    };
    let late: Vec<(u64, &Vec<R>)> = late.iter().map(|(t, (_, r))| (*t, r)).collect();
    marketflow_operators::state::encode(&(builder.save(), revisions.save(), late))
}

/// Restores what [`save`] gave; `capability` (the operator's first) gives the late
/// records' capabilities back.
fn restore<R: serde::de::DeserializeOwned>(
    builder: &mut BarBuilder,
    revisions: Option<&mut Revisions>,
    late: &mut LateRecords<R>,
    capability: &Capability<u64>,
    state: &[u8],
) -> Result<(), marketflow_operators::state::StateError> {
    let Some(revisions) = revisions else {
        return builder.load(state);
    };
    type Saved<R> = (Vec<u8>, Vec<u8>, Vec<(u64, Vec<R>)>);
    let (open, kept, records): Saved<R> = marketflow_operators::state::decode(state)?;
    builder.load(&open)?;
    revisions.load(&kept)?;
    for (time, records) in records {
        late.insert(time, (capability.delayed(&time), records));
    }
    Ok(())
}

/// The bars operator's input counters.
struct Counters {
    records_in: prometheus::IntCounter,
    late: prometheus::IntCounter,
    outside: prometheus::IntCounter,
}

/// Folds `data` into the open windows; `delayed` gives a capability at a time at or after
/// the data's. With `revising`, late records still in time are set aside to revise their
/// bars at the latest of their time, their watermark and their window's end (once the
/// window has closed).
fn apply<R: BarInput + Rejectable + Clone>(
    stage: &BarsStage,
    counters: &Counters,
    builder: &mut BarBuilder,
    capabilities: &mut BTreeMap<i64, Capability<u64>>,
    (time, data): (u64, &[R]),
    delayed: impl Fn(u64) -> Capability<u64>,
    mut revising: Option<(&Revisions, &mut LateRecords<R>)>,
) {
    counters.records_in.inc_by(data.len() as u64);
    let mut last_end = i64::MIN;
    let (mut late_count, mut outside_count) = (0, 0);
    for record in data.iter() {
        match builder.push(record) {
            Placement::Accepted { window_end } => {
                if window_end != last_end {
                    last_end = window_end;
                    capabilities
                        .entry(window_end)
                        .or_insert_with(|| delayed((window_end - 1) as u64));
                }
            }
            Placement::Late { window } => {
                if let Some((revisions, late)) = revising.as_mut() {
                    if revisions.in_time(window.end, record.watermark()) {
                        // At the record's own watermark, not its batch's time: a batch's
                        // time depends on where the input was cut (a checkpoint), and late
                        // records given at one time make one revision.
                        let at = time.max(record.watermark().max(window.end).max(0) as u64);
                        late.entry(at)
                            .or_insert_with(|| (delayed(at), Vec::new()))
                            .1
                            .push(record.clone());
                        continue;
                    }
                }
                late_count += 1;
                let past = if revising.is_some() {
                    " and can no longer be revised"
                } else {
                    ""
                };
                let detail = format!(
                    "window {} to {} had closed{past} (watermark {})",
                    format_timestamp(window.start),
                    format_timestamp(window.end),
                    format_timestamp(record.watermark())
                );
                stage
                    .dead_letters
                    .reject(&stage.name, "late", &detail, record.rejected());
            }
            Placement::OutsideSession => outside_count += 1,
            Placement::Straddles { window } => {
                let detail = format!(
                    "crosses the window {} to {}",
                    format_timestamp(window.start),
                    format_timestamp(window.end)
                );
                stage.dead_letters.reject(
                    &stage.name,
                    "straddles_window",
                    &detail,
                    record.rejected(),
                );
            }
        }
    }
    counters.late.inc_by(late_count);
    counters.outside.inc_by(outside_count);
}
