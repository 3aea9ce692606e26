//! The bar window state machine: fold ticks or finer bars into open windows, close the
//! windows a watermark has passed.

use rustc_hash::FxHashMap;

use crate::calendar::{Calendar, Window, Windower};
use crate::fixed::Fixed;
use crate::interval::Interval;
use crate::record::{Bar, Tick};
use crate::symbol::Symbol;

/// A record that can be folded into a bar: a tick, or a bar of a finer interval.
pub trait BarInput {
    fn symbol(&self) -> &Symbol;
    /// The instant that picks the window (tick time, bar start).
    fn position(&self) -> i64;
    /// The last instant the record covers; it must fall in the same window.
    fn last_instant(&self) -> i64;
    /// The source watermark when the record arrived (see [`Tick::wm`]).
    fn watermark(&self) -> i64;
    /// Starts a bar from this record.
    fn start_bar(&self) -> BarState;
    /// Folds this record into a bar already holding others.
    fn fold_into(&self, bar: &mut BarState);
}

/// A bar being built: prices of the first and last records by (event time, sequence).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BarState {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    first: (i64, u64),
    last: (i64, u64),
    volume: Fixed,
    notional: Fixed,
    trades: u64,
}

impl BarState {
    #[inline]
    fn fold(&mut self, key: (i64, u64), open: f64, high: f64, low: f64, close: f64) {
        if key < self.first {
            self.first = key;
            self.open = open;
        }
        if key > self.last {
            self.last = key;
            self.close = close;
        }
        self.high = self.high.max(high);
        self.low = self.low.min(low);
    }
}

impl BarInput for Tick {
    fn symbol(&self) -> &Symbol {
        &self.symbol
    }
    fn position(&self) -> i64 {
        self.ts
    }
    fn last_instant(&self) -> i64 {
        self.ts
    }
    fn watermark(&self) -> i64 {
        self.wm
    }
    #[inline]
    fn start_bar(&self) -> BarState {
        let key = (self.ts, self.seq);
        BarState {
            open: self.price,
            high: self.price,
            low: self.price,
            close: self.price,
            first: key,
            last: key,
            volume: Fixed::from_f64(self.volume),
            notional: Fixed::from_f64(self.price * self.volume),
            trades: 1,
        }
    }
    #[inline]
    fn fold_into(&self, bar: &mut BarState) {
        bar.fold(
            (self.ts, self.seq),
            self.price,
            self.price,
            self.price,
            self.price,
        );
        bar.volume += Fixed::from_f64(self.volume);
        bar.notional += Fixed::from_f64(self.price * self.volume);
        bar.trades += 1;
    }
}

impl BarInput for Bar {
    fn symbol(&self) -> &Symbol {
        &self.symbol
    }
    fn position(&self) -> i64 {
        self.start
    }
    fn last_instant(&self) -> i64 {
        self.end - 1
    }
    fn watermark(&self) -> i64 {
        self.wm
    }
    fn start_bar(&self) -> BarState {
        let key = (self.start, self.seq);
        BarState {
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            first: key,
            last: key,
            volume: self.volume,
            notional: self.notional,
            trades: self.trades,
        }
    }
    fn fold_into(&self, bar: &mut BarState) {
        bar.fold(
            (self.start, self.seq),
            self.open,
            self.high,
            self.low,
            self.close,
        );
        bar.volume += self.volume;
        bar.notional += self.notional;
        bar.trades += self.trades;
    }
}

/// Where a pushed record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Folded into the open window ending at `window_end`.
    Accepted { window_end: i64 },
    /// Its window had closed: `window.end` is at or before the record's watermark.
    Late { window: Window },
    /// It falls outside every session of the calendar.
    OutsideSession,
    /// A finer bar that crosses a window boundary of this interval.
    Straddles { window: Window },
}

struct OpenWindow {
    window: Window,
    bars: FxHashMap<Symbol, BarState>,
}

/// Builds the bars of one interval for many symbols.
///
/// Windows are kept in a short vector sorted by end: nearly every record lands in the
/// newest one or two, which a backwards scan finds at once.
pub struct BarBuilder {
    interval: Interval,
    windower: Windower,
    open: Vec<OpenWindow>,
    spare: Vec<FxHashMap<Symbol, BarState>>,
    scratch: Vec<(Symbol, BarState)>,
}

