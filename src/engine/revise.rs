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
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

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

/// What a revising bars cascade needs besides its input.
#[derive(Clone)]
pub struct CascadeStage {
    pub name: String,
    pub interval: Interval,
    pub calendar: Calendar,
    pub origin: CompactString,
    pub revise_for: i64,
    pub dead_letters: DeadLetters,
}

/// Bars of `stage.interval` from a revised stream of finer bars, revised in turn: each
/// coarse window's bar is given once the window has closed, and again (one revision
/// higher for each revision of a finer bar in it) whenever its finer bars change.
pub fn cascade<'s>(input: StreamVec<'s, u64, Bar>, stage: CascadeStage) -> StreamVec<'s, u64, Bar> {
    let name = stage.name.clone();
    let interval = stage.interval;
    let origin = stage.origin.clone();
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
    let records_out = metrics().operator_out.with_label_values(&[name.as_str()]);
    let revised = metrics()
        .revised_records
        .with_label_values(&[name.as_str()]);
    windows
        .inner
        .unary(Pipeline, &format!("{name}:upserts"), move |_, _| {
            move |input, output| {
                input.for_each(|capability, data| {
                    // Retractions are implied by the upsert that follows them (or are the
                    // window expiring), so only insertions go on.
                    for ((_, bar), time, diff) in data.drain(..) {
                        if diff > 0 {
                            records_out.inc();
                            if bar.0.revision > 0 {
                                revised.inc();
                            }
                            output.session(&capability.delayed(&time, 0)).give(bar.0);
                        }
                    }
                });
            }
        })
}

/// The finer bars as changes to a collection keyed by coarse window: a bar is inserted at
/// the later of its time and its window's last instant (so each window is reduced once,
/// complete), its previous version retracted at the same time, and every change undone
/// at the window's end plus `revise_for`, when nothing can change it any more (so the
/// reduce keeps no more than the revisable windows).
#[allow(clippy::type_complexity)]
fn fine_bar_changes<'s>(
    input: StreamVec<'s, u64, Bar>,
    stage: CascadeStage,
) -> StreamVec<'s, u64, ((WindowKey, Versioned), u64, isize)> {
    let exchange = Exchange::new(|b: &Bar| b.symbol.route_hash());
    let name = format!("{}:changes", stage.name);
    input.unary_frontier(exchange, &name, move |_, _| {
        let mut windower = Windower::new(stage.interval, stage.calendar.clone());
        // The version given last of each finer bar (symbol, start), with its expiry.
        let mut latest: FxHashMap<(Symbol, i64), (Versioned, u64)> = FxHashMap::default();
        let mut expiries: BTreeMap<u64, Vec<(Symbol, i64)>> = BTreeMap::new();
        let m = metrics();
        let records_in = m.operator_in.with_label_values(&[stage.name.as_str()]);
        let outside = m.outside_session.with_label_values(&[stage.name.as_str()]);
        move |(input, frontier), output| {
            input.for_each(|capability, data| {
                records_in.inc_by(data.len() as u64);
                let Some(held) = capability.retain_least(0) else {
                    return;
                };
                let time = *held.time();
                let mut session = output.session(&held);
                for bar in data.drain(..) {
                    let Some(window) = windower.window_of(bar.start) else {
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
                    let expiry =
                        at.max((window.end.saturating_add(stage.revise_for)).max(0) as u64);
                    let fine = (bar.symbol.clone(), bar.start);
                    let new = Versioned(bar);
                    match latest.insert(fine.clone(), (new.clone(), expiry)) {
                        Some((old, _)) => {
                            session.give(((key.clone(), old.clone()), at, -1));
                            session.give(((key.clone(), old), expiry, 1));
                        }
                        None => expiries.entry(expiry).or_default().push(fine),
                    }
                    session.give(((key.clone(), new.clone()), at, 1));
                    session.give(((key, new), expiry, -1));
                }
            });
            let upto = frontier
                .frontier()
                .iter()
                .next()
                .copied()
                .unwrap_or(u64::MAX);
            while let Some(entry) = expiries.first_entry().filter(|e| *e.key() <= upto) {
                for fine in entry.remove() {
                    latest.remove(&fine);
                }
            }
        }
    })
}

/// One recent bar of a symbol, the kernels' states just before it, and the outputs and
/// revision each kernel last gave for it.
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
    let exchange = Exchange::new(|b: &Bar| b.symbol.route_hash());
    input.unary_frontier(exchange, &name, move |_, _| {
        let ids: Vec<(CompactString, IndicatorKind)> = stage
            .specs
            .iter()
            .map(|s| (CompactString::new(s.id()), s.kind()))
            .collect();
        let mut histories: FxHashMap<Symbol, History> = FxHashMap::default();
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
            while let Some(entry) = pending.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let time = *entry.key() as i64;
                let (capability, mut bars) = entry.remove();
                bars.sort_by(|a, b| (&a.symbol, a.start).cmp(&(&b.symbol, b.start)));
                let mut rows = Vec::new();
                for bars in bars.chunk_by(|a, b| a.symbol == b.symbol) {
                    let history =
                        histories
                            .entry(bars[0].symbol.clone())
                            .or_insert_with(|| History {
                                kernels: stage
                                    .specs
                                    .iter()
                                    .map(|s| s.build(&stage.calendar))
                                    .collect(),
                                recent: Vec::new(),
                            });
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

impl History {
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
