//! End-to-end runs of the engine through the binary: bars, cascades, determinism across
//! worker counts and processes, late data, sessions and bad input.

mod support;

use std::path::Path;

use serde_json::Value;
use support::*;

fn bars_pipeline(source: &str, extra_ops: &str, sinks: &str) -> String {
    format!(
        "pipeline: test\nsources:\n  ticks: {source}\noperators:\n  bars_1m: {{type: bars, from: ticks, interval: 1m}}\n{extra_ops}sinks:\n{sinks}dead_letter: {{path: dead.jsonl}}\n"
    )
}

fn json_lines(path: &Path) -> Vec<Value> {
    sorted_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn output_is_identical_for_1_2_and_4_workers_on_out_of_order_ticks() {
    let dir = scratch();
    let symbols = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA"];
    // 3 s of disorder against a 2 s max_delay: most reordering is absorbed, some ticks are late.
    write(
        dir.path(),
        "ticks.csv",
        &tick_csv(11, &symbols, ms("2024-01-02T14:30:00Z"), 40_000, 400, 3_000),
    );
    let yaml = bars_pipeline(
        "{type: file, path: ticks.csv, max_delay: 2s}",
        "  bars_5m: {type: bars, from: bars_1m, interval: 5m}\n  bars_1d: {type: bars, from: bars_5m, interval: 1d}\n",
        "  out: {type: file, from: [bars_1m, bars_5m, bars_1d], path: out.jsonl}\n",
    );
    write(dir.path(), "p.yaml", &yaml);
    let mut outputs = Vec::new();
    for workers in ["1", "2", "4"] {
        run_ok(dir.path(), &["run", "p.yaml", "--workers", workers]);
        let bars = sorted_lines(&dir.path().join("out.jsonl"));
        let mut late: Vec<String> = sorted_lines(&dir.path().join("dead.jsonl"))
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["record"].to_string())
            .collect();
        late.sort();
        std::fs::remove_file(dir.path().join("dead.jsonl")).unwrap();
        outputs.push((workers, bars, late));
    }
    let (_, bars, late) = &outputs[0];
    assert!(bars.len() > 100, "expected many bars, got {}", bars.len());
    assert!(!late.is_empty(), "the disorder should make some ticks late");
    for (workers, other_bars, other_late) in &outputs[1..] {
        assert_eq!(bars, other_bars, "bars differ with {workers} workers");
        assert_eq!(late, other_late, "late ticks differ with {workers} workers");
    }
}

#[test]
fn cascaded_bars_equal_bars_built_from_ticks() {
    let dir = scratch();
    write(
        dir.path(),
        "ticks.csv",
        &tick_csv(
            5,
            &["AAPL", "EUR/USD", "BTC/USD"],
            ms("2024-03-08T20:00:00Z"),
            30_000,
            9_000,
            1_000,
        ),
    );
    let yaml = bars_pipeline(
        "{type: file, path: ticks.csv, max_delay: 1s}",
        concat!(
            "  bars_5m: {type: bars, from: bars_1m, interval: 5m}\n",
            "  bars_1h: {type: bars, from: bars_5m, interval: 1h}\n",
            "  bars_1d: {type: bars, from: bars_1h, interval: 1d}\n",
            "  direct_5m: {type: bars, from: ticks, interval: 5m}\n",
            "  direct_1h: {type: bars, from: ticks, interval: 1h}\n",
            "  direct_1d: {type: bars, from: ticks, interval: 1d}\n",
        ),
        "  cascade: {type: file, from: [bars_5m, bars_1h, bars_1d], path: cascade.jsonl}\n  direct: {type: file, from: [direct_5m, direct_1h, direct_1d], path: direct.jsonl}\n",
    );
    write(dir.path(), "p.yaml", &yaml);
    run_ok(dir.path(), &["run", "p.yaml", "--workers", "2"]);
    let cascade = sorted_lines(&dir.path().join("cascade.jsonl"));
    assert!(cascade.iter().any(|l| l.contains("\"1d\"")));
    assert_eq!(cascade, sorted_lines(&dir.path().join("direct.jsonl")));
}

