//! Bad input gets a clear error and never a panic: broken pipeline specs (each fixture
//! under `tests/fixtures/bad-specs/` says which lines its errors must name), truncated
//! and random YAML, and malformed rows in a file source.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

fn bad_specs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-specs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `# expect: LINE: TEXT` headers of a fixture.
fn expectations(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let (line, message) = rest.split_once(": ").expect("# expect: LINE: TEXT");
            (line.parse().expect("a line number"), message.to_owned())
        })
        .collect()
}

/// Each `error:` line of the output with the `help:` lines that follow it.
fn error_blocks(stderr: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("error:") {
            blocks.push(line.to_owned());
        } else if let Some(last) = blocks.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
    }
    blocks
}

#[test]
fn every_bad_spec_fails_validation_naming_the_line_of_each_mistake() {
    let files = bad_specs();
    assert!(files.len() >= 10, "only {} bad specs", files.len());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = expectations(&text);
        assert!(!expected.is_empty(), "{name} has no `# expect:` header");
        let out = marketflow()
            .current_dir(file.parent().unwrap())
            .args(["validate", &name])
            .env_remove("MARKETFLOW_SURELY_UNSET_VARIABLE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let blocks = error_blocks(&stderr);
        for (line, message) in expected {
            let prefix = format!("error: {name}:{line}:");
            assert!(
                blocks
                    .iter()
                    .any(|b| b.starts_with(&prefix) && b.contains(&message)),
                "{name}: no error at line {line} saying {message:?} in:\n{stderr}"
            );
        }
    }
}

/// Specs that parse as far as they go: every prefix of every fixture and of the demo, and
/// seeded random edits of them. Loading returns a pipeline or errors; it never panics.
#[test]
fn truncated_and_mutated_yaml_never_panics() {
    let mut texts: Vec<String> = bad_specs()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    texts.push(marketflow::DEMO_PIPELINE.to_owned());
    let env = |name: &str| (name == "HOME").then(|| "/tmp".to_owned());
    let mut checked = 0;
    for text in &texts {
        for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let _ = marketflow::spec::load_str("t.yaml", &text[..end], &env);
            checked += 1;
        }
    }
    let pieces = [
        "{", "}", "[", "]", ":", "- ", "\n", "  ", "\t", "'", "\"", "&a", "*a", "!!str ", "${X}",
        "${", "#", "|", ">", "?", ",", "0", "-1", "1e999", "nan", "~", "type", "from", "bars",
        "1m", "é", "\u{0}",
    ];
    let mut rng = Lcg(99);
    for round in 0..3_000 {
        let base = &texts[round % texts.len()];
        let mut text: Vec<char> = base.chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(text.len() as u64 + 1) as usize;
            match rng.below(3) {
                0 if at < text.len() => {
                    text.remove(at);
                }
                _ => {
                    let piece = pieces[rng.below(pieces.len() as u64) as usize];
                    for (i, c) in piece.chars().enumerate() {
                        text.insert(at + i, c);
                    }
                }
            }
        }
        let text: String = text.into_iter().collect();
        let _ = marketflow::spec::load_str("t.yaml", &text, &env);
        checked += 1;
    }
    for _ in 0..2_000 {
        let len = rng.below(200) as usize;
        let text: String = (0..len)
            .map(|_| pieces[rng.below(pieces.len() as u64) as usize])
            .collect();
        let _ = marketflow::spec::load_str("t.yaml", &text, &env);
        checked += 1;
    }
    assert!(checked > 5_000);
}

