//! Closed bars kept for revisions: a record arriving after its window closed, but while
//! the watermark is less than `revise_for` past the window's end, is folded into the bar
//! it belongs to, which is then given again with a higher revision.
//!
//! Folding is order-free (first and last by event time and sequence, sums in fixed
//! point), so a revised bar equals the bar built from the same records in time order.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use crate::bars::{finish, BarInput, BarState};
use crate::calendar::{Calendar, Window, Windower};
use crate::interval::Interval;
use crate::record::Bar;
use crate::symbol::Symbol;

/// Where a late record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revise {
    /// Folded into the closed bar of `window`.
    Revised { window: Window },
    /// It falls outside every session of the calendar.
    OutsideSession,
    /// A finer bar that crosses a window boundary of this interval.
    Straddles { window: Window },
}

/// A bar of a closed window and the revision it was last given at (`None`: never given).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Kept {
    state: BarState,
    given: Option<u32>,
}

/// The closed windows of one interval that late records may still revise.
pub struct Revisions {
    interval: Interval,
    windower: Windower,
    revise_for: i64,
    closed: BTreeMap<i64, (Window, FxHashMap<Symbol, Kept>)>,
    /// Bars changed since they were last given: (window end, symbol).
    changed: BTreeSet<(i64, Symbol)>,
}