#[test]
fn bars_have_exact_ohlcv_by_event_time() {
    let dir = scratch();
    write(
        dir.path(),
        "ticks.jsonl",
        concat!(
            r#"{"type":"tick","symbol":"AAPL","ts":"2024-01-02T14:30:30Z","price":101,"volume":10}"#,
            "\n",
            r#"{"type":"tick","symbol":"AAPL","ts":"2024-01-02T14:30:00.500Z","price":100,"volume":5}"#,
            "\n",
            r#"{"type":"tick","symbol":"AAPL","ts":"2024-01-02T14:30:59.999Z","price":99.5,"volume":1}"#,
            "\n",
            r#"{"type":"tick","symbol":"AAPL","ts":"2024-01-02T14:31:00Z","price":98,"volume":2}"#,
            "\n",
        ),
    );
    let yaml = bars_pipeline(
        "{type: file, path: ticks.jsonl, max_delay: 1m}",
        "",
        "  out: {type: file, from: bars_1m, path: out.jsonl}\n",
    );
    write(dir.path(), "p.yaml", &yaml);
    run_ok(dir.path(), &["run", "p.yaml"]);
    let bars = json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(bars.len(), 2);
    let first = &bars[0];
    assert_eq!(first["start"], "2024-01-02T14:30:00Z");
    assert_eq!(first["end"], "2024-01-02T14:31:00Z");
    assert_eq!(
        (
            first["open"].as_f64(),
            first["high"].as_f64(),
            first["low"].as_f64(),
            first["close"].as_f64()
        ),
        (Some(100.0), Some(101.0), Some(99.5), Some(99.5))
    );
    assert_eq!(first["volume"], 16);
    assert_eq!(first["trades"], 3);
    let vwap = (101.0 * 10.0 + 100.0 * 5.0 + 99.5) / 16.0;
    assert!((first["vwap"].as_f64().unwrap() - vwap).abs() < 1e-12);
    assert_eq!(first["revision"], 0);
    assert_eq!(bars[1]["open"], 98);
}

#[test]
fn late_ticks_are_counted_and_dead_lettered_and_good_data_is_kept() {
    let dir = scratch();
    write(
        dir.path(),
        "ticks.csv",
        "ts,symbol,price,volume\n\
         2024-01-02T14:30:10Z,AAPL,100,1\n\
         2024-01-02T14:31:30Z,AAPL,101,1\n\
         2024-01-02T14:30:50Z,AAPL,99,1\n\
         2024-01-02T14:31:40Z,AAPL,not-a-price,1\n\
         2024-01-02T14:31:50Z,AAPL,102,1\n",
    );
    let yaml = bars_pipeline(
        "{type: file, path: ticks.csv, max_delay: 10s}",
        "",
        "  out: {type: file, from: bars_1m, path: out.jsonl}\n",
    );
    write(dir.path(), "p.yaml", &yaml);
    run_ok(dir.path(), &["run", "p.yaml"]);
    let bars = json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(bars.len(), 2);
    assert_eq!(
        bars[0]["trades"], 1,
        "the late tick is not in the 14:30 bar"
    );
    assert_eq!(bars[1]["trades"], 2);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    let late = dead
        .iter()
        .find(|d| d["reason"] == "late")
        .expect("a late record");
    assert_eq!(late["stage"], "bars_1m");
    assert_eq!(late["record"]["ts"], "2024-01-02T14:30:50Z");
    let malformed = dead
        .iter()
        .find(|d| d["reason"] == "malformed")
        .expect("a malformed record");
    assert_eq!(malformed["line"], 5);
    assert!(
        malformed["detail"]
            .as_str()
            .unwrap()
            .contains("not-a-price"),
        "{malformed}"
    );
}

