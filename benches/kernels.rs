//! Micro-benchmarks of the kernels: ns per update of every indicator and ns per tick of
//! the bar builder, with a plain read of the same data as the baseline of this run.
//!
//! `cargo bench --bench kernels` prints the median and the best of 31 samples; each
//! sample is 240,000 updates over the TA-Lib fixture bars.

use std::hint::black_box;
use std::time::Instant;

use marketflow_operators::indicators::IndicatorSpec;
use marketflow_operators::{Bar, BarBuilder, Calendar, Fixed, Interval, Symbol, Tick};

const SAMPLES: usize = 31;
const PASSES: usize = 200;

fn fixture_bars() -> Vec<Bar> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/indicators/bars.csv"
    );
    let text =
        std::fs::read_to_string(path).expect("fixture bars (tests/fixtures/indicators/bars.csv)");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
            let start = f[0] as i64;
            Bar {
                symbol: Symbol::new("BENCH").unwrap(),
                interval: Interval::parse("1h").unwrap(),
                start,
                end: start + 3_600_000,
                open: f[1],
                high: f[2],
                low: f[3],
                close: f[4],
                volume: Fixed::from_f64(f[5]),
                notional: Fixed::from_f64(f[6] * f[5]),
                trades: 1,
                revision: 0,
                seq: 0,
                wm: start,
                source: Default::default(),
            }
        })
        .collect()
}

/// Median and minimum ns per item over `SAMPLES` runs of `run`, which handles `items`.
fn measure(items: usize, mut run: impl FnMut()) -> (f64, f64) {
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_nanos() as f64 / items as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[SAMPLES / 2], samples[0])
}

fn main() {
    // `cargo bench --bench kernels -- cci` measures only the kernels whose name contains "cci".
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let bars = fixture_bars();
    let updates = bars.len() * PASSES;
    let specs: Vec<(&str, IndicatorSpec)> = [
        ("sma", r#"{"sma":{"period":20}}"#),
        ("ema", r#"{"ema":{"period":20}}"#),
        ("wma", r#"{"wma":{"period":20}}"#),
        ("rsi", r#"{"rsi":{"period":14}}"#),
        ("macd", r#"{"macd":{}}"#),
        ("bollinger", r#"{"bollinger":{"period":20,"stddev":2}}"#),
        ("atr", r#"{"atr":{"period":14}}"#),
        (
            "stochastic",
            r#"{"stochastic":{"k":14,"k_smooth":3,"d":3}}"#,
        ),
        ("stddev", r#"{"stddev":{"period":20}}"#),
        ("vwap", r#"{"vwap":{}}"#),
        ("adx", r#"{"adx":{"period":14}}"#),
        ("cci", r#"{"cci":{"period":20}}"#),
        ("roc", r#"{"roc":{"period":10}}"#),
        ("willr", r#"{"willr":{"period":14}}"#),
        ("obv", r#"{"obv":{}}"#),
        ("keltner", r#"{"keltner":{}}"#),
        (
            "keltner_sma",
            r#"{"keltner":{"atr_period":14,"middle":"sma"}}"#,
        ),
        ("mom", r#"{"mom":{"period":10}}"#),
        ("natr", r#"{"natr":{"period":14}}"#),
        ("hist_vol", r#"{"hist_vol":{"period":20}}"#),
        ("mfi", r#"{"mfi":{"period":14}}"#),
        ("sar", r#"{"sar":{}}"#),
        ("aroon", r#"{"aroon":{"period":14}}"#),
        ("dema", r#"{"dema":{"period":30}}"#),
        ("tema", r#"{"tema":{"period":30}}"#),
        ("trix", r#"{"trix":{"period":30}}"#),
        ("kama", r#"{"kama":{"period":30}}"#),
        ("ppo", r#"{"ppo":{}}"#),
        ("cmo", r#"{"cmo":{"period":14}}"#),
        ("ultosc", r#"{"ultosc":{}}"#),
        ("adxr", r#"{"adxr":{"period":14}}"#),
    ]
    .into_iter()
    .map(|(name, json)| (name, serde_json::from_str(json).expect("valid spec")))
    .collect();

    println!(
        "kernel micro-benchmarks: {} bars x {PASSES} passes per sample, {SAMPLES} samples",
        bars.len()
    );
    println!(
        "{:<22} {:>12} {:>10} {:>14}",
        "kernel", "median ns", "best ns", "vs baseline"
    );
    let (baseline, best) = measure(updates, || {
        let mut sum = 0.0;
        for _ in 0..PASSES {
            for bar in black_box(&bars) {
                sum += black_box(bar).close;
            }
        }
        black_box(sum);
    });
    println!(
        "{:<22} {:>12.2} {:>10.2} {:>13.2}x",
        "baseline (read close)", baseline, best, 1.0
    );
    let mut worst = ("", 0.0f64);
    for (name, spec) in specs
        .iter()
        .filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str())))
    {
        let mut kernel = spec.build(&Calendar::Utc);
        let (median, best) = measure(updates, || {
            for _ in 0..PASSES {
                for bar in &bars {
                    black_box(kernel.update(black_box(bar)));
                }
            }
        });
        if median > worst.1 {
            worst = (name, median);
        }
        println!(
            "{:<22} {:>12.2} {:>10.2} {:>13.2}x",
            spec.id(),
            median,
            best,
            median / baseline
        );
    }
    println!(
        "slowest indicator: {} at {:.2} ns median per update",
        worst.0, worst.1
    );

    // Bar building: 1m bars over 100 symbols, 10 ticks per symbol per second.
    let symbols: Vec<Symbol> = (0..100)
        .map(|i| Symbol::new(&format!("S{i:03}")).unwrap())
        .collect();
    let ticks: Vec<Tick> = (0..600_000u64)
        .map(|i| {
            let ts = 1_704_153_600_000 + i as i64;
            Tick {
                symbol: symbols[(i % 100) as usize].clone(),
                ts,
                price: 100.0 + (i % 17) as f64 * 0.01,
                volume: 1.0 + (i % 5) as f64,
                seq: i,
                wm: ts,
            }
        })
        .collect();
    let (median, best) = measure(ticks.len(), || {
        let mut builder = BarBuilder::new(Interval::M1, Calendar::Utc);
        let mut bars = 0usize;
        for (i, tick) in ticks.iter().enumerate() {
            black_box(builder.push(black_box(tick)));
            if i % 4096 == 0 {
                builder.close_until(tick.wm, |_, out| bars += out.len());
            }
        }
        builder.close_until(i64::MAX, |_, out| bars += out.len());
        black_box(bars);
    });
    println!(
        "{:<22} {:>12.2} {:>10.2} {:>13.2}x",
        "bar builder (per tick)",
        median,
        best,
        median / baseline
    );
}
