//! Operator `tick_indicators`: indicators over the last ticks of each symbol.
//!
//! Ticks are gathered by event-time window (`every`). Once the frontier passes a window's
//! end, its ticks are fed to each symbol's kernels in (time, sequence) order, and one row
//! per symbol and indicator is emitted, stamped with the window's start: the values after
//! the symbol's last tick of the window. So rows depend neither on arrival order nor on
//! batching or workers. A tick for a window that had closed is late: counted and
//! dead-lettered, as the bars operator does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::route::by_key;
use compact_str::CompactString;
use marketflow_operators::indicators::ticks::{TickIndicator, TickIndicatorSpec};
use marketflow_operators::indicators::Outputs;
use marketflow_operators::time::format_timestamp;
use marketflow_operators::{IndicatorKind, IndicatorRow, Interval, Symbol, Tick};
use rustc_hash::FxHashMap;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use super::checkpoint::OperatorCheckpoint;
use crate::dead_letter::{DeadLetters, Rejected};
use crate::metrics::metrics;

/// What the tick indicators operator needs besides its input.
#[derive(Clone)]
pub struct TickIndicatorsStage {
    pub name: String,
    pub every: Interval,
    pub specs: Vec<TickIndicatorSpec>,
    pub dead_letters: DeadLetters,
    /// Set when the run was interrupted: open windows are then incomplete and dropped.
    pub interrupted: Arc<AtomicBool>,
    /// Its part in checkpoints, when the pipeline takes them.
    pub checkpoint: Option<OperatorCheckpoint>,
}

/// The operator's state for a checkpoint: each symbol's kernel states, the open windows'
/// ticks by window end, and the end up to which windows have been emitted.
type Saved = (Vec<(Symbol, Vec<Vec<u8>>)>, Vec<(i64, Vec<Tick>)>, i64);

pub fn tick_indicators<'s>(
    input: StreamVec<'s, u64, Tick>,
    stage: TickIndicatorsStage,
) -> StreamVec<'s, u64, IndicatorRow> {
    let name = stage.name.clone();
    let exchange = by_key(|t: &Tick| t.symbol.route_hash());
    input.unary_frontier(exchange, &name, move |capability, _info| {
        let ids: Vec<(CompactString, IndicatorKind)> = stage
            .specs
            .iter()
            .map(|s| (CompactString::new(s.id()), s.kind()))
            .collect();
        let mut kernels: FxHashMap<Symbol, Vec<Box<dyn TickIndicator>>> = FxHashMap::default();
        // Open windows by their end, each with a capability at `end - 1`.
        let mut windows: BTreeMap<i64, (Capability<u64>, Vec<Tick>)> = BTreeMap::new();
        // Windows ending at or before this have been emitted.
        let mut closed_until = i64::MIN;
        let mut checkpoint = stage.checkpoint.clone();
        if let Some(state) = checkpoint.as_mut().and_then(OperatorCheckpoint::take_restored) {
            let restored = marketflow_operators::state::decode::<Saved>(&state).and_then(|(saved, open, until)| {
                for (symbol, states) in saved {
                    let mut built: Vec<Box<dyn TickIndicator>> =
                        stage.specs.iter().map(TickIndicatorSpec::build).collect();
                    for (kernel, state) in built.iter_mut().zip(&states) {
                        kernel.load(state)?;
                    }
                    kernels.insert(symbol, built);
                }
                for (end, ticks) in open {
                    windows.insert(end, (capability.delayed(&((end - 1).max(0) as u64)), ticks));
                }
                closed_until = until;
                Ok(())
            });
            if let Err(e) = restored {
                tracing::error!(operator = %stage.name, error = %e, "its saved state was not restored");
            }
        }
        drop(capability);
        // Input at or after an announced checkpoint, kept aside until the state is saved.
        let mut stash: Vec<(Capability<u64>, Vec<Tick>)> = Vec::new();
        let m = metrics();
        let counters = Counters {
            records_in: m.operator_in.with_label_values(&[stage.name.as_str()]),
            late: m.late_records.with_label_values(&[stage.name.as_str()]),
        };
        let records_out = m.operator_out.with_label_values(&[stage.name.as_str()]);
        let discarded = m
            .discarded_at_shutdown
            .with_label_values(&[stage.name.as_str()]);

        move |(input, frontier), output| {
            let due = checkpoint.as_ref().and_then(OperatorCheckpoint::due);
            input.for_each(|capability, data| {
                let time = capability.least().map_or(i64::MAX, |t| *t as i64);
                if due.is_some_and(|w| time >= w) {
                    if let Some(held) = capability.retain_least(0) {
                        stash.push((held, std::mem::take(data)));
                    }
                    return;
                }
                let delayed = |t: u64| capability.delayed(&t, 0);
                gather(&stage, &counters, &mut windows, closed_until, (time, data), delayed);
            });
            let upto = match frontier.frontier().iter().next() {
                Some(t) => *t as i64,
                None if stage.interrupted.load(Ordering::SeqCst) => {
                    let open: usize = windows.values().map(|w| w.1.len()).sum();
                    discarded.inc_by(open as u64);
                    windows.clear();
                    stash.clear(); // its capabilities would hold the run open
                    return;
                }
                None => i64::MAX,
            };
            let mut close = |windows: &mut BTreeMap<i64, (Capability<u64>, Vec<Tick>)>,
                             kernels: &mut FxHashMap<Symbol, Vec<Box<dyn TickIndicator>>>,
                             closed_until: &mut i64,
                             upto: i64| {
                while let Some(entry) = windows.first_entry() {
                    if *entry.key() > upto {
                        break;
                    }
                    let end = *entry.key();
                    let (capability, mut ticks) = entry.remove();
                    *closed_until = end;
                    let rows = window_rows(&stage, &ids, kernels, end, &mut ticks);
                    records_out.inc_by(rows.len() as u64);
                    output.session(&capability).give_container(&mut { rows });
                }
            };
            if let (Some(w), Some(c)) = (due.filter(|w| upto >= *w), checkpoint.as_mut()) {
                close(&mut windows, &mut kernels, &mut closed_until, w);
                c.save(w, save(&kernels, &windows, closed_until));
                for (held, mut data) in std::mem::take(&mut stash) {
                    let delayed = |t: u64| held.delayed(&t);
                    gather(&stage, &counters, &mut windows, closed_until, (*held.time() as i64, &mut data), delayed);
                }
            }
            close(&mut windows, &mut kernels, &mut closed_until, upto);
        }
    })
}

