//! Pipeline files: `validate`, `graph`, error positions and suggestions.

mod support;

use support::*;

#[test]
fn the_shipped_pipelines_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(root.join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            // The keys of pipelines with providers come from the environment.
            let out = marketflow()
                .current_dir(root)
                .args(["validate", path.to_str().unwrap()])
                .env("TWELVEDATA_API_KEY", "a-key")
                .env("ALPHAVANTAGE_API_KEY", "a-key")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(": ok"),
                "{}: {stdout}{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn every_error_is_reported_with_file_line_column_and_key() {
    let dir = scratch();
    write(
        dir.path(),
        "bad.yaml",
        concat!(
            "pipeline: bad\n",
            "workerz: 2\n",
            "sources:\n",
            "  ticks:\n",
            "    type: synthetc\n",
            "    symbols: [AAPL]\n",
            "  file_ticks: {type: file, path: x.csv, max_delay: 2 seconds}\n",
            "operators:\n",
            "  bars_1m: {type: bars, from: tiks, interval: 1m}\n",
            "  bars_5m: {type: bars, from: bars_1m, interval: 7x}\n",
            "  bars_1d: {type: bars, from: file_ticks, interval: 1d, session: {timezone: America/NewYork}}\n",
            "  a: {type: bars, from: b, interval: 1m}\n",
            "  b: {type: bars, from: a, interval: 1m}\n",
            "sinks:\n",
            "  out: {type: file, from: bars_1m, path: out.jsonl, formt: csv}\n",
            "  x: {type: file, from: out, path: y.jsonl}\n",
            "  key: {type: stdout, from: bars_1m, format: \"${MF_TEST_UNSET_FORMAT}\"}\n",
        ),
    );
    let out = run_in(dir.path(), &["validate", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "bad.yaml:2:1: workerz: unknown key `workerz`\n  help: did you mean `workers`?",
        "bad.yaml:5:11: sources.ticks.type: unknown source type `synthetc`\n  help: did you mean `synthetic`?",
        "bad.yaml:7:52: sources.file_ticks.max_delay: invalid duration `2 seconds`",
        "bad.yaml:9:31: operators.bars_1m.from: unknown stream `tiks`\n  help: did you mean `ticks`?",
        "bad.yaml:10:50: operators.bars_5m.interval: invalid interval `7x`",
        "operators.bars_1d.session: unknown time zone `America/NewYork`; did you mean `America/New_York`?",
        "bad.yaml:12:3: operators.a: cycle: a -> b -> a",
        "sinks.out.formt: unknown key `formt`\n  help: did you mean `format`?",
        "sinks.x.from: `out` is a sink; only sources and operators produce streams",
        "sinks.key.format: environment variable `MF_TEST_UNSET_FORMAT` is not set",
        "bad.yaml found 10 errors",
    ] {
        assert!(stderr.contains(expected), "missing:\n{expected}\nin:\n{stderr}");
    }
}

#[test]
fn type_mismatches_between_streams_are_errors() {
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        concat!(
            "pipeline: t\n",
            "sources:\n",
            "  ticks: {type: synthetic, symbols: [A], count: 10}\n",
            "operators:\n",
            "  bars_5m: {type: bars, from: ticks, interval: 5m}\n",
            "  bars_1m: {type: bars, from: bars_5m, interval: 1m}\n",
            "  bars_7m: {type: bars, from: bars_5m, interval: 7m}\n",
            "  bars_1h: {type: bars, from: bars_5m, interval: 1h}\n",
            "  bars_1d: {type: bars, from: bars_1h, interval: 1d, session: {timezone: America/New_York, open: \"09:30\", close: \"16:00\"}}\n",
            "sinks:\n",
            "  out: {type: file, from: [ticks, bars_5m], path: out.csv}\n",
        ),
    );
    let out = run_in(dir.path(), &["validate", "p.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "p.yaml:6:31: operators.bars_1m.from: cannot build 1m bars from the 5m bars of `bars_5m`",
        "p.yaml:7:31: operators.bars_7m.from: 5m bars of `bars_5m` do not tile 7m windows",
        "operators.bars_1d.from: 1h bars of `bars_1h` do not fit the session windows: 09:30 is not on a 1h boundary",
        "sinks.out.from: a CSV file holds one kind of record",
    ] {
        assert!(stderr.contains(expected), "missing:\n{expected}\nin:\n{stderr}");
    }
}

#[test]
fn variables_come_from_the_environment_with_defaults() {
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        "pipeline: ${MF_TEST_NAME:-fallback}\nworkers: ${MF_TEST_WORKERS}\nsources:\n  t: {type: synthetic, symbols: [A], count: 1}\n",
    );
    let out = marketflow()
        .current_dir(dir.path())
        .env("MF_TEST_WORKERS", "3")
        .args(["validate", "p.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pipeline fallback"));
    let out = run_in(dir.path(), &["validate", "p.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("p.yaml:2:10: workers: environment variable `MF_TEST_WORKERS` is not set"));
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        "pipeline: t\nsources:\n  t: {type: synthetic, symbols: [A]\n",
    );
    let out = run_in(dir.path(), &["validate", "p.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("p.yaml:4:1: invalid YAML"), "{stderr}");
}

#[test]
fn graph_prints_dot_and_text() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dot = run_ok(root, &["graph", "pipelines/demo.yaml"]);
    assert!(dot.starts_with("digraph \"demo\" {"));
    assert!(dot.contains("\"ticks\" -> \"bars_1m\";"));
    assert!(dot.contains("\"bars_5m\" -> \"bars_1d\";"));
    let text = run_ok(root, &["graph", "pipelines/demo.yaml", "--format", "text"]);
    assert!(text.contains("bars_1d"), "{text}");
    assert!(
        text.contains("bars(1d, America/New_York 09:30-16:00)"),
        "{text}"
    );
}

#[test]
fn sink_queue_is_a_size_within_bounds() {
    let dir = scratch();
    let pipeline = |queue: &str| {
        format!(
            "pipeline: q\nsink_queue: {queue}\nsources:\n  ticks: {{type: synthetic, symbols: [AAPL], count: 10}}\nsinks:\n  out: {{type: null, from: ticks, rate: 0}}\n"
        )
    };
    write(
        dir.path(),
        "ok.yaml",
        &pipeline("32MiB").replace("rate: 0", "rate: 5"),
    );
    let out = run_in(dir.path(), &["validate", "ok.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (queue, expected) in [
        (
            "lots",
            "q.yaml:2:13: sink_queue: invalid size `lots`: expected a number of bytes with a unit",
        ),
        (
            "1KiB",
            "q.yaml:2:13: sink_queue: sink_queue must be between 64KiB and 16GiB (got 1KiB)",
        ),
        (
            "12 parsecs",
            "q.yaml:2:13: sink_queue: invalid size `12 parsecs`",
        ),
    ] {
        write(dir.path(), "q.yaml", &pipeline(queue));
        let out = run_in(dir.path(), &["validate", "q.yaml"]);
        assert_eq!(out.status.code(), Some(2), "sink_queue: {queue}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "missing:\n{expected}\nin:\n{stderr}"
        );
        assert!(
            stderr.contains("q.yaml:6:")
                && stderr.contains("sinks.out.rate: must be between 1 and"),
            "the null sink's rate of 0 is refused too:\n{stderr}"
        );
    }
}