impl BarBuilder {
    pub fn new(interval: Interval, calendar: Calendar) -> BarBuilder {
        BarBuilder {
            interval,
            windower: Windower::new(interval, calendar),
            open: Vec::new(),
            spare: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// Folds `record` into its window.
    #[inline]
    pub fn push<R: BarInput>(&mut self, record: &R) -> Placement {
        let Some(window) = self.windower.window_of(record.position()) else {
            return Placement::OutsideSession;
        };
        if record.last_instant() >= window.end {
            return Placement::Straddles { window };
        }
        if window.end <= record.watermark() {
            return Placement::Late { window };
        }
        let index = self.window_index(window);
        let bars = &mut self.open[index].bars;
        match bars.get_mut(record.symbol()) {
            Some(bar) => record.fold_into(bar),
            None => {
                bars.insert(record.symbol().clone(), record.start_bar());
            }
        }
        Placement::Accepted {
            window_end: window.end,
        }
    }

    fn window_index(&mut self, window: Window) -> usize {
        let mut at = self.open.len();
        while at > 0 {
            let candidate = &self.open[at - 1];
            if candidate.window.end == window.end {
                return at - 1;
            }
            if candidate.window.end < window.end {
                break;
            }
            at -= 1;
        }
        let bars = self.spare.pop().unwrap_or_default();
        self.open.insert(at, OpenWindow { window, bars });
        at
    }

    /// The open windows and their bars (by symbol), for a checkpoint.
    pub fn save(&self) -> Vec<u8> {
        let open: Vec<(Window, Vec<(&Symbol, &BarState)>)> = self
            .open
            .iter()
            .map(|w| {
                let mut bars: Vec<_> = w.bars.iter().collect();
                bars.sort_unstable_by(|a, b| a.0.cmp(b.0));
                (w.window, bars)
            })
            .collect();
        crate::state::encode(&open)
    }

    /// Replaces the open windows with those [`BarBuilder::save`] gave.
    pub fn load(&mut self, state: &[u8]) -> Result<(), crate::state::StateError> {
        let open: Vec<(Window, Vec<(Symbol, BarState)>)> = crate::state::decode(state)?;
        self.open = open
            .into_iter()
            .map(|(window, bars)| OpenWindow {
                window,
                bars: bars.into_iter().collect(),
            })
            .collect();
        Ok(())
    }

    /// Ends of the windows still open, ascending.
    pub fn open_window_ends(&self) -> impl Iterator<Item = i64> + '_ {
        self.open.iter().map(|w| w.window.end)
    }

    /// Closes every window ending at or before `upto`, oldest first, handing each one's
    /// bars (sorted by symbol) to `emit`.
    pub fn close_until(&mut self, upto: i64, emit: impl FnMut(Window, &mut Vec<Bar>)) {
        self.close_keeping(upto, None, emit);
    }

    /// As [`BarBuilder::close_until`], keeping the closed bars in `revisions` (when given)
    /// so that late records can still revise them.
    pub fn close_keeping(
        &mut self,
        upto: i64,
        mut revisions: Option<&mut crate::revise::Revisions>,
        mut emit: impl FnMut(Window, &mut Vec<Bar>),
    ) {
        let closing = self
            .open
            .iter()
            .take_while(|w| w.window.end <= upto)
            .count();
        let mut out = Vec::new();
        for mut open in self.open.drain(..closing) {
            self.scratch.extend(open.bars.drain());
            self.scratch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if let Some(revisions) = revisions.as_deref_mut() {
                revisions.keep(open.window, &self.scratch);
            }
            out.extend(
                self.scratch
                    .drain(..)
                    .map(|(symbol, state)| finish(symbol, self.interval, open.window, state)),
            );
            emit(open.window, &mut out);
            out.clear();
            self.spare.push(open.bars);
        }
    }

    /// Drops every open window (at shutdown, when they can never be complete); returns
    /// how many bars were discarded.
    pub fn discard_open(&mut self) -> usize {
        let count = self.open.iter().map(|w| w.bars.len()).sum();
        self.open.clear();
        count
    }
}

/// The bar of `window` made of finer `bars` of one symbol (in any order), as a
/// [`BarBuilder`] of `interval` would build it from them; `None` without bars.
pub fn aggregate<'a>(
    interval: Interval,
    window: Window,
    bars: impl IntoIterator<Item = &'a Bar>,
) -> Option<Bar> {
    let mut bars = bars.into_iter();
    let first = bars.next()?;
    let mut state = first.start_bar();
    bars.for_each(|b| b.fold_into(&mut state));
    Some(finish(first.symbol.clone(), interval, window, state))
}