impl Revisions {
    pub fn new(interval: Interval, calendar: Calendar, revise_for: i64) -> Revisions {
        Revisions {
            interval,
            windower: Windower::new(interval, calendar),
            revise_for,
            closed: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }

    /// Whether a record of the window ending at `window_end`, arriving at `watermark`, is
    /// still in time to revise it.
    pub fn in_time(&self, window_end: i64, watermark: i64) -> bool {
        watermark < window_end.saturating_add(self.revise_for)
    }

    /// Keeps the bars of a window that just closed, given at revision 0.
    pub(crate) fn keep(&mut self, window: Window, bars: &[(Symbol, BarState)]) {
        let (_, kept) = self
            .closed
            .entry(window.end)
            .or_insert_with(|| (window, FxHashMap::default()));
        for (symbol, state) in bars {
            kept.insert(
                symbol.clone(),
                Kept {
                    state: state.clone(),
                    given: Some(0),
                },
            );
        }
    }

    /// Folds a late record into the bar of its (closed) window.
    pub fn fold<R: BarInput>(&mut self, record: &R) -> Revise {
        let Some(window) = self.windower.window_of(record.position()) else {
            return Revise::OutsideSession;
        };
        if record.last_instant() >= window.end {
            return Revise::Straddles { window };
        }
        let (_, kept) = self
            .closed
            .entry(window.end)
            .or_insert_with(|| (window, FxHashMap::default()));
        match kept.get_mut(record.symbol()) {
            Some(bar) => record.fold_into(&mut bar.state),
            None => {
                kept.insert(
                    record.symbol().clone(),
                    Kept {
                        state: record.start_bar(),
                        given: None,
                    },
                );
            }
        }
        self.changed.insert((window.end, record.symbol().clone()));
        Revise::Revised { window }
    }

    /// Hands over every bar changed since the last call, by window then symbol, one
    /// revision higher than it was last given (a bar first made by late records has
    /// revision 1: it revises an absent bar).
    pub fn take_revised(&mut self, mut emit: impl FnMut(Bar)) {
        for (end, symbol) in std::mem::take(&mut self.changed) {
            let Some((window, kept)) = self.closed.get_mut(&end) else {
                continue;
            };
            let Some(bar) = kept.get_mut(&symbol) else {
                continue;
            };
            let revision = bar.given.map_or(1, |r| r + 1);
            bar.given = Some(revision);
            let mut revised = finish(symbol, self.interval, *window, bar.state.clone());
            revised.revision = revision;
            emit(revised);
        }
    }

    /// Forgets the windows that no record arriving at `watermark` or later may revise.
    pub fn expire(&mut self, watermark: i64) {
        let revise_for = self.revise_for;
        while let Some(entry) = self.closed.first_entry() {
            if watermark < entry.key().saturating_add(revise_for) {
                break;
            }
            entry.remove();
        }
    }

    /// The kept windows and the bars changed but not yet given, for a checkpoint.
    pub fn save(&self) -> Vec<u8> {
        let closed: Vec<(&Window, Vec<(&Symbol, &Kept)>)> = self
            .closed
            .values()
            .map(|(window, kept)| {
                let mut bars: Vec<_> = kept.iter().collect();
                bars.sort_unstable_by(|a, b| a.0.cmp(b.0));
                (window, bars)
            })
            .collect();
        crate::state::encode(&(closed, &self.changed))
    }

    /// Replaces the kept windows with those [`Revisions::save`] gave.
    pub fn load(&mut self, state: &[u8]) -> Result<(), crate::state::StateError> {
        type Saved = (Vec<(Window, Vec<(Symbol, Kept)>)>, BTreeSet<(i64, Symbol)>);
        let (closed, changed): Saved = crate::state::decode(state)?;
        self.closed = closed
            .into_iter()
            .map(|(window, bars)| (window.end, (window, bars.into_iter().collect())))
            .collect();
        self.changed = changed;
        Ok(())
    }

    /// Bars kept, over all windows.
    pub fn len(&self) -> usize {
        self.closed.values().map(|(_, k)| k.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bars::BarBuilder;
    use crate::record::Tick;
    use crate::time::{parse_timestamp, MINUTE};

    fn tick(symbol: &str, ts: &str, price: f64, seq: u64, wm: i64) -> Tick {
        Tick {
            symbol: Symbol::new(symbol).unwrap(),
            ts: parse_timestamp(ts).unwrap(),
            price,
            volume: 1.0,
            seq,
            wm,
        }
    }

    #[test]
    fn a_late_tick_revises_its_closed_bar_to_the_bar_of_all_ticks() {
        let open = i64::MIN;
        let ticks = [
            tick("A", "2024-01-02T14:30:10Z", 10.0, 0, open),
            tick("A", "2024-01-02T14:30:50Z", 11.0, 2, open),
        ];
        let late = tick("A", "2024-01-02T14:30:05Z", 13.0, 3, i64::MAX / 2);
        let mut builder = BarBuilder::new(Interval::M1, Calendar::Utc);
        let mut revisions = Revisions::new(Interval::M1, Calendar::Utc, MINUTE);
        ticks.iter().for_each(|t| {
            builder.push(t);
        });
        let mut first = Vec::new();
        builder.close_keeping(i64::MAX, Some(&mut revisions), |_, bars| first.append(bars));
        assert_eq!(first[0].high, 11.0);

        assert!(matches!(revisions.fold(&late), Revise::Revised { .. }));
        let mut revised = Vec::new();
        revisions.take_revised(|b| revised.push(b));
        // A bar for a symbol the window did not have starts at revision 1.
        revisions.fold(&tick("B", "2024-01-02T14:30:20Z", 5.0, 4, i64::MAX / 2));
        revisions.fold(&late);
        revisions.take_revised(|b| revised.push(b));

        let mut all = BarBuilder::new(Interval::M1, Calendar::Utc);
        for t in ticks.iter().chain([&late]) {
            all.push(&Tick {
                wm: open,
                ..t.clone()
            });
        }
        let mut expected = Vec::new();
        all.close_until(i64::MAX, |_, bars| expected.append(bars));
        let a: Vec<&Bar> = revised
            .iter()
            .filter(|b| b.symbol.as_str() == "A")
            .collect();
        assert_eq!(a[0].revision, 1);
        assert_eq!(
            Bar {
                revision: 0,
                ..a[0].clone()
            },
            expected[0]
        );
        assert_eq!(a[1].revision, 2);
        assert_eq!(a[1].trades, 4);
        let b: Vec<&Bar> = revised
            .iter()
            .filter(|b| b.symbol.as_str() == "B")
            .collect();
        assert_eq!((b.len(), b[0].revision, b[0].open), (1, 1, 5.0));

        let end = parse_timestamp("2024-01-02T14:31:00Z").unwrap();
        assert!(revisions.in_time(end, end + MINUTE - 1));
        assert!(!revisions.in_time(end, end + MINUTE));
        revisions.expire(end + MINUTE - 1);
        assert!(!revisions.is_empty());
        revisions.expire(end + MINUTE);
        assert!(revisions.is_empty());
    }

    #[test]
    fn restored_revisions_continue_as_the_saved_ones() {
        let mut builder = BarBuilder::new(Interval::M1, Calendar::Utc);
        let mut saved = Revisions::new(Interval::M1, Calendar::Utc, MINUTE);
        builder.push(&tick("A", "2024-01-02T14:30:10Z", 10.0, 0, i64::MIN));
        builder.close_keeping(i64::MAX, Some(&mut saved), |_, _| {});
        saved.fold(&tick("A", "2024-01-02T14:30:20Z", 12.0, 1, 0));
        saved.take_revised(|_| {});
        // One change not yet given when the state is saved.
        saved.fold(&tick("B", "2024-01-02T14:30:30Z", 7.0, 2, 0));
        let mut restored = Revisions::new(Interval::M1, Calendar::Utc, MINUTE);
        restored.load(&saved.save()).unwrap();
        assert_eq!(restored.len(), saved.len());
        let late = tick("A", "2024-01-02T14:30:05Z", 9.0, 3, 0);
        let mut given = [Vec::new(), Vec::new()];
        for (revisions, out) in [&mut saved, &mut restored].into_iter().zip(&mut given) {
            revisions.fold(&late);
            revisions.take_revised(|b| out.push(b));
        }
        assert_eq!(given[0], given[1]);
        assert_eq!(given[0].len(), 2);
        assert_eq!((given[0][0].revision, given[0][0].open), (2, 9.0));
        assert!(restored.load(b"garbage").is_err());
    }
}
