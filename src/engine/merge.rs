//! Several bars streams of one interval read as one (`from: [history_5m, live_5m]`): for
//! each symbol and window exactly one bar goes on, the one of the stream listed first
//! that has that window. A window is decided once every input has passed it, so the
//! choice is the same whatever the arrival order, worker count or replay.
//!
//! Every input delivers a window's bar at a time below the window's end (a source at its
//! watermark, at most the bar's start; a `bars` operator at `end - 1`), so the window
//! `[s, e)` is complete when the frontier reaches `e`, and its bar goes on at `e - 1`, as a
//! `bars` operator's would: operators downstream see one ordered stream.
//!
//! When an input is revised by late records (`late: revise` upstream), a decided window's
//! choice is kept for `revise_for`: a bar arriving after its window was decided revises the
//! merged bar if it comes from the input that gave it (a newer revision) or from one listed
//! before it (which had no bar of that window then), and goes on as the next revision of
//! the merged bar. Late bars are taken in time order once the frontier has passed their
//! time, so the choice stays the same whatever the arrival order.

use std::collections::BTreeMap;

use super::route::by_key;
use marketflow_operators::time::format_timestamp;
use marketflow_operators::{Bar, Symbol};
use rustc_hash::FxHashMap;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concatenate, Operator};
use timely::dataflow::{Scope, StreamVec};

use super::checkpoint::{frontier_time, OperatorCheckpoint};
use crate::dead_letter::{DeadLetters, Rejected};
use crate::metrics::metrics;

/// The bars of one window end, by (symbol, start), with the input each came from.
type Window = (Capability<u64>, FxHashMap<(Symbol, i64), (u8, Bar)>);

/// A bar and the rank of the input it came from.
type Ranked = (u8, Bar);

/// The open windows by end, as a checkpoint saves them.
type Saved = Vec<(i64, Vec<((Symbol, i64), (u8, Bar))>)>;

/// What a revising merge gave of a decided window's bar: the input it came from, that
/// input's revision of it, and the merged revision given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Given {
    rank: u8,
    input_revision: u32,
    revision: u32,
}

/// The decided windows still revisable, by end: what was given of each bar.
type Decided = BTreeMap<i64, FxHashMap<(Symbol, i64), Given>>;

/// A revising merge's state as a checkpoint saves it: the open windows, then the decided
/// ones still revisable.
type SavedRevising = (Saved, Vec<(i64, Vec<((Symbol, i64), Given)>)>);