#[test]
fn daily_bars_follow_the_new_york_session_across_dst() {
    let dir = scratch();
    // One tick an hour over the March and November 2024 DST changes.
    let mut csv = String::from("ts,symbol,price,volume\n");
    for (from, to) in [
        ("2024-03-07T00:00:00Z", "2024-03-13T00:00:00Z"),
        ("2024-10-31T00:00:00Z", "2024-11-06T00:00:00Z"),
    ] {
        let mut t = ms(from);
        while t < ms(to) {
            csv += &format!(
                "{},SPY,{},1\n",
                iso(t + 5 * 60_000),
                400 + (t / 3_600_000) % 7
            );
            t += 3_600_000;
        }
    }
    write(dir.path(), "ticks.csv", &csv);
    let yaml = bars_pipeline(
        "{type: file, path: ticks.csv}",
        "  bars_1d: {type: bars, from: bars_1m, interval: 1d, session: {timezone: America/New_York, open: \"09:30\", close: \"16:00\", days: [mon, tue, wed, thu, fri]}}\n",
        "  out: {type: file, from: bars_1d, path: out.jsonl}\n",
    );
    write(dir.path(), "p.yaml", &yaml);
    run_ok(dir.path(), &["run", "p.yaml"]);
    let days: Vec<(String, String, u64)> = json_lines(&dir.path().join("out.jsonl"))
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_owned(),
                b["end"].as_str().unwrap().to_owned(),
                b["trades"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = |s: &str, e: &str, n: u64| (s.to_owned(), e.to_owned(), n);
    assert_eq!(
        days,
        vec![
            expect("2024-03-07T14:30:00Z", "2024-03-07T21:00:00Z", 6),
            expect("2024-03-08T14:30:00Z", "2024-03-08T21:00:00Z", 6),
            expect("2024-03-11T13:30:00Z", "2024-03-11T20:00:00Z", 6),
            expect("2024-03-12T13:30:00Z", "2024-03-12T20:00:00Z", 6),
            expect("2024-10-31T13:30:00Z", "2024-10-31T20:00:00Z", 6),
            expect("2024-11-01T13:30:00Z", "2024-11-01T20:00:00Z", 6),
            expect("2024-11-04T14:30:00Z", "2024-11-04T21:00:00Z", 6),
            expect("2024-11-05T14:30:00Z", "2024-11-05T21:00:00Z", 6),
        ]
    );
}

#[test]
fn bar_files_feed_cascades() {
    let dir = scratch();
    let mut csv = String::from("symbol,start,open,high,low,close,volume\n");
    for m in 0..10 {
        let start = ms("2024-01-02T14:30:00Z") + m * 60_000;
        csv += &format!(
            "AAPL,{},{},{},{},{},100\n",
            iso(start),
            100 + m,
            101 + m,
            99 + m,
            100.5 + m as f64
        );
    }
    write(dir.path(), "bars.csv", &csv);
    let yaml = "pipeline: t\nsources:\n  m1: {type: file, path: bars.csv, kind: bars, interval: 1m}\noperators:\n  bars_5m: {type: bars, from: m1, interval: 5m}\nsinks:\n  out: {type: file, from: bars_5m, path: out.csv}\n";
    write(dir.path(), "p.yaml", yaml);
    run_ok(dir.path(), &["run", "p.yaml"]);
    let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "symbol,interval,start,end,open,high,low,close,volume,trades,vwap,revision"
    );
    assert_eq!(lines.len(), 3);
    for (line, expected, vwap) in [
        (
            lines[1],
            "AAPL,5m,2024-01-02T14:30:00Z,2024-01-02T14:35:00Z,100,105,99,104.5,500,5",
            102.0 + 1.0 / 6.0,
        ),
        (
            lines[2],
            "AAPL,5m,2024-01-02T14:35:00Z,2024-01-02T14:40:00Z,105,110,104,109.5,500,5",
            107.0 + 1.0 / 6.0,
        ),
    ] {
        // Without a vwap column a bar's VWAP is its typical price (h + l + c) / 3.
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[..10].join(","), expected);
        assert!(
            (fields[10].parse::<f64>().unwrap() - vwap).abs() < 1e-9,
            "{line}"
        );
        assert_eq!(fields[11], "0");
    }
}

