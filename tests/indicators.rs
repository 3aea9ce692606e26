//! The `indicators` operator in pipelines: values equal the kernels run over each
//! symbol's bars in order, for any worker count and for out-of-order bar files; bad
//! parameters are rejected with their position. The `tick_indicators` operator: one row
//! per symbol, indicator and event-time second, equal to the kernels over the ticks in
//! event-time order, whatever the arrival order or worker count.

mod support;

use std::collections::BTreeMap;

use marketflow_operators::indicators::IndicatorSpec;
use marketflow_operators::{Bar, Calendar, Fixed, Interval, Symbol};
use serde_json::Value;
use support::*;

const DEFAULT_SET: &str = "      - sma: {period: 20}
      - ema: {period: 20}
      - rsi: {period: 14}
      - macd: {fast: 12, slow: 26, signal: 9}
      - bollinger: {period: 20, stddev: 2}
      - atr: {period: 14}
      - stochastic: {k: 14, k_smooth: 3, d: 3}
      - stddev: {period: 20}
      - vwap: {}
      - adx: {period: 14}
      - cci: {period: 20}
      - roc: {period: 10}
      - willr: {period: 14}
      - obv: {}
      - keltner: {period: 20, atr_period: 10, multiplier: 2}
      - wma: {period: 10, source: hlc3}
      - keltner: {period: 20, atr_period: 14, multiplier: 2, middle: sma}
      - mom: {period: 10}
      - natr: {period: 14}
      - hist_vol: {period: 20}
      - mfi: {period: 14}
      - sar: {}
      - aroon: {period: 14}
      - dema: {period: 30}
      - tema: {period: 30}
      - trix: {period: 30}
      - kama: {period: 30}
      - ppo: {}
      - cmo: {period: 14}
      - ultosc: {}
      - adxr: {period: 14}
";

fn bar_from_json(v: &Value) -> Bar {
    let start = ms(v["start"].as_str().unwrap());
    let volume = v["volume"].as_f64().unwrap();
    Bar {
        symbol: Symbol::new(v["symbol"].as_str().unwrap()).unwrap(),
        interval: Interval::parse(v["interval"].as_str().unwrap()).unwrap(),
        start,
        end: ms(v["end"].as_str().unwrap()),
        open: v["open"].as_f64().unwrap(),
        high: v["high"].as_f64().unwrap(),
        low: v["low"].as_f64().unwrap(),
        close: v["close"].as_f64().unwrap(),
        volume: Fixed::from_f64(volume),
        notional: Fixed::from_f64(v["vwap"].as_f64().unwrap_or(0.0) * volume),
        trades: v["trades"].as_u64().unwrap(),
        revision: 0,
        seq: 0,
        wm: 0,
        source: Default::default(),
    }
}

fn specs() -> Vec<IndicatorSpec> {
    let node = marketflow::config::yaml::parse(DEFAULT_SET).unwrap();
    marketflow::config::de::from_node(&node, "indicators").unwrap()
}

#[test]
fn pipeline_indicators_equal_the_kernels_over_the_bars() {
    let dir = scratch();
    let yaml = format!(
        "pipeline: t\nsources:\n  ticks: {{type: synthetic, symbols: [AAPL, MSFT, NVDA], seed: 9, rate: 1, duration: 12h, max_delay: 2s, disorder: 2s}}\noperators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n  ta:\n    type: indicators\n    from: bars_1m\n    indicators:\n{DEFAULT_SET}sinks:\n  bars: {{type: file, from: bars_1m, path: bars.jsonl}}\n  rows: {{type: file, from: ta, path: ta.jsonl}}\n"
    );
    write(dir.path(), "p.yaml", &yaml);
    let mut outputs = Vec::new();
    for workers in ["1", "3"] {
        run_ok(dir.path(), &["run", "p.yaml", "--workers", workers]);
        outputs.push(sorted_lines(&dir.path().join("ta.jsonl")));
    }
    assert_eq!(
        outputs[0], outputs[1],
        "indicator rows differ between 1 and 3 workers"
    );

    // Recompute from the bars file with the kernels alone.
    let mut by_symbol: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
    for line in sorted_lines(&dir.path().join("bars.jsonl")) {
        let bar = bar_from_json(&serde_json::from_str(&line).unwrap());
        by_symbol
            .entry(bar.symbol.to_string())
            .or_default()
            .push(bar);
    }
    let mut expected = 0;
    let rows: Vec<Value> = outputs[0]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut index: BTreeMap<(String, String, String), &Value> = BTreeMap::new();
    for row in &rows {
        index.insert(
            (
                row["symbol"].as_str().unwrap().into(),
                row["id"].as_str().unwrap().into(),
                row["ts"].as_str().unwrap().into(),
            ),
            row,
        );
    }
    for (symbol, mut bars) in by_symbol {
        bars.sort_by_key(|b| b.start);
        for spec in specs() {
            let mut kernel = spec.build(&Calendar::Utc);
            for bar in &bars {
                let Some(values) = kernel.update(bar) else {
                    continue;
                };
                expected += 1;
                let key = (symbol.clone(), spec.id(), iso(bar.start));
                let row = index
                    .get(&key)
                    .unwrap_or_else(|| panic!("no row for {key:?}"));
                for (name, want) in spec.kind().outputs().iter().zip(values) {
                    let got = row["values"][name].as_f64().unwrap();
                    assert!(
                        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "{key:?} {name}: {got} vs {want}"
                    );
                }
            }
        }
    }
    assert_eq!(
        rows.len(),
        expected,
        "every row is accounted for and none is missing"
    );
    assert!(rows
        .iter()
        .any(|r| r["id"] == "macd_12_26_9" && r["values"]["hist"].is_number()));
    assert!(rows.iter().any(|r| r["id"] == "wma_10_hlc3"));
}

