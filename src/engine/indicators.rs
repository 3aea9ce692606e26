//! Operator `indicators`: technical indicators on a bars stream, one kernel per
//! (symbol, indicator), fed each symbol's bars in event-time order.

use std::collections::BTreeMap;

use super::route::by_key;
use compact_str::CompactString;
use marketflow_operators::indicators::{Indicator, IndicatorSpec};
use marketflow_operators::{Bar, Calendar, IndicatorKind, IndicatorRow, Interval, Symbol};
use rustc_hash::FxHashMap;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use super::checkpoint::OperatorCheckpoint;
use crate::metrics::metrics;

/// What the indicators operator needs besides its input.
#[derive(Clone)]
pub struct IndicatorsStage {
    pub name: String,
    pub interval: Interval,
    /// The calendar of the input bars (session VWAP resets on its days).
    pub calendar: Calendar,
    pub specs: Vec<IndicatorSpec>,
    /// Its part in checkpoints, when the pipeline takes them.
    pub checkpoint: Option<OperatorCheckpoint>,
}

/// One symbol's kernels, in configuration order.
struct SymbolKernels(Vec<Box<dyn Indicator>>);

/// Computes `stage.specs` on every bar of `input`. Bars are handled per timestamp in
/// timestamp order once the frontier has passed it, so each symbol's kernels see its
/// bars in event-time order whatever the batching.
pub fn indicators<'s>(
    input: StreamVec<'s, u64, Bar>,
    stage: IndicatorsStage,
) -> StreamVec<'s, u64, IndicatorRow> {
    let name = stage.name.clone();
    let exchange = by_key(|b: &Bar| b.symbol.route_hash());
    input.unary_frontier(exchange, &name, move |_capability, _info| {
        let ids: Vec<(CompactString, IndicatorKind)> = stage
            .specs
            .iter()
            .map(|s| (CompactString::new(s.id()), s.kind()))
            .collect();
        let mut kernels: FxHashMap<Symbol, SymbolKernels> = FxHashMap::default();
        let mut checkpoint = stage.checkpoint.clone();
        if let Some(state) = checkpoint.as_mut().and_then(OperatorCheckpoint::take_restored) {
            if let Err(e) = restore(&stage, &mut kernels, &state) {
                tracing::error!(operator = %stage.name, error = %e, "its saved state was not restored");
            }
        }
        let mut pending: BTreeMap<u64, (Capability<u64>, Vec<Bar>)> = BTreeMap::new();
        let records_in = metrics()
            .operator_in
            .with_label_values(&[stage.name.as_str()]);
        let records_out = metrics()
            .operator_out
            .with_label_values(&[stage.name.as_str()]);

        move |(input, frontier), output| {
            input.for_each(|capability, data| {
                records_in.inc_by(data.len() as u64);
                let Some(time) = capability.least().copied() else {
                    return;
                };
                let entry = pending
                    .entry(time)
                    .or_insert_with(|| (capability.delayed(&time, 0), Vec::new()));
                entry.1.append(data);
            });
            loop {
                let due = checkpoint.as_ref().and_then(OperatorCheckpoint::due);
                let next = pending.first_key_value().map(|(t, _)| *t as i64);
                if let (Some(w), Some(c)) = (due, checkpoint.as_mut()) {
                    // Everything below the checkpoint is in: save, then go on past it.
                    if next.is_none_or(|t| t >= w) && !frontier.less_than(&(w as u64)) {
                        c.save(w, save(&kernels));
                        continue;
                    }
                    if next.is_some_and(|t| t >= w) {
                        break;
                    }
                }
                let Some(entry) = pending.first_entry() else { break };
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (capability, mut bars) = entry.remove();
                bars.sort_by(|a, b| (&a.symbol, a.start).cmp(&(&b.symbol, b.start)));
                let mut rows = Vec::with_capacity(bars.len() * ids.len());
                for bar in &bars {
                    let state = kernels.entry(bar.symbol.clone()).or_insert_with(|| {
                        SymbolKernels(
                            stage
                                .specs
                                .iter()
                                .map(|s| s.build(&stage.calendar))
                                .collect(),
                        )
                    });
                    for (kernel, (id, kind)) in state.0.iter_mut().zip(&ids) {
                        if let Some(outputs) = kernel.update(bar) {
                            rows.push(IndicatorRow {
                                symbol: bar.symbol.clone(),
                                interval: stage.interval,
                                ts: bar.start,
                                id: id.clone(),
                                kind: *kind,
                                outputs,
                                revision: bar.revision,
                            });
                        }
                    }
                }
                records_out.inc_by(rows.len() as u64);
                output.session(&capability).give_container(&mut rows);
            }
        }
    })
}

/// Every symbol's kernel states, by symbol.
fn save(kernels: &FxHashMap<Symbol, SymbolKernels>) -> Vec<u8> {
    let mut states: Vec<(&Symbol, Vec<Vec<u8>>)> = kernels
        .iter()
        .map(|(symbol, k)| (symbol, k.0.iter().map(|kernel| kernel.save()).collect()))
        .collect();
    states.sort_unstable_by(|a, b| a.0.cmp(b.0));
    marketflow_operators::state::encode(&states)
}

/// Kernels of `stage.specs` per symbol, in the states [`save`] gave.
fn restore(
    stage: &IndicatorsStage,
    kernels: &mut FxHashMap<Symbol, SymbolKernels>,
    state: &[u8],
) -> Result<(), marketflow_operators::state::StateError> {
    let states: Vec<(Symbol, Vec<Vec<u8>>)> = marketflow_operators::state::decode(state)?;
    for (symbol, saved) in states {
        let mut built: Vec<Box<dyn Indicator>> = stage
            .specs
            .iter()
            .map(|s| s.build(&stage.calendar))
            .collect();
        for (kernel, saved) in built.iter_mut().zip(&saved) {
            kernel.load(saved)?;
        }
        kernels.insert(symbol, SymbolKernels(built));
    }
    Ok(())
}
