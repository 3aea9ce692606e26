//! Late revisions downstream of bars with `late: revise`.
//!
//! A revised stream carries upserts: a bar, or an indicator row, is given again with a
//! higher `revision` whenever late records change it, at the time the late records came.
//! Every upsert of a bar keyed (symbol, interval, start) happens before its window's end
//! plus `revise_for`, which bounds what the operators here keep.
//!
//! Coarser bars are a differential-dataflow computation: the finer bars become a
//! collection keyed by their coarse window, where a revision is the retraction of the
//! version before and the insertion of the new one, and a `reduce` gives each window's
//! bar again whenever its finer bars change. Indicators are sequential, so they are not a
//! reduce: each symbol keeps its kernels' states before each recent bar and recomputes
//! forward from a revised bar.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use compact_str::CompactString;
use differential_dataflow::collection::AsCollection;
use marketflow_operators::indicators::{Indicator, Outputs};
use marketflow_operators::{
    aggregate, Bar, Calendar, IndicatorKind, IndicatorRow, Interval, Symbol, Window, Windower,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;

use super::route::by_key;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use super::checkpoint::{frontier_time, OperatorCheckpoint};
use super::indicators::IndicatorsStage;
use crate::dead_letter::{DeadLetters, Rejected};
use crate::metrics::metrics;

/// A bar as differential data: ordered (and equal) by its key, then bit for bit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Versioned(pub Bar);

impl Versioned {
    #[allow(clippy::type_complexity)]
    fn order_key(
        &self,
    ) -> (
        (&Symbol, Interval, i64, i64, u32),
        (u64, u64, u64, u64),
        (
            marketflow_operators::Fixed,
            marketflow_operators::Fixed,
            u64,
            u64,
            i64,
        ),
        &CompactString,
    ) {
        let b = &self.0;
        (
            (&b.symbol, b.interval, b.start, b.end, b.revision),
            (
                b.open.to_bits(),
                b.high.to_bits(),
                b.low.to_bits(),
                b.close.to_bits(),
            ),
            (b.volume, b.notional, b.trades, b.seq, b.wm),
            &b.source,
        )
    }
}

impl PartialEq for Versioned {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Versioned {}

impl PartialOrd for Versioned {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Versioned {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

/// A coarse window of one symbol: the key finer bars are grouped by.
type WindowKey = (Symbol, i64, i64);

/// A change to the collection of finer bars: (key, bar), time, difference.
type Change = ((WindowKey, Versioned), u64, isize);

/// What a revising bars cascade needs besides its input.
#[derive(Clone)]
pub struct CascadeStage {
    pub name: String,
    pub interval: Interval,
    pub calendar: Calendar,
    pub origin: CompactString,
    pub revise_for: i64,
    pub dead_letters: DeadLetters,
    /// Its parts in checkpoints, when the pipeline takes them: the finer bars it holds
    /// (`{name}:changes`) and the coarse bars it gave (`{name}:upserts`).
    pub checkpoints: Option<(OperatorCheckpoint, OperatorCheckpoint)>,
}

/// Bars of `stage.interval` from a revised stream of finer bars, revised in turn: each
/// coarse window's bar is given once the window has closed, and again (one revision
/// higher for each revision of a finer bar in it) whenever its finer bars change.
///
/// The reduce keeps no checkpoint state of its own: a restored run inserts the finer bars
/// again, at the checkpoint's time, and the coarse bars they give there are not given
/// again when they equal what was given before the checkpoint.
pub fn cascade<'s>(input: StreamVec<'s, u64, Bar>, stage: CascadeStage) -> StreamVec<'s, u64, Bar> {
    let name = stage.name.clone();
    let interval = stage.interval;
    let origin = stage.origin.clone();
    let revise_for = stage.revise_for;
    let checkpoint = stage.checkpoints.as_ref().map(|(_, c)| c.clone());
    let changes = fine_bar_changes(input, stage);
    let windows = changes.as_collection().reduce_named(
        &name,
        move |key: &WindowKey, fine: &[(&Versioned, isize)], out: &mut Vec<(Versioned, isize)>| {
            let window = Window {
                start: key.1,
                end: key.2,
            };
            let present = || fine.iter().filter(|(_, n)| *n > 0).map(|(v, _)| &v.0);
            if let Some(mut bar) = aggregate(interval, window, present()) {
                bar.revision = present().map(|b| b.revision).sum();
                bar.source.clone_from(&origin);
                out.push((Versioned(bar), 1));
            }
        },
    );
    upserts(windows.inner, &name, revise_for, checkpoint)
}

/// The coarse bars given: by window end, then symbol and start.
type Given = BTreeMap<(i64, Symbol, i64), Versioned>;

/// The insertions of the reduce's output, as bars. Retractions are implied by the upsert
/// that follows them (or are the window expiring), so only insertions go on.
fn upserts<'s>(
    windows: StreamVec<'s, u64, ((WindowKey, Versioned), u64, isize)>,
    name: &str,
    revise_for: i64,
    checkpoint: Option<OperatorCheckpoint>,
) -> StreamVec<'s, u64, Bar> {
    let records_out = metrics().operator_out.with_label_values(&[name]);
    let revised = metrics().revised_records.with_label_values(&[name]);
    let operator = format!("{name}:upserts");
    windows.unary_frontier(Pipeline, &operator.clone(), move |_, _| {
        let mut checkpoint = checkpoint;
        // With checkpoints: the last bar given of each window that may still change, and
        // those given at or after an announced checkpoint (kept out of its state).
        let mut given = Given::new();
        let mut after: Vec<(u64, WindowKey, Versioned)> = Vec::new();
        let mut restored_at = None;
        if let Some(c) = checkpoint.as_mut() {
            restored_at = c.restored_time().map(|t| t as u64);
            if let Some(state) = c.take_restored() {
                match marketflow_operators::state::decode::<Vec<((i64, Symbol, i64), Versioned)>>(&state) {
                    Ok(saved) => given.extend(saved),
                    Err(e) => tracing::error!(operator = %operator, error = %e, "its saved state was not restored"),
                }
            }
        }
        move |(input, frontier), output| {
            let due = checkpoint.as_ref().and_then(OperatorCheckpoint::due);
            input.for_each(|capability, data| {
                for ((key, bar), time, diff) in data.drain(..) {
                    if diff <= 0 {
                        continue;
                    }
                    if checkpoint.is_some() {
                        let at = (key.2, key.0.clone(), key.1);
                        if restored_at == Some(time) && given.get(&at) == Some(&bar) {
                            // Given before the checkpoint this run resumed from.
                            continue;
                        }
                        if due.is_some_and(|w| time as i64 >= w) {
                            after.push((time, key, bar.clone()));
                        } else {
                            given.insert(at, bar.clone());
                        }
                    }
                    records_out.inc();
                    if bar.0.revision > 0 {
                        revised.inc();
                    }
                    output.session(&capability.delayed(&time, 0)).give(bar.0);
                }
            });
            let Some(c) = checkpoint.as_mut() else {
                return;
            };
            if let Some(w) = due.filter(|w| !frontier.less_than(&(*w as u64))) {
                c.save(w, marketflow_operators::state::encode(&given.iter().collect::<Vec<_>>()));
                for (_, key, bar) in after.drain(..) {
                    given.insert((key.2, key.0, key.1), bar);
                }
            }
            let upto = frontier.frontier().iter().next().copied().unwrap_or(u64::MAX);
            if restored_at.is_some_and(|t| upto > t) {
                restored_at = None;
            }
            while let Some(entry) = given
                .first_entry()
                .filter(|e| e.key().0.saturating_add(revise_for) <= frontier_time(upto))
            {
                entry.remove();
            }
        }
    })
}

