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

use crate::dead_letter::{DeadLetters, Rejected};
use crate::metrics::metrics;

/// The bars of one window end, by (symbol, start), with the input each came from.
type Window = (Capability<u64>, FxHashMap<(Symbol, i64), (u8, Bar)>);

/// Merges `inputs` (in precedence order) into one stream of bars.
pub fn merge_bars<'s>(
    scope: Scope<'s, u64>,
    inputs: Vec<StreamVec<'s, u64, Bar>>,
    name: &str,
    dead_letters: DeadLetters,
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
        .unary_frontier(exchange, &name.clone(), move |_capability, _info| {
            let mut windows: BTreeMap<i64, Window> = BTreeMap::new();
            let m = metrics();
            let records_in = m.operator_in.with_label_values(&[name.as_str()]);
            let records_out = m.operator_out.with_label_values(&[name.as_str()]);
            let late = m.late_records.with_label_values(&[name.as_str()]);
            move |(input, frontier), output| {
                input.for_each(|capability, data| {
                    records_in.inc_by(data.len() as u64);
                    let time = capability.least().map_or(0, |t| *t as i64);
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
                        let (_, bars) = windows.entry(bar.end).or_insert_with(|| {
                            (
                                capability.delayed(&(emit_at as u64), 0),
                                FxHashMap::default(),
                            )
                        });
                        let key = (bar.symbol.clone(), bar.start);
                        match bars.get(&key) {
                            Some((held, old))
                                if *held < rank
                                    || (*held == rank && old.revision > bar.revision) => {}
                            _ => {
                                bars.insert(key, (rank, bar));
                            }
                        }
                    }
                });
                while let Some(entry) = windows.first_entry() {
                    if frontier.less_equal(&((*entry.key() - 1) as u64)) {
                        break;
                    }
                    let (capability, bars) = entry.remove();
                    let mut out: Vec<Bar> = bars.into_values().map(|(_, bar)| bar).collect();
                    out.sort_by(|a, b| (&a.symbol, a.start).cmp(&(&b.symbol, b.start)));
                    records_out.inc_by(out.len() as u64);
                    output.session(&capability).give_container(&mut out);
                }
            }
        })
}
