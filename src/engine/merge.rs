//! Several bars streams of one interval read as one (`from: [history_5m, live_5m]`): for
//! each symbol and window exactly one bar goes on, the one of the stream listed first
//! that has that window. A window is decided once every input has passed it, so the
//! choice is the same whatever the arrival order, worker count or replay.
//!
//! Every input delivers a window's bar at a time below the window's end (a source at its
//! watermark, at most the bar's start; a `bars` operator at `end - 1`), so the window
//! `[s, e)` is complete when the frontier reaches `e`, and its bar goes on at `e - 1`, as a
//! `bars` operator's would: operators downstream see one ordered stream.

use std::collections::BTreeMap;

use marketflow_operators::time::format_timestamp;
use marketflow_operators::{Bar, Symbol};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concatenate, Operator};
use timely::dataflow::{Scope, StreamVec};

use super::checkpoint::OperatorCheckpoint;
use crate::dead_letter::{DeadLetters, Rejected};
use crate::metrics::metrics;

/// The bars of one window end, by (symbol, start), with the input each came from.
type Window = (Capability<u64>, FxHashMap<(Symbol, i64), (u8, Bar)>);

/// A bar and the rank of the input it came from.
type Ranked = (u8, Bar);

/// The open windows by end, as a checkpoint saves them.
type Saved = Vec<(i64, Vec<((Symbol, i64), (u8, Bar))>)>;

/// Merges `inputs` (in precedence order) into one stream of bars.
pub fn merge_bars<'s>(
    scope: Scope<'s, u64>,
    inputs: Vec<StreamVec<'s, u64, Bar>>,
    name: &str,
    dead_letters: DeadLetters,
    checkpoint: Option<OperatorCheckpoint>,
) -> StreamVec<'s, u64, Bar> {
    let tagged: Vec<_> = inputs
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.map(move |bar| (i.min(u8::MAX as usize) as u8, bar)))
        .collect();
    let name = name.to_owned();
    let exchange = Exchange::new(|(_, b): &(u8, Bar)| b.symbol.route_hash());
    scope
        .concatenate(tagged)
        .unary_frontier(exchange, &name.clone(), move |capability, _info| {
            let mut windows: BTreeMap<i64, Window> = BTreeMap::new();
            let mut checkpoint = checkpoint;
            if let Some(state) = checkpoint.as_mut().and_then(OperatorCheckpoint::take_restored) {
                match marketflow_operators::state::decode::<Saved>(&state) {
                    Ok(saved) => {
                        for (end, bars) in saved {
                            let held = capability.delayed(&((end - 1).max(0) as u64));
                            windows.insert(end, (held, bars.into_iter().collect()));
                        }
                    }
                    Err(e) => tracing::error!(operator = %name, error = %e, "its saved state was not restored"),
                }
            }
            drop(capability);
            // Input at or after an announced checkpoint, kept aside until the state is saved.
            let mut stash: Vec<(Capability<u64>, Vec<Ranked>)> = Vec::new();
            let m = metrics();
            let records_in = m.operator_in.with_label_values(&[name.as_str()]);
            let records_out = m.operator_out.with_label_values(&[name.as_str()]);
            let late = m.late_records.with_label_values(&[name.as_str()]);
            let accept = move |windows: &mut BTreeMap<i64, Window>,
                          time: i64,
                          data: &mut Vec<(u8, Bar)>,
                          delayed: &dyn Fn(u64) -> Capability<u64>| {
                records_in.inc_by(data.len() as u64);
                for (rank, bar) in data.drain(..) {
                    let emit_at = bar.end - 1;
                    if time > emit_at {
                        // Its window has been decided already.
                        late.inc();
                        let detail = format!(
                            "window {} to {} had been merged",
                            format_timestamp(bar.start),
                            format_timestamp(bar.end)
                        );
                        dead_letters.reject(&name, "late", &detail, Rejected::Bar(&bar));
                        continue;
                    }
                    let (_, bars) = windows
                        .entry(bar.end)
                        .or_insert_with(|| (delayed(emit_at as u64), FxHashMap::default()));
                    let key = (bar.symbol.clone(), bar.start);
                    match bars.get(&key) {
                        Some((held, old))
                            if *held < rank || (*held == rank && old.revision > bar.revision) => {}
                        _ => {
                            bars.insert(key, (rank, bar));
                        }
                    }
                }
            };
            move |(input, frontier), output| {
                let due = checkpoint.as_ref().and_then(OperatorCheckpoint::due);
                input.for_each(|capability, data| {
                    let time = capability.least().map_or(0, |t| *t as i64);
                    if due.is_some_and(|w| time >= w) {
                        if let Some(held) = capability.retain_least(0) {
                            stash.push((held, std::mem::take(data)));
                        }
                        return;
                    }
                    accept(&mut windows, time, data, &|t| capability.delayed(&t, 0));
                });
                // Gives the windows whose bars all came before `upto`.
                let mut decide = |windows: &mut BTreeMap<i64, Window>, upto: u64| {
                    while let Some(entry) = windows.first_entry() {
                        if upto <= (*entry.key() - 1) as u64 {
                            break;
                        }
                        let (capability, bars) = entry.remove();
                        let mut out: Vec<Bar> = bars.into_values().map(|(_, bar)| bar).collect();
                        out.sort_by(|a, b| (&a.symbol, a.start).cmp(&(&b.symbol, b.start)));
                        records_out.inc_by(out.len() as u64);
                        output.session(&capability).give_container(&mut out);
                    }
                };
                let upto = frontier.frontier().iter().next().copied().unwrap_or(u64::MAX);
                if let (Some(w), Some(c)) = (due.filter(|w| upto as i64 >= *w), checkpoint.as_mut()) {
                    decide(&mut windows, w as u64);
                    c.save(w, save(&windows));
                    for (held, mut data) in std::mem::take(&mut stash) {
                        accept(&mut windows, *held.time() as i64, &mut data, &|t| held.delayed(&t));
                    }
                }
                decide(&mut windows, upto);
            }
        })
}

/// The open windows' bars, in a stable order.
fn save(windows: &BTreeMap<i64, Window>) -> Vec<u8> {
    let saved: Vec<(i64, Vec<_>)> = windows
        .iter()
        .map(|(end, (_, bars))| {
            let mut bars: Vec<_> = bars.iter().collect();
            bars.sort_unstable_by(|a, b| a.0.cmp(b.0));
            (*end, bars)
        })
        .collect();
    marketflow_operators::state::encode(&saved)
}