pub(crate) fn finish(symbol: Symbol, interval: Interval, window: Window, state: BarState) -> Bar {
    Bar {
        symbol,
        interval,
        start: window.start,
        end: window.end,
        open: state.open,
        high: state.high,
        low: state.low,
        close: state.close,
        volume: state.volume,
        notional: state.notional,
        trades: state.trades,
        revision: 0,
        seq: 0,
        wm: window.end - 1,
        source: compact_str::CompactString::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{parse_timestamp, MINUTE};

    fn tick(symbol: &str, ts: &str, price: f64, volume: f64, seq: u64) -> Tick {
        Tick {
            symbol: Symbol::new(symbol).unwrap(),
            ts: parse_timestamp(ts).unwrap(),
            price,
            volume,
            seq,
            wm: i64::MIN,
        }
    }

    fn close_all(builder: &mut BarBuilder) -> Vec<Bar> {
        let mut all = Vec::new();
        builder.close_until(i64::MAX, |_, bars| all.append(bars));
        all
    }

    #[test]
    fn ohlc_follows_event_time_not_arrival() {
        let mut b = BarBuilder::new(Interval::M1, Calendar::Utc);
        for t in [
            tick("AAPL", "2024-01-02T14:30:30Z", 101.0, 10.0, 0),
            tick("AAPL", "2024-01-02T14:30:59Z", 99.0, 5.0, 1),
            tick("AAPL", "2024-01-02T14:30:00Z", 100.0, 1.0, 2),
            tick("AAPL", "2024-01-02T14:30:59Z", 98.0, 4.0, 3),
        ] {
            assert!(matches!(b.push(&t), Placement::Accepted { .. }));
        }
        let bars = close_all(&mut b);
        assert_eq!(bars.len(), 1);
        let bar = &bars[0];
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (100.0, 101.0, 98.0, 98.0)
        );
        assert_eq!(bar.volume.to_f64(), 20.0);
        assert_eq!(bar.trades, 4);
        let vwap = (101.0 * 10.0 + 99.0 * 5.0 + 100.0 + 98.0 * 4.0) / 20.0;
        assert!((bar.vwap().unwrap() - vwap).abs() < 1e-12);
    }

    #[test]
    fn closes_only_windows_before_the_watermark() {
        let mut b = BarBuilder::new(Interval::M1, Calendar::Utc);
        b.push(&tick("A", "2024-01-02T14:30:10Z", 1.0, 1.0, 0));
        b.push(&tick("A", "2024-01-02T14:31:10Z", 2.0, 1.0, 1));
        let mut closed = Vec::new();
        b.close_until(
            parse_timestamp("2024-01-02T14:31:00Z").unwrap(),
            |w, bars| closed.push((w, bars.len())),
        );
        assert_eq!(closed.len(), 1);
        assert_eq!(b.open_window_ends().count(), 1);
    }

    #[test]
    fn late_ticks_are_refused() {
        let mut b = BarBuilder::new(Interval::M1, Calendar::Utc);
        let mut late = tick("A", "2024-01-02T14:30:10Z", 1.0, 1.0, 0);
        late.wm = parse_timestamp("2024-01-02T14:31:00Z").unwrap();
        assert!(matches!(b.push(&late), Placement::Late { .. }));
        late.wm -= 1;
        assert!(matches!(b.push(&late), Placement::Accepted { .. }));
    }

    #[test]
    fn cascade_equals_direct() {
        let mut ticks = Vec::new();
        let base = parse_timestamp("2024-01-02T14:00:00Z").unwrap();
        for i in 0..2_000u64 {
            let ts = base + (i as i64 * 7_919) % (60 * MINUTE);
            let price = 100.0 + ((i * 37) % 101) as f64 * 0.01;
            ticks.push(Tick {
                symbol: Symbol::new(["A", "B", "C"][i as usize % 3]).unwrap(),
                ts,
                price,
                volume: 0.1 * (i % 7) as f64,
                seq: i,
                wm: i64::MIN,
            });
        }
        let mut direct = BarBuilder::new(Interval::M5, Calendar::Utc);
        let mut minute = BarBuilder::new(Interval::M1, Calendar::Utc);
        for t in &ticks {
            direct.push(t);
            minute.push(t);
        }
        let mut cascaded = BarBuilder::new(Interval::M5, Calendar::Utc);
        for bar in close_all(&mut minute) {
            assert!(matches!(cascaded.push(&bar), Placement::Accepted { .. }));
        }
        assert_eq!(close_all(&mut cascaded), close_all(&mut direct));
    }
}