#[test]
fn stdout_sink_prints_jsonl() {
    let dir = scratch();
    let yaml = "pipeline: t\nsources:\n  ticks: {type: synthetic, symbols: [AAA, BBB], seed: 3, count: 2000, rate: 50}\noperators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\nsinks:\n  console: {type: stdout, from: bars_1m}\n";
    write(dir.path(), "p.yaml", yaml);
    let stdout = run_ok(dir.path(), &["run", "p.yaml"]);
    let bars: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(bars.len() >= 2);
    assert!(bars
        .iter()
        .all(|b| b["type"] == "bar" && b["interval"] == "1m"));
    let trades: u64 = bars.iter().map(|b| b["trades"].as_u64().unwrap()).sum();
    assert_eq!(trades, 2000, "every tick lands in exactly one bar");
}

#[test]
fn a_two_process_cluster_gives_the_same_bars_as_one_process() {
    let dir = scratch();
    write(
        dir.path(),
        "ticks.csv",
        &tick_csv(
            21,
            &["A", "B", "C", "D", "E"],
            ms("2024-01-02T00:00:00Z"),
            20_000,
            2_000,
            500,
        ),
    );
    let yaml = bars_pipeline(
        "{type: file, path: ticks.csv, max_delay: 1s}",
        "  bars_5m: {type: bars, from: bars_1m, interval: 5m}\n",
        "  out: {type: file, from: [bars_1m, bars_5m], path: out.jsonl}\n",
    );
    write(dir.path(), "p.yaml", &yaml);
    run_ok(dir.path(), &["run", "p.yaml"]);
    let single = sorted_lines(&dir.path().join("out.jsonl"));
    std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();

    run_cluster(dir.path(), 2, 2, &[]);
    assert_eq!(single, sorted_lines(&dir.path().join("out.jsonl")));
}

#[test]
fn a_missing_input_file_is_a_clear_error() {
    let dir = scratch();
    let yaml = bars_pipeline(
        "{type: file, path: nowhere.csv}",
        "",
        "  out: {type: file, from: bars_1m, path: out.jsonl}\n",
    );
    write(dir.path(), "p.yaml", &yaml);
    let out = run_in(dir.path(), &["run", "p.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opening nowhere.csv"), "{stderr}");
}

#[test]
fn a_partitioned_file_gives_byte_identical_output_for_any_workers_and_processes() {
    let dir = scratch();
    write(
        dir.path(),
        "ticks.csv",
        &tick_csv(
            31,
            &["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL"],
            ms("2024-01-02T14:30:00Z"),
            60_000,
            300,
            1_500,
        ),
    );
    let yaml = bars_pipeline(
        "{type: file, path: ticks.csv, max_delay: 2s, partitions: 4}",
        "  bars_5m: {type: bars, from: bars_1m, interval: 5m}\n  ta: {type: indicators, from: bars_1m, indicators: [{sma: {period: 5}}, {rsi: {period: 3}}]}\n",
        "  out: {type: file, from: [ticks, bars_1m, bars_5m, ta], path: out.jsonl}\n",
    );
    write(dir.path(), "p.yaml", &yaml);
    let out = dir.path().join("out.jsonl");
    let mut runs: Vec<(String, Vec<u8>)> = Vec::new();
    for workers in ["1", "2", "4"] {
        run_ok(dir.path(), &["run", "p.yaml", "--workers", workers]);
        runs.push((format!("{workers} workers"), std::fs::read(&out).unwrap()));
        std::fs::remove_file(&out).unwrap();
    }
    run_cluster(dir.path(), 2, 2, &[]);
    runs.push((
        "2 processes of 2 workers".into(),
        std::fs::read(&out).unwrap(),
    ));

    let (_, first) = &runs[0];
    let text = String::from_utf8_lossy(first);
    assert!(
        text.lines()
            .filter(|l| l.contains("\"type\":\"tick\""))
            .count()
            > 50_000,
        "the ticks should be written"
    );
    assert!(
        text.contains("\"type\":\"indicator\""),
        "indicators expected"
    );
    for (name, bytes) in &runs[1..] {
        assert!(
            bytes == first,
            "output with {name} differs from 1 worker ({} vs {} bytes)",
            bytes.len(),
            first.len()
        );
    }
}