#[test]
fn indicators_on_an_out_of_order_bar_file_follow_event_time() {
    let dir = scratch();
    let mut lines: Vec<String> = (0..120)
        .map(|i| {
            let start = ms("2024-01-02T14:30:00Z") + i * 60_000;
            let close = 100.0 + ((i * 7) % 13) as f64;
            format!(
                "{},SPY,{},{},{},{},1000",
                iso(start),
                close - 0.5,
                close + 1.0,
                close - 1.0,
                close
            )
        })
        .collect();
    // Swap neighbours: arrival order differs from event order by one bar.
    for i in (0..lines.len() - 1).step_by(2) {
        lines.swap(i, i + 1);
    }
    write(
        dir.path(),
        "bars.csv",
        &format!(
            "start,symbol,open,high,low,close,volume\n{}\n",
            lines.join("\n")
        ),
    );
    let yaml = "pipeline: t\nsources:\n  m1: {type: file, path: bars.csv, kind: bars, interval: 1m, max_delay: 2m}\noperators:\n  ta: {type: indicators, from: m1, indicators: [{sma: {period: 3}}, {rsi: {period: 5}}]}\nsinks:\n  out: {type: file, from: ta, path: ta.jsonl}\n";
    write(dir.path(), "p.yaml", yaml);
    run_ok(dir.path(), &["run", "p.yaml"]);
    let rows: Vec<Value> = sorted_lines(&dir.path().join("ta.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sma: Vec<&Value> = rows.iter().filter(|r| r["id"] == "sma_3").collect();
    assert_eq!(sma.len(), 118);
    // The first SMA is on the third bar in event time: closes 100, 107, 101.
    let first = sma
        .iter()
        .find(|r| r["ts"] == "2024-01-02T14:32:00Z")
        .unwrap();
    assert!(
        (first["values"]["value"].as_f64().unwrap() - (100.0 + 107.0 + 101.0) / 3.0).abs() < 1e-12
    );
    assert_eq!(rows.iter().filter(|r| r["id"] == "rsi_5").count(), 115);
}

#[test]
fn bad_indicator_parameters_are_rejected_with_their_position() {
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        concat!(
            "pipeline: t\n",
            "sources:\n",
            "  ticks: {type: synthetic, symbols: [A], count: 10}\n",
            "operators:\n",
            "  bars_1m: {type: bars, from: ticks, interval: 1m}\n",
            "  ta:\n",
            "    type: indicators\n",
            "    from: bars_1m\n",
            "    indicators:\n",
            "      - sma: {period: 0}\n",
            "      - macd: {fast: 26, slow: 12}\n",
            "      - rsii: {period: 14}\n",
            "      - bollinger: {period: 20, stdev: 2}\n",
            "      - ema: {period: 9}\n",
            "      - ema: {period: 9}\n",
            "  on_ticks: {type: indicators, from: ticks, indicators: [{sma: {}}]}\n",
        ),
    );
    let out = run_in(dir.path(), &["validate", "p.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "p.yaml:12:9: operators.ta.indicators[2].rsii: unknown value `rsii`\n  help: did you mean `rsi`?",
        "p.yaml:13:33: operators.ta.indicators[3].bollinger.stdev: unknown key `stdev`\n  help: did you mean `stddev`?",
    ] {
        assert!(stderr.contains(expected), "missing:\n{expected}\nin:\n{stderr}");
    }
    // Parameter checks run once the list deserializes; fix the two shape errors to see them.
    let fixed = std::fs::read_to_string(dir.path().join("p.yaml"))
        .unwrap()
        .replace("rsii", "rsi")
        .replace("stdev:", "stddev:");
    write(dir.path(), "p.yaml", &fixed);
    let out = run_in(dir.path(), &["validate", "p.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "p.yaml:10:23: operators.ta.indicators[0].sma.period: `period` must be at least 2 (got 0)",
        "p.yaml:11:22: operators.ta.indicators[1].macd.fast: `fast` (26) must be below `slow` (12)",
        "p.yaml:15:9: operators.ta.indicators[5].ema: the id `ema_9` is used twice in this operator",
        "operators.on_ticks.from: indicators are computed on bars; `ticks` is ticks",
    ] {
        assert!(stderr.contains(expected), "missing:\n{expected}\nin:\n{stderr}");
    }
}

#[test]
fn tick_indicators_follow_event_time_for_any_arrival_and_workers() {
    use marketflow_operators::indicators::ticks::TickIndicatorSpec;
    let dir = scratch();
    // Ticks of two symbols, up to 1.5 s out of order (within max_delay).
    write(
        dir.path(),
        "ticks.csv",
        &tick_csv(31, &["AAPL", "MSFT"], 1_704_205_800_000, 20_000, 300, 1_500),
    );
    let set = "      - price_velocity: {ticks: 10}
      - price_velocity: {ticks: 50}
      - tick_ratio: {}
      - tick_vwap: {}
      - volume_momentum: {}
      - tick_bollinger: {}
      - tick_rsi: {}
";
    write(
        dir.path(),
        "p.yaml",
        &format!("pipeline: t\nsources:\n  ticks: {{type: file, path: ticks.csv, max_delay: 2s}}\noperators:\n  rt:\n    type: tick_indicators\n    from: ticks\n    every: 1s\n    indicators:\n{set}sinks:\n  rows: {{type: file, from: rt, path: rt.jsonl}}\ndead_letter: {{path: dead.jsonl}}\n"),
    );
    let mut outputs = Vec::new();
    for workers in ["1", "2"] {
        run_ok(dir.path(), &["run", "p.yaml", "--workers", workers]);
        outputs.push(std::fs::read(dir.path().join("rt.jsonl")).unwrap());
    }
    assert!(
        outputs[0] == outputs[1],
        "rows differ between 1 and 2 workers"
    );
    assert!(
        !dir.path().join("dead.jsonl").exists()
            || sorted_lines(&dir.path().join("dead.jsonl")).is_empty()
    );

    // The kernels over each symbol's ticks in event-time order (file order breaks ties),
    // the values after the last tick of each second.
    let specs: Vec<TickIndicatorSpec> = {
        let node = marketflow::config::yaml::parse(set).unwrap();
        marketflow::config::de::from_node(&node, "indicators").unwrap()
    };
    let text = std::fs::read_to_string(dir.path().join("ticks.csv")).unwrap();
    let mut ticks: Vec<marketflow_operators::Tick> = text
        .lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            marketflow_operators::Tick {
                symbol: Symbol::new(f[1]).unwrap(),
                ts: ms(f[0]),
                price: f[2].parse().unwrap(),
                volume: f[3].parse().unwrap(),
                seq: i as u64,
                wm: 0,
            }
        })
        .collect();
    ticks.sort_by(|a, b| (&a.symbol, a.ts, a.seq).cmp(&(&b.symbol, b.ts, b.seq)));
    let mut expected: BTreeMap<(String, String, i64), Vec<f64>> = BTreeMap::new();
    for spec in &specs {
        let mut kernel = spec.build();
        let mut symbol = None;
        for tick in &ticks {
            if symbol.as_ref() != Some(&tick.symbol) {
                kernel.reset();
                symbol = Some(tick.symbol.clone());
            }
            if let Some(values) = kernel.update(tick) {
                let second = tick.ts.div_euclid(1000) * 1000;
                let n = spec.kind().outputs().len();
                expected.insert(
                    (tick.symbol.to_string(), spec.id(), second),
                    values[..n].to_vec(),
                );
            }
        }
    }
    let rows: Vec<Value> = String::from_utf8_lossy(&outputs[0])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per symbol, indicator and second"
    );
    for row in &rows {
        assert_eq!(row["interval"], "1s");
        let key = (
            row["symbol"].as_str().unwrap().to_owned(),
            row["id"].as_str().unwrap().to_owned(),
            ms(row["ts"].as_str().unwrap()),
        );
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected row {row}"));
        let kind = marketflow_operators::IndicatorKind::ALL
            .into_iter()
            .find(|k| k.name() == row["indicator"])
            .unwrap();
        for (name, want) in kind.outputs().iter().zip(want) {
            let got = row["values"][name].as_f64().unwrap_or(f64::NAN);
            let same = (got.is_nan() && want.is_nan())
                || (got - want).abs() <= 1e-12 * want.abs().max(1.0);
            assert!(same, "{key:?} {name}: {got} vs {want}");
        }
    }
    println!(
        "{} tick indicator rows equal the kernels over the sorted ticks",
        rows.len()
    );
}
