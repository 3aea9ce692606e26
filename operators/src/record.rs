//! The records that flow through a pipeline: ticks, bars and indicator rows.

use serde::{Deserialize, Serialize};

use crate::fixed::Fixed;
use crate::interval::Interval;
use crate::symbol::Symbol;

/// One trade or price update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub symbol: Symbol,
    /// Event time, ms since the epoch (UTC).
    pub ts: i64,
    pub price: f64,
    /// Traded quantity; 0 when the feed has none (FX quotes).
    pub volume: f64,
    /// Arrival order within its source: breaks ties in event time.
    pub seq: u64,
    /// The source's watermark when this tick arrived: windows ending at or before it had
    /// closed, so the tick is late for them. Computed by the source, hence the same for
    /// any number of workers and for a replay of the same arrival order.
    pub wm: i64,
}

/// An OHLCV bar over the window `[start, end)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub symbol: Symbol,
    pub interval: Interval,
    pub start: i64,
    pub end: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: Fixed,
    /// Sum of price x volume; `notional / volume` is the VWAP.
    pub notional: Fixed,
    pub trades: u64,
    /// 0 for the first version of a bar, +1 for each correction.
    pub revision: u32,
    /// Arrival order within its source (0 for bars built by an operator).
    pub seq: u64,
    /// As [`Tick::wm`]; for a bar built by an operator, the time it was emitted at.
    pub wm: i64,
    /// Where it came from: the pipeline source that read it, or for a bar built by an
    /// operator the sources of its input (`live`, `history_5m+live`); empty when unknown.
    #[serde(default)]
    pub source: compact_str::CompactString,
}

impl Bar {
    /// Volume-weighted average price, if any volume traded.
    pub fn vwap(&self) -> Option<f64> {
        (!self.volume.is_zero()).then(|| self.notional.0 as f64 / self.volume.0 as f64)
    }

    /// The typical price (high + low + close) / 3.
    pub fn typical_price(&self) -> f64 {
        (self.high + self.low + self.close) / 3.0
    }
}

/// The most outputs any indicator has (Bollinger: upper, middle, lower, bandwidth, %b).
pub const MAX_OUTPUTS: usize = 5;

/// One indicator value set, computed on the bar starting at `ts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndicatorRow {
    pub symbol: Symbol,
    pub interval: Interval,
    /// Start of the bar the values were computed on.
    pub ts: i64,
    /// The configured instance, e.g. `rsi_14` or `macd_12_26_9`.
    pub id: compact_str::CompactString,
    pub kind: IndicatorKind,
    /// Output values in the order of `kind.outputs()`.
    pub outputs: [f64; MAX_OUTPUTS],
    /// The revision of the bar it was computed on.
    pub revision: u32,
}

impl IndicatorRow {
    /// `(output name, value)` pairs.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.kind
            .outputs()
            .iter()
            .copied()
            .zip(self.outputs.iter().copied())
    }
}

/// Any record, as sinks receive them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Tick(Tick),
    Bar(Bar),
    Indicator(IndicatorRow),
}

impl Record {
    pub fn symbol(&self) -> &Symbol {
        match self {
            Record::Tick(t) => &t.symbol,
            Record::Bar(b) => &b.symbol,
            Record::Indicator(i) => &i.symbol,
        }
    }
}

impl From<Tick> for Record {
    fn from(tick: Tick) -> Record {
        Record::Tick(tick)
    }
}

impl From<Bar> for Record {
    fn from(bar: Bar) -> Record {
        Record::Bar(bar)
    }
}

impl From<IndicatorRow> for Record {
    fn from(row: IndicatorRow) -> Record {
        Record::Indicator(row)
    }
}

pub use crate::indicators::IndicatorKind;