/// A finer bar's last version, the coarse window it is in, the time it was inserted at
/// and the time it is retracted at.
#[derive(Clone, Serialize, Deserialize)]
struct Fine {
    key: WindowKey,
    bar: Versioned,
    at: u64,
    expiry: u64,
}

/// The finer bars as changes to a collection keyed by coarse window: a bar is inserted at
/// the later of its time and its window's last instant (so each window is reduced once,
/// complete), its previous version retracted at the same time, and every change undone
/// at the window's end plus `revise_for`, when nothing can change it any more (so the
/// reduce keeps no more than the revisable windows).
fn fine_bar_changes<'s>(
    input: StreamVec<'s, u64, Bar>,
    stage: CascadeStage,
) -> StreamVec<'s, u64, Change> {
    let exchange = by_key(|b: &Bar| b.symbol.route_hash());
    let name = format!("{}:changes", stage.name);
    input.unary_frontier(exchange, &name.clone(), move |capability, _| {
        let mut fine = FineBars {
            windower: Windower::new(stage.interval, stage.calendar.clone()),
            latest: FxHashMap::default(),
            expiries: BTreeMap::new(),
        };
        let mut checkpoint = stage.checkpoints.as_ref().map(|(c, _)| c.clone());
        // The finer bars to insert again after a restart, with the capability to do it.
        let mut restored: Option<(Capability<u64>, Vec<Change>)> = None;
        if let Some(c) = checkpoint.as_mut() {
            let time = c.restored_time().unwrap_or(0).max(0) as u64;
            if let Some(state) = c.take_restored() {
                match marketflow_operators::state::decode::<Vec<((Symbol, i64), Fine)>>(&state) {
                    Ok(saved) => {
                        let mut changes = Vec::new();
                        for (key, kept) in saved.into_iter().filter(|(_, k)| k.expiry > time) {
                            let pair = (kept.key.clone(), kept.bar.clone());
                            changes.push((pair.clone(), kept.at.max(time), 1));
                            changes.push((pair, kept.expiry, -1));
                            fine.expiries.entry(kept.expiry).or_default().push(key.clone());
                            fine.latest.insert(key, kept);
                        }
                        tracing::debug!(operator = %name, bars = fine.latest.len(), "finer bars restored");
                        restored = Some((capability.clone(), changes));
                    }
                    Err(e) => tracing::error!(operator = %name, error = %e, "its saved state was not restored"),
                }
            }
        }
        drop(capability);
        // Input at or after an announced checkpoint, kept aside until the state is saved.
        let mut stash: Vec<(Capability<u64>, Vec<Bar>)> = Vec::new();
        let m = metrics();
        let records_in = m.operator_in.with_label_values(&[stage.name.as_str()]);
        let outside = m.outside_session.with_label_values(&[stage.name.as_str()]);
        move |(input, frontier), output| {
            if let Some((held, mut changes)) = restored.take() {
                output.session(&held).give_container(&mut changes);
            }
            let due = checkpoint.as_ref().and_then(OperatorCheckpoint::due);
            let mut change = |fine: &mut FineBars, held: &Capability<u64>, bars: Vec<Bar>| {
                records_in.inc_by(bars.len() as u64);
                let mut session = output.session(held);
                fine.change(&stage, *held.time(), bars, &outside, |c| session.give(c));
            };
            input.for_each(|capability, data| {
                let Some(held) = capability.retain_least(0) else {
                    return;
                };
                if due.is_some_and(|w| *held.time() as i64 >= w) {
                    stash.push((held, std::mem::take(data)));
                } else {
                    change(&mut fine, &held, std::mem::take(data));
                }
            });
            let upto = frontier
                .frontier()
                .iter()
                .next()
                .copied()
                .unwrap_or(u64::MAX);
            if let (Some(w), Some(c)) = (due.filter(|w| frontier_time(upto) >= *w), checkpoint.as_mut()) {
                let mut saved: Vec<_> = fine
                    .latest
                    .iter()
                    .filter(|(_, k)| k.expiry as i64 > w)
                    .collect();
                saved.sort_unstable_by(|a, b| a.0.cmp(b.0));
                c.save(w, marketflow_operators::state::encode(&saved));
                for (held, bars) in std::mem::take(&mut stash) {
                    change(&mut fine, &held, bars);
                }
            }
            fine.expire(upto);
        }
    })
}