/// The operator's input counters.
struct Counters {
    records_in: prometheus::IntCounter,
    late: prometheus::IntCounter,
}

/// Puts `data`, given at `time`, into the open windows; `delayed` gives a capability at a
/// time at or after `time`. Ticks of windows already closed are late.
fn gather(
    stage: &TickIndicatorsStage,
    counters: &Counters,
    windows: &mut BTreeMap<i64, (Capability<u64>, Vec<Tick>)>,
    closed_until: i64,
    (time, data): (i64, &mut Vec<Tick>),
    delayed: impl Fn(u64) -> Capability<u64>,
) {
    let every = stage.every.millis();
    counters.records_in.inc_by(data.len() as u64);
    for tick in data.drain(..) {
        let end = tick.ts.div_euclid(every) * every + every;
        if end <= closed_until || end <= tick.wm || end - 1 < time {
            counters.late.inc();
            let detail = format!(
                "window {} to {} had closed (watermark {})",
                format_timestamp(end - every),
                format_timestamp(end),
                format_timestamp(tick.wm)
            );
            stage
                .dead_letters
                .reject(&stage.name, "late", &detail, Rejected::Tick(&tick));
            continue;
        }
        windows
            .entry(end)
            .or_insert_with(|| (delayed((end - 1) as u64), Vec::new()))
            .1
            .push(tick);
    }
}

/// The rows of the window ending at `end`: its ticks go to each symbol's kernels in
/// (time, sequence) order, and the values after each symbol's last tick are its rows.
fn window_rows(
    stage: &TickIndicatorsStage,
    ids: &[(CompactString, IndicatorKind)],
    kernels: &mut FxHashMap<Symbol, Vec<Box<dyn TickIndicator>>>,
    end: i64,
    ticks: &mut [Tick],
) -> Vec<IndicatorRow> {
    let every = stage.every.millis();
    ticks.sort_by(|a, b| (&a.symbol, a.ts, a.seq).cmp(&(&b.symbol, b.ts, b.seq)));
    let mut rows = Vec::new();
    let mut last: Vec<Option<Outputs>> = vec![None; ids.len()];
    for (i, tick) in ticks.iter().enumerate() {
        let state = kernels
            .entry(tick.symbol.clone())
            .or_insert_with(|| stage.specs.iter().map(TickIndicatorSpec::build).collect());
        for (slot, kernel) in last.iter_mut().zip(state.iter_mut()) {
            if let Some(values) = kernel.update(tick) {
                *slot = Some(values);
            }
        }
        let symbol_ends = ticks
            .get(i + 1)
            .is_none_or(|next| next.symbol != tick.symbol);
        if symbol_ends {
            for (slot, (id, kind)) in last.iter_mut().zip(ids) {
                if let Some(outputs) = slot.take() {
                    rows.push(IndicatorRow {
                        symbol: tick.symbol.clone(),
                        interval: stage.every,
                        ts: end - every,
                        id: id.clone(),
                        kind: *kind,
                        outputs,
                        revision: 0,
                    });
                }
            }
        }
    }
    rows
}

/// What [`Saved`] holds, in a stable order.
fn save(
    kernels: &FxHashMap<Symbol, Vec<Box<dyn TickIndicator>>>,
    windows: &BTreeMap<i64, (Capability<u64>, Vec<Tick>)>,
    closed_until: i64,
) -> Vec<u8> {
    let mut states: Vec<(&Symbol, Vec<Vec<u8>>)> = kernels
        .iter()
        .map(|(symbol, k)| (symbol, k.iter().map(|kernel| kernel.save()).collect()))
        .collect();
    states.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let open: Vec<(i64, &Vec<Tick>)> = windows.iter().map(|(end, (_, t))| (*end, t)).collect();
    marketflow_operators::state::encode(&(states, open, closed_until))
}
