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

use compact_str::CompactString;
use marketflow_operators::indicators::ticks::{TickIndicator, TickIndicatorSpec};
use marketflow_operators::indicators::Outputs;
use marketflow_operators::time::format_timestamp;
use marketflow_operators::{IndicatorKind, IndicatorRow, Interval, Symbol, Tick};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

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
}

pub fn tick_indicators<'s>(
    input: StreamVec<'s, u64, Tick>,
    stage: TickIndicatorsStage,
) -> StreamVec<'s, u64, IndicatorRow> {
    let name = stage.name.clone();
    let exchange = Exchange::new(|t: &Tick| t.symbol.route_hash());
    input.unary_frontier(exchange, &name, move |_capability, _info| {
        let ids: Vec<(CompactString, IndicatorKind)> = stage
            .specs
            .iter()
            .map(|s| (CompactString::new(s.id()), s.kind()))
            .collect();
        let every = stage.every.millis();
        let mut kernels: FxHashMap<Symbol, Vec<Box<dyn TickIndicator>>> = FxHashMap::default();
        // Open windows by their end, each with a capability at `end - 1`.
        let mut windows: BTreeMap<i64, (Capability<u64>, Vec<Tick>)> = BTreeMap::new();
        // Windows ending at or before this have been emitted.
        let mut closed_until = i64::MIN;
        let m = metrics();
        let records_in = m.operator_in.with_label_values(&[stage.name.as_str()]);
        let records_out = m.operator_out.with_label_values(&[stage.name.as_str()]);
        let late = m.late_records.with_label_values(&[stage.name.as_str()]);
        let discarded = m
            .discarded_at_shutdown
            .with_label_values(&[stage.name.as_str()]);

        move |(input, frontier), output| {
            input.for_each(|capability, data| {
                records_in.inc_by(data.len() as u64);
                let time = capability.least().map_or(i64::MAX, |t| *t as i64);
                for tick in data.drain(..) {
                    let end = tick.ts.div_euclid(every) * every + every;
                    if end <= closed_until || end <= tick.wm || end - 1 < time {
                        late.inc();
                        let detail = format!(
                            "window {} to {} had closed (watermark {})",
                            format_timestamp(end - every),
                            format_timestamp(end),
                            format_timestamp(tick.wm)
                        );
                        stage.dead_letters.reject(
                            &stage.name,
                            "late",
                            &detail,
                            Rejected::Tick(&tick),
                        );
                        continue;
                    }
                    windows
                        .entry(end)
                        .or_insert_with(|| (capability.delayed(&((end - 1) as u64), 0), Vec::new()))
                        .1
                        .push(tick);
                }
            });
            let upto = match frontier.frontier().iter().next() {
                Some(t) => *t as i64,
                None if stage.interrupted.load(Ordering::SeqCst) => {
                    let open: usize = windows.values().map(|w| w.1.len()).sum();
                    discarded.inc_by(open as u64);
                    windows.clear();
                    return;
                }
                None => i64::MAX,
            };
            while let Some(entry) = windows.first_entry() {
                if *entry.key() > upto {
                    break;
                }
                let end = *entry.key();
                let (capability, mut ticks) = entry.remove();
                closed_until = end;
                ticks.sort_by(|a, b| (&a.symbol, a.ts, a.seq).cmp(&(&b.symbol, b.ts, b.seq)));
                let mut rows = Vec::new();
                let mut last: Vec<Option<Outputs>> = vec![None; ids.len()];
                for (i, tick) in ticks.iter().enumerate() {
                    let state = kernels.entry(tick.symbol.clone()).or_insert_with(|| {
                        stage.specs.iter().map(TickIndicatorSpec::build).collect()
                    });
                    for (slot, kernel) in last.iter_mut().zip(state.iter_mut()) {
                        if let Some(values) = kernel.update(tick) {
                            *slot = Some(values);
                        }
                    }
                    let symbol_ends = ticks
                        .get(i + 1)
                        .is_none_or(|next| next.symbol != tick.symbol);
                    if symbol_ends {
                        for (slot, (id, kind)) in last.iter_mut().zip(&ids) {
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
                records_out.inc_by(rows.len() as u64);
                output.session(&capability).give_container(&mut rows);
            }
        }
    })
}