/// The finer bars a cascade holds: the version given last of each (symbol, start), and
/// when each is retracted.
struct FineBars {
    windower: Windower,
    latest: FxHashMap<(Symbol, i64), Fine>,
    expiries: BTreeMap<u64, Vec<(Symbol, i64)>>,
}

impl FineBars {
    /// The changes that `bars`, given at `time`, make to the collection.
    fn change(
        &mut self,
        stage: &CascadeStage,
        time: u64,
        bars: Vec<Bar>,
        outside: &prometheus::IntCounter,
        mut give: impl FnMut(Change),
    ) {
        for bar in bars {
            let Some(window) = self.windower.window_of(bar.start) else {
                outside.inc();
                continue;
            };
            if bar.end > window.end {
                let detail = format!("crosses the window of {} bars", stage.interval);
                stage.dead_letters.reject(
                    &stage.name,
                    "straddles_window",
                    &detail,
                    Rejected::Bar(&bar),
                );
                continue;
            }
            let key = (bar.symbol.clone(), window.start, window.end);
            let at = time.max((window.end - 1).max(0) as u64);
            let expiry = at.max((window.end.saturating_add(stage.revise_for)).max(0) as u64);
            let fine = (bar.symbol.clone(), bar.start);
            let new = Fine {
                key: key.clone(),
                bar: Versioned(bar),
                at,
                expiry,
            };
            let pair = (key, new.bar.clone());
            match self.latest.insert(fine.clone(), new) {
                Some(old) => {
                    give(((old.key.clone(), old.bar.clone()), at, -1));
                    give(((old.key, old.bar), old.expiry, 1));
                }
                None => self.expiries.entry(expiry).or_default().push(fine),
            }
            give((pair.clone(), at, 1));
            give((pair, expiry, -1));
        }
    }

