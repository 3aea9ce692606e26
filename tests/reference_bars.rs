//! The engine's bars on a large out-of-order file equal a naive per-window computation
//! written here, independently of the operators crate.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::*;

/// Expected OHLCV of one window, from the ticks in it.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: i64,
    /// Sum of price x volume in cents, exact.
    notional_cents: i128,
    trades: u64,
}

struct Row {
    ts: i64,
    seq: usize,
    symbol: String,
    price: f64,
    volume: i64,
}

fn naive_bars(rows: &[Row], width: i64) -> BTreeMap<(String, i64), Expected> {
    let mut windows: BTreeMap<(String, i64), Vec<&Row>> = BTreeMap::new();
    for row in rows {
        let start = row.ts - row.ts.rem_euclid(width);
        windows
            .entry((row.symbol.clone(), start))
            .or_default()
            .push(row);
    }
    windows
        .into_iter()
        .map(|(key, mut ticks)| {
            ticks.sort_by_key(|t| (t.ts, t.seq));
            let prices = ticks.iter().map(|t| t.price);
            let expected = Expected {
                open: ticks[0].price,
                close: ticks[ticks.len() - 1].price,
                high: prices.clone().fold(f64::MIN, f64::max),
                low: prices.fold(f64::MAX, f64::min),
                volume: ticks.iter().map(|t| t.volume).sum(),
                notional_cents: ticks
                    .iter()
                    .map(|t| (t.price * 100.0).round() as i128 * t.volume as i128)
                    .sum(),
                trades: ticks.len() as u64,
            };
            (key, expected)
        })
        .collect()
}

#[test]
fn a_million_out_of_order_ticks_give_the_bars_of_a_naive_computation() {
    const MINUTE: i64 = 60_000;
    let dir = scratch();
    let symbols: Vec<String> = (0..50).map(|i| format!("S{i:02}")).collect();
    let names: Vec<&str> = symbols.iter().map(String::as_str).collect();
    // Ticks up to 1.5 s out of order against `max_delay: 2s`: none is late.
    let csv = tick_csv(
        2024,
        &names,
        ms("2024-01-02T14:30:00Z"),
        1_000_000,
        400,
        1_500,
    );
    let rows: Vec<Row> = csv
        .lines()
        .skip(1)
        .enumerate()
        .map(|(seq, line)| {
            let f: Vec<&str> = line.split(',').collect();
            Row {
                ts: ms(f[0]),
                seq,
                symbol: f[1].to_owned(),
                price: f[2].parse().unwrap(),
                volume: f[3].parse().unwrap(),
            }
        })
        .collect();
    write(dir.path(), "ticks.csv", &csv);
    write(
        dir.path(),
        "p.yaml",
        "pipeline: reference\n\
         sources:\n  ticks: {type: file, path: ticks.csv, max_delay: 2s}\n\
         operators:\n\
         \x20 bars_1m: {type: bars, from: ticks, interval: 1m}\n\
         \x20 bars_5m: {type: bars, from: bars_1m, interval: 5m}\n\
         \x20 bars_1d: {type: bars, from: bars_5m, interval: 1d}\n\
         sinks:\n  out: {type: file, from: [bars_1m, bars_5m, bars_1d], path: out.jsonl}\n\
         dead_letter: {path: dead.jsonl}\n",
    );
    run_ok(dir.path(), &["run", "p.yaml", "--workers", "2"]);
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default();
    assert!(
        dead.is_empty(),
        "no tick should be late or malformed:\n{dead}"
    );

    let mut actual: BTreeMap<(String, String, i64), Value> = BTreeMap::new();
    for line in sorted_lines(&dir.path().join("out.jsonl")) {
        let bar: Value = serde_json::from_str(&line).unwrap();
        let key = (
            bar["interval"].as_str().unwrap().to_owned(),
            bar["symbol"].as_str().unwrap().to_owned(),
            ms(bar["start"].as_str().unwrap()),
        );
        assert!(actual.insert(key, bar).is_none(), "duplicate bar");
    }
    for (interval, width) in [("1m", MINUTE), ("5m", 5 * MINUTE), ("1d", 1440 * MINUTE)] {
        let expected = naive_bars(&rows, width);
        let got: Vec<_> = actual.iter().filter(|(k, _)| k.0 == interval).collect();
        assert_eq!(got.len(), expected.len(), "{interval} bar count");
        for ((_, symbol, start), bar) in got {
            let want = &expected[&(symbol.clone(), *start)];
            let context = format!("{interval} {symbol} {}: {bar}", iso(*start));
            assert_eq!(ms(bar["end"].as_str().unwrap()), start + width, "{context}");
            assert_eq!(bar["open"].as_f64().unwrap(), want.open, "{context}");
            assert_eq!(bar["high"].as_f64().unwrap(), want.high, "{context}");
            assert_eq!(bar["low"].as_f64().unwrap(), want.low, "{context}");
            assert_eq!(bar["close"].as_f64().unwrap(), want.close, "{context}");
            assert_eq!(
                bar["volume"].as_f64().unwrap(),
                want.volume as f64,
                "{context}"
            );
            assert_eq!(bar["trades"].as_u64().unwrap(), want.trades, "{context}");
            let vwap = want.notional_cents as f64 / 100.0 / want.volume as f64;
            let got_vwap = bar["vwap"].as_f64().unwrap();
            assert!(
                (got_vwap - vwap).abs() <= 1e-12 * vwap.abs(),
                "{context}: vwap {got_vwap} != {vwap}"
            );
        }
    }
}