/// Merges `inputs` (in precedence order) into one stream of bars.
pub fn merge_bars<'s>(
    scope: Scope<'s, u64>,
    inputs: Vec<StreamVec<'s, u64, Bar>>,
    name: &str,
    dead_letters: DeadLetters,
    checkpoint: Option<OperatorCheckpoint>,
    revise_for: Option<i64>,
) -> StreamVec<'s, u64, Bar> {
    let tagged: Vec<_> = inputs
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.map(move |bar| (i.min(u8::MAX as usize) as u8, bar)))
        .collect();
    let name = name.to_owned();
    let exchange = by_key(|(_, b): &(u8, Bar)| b.symbol.route_hash());
    scope
        .concatenate(tagged)
        .unary_frontier(exchange, &name.clone(), move |capability, _info| {
            let mut windows: BTreeMap<i64, Window> = BTreeMap::new();
            let mut decided: Decided = BTreeMap::new();
            // Bars that came after their window was decided, by the time they came at.
            let mut late_bars: BTreeMap<u64, (Capability<u64>, Vec<Ranked>)> = BTreeMap::new();
            let mut checkpoint = checkpoint;
            if let Some(state) = checkpoint.as_mut().and_then(OperatorCheckpoint::take_restored) {
                match restore(&state, revise_for.is_some()) {
                    Ok((saved, kept)) => {
                        for (end, bars) in saved {
                            let held = capability.delayed(&((end - 1).max(0) as u64));
                            windows.insert(end, (held, bars.into_iter().collect()));
                        }
                        decided = kept;
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
            let revised = m.revised_records.with_label_values(&[name.as_str()]);
            let (late_dead_letters, late_name) = (dead_letters.clone(), name.clone());
            let accept = move |windows: &mut BTreeMap<i64, Window>,
                          late_bars: &mut BTreeMap<u64, (Capability<u64>, Vec<Ranked>)>,
                          time: i64,
                          data: &mut Vec<(u8, Bar)>,
                          delayed: &dyn Fn(u64) -> Capability<u64>| {
                records_in.inc_by(data.len() as u64);
                for (rank, bar) in data.drain(..) {
                    let emit_at = bar.end - 1;
                    if time > emit_at && revise_for.is_some() {
                        // Taken once the frontier has passed `time`, when its window is decided.
                        late_bars
                            .entry(time as u64)
                            .or_insert_with(|| (delayed(time as u64), Vec::new()))
                            .1
                            .push((rank, bar));
                        continue;
                    }
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
                    accept(&mut windows, &mut late_bars, time, data, &|t| capability.delayed(&t, 0));
                });
                // Gives the windows whose bars all came before `upto`, then the revisions
                // of the late bars that came before it; forgets the decided windows no
                // late bar can reach any more.
                let mut decide = |windows: &mut BTreeMap<i64, Window>, decided: &mut Decided, late_bars: &mut BTreeMap<u64, (Capability<u64>, Vec<Ranked>)>, upto: u64| {
                    while let Some(entry) = windows.first_entry() {
                        if upto <= (*entry.key() - 1) as u64 {
                            break;
                        }
                        let (end, (capability, bars)) = entry.remove_entry();
                        let mut out: Vec<Bar> = Vec::with_capacity(bars.len());
                        let mut given = FxHashMap::default();
                        for (key, (rank, bar)) in bars {
                            if revise_for.is_some() {
                                given.insert(key, Given { rank, input_revision: bar.revision, revision: bar.revision });
                            }
                            out.push(bar);
                        }
                        if revise_for.is_some() {
                            decided.insert(end, given);
                        }
                        out.sort_by(|a, b| (&a.symbol, a.start).cmp(&(&b.symbol, b.start)));
                        records_out.inc_by(out.len() as u64);
                        output.session(&capability).give_container(&mut out);
                    }
                    while let Some(entry) = late_bars.first_entry().filter(|e| *e.key() < upto) {
                        let (time, (capability, bars)) = entry.remove_entry();
                        let keep = revise_for.unwrap_or(0);
                        let mut out = revise(decided, bars, (time as i64, keep), &late_dead_letters, &late_name);
                        revised.inc_by(out.len() as u64);
                        records_out.inc_by(out.len() as u64);
                        output.session(&capability).give_container(&mut out);
                    }
                    if let Some(keep) = revise_for {
                        while decided.first_key_value().is_some_and(|(end, _)| end.saturating_add(keep) <= frontier_time(upto)) {
                            decided.pop_first();
                        }
                    }
                };
                let upto = frontier.frontier().iter().next().copied().unwrap_or(u64::MAX);
                if let (Some(w), Some(c)) = (due.filter(|w| frontier_time(upto) >= *w), checkpoint.as_mut()) {
                    decide(&mut windows, &mut decided, &mut late_bars, w as u64);
                    c.save(w, save(&windows, revise_for.map(|_| &decided)));
                    for (held, mut data) in std::mem::take(&mut stash) {
                        accept(&mut windows, &mut late_bars, *held.time() as i64, &mut data, &|t| held.delayed(&t));
                    }
                }
                decide(&mut windows, &mut decided, &mut late_bars, upto);
            }
        })
}

/// The revisions that late bars (all of one time) make to decided windows: per bar, the
/// best candidate (the input listed first, then its newest revision) replaces what was
/// given if it comes from an input listed before, or is a newer revision from the same
/// one; it goes on as the next merged revision. Bars of windows no longer kept, or of an
/// input listed after the one given, change nothing. `(time, keep)`: when they came, and
/// how long a window stays revisable after its end.
fn revise(
    decided: &mut Decided,
    mut bars: Vec<Ranked>,
    (time, keep): (i64, i64),
    dead_letters: &DeadLetters,
    name: &str,
) -> Vec<Bar> {
    bars.sort_by(|(ra, a), (rb, b)| {
        (&a.symbol, a.start, *ra, std::cmp::Reverse(a.revision)).cmp(&(
            &b.symbol,
            b.start,
            *rb,
            std::cmp::Reverse(b.revision),
        ))
    });
    let mut out: Vec<Bar> = Vec::new();
    let mut last: Option<(Symbol, i64)> = None;
    for (rank, mut bar) in bars {
        let key = (bar.symbol.clone(), bar.start);
        if last.as_ref() == Some(&key) {
            continue; // a worse candidate of a bar already settled at this time
        }
        last = Some(key.clone());
        if bar.end.saturating_add(keep) > time {
            // A window no input had a bar of when it was decided.
            decided.entry(bar.end).or_default();
        }
        let Some(window) = decided.get_mut(&bar.end) else {
            let detail = format!(
                "window {} to {} had been merged and is no longer revisable",
                format_timestamp(bar.start),
                format_timestamp(bar.end)
            );
            dead_letters.reject(name, "late", &detail, Rejected::Bar(&bar));
            continue;
        };
        let revision = match window.get(&key) {
            Some(given) if given.rank < rank => continue,
            Some(given) if given.rank == rank && given.input_revision >= bar.revision => continue,
            Some(given) => given.revision + 1,
            None => bar.revision,
        };
        window.insert(
            key,
            Given {
                rank,
                input_revision: bar.revision,
                revision,
            },
        );
        bar.revision = revision;
        out.push(bar);
    }
    out
}

/// The open windows' bars, in a stable order; for a revising merge, the decided windows'
/// choices too.
fn save(windows: &BTreeMap<i64, Window>, decided: Option<&Decided>) -> Vec<u8> {
    let saved: Saved = windows
        .iter()
        .map(|(end, (_, bars))| {
            let mut bars: Vec<_> = bars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            bars.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            (*end, bars)
        })
        .collect();
    let Some(decided) = decided else {
        return marketflow_operators::state::encode(&saved);
    };
    let kept: Vec<(i64, Vec<_>)> = decided
        .iter()
        .map(|(end, given)| {
            let mut given: Vec<_> = given.iter().map(|(k, g)| (k.clone(), *g)).collect();
            given.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            (*end, given)
        })
        .collect();
    marketflow_operators::state::encode(&(saved, kept))
}

/// What [`save`] gave: the open windows and the decided ones kept.
fn restore(
    state: &[u8],
    revising: bool,
) -> Result<(Saved, Decided), marketflow_operators::state::StateError> {
    if !revising {
        return Ok((
            marketflow_operators::state::decode::<Saved>(state)?,
            Decided::new(),
        ));
    }
    let (saved, kept): SavedRevising = marketflow_operators::state::decode(state)?;
    let decided = kept
        .into_iter()
        .map(|(end, given)| (end, given.into_iter().collect()))
        .collect();
    Ok((saved, decided))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use marketflow_operators::{Fixed, Interval};
    use timely::dataflow::operators::{Inspect, Probe};
    use timely::dataflow::{InputHandleVec as InputHandle, ProbeHandle};

    use super::*;
    use crate::engine::checkpoint::Checkpoints;

    const MINUTE: i64 = 60_000;

    fn bar(start: i64) -> Bar {
        Bar {
            symbol: Symbol::new("AAA").expect("a valid symbol"),
            interval: Interval::from_millis(MINUTE).expect("a valid interval"),
            start,
            end: start + MINUTE,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: Fixed::ZERO,
            notional: Fixed::ZERO,
            trades: 1,
            revision: 0,
            seq: 0,
            wm: start,
            source: Default::default(),
        }
    }

    /// Input at or after an announced checkpoint is kept aside until the state is saved;
    /// when the inputs close at once (the frontier goes from below the checkpoint to
    /// empty, as at the end of a run right after the last cut), it must still go on, and
    /// the run must end.
    #[test]
    fn input_kept_aside_goes_on_when_the_inputs_close_past_a_checkpoint() {
        let checkpoints = Arc::new(Checkpoints::new(Duration::ZERO, vec![(0, 0)], 10 * MINUTE));
        let announced = checkpoints
            .announce_now()
            .expect("a checkpoint is announced");
        let (given, finished) = timely::execute_directly(move |worker| {
            let given = Rc::new(RefCell::new(Vec::new()));
            let seen = Rc::clone(&given);
            let probe = ProbeHandle::new();
            let mut first: InputHandle<u64, Bar> = InputHandle::new();
            let mut second: InputHandle<u64, Bar> = InputHandle::new();
            let checkpoint = OperatorCheckpoint::new(Arc::clone(&checkpoints), "m", 0, None);
            worker.dataflow::<u64, _, _>(|scope| {
                let inputs = vec![first.to_stream(scope), second.to_stream(scope)];
                merge_bars(
                    scope,
                    inputs,
                    "m",
                    DeadLetters::log_only(),
                    Some(checkpoint),
                    None,
                )
                .inspect(move |b: &Bar| seen.borrow_mut().push(b.start))
                .probe_with(&probe);
            });
            let at = (announced + MINUTE / 2) as u64;
            first.advance_to(at);
            first.send(bar(11 * MINUTE));
            drop((first, second));
            for _ in 0..10_000 {
                if probe.done() {
                    break;
                }
                worker.step();
            }
            let finished = probe.done();
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow); // so that a held capability fails, not hangs
            }
            let given = given.borrow().clone();
            (given, finished)
        });
        assert!(
            finished,
            "the merge still held input kept aside at the checkpoint {announced}"
        );
        assert_eq!(given, vec![11 * MINUTE], "the bar kept aside was not given");
    }
}