#[test]
fn malformed_rows_are_dead_lettered_with_line_numbers_and_good_rows_kept() {
    let dir = scratch();
    write(
        dir.path(),
        "ticks.csv",
        "ts,symbol,price,volume\n\
         2024-01-02T14:30:01Z,AAPL,100,5\n\
         2024-01-02T14:30:02Z,AAPL,1O1,5\n\
         2024-01-02T14:30:03Z,AAPL,102\n\
         2024-01-02T14:30:04Z,AAPL,NaN,5\n\
         2024-01-02T14:30:05Z,AAPL,-3,5\n\
         02/01/2024 14:30:06,AAPL,104,5\n\
         1704205807000,AAPL,105,5\n\
         2024-01-02T14:30:08Z,,106,5\n\
         2024-01-02T14:30:09Z,AAPL,107,abc\n\
         2024-01-02T14:30:10Z,AAPL,99,7\n",
    );
    write(
        dir.path(),
        "p.yaml",
        "pipeline: t\nsources:\n  ticks: {type: file, path: ticks.csv}\noperators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\nsinks:\n  out: {type: file, from: bars_1m, path: out.jsonl}\ndead_letter: {path: dead.jsonl}\n",
    );
    run_ok(dir.path(), &["run", "p.yaml"]);

    let bars: Vec<Value> = sorted_lines(&dir.path().join("out.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bars.len(), 1);
    let bar = &bars[0];
    assert_eq!(bar["trades"], 3, "{bar}");
    assert_eq!(bar["open"], 100.0);
    assert_eq!(bar["high"], 105.0);
    assert_eq!(bar["low"], 99.0);
    assert_eq!(bar["close"], 99.0);
    assert_eq!(bar["volume"], 17.0);

    let dead: Vec<Value> = sorted_lines(&dir.path().join("dead.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut lines: Vec<u64> = dead.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    lines.sort_unstable();
    assert_eq!(lines, [3, 4, 5, 6, 7, 9, 10], "{dead:#?}");
    for d in &dead {
        assert_eq!(d["reason"], "malformed", "{d}");
        assert!(
            !d["detail"].as_str().unwrap_or_default().is_empty(),
            "no detail: {d}"
        );
    }
    let detail = |line: u64| {
        dead.iter()
            .find(|d| d["line"] == line)
            .map(|d| d["detail"].as_str().unwrap().to_lowercase())
            .unwrap()
    };
    assert!(detail(3).contains("1o1"), "{}", detail(3));
    assert!(detail(5).contains("nan"), "{}", detail(5));
    assert!(detail(6).contains("-3"), "{}", detail(6));
    assert!(detail(7).contains("02/01/2024"), "{}", detail(7));
}

#[test]
fn deeply_nested_block_collections_are_refused_with_their_line() {
    let dir = scratch();
    // 20,000 nested block sequences on one line, and 5,000 over as many lines.
    let one_line = format!("{}x\n", "- ".repeat(20_000));
    let mut many_lines = String::from("pipeline: deep\nsources:\n");
    for depth in 1..=5_000 {
        many_lines.push_str(&" ".repeat(depth));
        many_lines.push_str("-\n");
    }
    for (name, text, line) in [("line.yaml", one_line, 1), ("lines.yaml", many_lines, 66)] {
        write(dir.path(), name, &text);
        let out = run_in(dir.path(), &["validate", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}:{line}:"))
                && stderr.contains("nested deeper than 64 levels"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn an_over_long_line_is_dead_lettered_and_the_lines_around_it_are_kept() {
    let dir = scratch();
    let tick = |second: u32| {
        format!(
            r#"{{"type":"tick","symbol":"AAPL","ts":"2024-01-02T14:30:{second:02}Z","price":100,"volume":1}}"#
        )
    };
    // Line 3 is 5 MB without a newline until its end; the file also ends in a 3 MB line.
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        tick(1),
        tick(2),
        "x".repeat(5 << 20),
        tick(3),
        tick(4),
        "y".repeat(3 << 20)
    );
    write(dir.path(), "ticks.jsonl", &text);
    write(
        dir.path(),
        "p.yaml",
        "pipeline: t\nsources:\n  ticks: {type: file, path: ticks.jsonl}\noperators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\nsinks:\n  out: {type: file, from: bars_1m, path: out.jsonl}\ndead_letter: {path: dead.jsonl}\n",
    );
    run_ok(dir.path(), &["run", "p.yaml"]);
    let bars = sorted_lines(&dir.path().join("out.jsonl"));
    let bar: Value = serde_json::from_str(&bars[0]).unwrap();
    assert_eq!(
        bar["trades"], 4,
        "the four good ticks around the long lines: {bar}"
    );
    let dead: Vec<Value> = sorted_lines(&dir.path().join("dead.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut long: Vec<u64> = dead
        .iter()
        .filter(|d| d["reason"] == "line_too_long")
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    long.sort_unstable();
    assert_eq!(long, [3, 6], "{dead:?}");
    assert!(dead.iter().all(|d| d["raw"].as_str().unwrap().len() <= 256));
}

#[test]
fn errors_about_interpolated_values_name_the_variable_never_its_value() {
    let dir = scratch();
    write(
        dir.path(),
        "p.yaml",
        "pipeline: secrets\nsources:\n  ticks: {type: synthetic, symbols: [\"${MF_SECRET_SYMBOL}\"], count: 10}\nsinks:\n  store: {type: sqlite, from: ticks, path: db.sqlite}\nserver:\n  listen: \"${MF_SECRET_LISTEN}\"\n  store: store\n",
    );
    let out = marketflow()
        .current_dir(dir.path())
        .args(["validate", "p.yaml"])
        .env("MF_SECRET_SYMBOL", "hunter2 x")
        .env("MF_SECRET_LISTEN", "s3cr3t-pass")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("s3cr3t"),
        "a secret reached the message:\n{stderr}"
    );
    assert!(
        stderr.contains("p.yaml:3:") && stderr.contains("${MF_SECRET_SYMBOL}"),
        "{stderr}"
    );
    assert!(
        stderr.contains("p.yaml:7:") && stderr.contains("${MF_SECRET_LISTEN}"),
        "{stderr}"
    );
}

#[test]
fn validation_is_linear_in_the_size_of_the_file() {
    // A map of 400,000 keys and 50,000 chained operators: quadratic checks (duplicate keys
    // found by scanning, cycles searched from every operator) took minutes here.
    let dir = scratch();
    let mut big_map = String::from(
        "pipeline: big\nsources:\n  t: {type: synthetic, symbols: [A], count: 1}\nextra:\n",
    );
    for i in 0..400_000 {
        big_map.push_str(&format!("  k{i}: {i}\n"));
    }
    let mut chain = String::from(
        "pipeline: chain\nsources:\n  t: {type: synthetic, symbols: [A], count: 1}\noperators:\n  b0: {type: bars, from: t, interval: 1m}\n",
    );
    for i in 1..50_000 {
        chain.push_str(&format!(
            "  b{i}: {{type: bars, from: b{}, interval: 1m}}\n",
            i - 1
        ));
    }
    for (name, text, expected) in [
        ("map.yaml", big_map, "unknown key `extra`"),
        (
            "chain.yaml",
            chain,
            "cannot build 1m bars from the 1m bars of `b0`",
        ),
    ] {
        write(dir.path(), name, &text);
        let child = marketflow()
            .current_dir(dir.path())
            .args(["validate", name])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let _deadline = watchdog(
            pid,
            std::time::Duration::from_secs(60),
            "validate to finish",
        );
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}",
            &stderr[..stderr.len().min(2000)]
        );
        assert!(
            stderr.contains(expected),
            "{name}: {}",
            &stderr[..stderr.len().min(2000)]
        );
    }
}

/// Every wrong value of a component is reported, not only the first: five type errors and
/// the two range checks of the keys that could be read.
#[test]
fn every_wrong_value_of_a_component_is_reported() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-specs");
    let out = marketflow()
        .current_dir(&dir)
        .args(["validate", "22-several-bad-values.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors = error_blocks(&stderr);
    assert_eq!(errors.len(), 7, "{stderr}");
    assert!(stderr.contains("sources.ticks.rate: rate -1"), "{stderr}");
    assert!(stderr.contains("sources.ticks.volatility"), "{stderr}");
}

/// A file that is not UTF-8 is an invalid pipeline (exit 2) with the line of the first bad
/// byte, not an I/O error.
#[test]
fn a_file_that_is_not_utf8_names_the_line() {
    let dir = scratch();
    let mut bytes =
        b"pipeline: t\nsources:\n  s: {type: synthetic, symbols: [A], count: 1}\n# ".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\nsinks:\n  o: {type: stdout, from: s}\n");
    std::fs::write(dir.path().join("p.yaml"), bytes).unwrap();
    let out = run_in(dir.path(), &["validate", "p.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: p.yaml:4:3: "), "{stderr}");
    assert!(stderr.contains("not UTF-8"), "{stderr}");
}

/// Values `run` could not honour are refused by `validate`, with their line: a disorder
/// buffer of millions of days, a rate whose ticks never come, a start before 1970, a price
/// that overflows.
#[test]
fn values_run_cannot_honour_are_refused() {
    let dir = scratch();
    for (extra, key) in [
        ("disorder: 999999999d, max_delay: 1s", "disorder"),
        ("rate: 1e-300", "rate"),
        ("start: now-99999999d", "start"),
        ("prices: {A: 1e308}", "prices.A"),
        ("duration: 99999999d", "duration"),
    ] {
        write(
            dir.path(),
            "p.yaml",
            &format!(
                "pipeline: t\nsources:\n  s: {{type: synthetic, symbols: [A], count: 10, {extra}}}\n\
                 sinks:\n  o: {{type: stdout, from: s}}\n"
            ),
        );
        let out = run_in(dir.path(), &["validate", "p.yaml"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {stderr}");
        assert!(
            stderr.starts_with("error: p.yaml:3:") && stderr.contains(&format!("sources.s.{key}")),
            "{extra}: {stderr}"
        );
    }
}

/// Durations of every source are read within what a run can honour, with their line.
#[test]
fn source_durations_are_bounded() {
    let dir = scratch();
    for (source, key) in [
        ("{type: file, path: t.csv, max_delay: 99999d}", "max_delay"),
        (
            "{type: file, path: t.csv, idle_timeout: 99999d}",
            "idle_timeout",
        ),
        (
            "{type: kafka, brokers: b, topic: t, max_delay: 99999d}",
            "max_delay",
        ),
        (
            "{type: twelvedata, symbols: [A], api_key: k, silence_timeout: 0s}",
            "silence_timeout",
        ),
        (
            "{type: yahoo, symbols: [A], idle_timeout: 99999d}",
            "idle_timeout",
        ),
    ] {
        write(
            dir.path(),
            "p.yaml",
            &format!(
                "pipeline: t\nsources:\n  s: {source}\nsinks:\n  o: {{type: stdout, from: s}}\n"
            ),
        );
        let out = run_in(dir.path(), &["validate", "p.yaml"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{source}: {stderr}");
        assert!(
            stderr.starts_with("error: p.yaml:3:")
                && stderr.contains(&format!("sources.s.{key}: must be between")),
            "{source}: {stderr}"
        );
    }
}

/// What one `validate` run cost: its exit code, stderr, wall time, CPU time and peak RSS.
struct Measured {
    code: Option<i32>,
    stderr: String,
    wall: std::time::Duration,
    cpu: std::time::Duration,
    peak_rss: u64,
}

/// Runs `marketflow validate NAME` in `dir`, reaping it with `wait4` for its resource use.
fn validate_measured(dir: &Path, name: &str) -> Measured {
    measured(dir, &["validate", name])
}

/// Runs `marketflow ARGS` in `dir`, reaping it with `wait4` for its resource use.
fn measured(dir: &Path, args: &[&str]) -> Measured {
    use std::io::Read as _;
    let started = std::time::Instant::now();
    // Reaped below by wait4 (for its resource use), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let mut child = marketflow()
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _deadline = watchdog(
        pid,
        std::time::Duration::from_secs(60),
        "validate to finish",
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value, and wait4 reaps our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid as libc::pid_t, "wait4 on marketflow {args:?}");
    let time = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stderr,
        wall: started.elapsed(),
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        peak_rss: usage.ru_maxrss as u64 * 1024,
    }
}

/// Every hostile class of pipeline file (hardening issue: alias bombs, deep nesting in
/// flow and block style, huge maps and operator chains, many bad values, numbers out of
/// range, bytes that are not UTF-8) is refused with exit 2 and a positioned error, in a
/// bounded amount of memory (asserted: under 200 MB) and time (printed; each run also has a
/// 60 s deadline).
#[test]
fn hostile_specs_are_refused_with_a_position_in_bounded_memory() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-specs");
    let dir = scratch();
    for name in [
        "20-alias-bomb.yaml",
        "21-deep-flow-nesting.yaml",
        "22-several-bad-values.yaml",
        "23-numbers-out-of-range.yaml",
        "24-kafka-sink-out-of-range.yaml",
    ] {
        std::fs::copy(fixtures.join(name), dir.path().join(name)).unwrap();
    }
    write(
        dir.path(),
        "deep-block.yaml",
        &format!("{}x\n", "- ".repeat(20_000)),
    );
    write(
        dir.path(),
        "deep-flow.yaml",
        &format!("a: {}\n", "[".repeat(20_000)),
    );
    let mut map = String::from(
        "pipeline: big\nsources:\n  t: {type: synthetic, symbols: [A], count: 1}\nextra:\n",
    );
    for i in 0..400_000 {
        map.push_str(&format!("  k{i}: {i}\n"));
    }
    write(dir.path(), "huge-map.yaml", &map);
    let mut chain = String::from("pipeline: chain\nsources:\n  t: {type: synthetic, symbols: [A], count: 1}\noperators:\n  b0: {type: bars, from: t, interval: 1m}\n");
    for i in 1..50_000 {
        chain.push_str(&format!(
            "  b{i}: {{type: bars, from: b{}, interval: 1m}}\n",
            i - 1
        ));
    }
    write(dir.path(), "long-chain.yaml", &chain);
    let mut bytes = b"pipeline: t\n# ".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    std::fs::write(dir.path().join("not-utf8.yaml"), bytes).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let m = validate_measured(dir.path(), &name);
        println!(
            "validate {name}: exit {:?}, {:.0?} wall, {:.0?} CPU, peak RSS {:.1} MB",
            m.code,
            m.wall,
            m.cpu,
            m.peak_rss as f64 / 1048576.0
        );
        let head = &m.stderr[..m.stderr.len().min(500)];
        assert_eq!(m.code, Some(2), "{name}: {head}");
        assert!(
            m.stderr.starts_with(&format!("error: {name}:")),
            "{name}: the first error has no position: {head}"
        );
        assert!(
            m.peak_rss < 200 << 20,
            "{name}: validate used {} MB",
            m.peak_rss >> 20
        );
    }
}

/// Class 9 of the hardening issue: a stream of 256 MB without a newline (a FIFO, as
/// `/dev/zero` would be) is read in bounded memory; the over-long line is dead-lettered and
/// the tick after it kept.
#[test]
fn a_stream_without_newlines_is_read_in_bounded_memory() {
    use std::io::Write as _;
    let dir = scratch();
    let fifo = fifo(dir.path(), "ticks.fifo");
    write(
        dir.path(),
        "p.yaml",
        "pipeline: t\nsources:\n  ticks: {type: file, path: ticks.fifo, format: jsonl}\noperators:\n  bars_1m: {type: bars, from: ticks, interval: 1m}\nsinks:\n  out: {type: file, from: bars_1m, path: out.jsonl}\ndead_letter: {path: dead.jsonl}\n",
    );
    let writer = std::thread::spawn(move || {
        let mut fifo = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        let block = vec![b'x'; 1 << 20];
        for _ in 0..256 {
            fifo.write_all(&block).unwrap();
        }
        fifo.write_all(b"\n{\"type\":\"tick\",\"symbol\":\"AAPL\",\"ts\":\"2024-01-02T14:30:01Z\",\"price\":100,\"volume\":1}\n")
            .unwrap();
    });
    let m = measured(dir.path(), &["run", "p.yaml"]);
    writer.join().unwrap();
    println!(
        "256 MB without a newline: exit {:?}, {:.1?}, peak RSS {:.1} MB",
        m.code,
        m.wall,
        m.peak_rss as f64 / 1048576.0
    );
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    assert!(
        m.peak_rss < 100 << 20,
        "the run used {} MB",
        m.peak_rss >> 20
    );
    let dead = sorted_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("line_too_long"), "{}", dead[0]);
    let bars = sorted_lines(&dir.path().join("out.jsonl"));
    assert!(
        bars.len() == 1 && bars[0].contains("\"trades\":1"),
        "{bars:?}"
    );
}
