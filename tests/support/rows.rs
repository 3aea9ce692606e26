//! A store with known rows for the server tests: per symbol (AAPL, MSFT, EUR/USD) 300 ticks a
//! second apart, 120 one-minute bars, 24 five-minute bars, 5 daily session bars, and rsi_14 and
//! macd rows on 1m and sma_20 on 1d.

use std::path::Path;

use marketflow::store::{sqlite, Batch};
use marketflow_operators::fixed::Fixed;
use marketflow_operators::indicators::IndicatorKind;
use marketflow_operators::{Bar, IndicatorRow, Interval, Record, Symbol, Tick};

pub const T0: i64 = 1_704_205_800_000; // 2024-01-02T14:30:00Z (09:30 New York)
pub const MINUTE: i64 = 60_000;
pub const DAY: i64 = 86_400_000;

pub fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn bar(symbol: &str, interval: Interval, start: i64, end: i64, close: f64) -> Record {
    Record::Bar(Bar {
        symbol: sym(symbol),
        interval,
        start,
        end,
        open: close - 0.5,
        high: close + 1.0,
        low: close - 1.0,
        close,
        volume: Fixed::from_f64(1000.0),
        notional: Fixed::from_f64(1000.0 * close),
        trades: 10,
        revision: 0,
        seq: 0,
        wm: start,
        source: Default::default(),
    })
}

fn indicator(
    symbol: &str,
    interval: Interval,
    ts: i64,
    id: &str,
    kind: IndicatorKind,
    v: f64,
) -> Record {
    Record::Indicator(IndicatorRow {
        symbol: sym(symbol),
        interval,
        ts,
        id: id.into(),
        kind,
        outputs: [v, v / 2.0, v / 4.0, f64::NAN, f64::NAN],
        revision: 0,
    })
}

/// Per symbol: 300 ticks a second apart, 120 one-minute bars, 24 five-minute bars, daily
/// session bars for 5 days (14:30Z-21:00Z), rsi_14 and macd rows on 1m, sma_20 on 1d.
pub fn fill(path: &Path) {
    let mut conn = sqlite::open(path).unwrap();
    sqlite::migrate(&mut conn).unwrap();
    let mut batch = Batch::default();
    for (k, s) in ["AAPL", "MSFT", "EUR/USD"].iter().enumerate() {
        let base = 100.0 * (k + 1) as f64;
        for i in 0..300 {
            batch.push(Record::Tick(Tick {
                symbol: sym(s),
                ts: T0 + i * 1000,
                price: base + i as f64 / 100.0,
                volume: 10.0,
                seq: i as u64,
                wm: T0,
            }));
        }
        for i in 0..120 {
            let start = T0 + i * MINUTE;
            batch.push(bar(s, Interval::M1, start, start + MINUTE, base + i as f64));
            batch.push(indicator(
                s,
                Interval::M1,
                start,
                "rsi_14",
                IndicatorKind::Rsi,
                50.0 + i as f64 / 10.0,
            ));
            batch.push(indicator(
                s,
                Interval::M1,
                start,
                "macd_12_26_9",
                IndicatorKind::Macd,
                i as f64,
            ));
        }
        for i in 0..24 {
            let start = T0 + i * 5 * MINUTE;
            batch.push(bar(
                s,
                Interval::M5,
                start,
                start + 5 * MINUTE,
                base + i as f64,
            ));
        }
        for d in 0..5 {
            let start = T0 + d * DAY;
            batch.push(bar(
                s,
                Interval::D1,
                start,
                start + 390 * MINUTE,
                base + 10.0 * d as f64,
            ));
            batch.push(indicator(
                s,
                Interval::D1,
                start,
                "sma_20",
                IndicatorKind::Sma,
                base + d as f64,
            ));
        }
    }
    sqlite::write(&mut conn, &batch).unwrap();
}