    /// Forgets the bars retracted by `upto`.
    fn expire(&mut self, upto: u64) {
        while let Some(entry) = self.expiries.first_entry().filter(|e| *e.key() <= upto) {
            for fine in entry.remove() {
                self.latest.remove(&fine);
            }
        }
    }
}

/// One recent bar of a symbol, the kernels' states just before it, and the outputs and
/// revision each kernel last gave for it.
#[derive(Serialize, Deserialize)]
struct Recent {
    bar: Bar,
    before: Option<Vec<Vec<u8>>>,
    given: Vec<Option<(u32, Outputs)>>,
}

/// A symbol's kernels and its bars that may still be revised, by start.
struct History {
    kernels: Vec<Box<dyn Indicator>>,
    recent: Vec<Recent>,
}

/// Indicators on a revised stream of bars: a bar given again (or first given late, before
/// bars already seen) makes the kernels restart from their states before it and go
/// forward over the recent bars, giving every row that changed one revision higher.
pub fn revised_indicators<'s>(
    input: StreamVec<'s, u64, Bar>,
    stage: IndicatorsStage,
    revise_for: i64,
) -> StreamVec<'s, u64, IndicatorRow> {
    let name = stage.name.clone();
    let exchange = by_key(|b: &Bar| b.symbol.route_hash());
    input.unary_frontier(exchange, &name, move |_, _| {
        let ids: Vec<(CompactString, IndicatorKind)> = stage
            .specs
            .iter()
            .map(|s| (CompactString::new(s.id()), s.kind()))
            .collect();
        let mut histories: FxHashMap<Symbol, History> = FxHashMap::default();
        let mut checkpoint = stage.checkpoint.clone();
        if let Some(state) = checkpoint.as_mut().and_then(OperatorCheckpoint::take_restored) {
            if let Err(e) = restore(&stage, &mut histories, &state) {
                tracing::error!(operator = %stage.name, error = %e, "its saved state was not restored");
            }
        }
        let mut pending: BTreeMap<u64, (Capability<u64>, Vec<Bar>)> = BTreeMap::new();
        let m = metrics();
        let records_in = m.operator_in.with_label_values(&[stage.name.as_str()]);
        let records_out = m.operator_out.with_label_values(&[stage.name.as_str()]);
        let revised = m.revised_records.with_label_values(&[stage.name.as_str()]);
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
                        c.save(w, save(&histories));
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
                let time = *entry.key() as i64;
                let (capability, mut bars) = entry.remove();
                bars.sort_by(|a, b| (&a.symbol, a.start).cmp(&(&b.symbol, b.start)));
                let mut rows = Vec::new();
                for bars in bars.chunk_by(|a, b| a.symbol == b.symbol) {
                    let history = histories
                        .entry(bars[0].symbol.clone())
                        .or_insert_with(|| History::new(&stage));
                    history.update(bars, &stage, &ids, &mut rows);
                    // Bars whose window ended `revise_for` ago can change no more.
                    let expired = history
                        .recent
                        .iter()
                        .take_while(|r| r.bar.end.saturating_add(revise_for) <= time)
                        .count();
                    history.recent.drain(..expired);
                }
                revised.inc_by(rows.iter().filter(|r| r.revision > 0).count() as u64);
                records_out.inc_by(rows.len() as u64);
                output.session(&capability).give_container(&mut rows);
            }
        }
    })
}

/// Every symbol's kernel states and recent bars, by symbol.
fn save(histories: &FxHashMap<Symbol, History>) -> Vec<u8> {
    let mut saved: Vec<_> = histories
        .iter()
        .map(|(symbol, h)| {
            (
                symbol,
                h.kernels.iter().map(|k| k.save()).collect::<Vec<_>>(),
                &h.recent,
            )
        })
        .collect();
    saved.sort_unstable_by(|a, b| a.0.cmp(b.0));
    marketflow_operators::state::encode(&saved)
}

/// The histories [`save`] gave, with kernels of `stage.specs`.
fn restore(
    stage: &IndicatorsStage,
    histories: &mut FxHashMap<Symbol, History>,
    state: &[u8],
) -> Result<(), marketflow_operators::state::StateError> {
    type Saved = Vec<(Symbol, Vec<Vec<u8>>, Vec<Recent>)>;
    let saved: Saved = marketflow_operators::state::decode(state)?;
    for (symbol, states, recent) in saved {
        let mut history = History::new(stage);
        for (kernel, state) in history.kernels.iter_mut().zip(&states) {
            kernel.load(state)?;
        }
        history.recent = recent;
        histories.insert(symbol, history);
    }
    Ok(())
}

impl History {
    fn new(stage: &IndicatorsStage) -> History {
        History {
            kernels: stage
                .specs
                .iter()
                .map(|s| s.build(&stage.calendar))
                .collect(),
            recent: Vec::new(),
        }
    }

    /// Puts `bars` (one symbol's, by start) in place, then runs the kernels forward from
    /// the first bar that changed, pushing the rows that changed to `rows`.
    fn update(
        &mut self,
        bars: &[Bar],
        stage: &IndicatorsStage,
        ids: &[(CompactString, IndicatorKind)],
        rows: &mut Vec<IndicatorRow>,
    ) {
        let kernels = ids.len();
        let mut from = self.recent.len();
        for bar in bars {
            match self
                .recent
                .binary_search_by_key(&bar.start, |r| r.bar.start)
            {
                Ok(i) => {
                    self.recent[i].bar = bar.clone();
                    from = from.min(i);
                }
                Err(i) => {
                    // A bar before others already seen: the kernels' states before it
                    // are those before the bar it now precedes.
                    let before = self.recent.get(i).and_then(|r| r.before.clone());
                    self.recent.insert(
                        i,
                        Recent {
                            bar: bar.clone(),
                            before,
                            given: vec![None; kernels],
                        },
                    );
                    from = from.min(i);
                }
            }
        }
        if let Some(states) = self.recent.get(from).and_then(|r| r.before.as_ref()) {
            for (kernel, state) in self.kernels.iter_mut().zip(states) {
                if let Err(e) = kernel.load(state) {
                    tracing::error!(operator = %stage.name, error = %e, "a kernel state did not load");
                }
            }
        }
        for recent in &mut self.recent[from..] {
            recent.before = Some(self.kernels.iter().map(|k| k.save()).collect());
            let bar = &recent.bar;
            for ((kernel, (id, kind)), given) in
                self.kernels.iter_mut().zip(ids).zip(&mut recent.given)
            {
                let Some(outputs) = kernel.update(bar) else {
                    continue;
                };
                let revision = match given {
                    Some((_, before)) if same(before, &outputs) => continue,
                    Some((revision, _)) => *revision + 1,
                    None => 0,
                };
                *given = Some((revision, outputs));
                rows.push(IndicatorRow {
                    symbol: bar.symbol.clone(),
                    interval: stage.interval,
                    ts: bar.start,
                    id: id.clone(),
                    kind: *kind,
                    outputs,
                    revision,
                });
            }
        }
    }
}

/// Outputs equal bit for bit (NaN included).
fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
