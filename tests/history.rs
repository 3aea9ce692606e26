//! The history sources (`twelvedata_history`, `alphavantage`, `yahoo_history`) and
//! `marketflow backfill` against an offline fake of the providers' REST APIs
//! (tests/support/rest.rs): every fixture bar stored once at its UTC time across a DST
//! change, a holiday and an early close; a second run changes nothing; an interrupted
//! backfill resumes with only the missing pages; 429 bursts, in-body errors and a credit
//! limit lose nothing and never exceed the credits per minute.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use support::rest::{daily_bars, equity_bars, FakeRest, FixtureBar, Scripted, Series, DAY, MINUTE};
use support::{marketflow, scratch, write};

const KEY: &str = "hist-key-5521";

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// 30 days of 5-minute bars around the end of US daylight saving time (2 November 2025),
/// with Thanksgiving (27 November) closed and 28 November closing at 13:00.
fn november(seed: u64) -> Vec<FixtureBar> {
    equity_bars(
        seed,
        date(2025, 10, 30),
        date(2025, 11, 28),
        &[date(2025, 11, 27)],
        &[date(2025, 11, 28)],
        5,
    )
}

fn symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("SYM{i}")).collect()
}

fn serve_november(fake: &FakeRest, symbols: &[String]) -> BTreeMap<String, Vec<FixtureBar>> {
    let mut all = BTreeMap::new();
    for (i, s) in symbols.iter().enumerate() {
        let bars = november(i as u64 + 1);
        fake.add(
            s,
            Series {
                timezone: chrono_tz::America::New_York,
                interval: 5 * MINUTE,
                bars: bars.clone(),
            },
        );
        all.insert(s.clone(), bars);
    }
    all
}

fn td_pipeline(url: &str, symbols: &[String], extra: &str) -> String {
    format!(
        "pipeline: history\n\
         sources:\n  history_5m:\n    type: twelvedata_history\n    symbols: [{}]\n    \
         interval: 5m\n    start: 2025-10-30\n    end: 2025-11-29\n    api_key: \"${{TD_KEY}}\"\n    \
         url: \"{url}\"\n{extra}\
         sinks:\n  store: {{type: sqlite, from: [history_5m], path: store.db}}\n\
         dead_letter: {{path: dead.jsonl}}\n",
        symbols.join(", ")
    )
}

fn backfill(dir: &Path, args: &[&str]) -> String {
    let out = marketflow()
        .current_dir(dir)
        .arg("backfill")
        .args(args)
        .env("TD_KEY", KEY)
        .output()
        .expect("marketflow runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "marketflow backfill {args:?} failed ({}):\n{stderr}",
        out.status
    );
    assert!(!stderr.contains(KEY), "the key reached the log:\n{stderr}");
    // Its summary on stdout, then the progress lines (stderr is not a terminal here).
    format!("{}{stderr}", String::from_utf8_lossy(&out.stdout))
}

/// Stored bars by symbol: (start, open, high, low, close, volume).
type Stored = BTreeMap<String, Vec<(i64, f64, f64, f64, f64, f64)>>;

fn stored(path: &Path) -> Stored {
    let conn = rusqlite::Connection::open(path).expect("open the store");
    let mut q = conn
        .prepare("SELECT symbol, ts, open, high, low, close, volume FROM intraday_ohlcv WHERE interval = '5m' ORDER BY symbol, ts")
        .unwrap();
    let mut out: Stored = BTreeMap::new();
    let rows = q
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ),
            ))
        })
        .unwrap();
    for row in rows {
        let (symbol, bar) = row.unwrap();
        out.entry(symbol).or_default().push(bar);
    }
    out
}

fn expected(fixtures: &BTreeMap<String, Vec<FixtureBar>>) -> Stored {
    fixtures
        .iter()
        .map(|(s, bars)| {
            (
                s.clone(),
                bars.iter()
                    .map(|b| (b.start, b.open, b.high, b.low, b.close, b.volume as f64))
                    .collect(),
            )
        })
        .collect()
}

/// Asserts the store holds exactly the fixture, naming the first difference.
fn assert_same(have: &Stored, want: &Stored) {
    assert_eq!(
        have.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "symbols stored"
    );
    for (symbol, bars) in want {
        let got = &have[symbol];
        for (i, (g, w)) in got.iter().zip(bars).enumerate() {
            assert_eq!(g, w, "{symbol}: bar {i} differs");
        }
        assert_eq!(got.len(), bars.len(), "{symbol}: bars stored");
    }
}

#[test]
fn thirty_days_for_ten_symbols_are_stored_once_at_their_utc_times() {
    let fake = FakeRest::start(KEY);
    let symbols = symbols(10);
    let fixtures = serve_november(&fake, &symbols);
    let dir = scratch();
    write(
        dir.path(),
        "history.yaml",
        &td_pipeline(&fake.url(), &symbols, "    credits_per_minute: 10000\n"),
    );
    let out = backfill(dir.path(), &["history.yaml"]);
    let want = expected(&fixtures);
    let first = stored(&dir.path().join("store.db"));
    assert_same(&first, &want);
    let bars: usize = want.values().map(Vec::len).sum();
    assert!(out.contains(&format!("{bars} bars")), "summary: {out}");

    // A summer (EDT) and a winter (EST) session open land on their UTC instants.
    let opens: Vec<i64> = first["SYM0"].iter().map(|b| b.0).collect();
    let utc = |y, m, d, h| {
        date(y, m, d)
            .and_hms_opt(h, 30, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    };
    assert!(
        opens.contains(&utc(2025, 10, 31, 13)),
        "09:30 EDT is 13:30Z"
    );
    assert!(opens.contains(&utc(2025, 11, 3, 14)), "09:30 EST is 14:30Z");
    assert!(!opens.contains(&utc(2025, 11, 3, 13)));
    // Thanksgiving is empty; the early close ends at 13:00 EST (18:00Z).
    let day = |d: u32| {
        let start = date(2025, 11, d)
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        opens
            .iter()
            .filter(|t| **t >= start && **t < start + DAY)
            .count()
    };
    assert_eq!(day(27), 0);
    assert_eq!(day(28), 42, "09:30 to 13:00 is 42 bars");
    assert_eq!(day(26), 78);
    // Progress: a line per symbol when it is done, and a total at the end.
    for s in &symbols {
        assert!(
            out.contains(&format!("backfill history_5m {s}: done, ")),
            "{out}"
        );
    }
    assert!(
        out.contains(&format!("pages, {bars} bars, 10/10 symbols done")),
        "{out}"
    );
    println!("first run: {}", out.lines().next().unwrap_or_default());
    println!(
        "requests: {}, positions {:?}",
        fake.log().len(),
        positions(&dir.path().join("store.db"))
    );

    // Again: the saved positions say everything is stored; nothing is asked or changed.
    let before = fake.log().len();
    let again = backfill(dir.path(), &["history.yaml"]);
    assert_eq!(fake.log().len(), before, "a second run asks for nothing");
    assert_eq!(stored(&dir.path().join("store.db")), first);
    println!("second run: {}", again.lines().next().unwrap_or_default());

    // And with every page fetched again, the upserts change nothing either.
    backfill(dir.path(), &["history.yaml", "--restart"]);
    assert!(fake.log().len() > before, "--restart asks again");
    assert_eq!(stored(&dir.path().join("store.db")), first);
}

#[test]
fn an_interrupted_backfill_resumes_with_only_the_missing_pages() {
    let fake = FakeRest::start(KEY);
    let symbols = symbols(4);
    let fixtures = serve_november(&fake, &symbols);
    // Small pages so that each symbol takes several: 300 rows, about 4 trading days.
    let extra = "    credits_per_minute: 10000\n    page_size: 300\n";
    let dir = scratch();
    write(
        dir.path(),
        "history.yaml",
        &td_pipeline(&fake.url(), &symbols, extra),
    );
    // One clean run elsewhere: the pages a whole backfill asks for.
    let whole = scratch();
    write(
        whole.path(),
        "history.yaml",
        &td_pipeline(&fake.url(), &symbols, extra),
    );
    backfill(whole.path(), &["history.yaml"]);
    let all_pages = fake.pages().len();
    let reference = stored(&whole.path().join("store.db"));
    assert_same(&reference, &expected(&fixtures));

    // The interrupted run: the server stops answering after half the pages, then the
    // process is killed outright.
    let served_before = fake.log().len();
    fake.hang_after(served_before + all_pages / 2);
    let mut child = marketflow()
        .current_dir(dir.path())
        .args(["backfill", "history.yaml"])
        .env("TD_KEY", KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("interrupted.log")).unwrap())
        .spawn()
        .expect("marketflow starts");
    let started = Instant::now();
    let db = dir.path().join("store.db");
    // Wait until every symbol waits on an unanswered page and the positions the sinks
    // acknowledged are kept: those the model below predicts, or (when a page had to be asked
    // again, which the model cannot see) at least a position for every symbol.
    loop {
        let log = fake.log()[served_before..].to_vec();
        let waiting: std::collections::BTreeSet<&str> = log
            .iter()
            .filter(|l| l.status == 0)
            .map(|l| l.query["symbol"].as_str())
            .collect();
        let want = acknowledged(&log, &symbols);
        let kept = positions(&db);
        let all_kept = kept.len() == symbols.len();
        let asked_again = log.iter().filter(|l| l.status == 0).count() > symbols.len();
        if waiting.len() == symbols.len() && (kept == want || (all_kept && asked_again)) {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let log =
                std::fs::read_to_string(dir.path().join("interrupted.log")).unwrap_or_default();
            panic!(
                "waited 90s for every symbol to wait on the server ({} of {}) and the positions {want:?} to be kept (have {kept:?}); its log ends:\n{}",
                waiting.len(),
                symbols.len(),
                &log[log.len().saturating_sub(3000)..]
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let kept = positions(&db);
    fake.hang_after(usize::MAX);
    let resumed_from = fake.log().len();
    backfill(dir.path(), &["history.yaml"]);
    let second: Vec<_> = fake.log()[resumed_from..].to_vec();
    // The second run asked only for what lies after each symbol's kept position.
    for request in &second {
        let symbol = &request.query["symbol"];
        let start = td_local(&request.query["start_date"]);
        let position = kept
            .get(&format!("twelvedata_history {symbol} 5m"))
            .copied()
            .unwrap_or(0);
        assert!(
            start >= position,
            "{symbol}: asked again from {} though {} was stored",
            request.query["start_date"],
            position
        );
    }
    assert!(
        second.len() < all_pages,
        "the second run asked for {} of {all_pages} pages",
        second.len()
    );
    println!(
        "whole run: {all_pages} pages; interrupted run stored up to {kept:?}; resumed run: {} pages",
        second.len()
    );
    assert_same(&stored(&db), &expected(&fixtures));
}

/// The positions the sinks acknowledge once every symbol waits on the server. A page goes
/// into the dataflow at its symbol's watermark then (the end of its previous page, 0 for the
/// first) and is acknowledged once the pipeline's watermark, the least of the symbols'
/// (each at the end of its last answered page), has passed that.
fn acknowledged(log: &[support::rest::Logged], symbols: &[String]) -> BTreeMap<String, i64> {
    let mut pages: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for l in log.iter().filter(|l| l.status == 200) {
        let page = (
            td_local(&l.query["start_date"]),
            td_local(&l.query["end_date"]),
        );
        let asked = pages.entry(l.query["symbol"].as_str()).or_default();
        // A page asked again from the same start was full and split: it gave nothing.
        if asked.last().is_some_and(|last| last.0 == page.0) {
            asked.pop();
        }
        asked.push(page);
    }
    let ends: BTreeMap<&str, Vec<i64>> = pages
        .into_iter()
        .map(|(s, p)| (s, p.into_iter().map(|(_, end)| end).collect()))
        .collect();
    let frontier = symbols
        .iter()
        .map(|s| {
            ends.get(s.as_str())
                .and_then(|e| e.last().copied())
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(0);
    let mut kept = BTreeMap::new();
    for (symbol, ends) in &ends {
        let mut sent_at = 0;
        for end in ends {
            if sent_at < frontier {
                kept.insert(format!("twelvedata_history {symbol} 5m"), *end);
            }
            sent_at = *end;
        }
    }
    kept
}

/// A TwelveData bound (New York wall time) as UTC ms.
fn td_local(text: &str) -> i64 {
    let t = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap())
        })
        .expect("a TwelveData bound");
    support::rest::utc(chrono_tz::America::New_York, t)
}

fn positions(db: &Path) -> BTreeMap<String, i64> {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return BTreeMap::new();
    };
    let Ok(mut q) = conn.prepare("SELECT key, position FROM marketflow_positions") else {
        return BTreeMap::new();
    };
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

#[test]
fn rate_limits_and_credits_lose_nothing_and_are_respected() {
    let fake = FakeRest::start(KEY);
    let symbols = symbols(3);
    let fixtures = serve_november(&fake, &symbols);
    // A burst of 429s (HTTP status), then one in the body of an HTTP 200, then an
    // in-body server error: each page is asked again, none lost or stored twice.
    fake.queue(vec![
        Scripted::twelvedata_429(),
        Scripted::twelvedata_429(),
        Scripted::twelvedata_429_in_body(),
    ]);
    fake.fault_at(
        6,
        Scripted::json(
            200,
            serde_json::json!({"code": 500, "status": "error", "message": "Internal server error"}),
        ),
    );
    fake.fault_at(
        7,
        Scripted {
            status: 502,
            content_type: "text/html",
            body: "<html>Bad gateway</html>".into(),
        },
    );
    // The fake enforces its own limit above the client's, so an overspending client would
    // see extra 429s; the client must stay within its 8 credits.
    fake.enforce_credits(9);
    let dir = scratch();
    let extra = "    credits_per_minute: 8\n    page_size: 1000\n";
    write(
        dir.path(),
        "history.yaml",
        &td_pipeline(&fake.url(), &symbols, extra),
    );
    let started = Instant::now();
    backfill(dir.path(), &["history.yaml"]);
    let log = fake.log();
    let limited = log
        .iter()
        .filter(|l| l.status == 429 || l.status == 299)
        .count();
    println!(
        "{} requests ({} rate limited or in-body errors) in {:.0}s; at most {} in any minute",
        log.len(),
        limited,
        started.elapsed().as_secs_f64(),
        fake.max_per_minute()
    );
    assert!(
        fake.max_per_minute() <= 8,
        "more than 8 requests in a minute"
    );
    assert!(log.len() > 8, "the run needed more than a minute's credits");
    assert_same(&stored(&dir.path().join("store.db")), &expected(&fixtures));
}

#[test]
fn refused_keys_and_unknown_symbols_stop_with_the_symbol_and_range() {
    let fake = FakeRest::start(KEY);
    let symbols = vec!["NOPE".to_owned()];
    let dir = scratch();
    write(
        dir.path(),
        "history.yaml",
        &td_pipeline(&fake.url(), &symbols, ""),
    );
    let out = marketflow()
        .current_dir(dir.path())
        .args(["backfill", "history.yaml"])
        .env("TD_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("NOPE 2025-10-30T00:00:00Z to"), "{stderr}");
    assert!(stderr.contains("symbol"), "{stderr}");
    let out = marketflow()
        .current_dir(dir.path())
        .args(["backfill", "history.yaml"])
        .env("TD_KEY", "wrong-key-123")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("error 401"), "{stderr}");
    assert!(
        !stderr.contains("wrong-key-123"),
        "the key reached the log:\n{stderr}"
    );
}

#[test]
fn daily_bars_are_labelled_with_their_session_date() {
    let fake = FakeRest::start(KEY);
    let bars = daily_bars(
        3,
        date(2005, 1, 3),
        date(2025, 11, 28),
        &[date(2025, 11, 27)],
    );
    fake.add(
        "DLY",
        Series {
            timezone: chrono_tz::America::New_York,
            interval: DAY,
            bars: bars.clone(),
        },
    );
    let dir = scratch();
    let yaml = format!(
        "pipeline: daily\n\
         sources:\n  history_1d: {{type: twelvedata_history, symbols: [DLY], interval: 1d, start: 2005-01-01, end: 2025-11-29, api_key: \"${{TD_KEY}}\", url: \"{}\", credits_per_minute: 1000}}\n\
         sinks:\n  store: {{type: sqlite, from: [history_1d], path: store.db}}\n",
        fake.url()
    );
    write(dir.path(), "daily.yaml", &yaml);
    backfill(dir.path(), &["daily.yaml"]);
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let got: Vec<(i64, f64)> = conn
        .prepare("SELECT ts, close FROM historical_ohlcv WHERE symbol = 'DLY' ORDER BY ts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<(i64, f64)> = bars.iter().map(|b| (b.start, b.close)).collect();
    assert_eq!(got.len(), want.len(), "20 years of daily bars");
    assert_eq!(got, want);
    println!("{} daily bars in {} requests", got.len(), fake.log().len());

    // With a session, each daily bar spans its session (09:30 to 16:00 New York, 13:00 on
    // an early close): 14:30Z in winter, 13:30Z in summer.
    let yaml = yaml
        .replace("pipeline: daily", "pipeline: daily_session")
        .replace("credits_per_minute: 1000}", "credits_per_minute: 1000, session: {timezone: America/New_York, open: \"09:30\", close: \"16:00\", early_closes: {2025-11-28: \"13:00\"}}}")
        .replace("store.db", "session.db");
    write(dir.path(), "session.yaml", &yaml);
    backfill(dir.path(), &["session.yaml"]);
    let conn = rusqlite::Connection::open(dir.path().join("session.db")).unwrap();
    let span =
        |d: NaiveDate| -> (i64, i64) {
            conn.query_row(
            "SELECT ts, end_ts FROM historical_ohlcv WHERE symbol = 'DLY' AND ts >= ?1 AND ts < ?2",
            [support::rest::date_label(d), support::rest::date_label(d) + DAY],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
        };
    let at =
        |d: NaiveDate, h: u32, m: u32| d.and_hms_opt(h, m, 0).unwrap().and_utc().timestamp_millis();
    assert_eq!(
        span(date(2025, 1, 15)),
        (at(date(2025, 1, 15), 14, 30), at(date(2025, 1, 15), 21, 0))
    );
    assert_eq!(
        span(date(2025, 7, 15)),
        (at(date(2025, 7, 15), 13, 30), at(date(2025, 7, 15), 20, 0))
    );
    assert_eq!(
        span(date(2025, 11, 28)),
        (
            at(date(2025, 11, 28), 14, 30),
            at(date(2025, 11, 28), 18, 0)
        )
    );
}

#[test]
fn alpha_vantage_daily_bars_with_a_rate_limit_note() {
    let fake = FakeRest::start(KEY);
    let holidays = [date(2024, 12, 25), date(2025, 1, 1), date(2025, 11, 27)];
    let a = daily_bars(11, date(2005, 1, 3), date(2025, 11, 28), &holidays);
    let b = daily_bars(12, date(2010, 6, 1), date(2025, 11, 28), &holidays);
    for (s, bars) in [("AAA", &a), ("BBB", &b)] {
        fake.add(
            s,
            Series {
                timezone: chrono_tz::America::New_York,
                interval: DAY,
                bars: bars.clone(),
            },
        );
    }
    // The old wording of the per-minute limit, under "Note" with HTTP 200.
    fake.queue(vec![Scripted::json(
        200,
        serde_json::json!({"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day."}),
    )]);
    let dir = scratch();
    let yaml = format!(
        "pipeline: av\n\
         sources:\n  daily: {{type: alphavantage, symbols: [AAA, BBB], end: 2025-11-29, api_key: \"${{TD_KEY}}\", url: \"{}\"}}\n\
         sinks:\n  store: {{type: sqlite, from: [daily], path: store.db}}\n",
        fake.url()
    );
    write(dir.path(), "av.yaml", &yaml);
    backfill(dir.path(), &["av.yaml"]);
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    for (s, bars) in [("AAA", &a), ("BBB", &b)] {
        let got: Vec<(i64, f64, f64)> = conn
            .prepare("SELECT ts, close, volume FROM historical_ohlcv WHERE symbol = ?1 ORDER BY ts")
            .unwrap()
            .query_map([s], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want: Vec<(i64, f64, f64)> = bars
            .iter()
            .map(|b| (b.start, b.close, b.volume as f64))
            .collect();
        assert_eq!(got, want, "{s}");
    }
    let log = fake.log();
    assert_eq!(
        log.len(),
        3,
        "one page per symbol and the one retried after the note"
    );
    assert!(log.iter().all(|l| l.query["outputsize"] == "full"));

    // The daily limit ends the run with the provider's words.
    fake.queue(vec![Scripted::json(
        200,
        serde_json::json!({"Information": "We have detected your API key as XYZ and our standard API rate limit is 25 requests per day."}),
    )]);
    let out = marketflow()
        .current_dir(dir.path())
        .args(["backfill", "av.yaml", "--restart", "--symbols", "AAA"])
        .env("TD_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("daily request limit") && stderr.contains("AAA"),
        "{stderr}"
    );
}

/// 5-minute sessions of the last `days` days (Yahoo serves intraday history only so far back).
fn recent_sessions(seed: u64, days: i64) -> Vec<FixtureBar> {
    let today = chrono::Utc::now().date_naive();
    equity_bars(
        seed,
        today - chrono::Duration::days(days),
        today - chrono::Duration::days(1),
        &[],
        &[],
        5,
    )
}

#[test]
fn yahoo_chart_history_within_its_limits() {
    let fake = FakeRest::start(KEY);
    let ny = chrono_tz::America::New_York;
    let intraday = recent_sessions(21, 50);
    fake.add(
        "YHO",
        Series {
            timezone: ny,
            interval: 5 * MINUTE,
            bars: intraday.clone(),
        },
    );
    // Daily bars stamped at 09:30 local: 13:30Z in summer, 14:30Z in winter.
    let daily = daily_bars(22, date(2000, 1, 3), date(2025, 11, 28), &[]);
    fake.add(
        "YHO",
        Series {
            timezone: ny,
            interval: DAY,
            bars: daily.clone(),
        },
    );
    fake.queue(vec![Scripted {
        status: 429,
        content_type: "text/plain",
        body: "Too Many Requests".into(),
    }]);
    let dir = scratch();
    let yaml = format!(
        "pipeline: yahoo\n\
         sources:\n  \
         y5m: {{type: yahoo_history, symbols: [YHO], interval: 5m, start: -90d, url: \"{url}\"}}\n  \
         y1d: {{type: yahoo_history, symbols: [YHO], interval: 1d, start: 1999-01-01, end: 2025-11-29, url: \"{url}\"}}\n\
         sinks:\n  store: {{type: sqlite, from: [y5m, y1d], path: store.db}}\n",
        url = fake.url()
    );
    write(dir.path(), "yahoo.yaml", &yaml);
    backfill(dir.path(), &["yahoo.yaml"]);
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let got: Vec<(i64, f64)> = conn
        .prepare("SELECT ts, close FROM intraday_ohlcv WHERE symbol = 'YHO' ORDER BY ts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<(i64, f64)> = intraday.iter().map(|b| (b.start, b.close)).collect();
    assert_eq!(got, want, "5m bars (the all-null rows skipped)");
    let got: Vec<(i64, f64)> = conn
        .prepare("SELECT ts, close FROM historical_ohlcv WHERE symbol = 'YHO' ORDER BY ts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<(i64, f64)> = daily.iter().map(|b| (b.start, b.close)).collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want, "daily bars keyed by their New York date");
    // No request reached outside Yahoo's limits.
    assert!(
        fake.log().iter().all(|l| l.status != 422),
        "{:?}",
        fake.log()
    );
}

/// The committed 1200-bar hourly series TA-Lib's fixtures were computed on.
fn reference_bars() -> Vec<FixtureBar> {
    let text = std::fs::read_to_string("tests/fixtures/indicators/bars.csv").unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
            FixtureBar {
                start: f[0] as i64,
                open: f[1],
                high: f[2],
                low: f[3],
                close: f[4],
                volume: f[5] as i64,
            }
        })
        .collect()
}

/// TA-Lib's values of one fixture case, by bar index.
fn talib(case: &str) -> BTreeMap<usize, f64> {
    let text = std::fs::read_to_string(format!("tests/fixtures/indicators/{case}.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let (i, v) = l.split_once(',').unwrap();
            (i.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn history_then_live_feeds_one_indicator_chain() {
    use support::feeds::{FakeFeed, Price, Protocol, Step, Upgrade};
    const HOUR: i64 = 3_600_000;
    const FIRST_LIVE: usize = 1000;
    const HISTORY_END: usize = 1002;
    let bars = reference_bars();
    let rest = FakeRest::start(KEY);
    rest.add(
        "HTL",
        Series {
            timezone: chrono_tz::UTC,
            interval: HOUR,
            bars: bars[..HISTORY_END].to_vec(),
        },
    );
    // The live feed starts inside bar 1000 (its first live bar is partial: history's wins)
    // and trades each later hour at its open, high, low and close.
    let mut tape = Vec::new();
    for (i, b) in bars.iter().enumerate().skip(FIRST_LIVE) {
        let mut ticks = vec![(40 * 60, b.low), (3599, b.close)];
        if i > FIRST_LIVE {
            ticks = vec![
                (0, b.open),
                (15 * 60, b.high),
                (30 * 60, b.low),
                (3599, b.close),
            ];
        }
        for (offset, price) in ticks {
            tape.push(Step::Price(Price {
                symbol: "HTL".into(),
                ts: b.start + offset * 1000,
                price,
                day_volume: None,
            }));
        }
    }
    let feed = FakeFeed::start(Protocol::TwelveData, tape, &[], Upgrade::Accept, None);
    let dir = scratch();
    let yaml = format!(
        "pipeline: htl\n\
         sources:\n  \
         history_1h: {{type: twelvedata_history, symbols: [HTL], interval: 1h, start: 2024-01-02, end: \"{end}\", timezone: UTC, api_key: \"${{TD_KEY}}\", url: \"{rest}\", credits_per_minute: 1000}}\n  \
         live: {{type: twelvedata, symbols: [HTL], api_key: \"${{TD_KEY}}\", url: \"{ws}\"}}\n\
         operators:\n  \
         live_1h: {{type: bars, from: live, interval: 1h}}\n  \
         bars_1h: {{type: bars, from: [history_1h, live_1h], interval: 1h}}\n  \
         ta: {{type: indicators, from: bars_1h, indicators: [sma: {{period: 20}}, ema: {{period: 12}}, rsi: {{period: 14}}, atr: {{period: 14}}]}}\n\
         sinks:\n  \
         out: {{type: file, from: [ta], path: ta.jsonl}}\n  \
         store: {{type: sqlite, from: [bars_1h, ta], path: store.db}}\n",
        end = support::iso(bars[HISTORY_END].start),
        rest = rest.url(),
        ws = feed.url(),
    );
    write(dir.path(), "htl.yaml", &yaml);
    let child = marketflow()
        .current_dir(dir.path())
        .args(["run", "htl.yaml", "--no-server"])
        .env("TD_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the indicators of the first 50 live bars (each of the four ids).
    let last = bars[HISTORY_END + 49].start;
    let path = dir.path().join("ta.jsonl");
    let started = Instant::now();
    let rows: Vec<serde_json::Value> = loop {
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let done = rows
            .iter()
            .filter(|r| support::ms(r["ts"].as_str().unwrap()) == last)
            .count();
        if done == 4 {
            break rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited 60s for the indicators of bar {} ({} rows so far)",
            support::iso(last),
            rows.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = support::wait_with_deadline(child, Duration::from_secs(30));
    assert!(status.success() || status.code() == Some(130), "{status}");

    // Every window reached the indicators once, and the values equal TA-Lib's over the
    // concatenated series: history up to bar 1001, live from 1002.
    let mut by_id: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for r in &rows {
        let id = r["id"].as_str().unwrap().to_owned();
        let ts = support::ms(r["ts"].as_str().unwrap());
        let value = r["values"]["value"].as_f64().unwrap();
        assert!(
            by_id
                .entry(id.clone())
                .or_default()
                .insert(ts, value)
                .is_none(),
            "{id} at {ts} twice"
        );
    }
    let index_of = |ts: i64| ((ts - bars[0].start) / HOUR) as usize;
    let mut compared = 0;
    for (id, case) in [
        ("sma_20", "sma_20"),
        ("ema_12", "ema_12"),
        ("rsi_14", "rsi_14"),
        ("atr_14", "atr_14"),
    ] {
        let want = talib(case);
        let got = &by_id[id];
        for (ts, value) in got {
            let i = index_of(*ts);
            let w = want[&i];
            assert!(
                (value - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{id} at bar {i}: {value} vs TA-Lib {w}"
            );
        }
        let live: Vec<usize> = got
            .keys()
            .map(|t| index_of(*t))
            .filter(|i| *i >= HISTORY_END)
            .collect();
        assert!(
            live.len() >= 50 && live[..50] == (HISTORY_END..HISTORY_END + 50).collect::<Vec<_>>(),
            "{id}: live values {live:?}"
        );
        compared += 50;
    }
    // The stored bars say where each came from; the partial live bar 1000 lost to history's.
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let stored: Vec<(i64, f64, String)> = conn
        .prepare("SELECT ts, open, source FROM intraday_ohlcv WHERE symbol = 'HTL' ORDER BY ts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (ts, open, source) in &stored {
        let i = index_of(*ts);
        assert_eq!(*open, bars[i].open, "bar {i}");
        let want = if i < HISTORY_END {
            "history_1h"
        } else {
            "live"
        };
        assert_eq!(source, want, "bar {i}");
    }
    assert!(stored.len() > HISTORY_END + 50);
    println!(
        "{compared} live indicator values equal TA-Lib over history + live; {} bars stored",
        stored.len()
    );
}

/// Bars of a market open around the clock (UTC), every `interval_minutes`, from `first` for
/// `count` bars.
fn around_the_clock(seed: u64, first: i64, count: usize, interval_minutes: i64) -> Vec<FixtureBar> {
    let mut rng = support::Lcg(seed);
    let mut price = 200.0;
    (0..count)
        .map(|i| {
            let o = price;
            let c = ((o + (rng.below(200) as f64 - 100.0) / 100.0) * 100.0).round() / 100.0;
            price = c;
            FixtureBar {
                start: first + i as i64 * interval_minutes * MINUTE,
                open: o,
                high: o.max(c) + 0.5,
                low: o.min(c) - 0.5,
                close: c,
                volume: rng.below(1000) as i64 + 1,
            }
        })
        .collect()
}

#[test]
fn full_pages_are_split_and_a_forming_bar_is_not_stored() {
    let fake = FakeRest::start(KEY);
    // A 24-hour market: with 100-row pages, the first window (three pages' worth of slots)
    // comes back cut at 100 rows and is split until a window holds every slot; later
    // windows hold exactly as many rows as they have slots.
    let now = chrono::Utc::now().timestamp_millis();
    let minute_now = now - now.rem_euclid(MINUTE);
    let count = 2_000;
    let first = minute_now - (count as i64 - 1) * MINUTE;
    // The last bar is the current minute's: still forming.
    let bars = around_the_clock(5, first, count, 1);
    fake.add(
        "BTCX",
        Series {
            timezone: chrono_tz::UTC,
            interval: MINUTE,
            bars: bars.clone(),
        },
    );
    fake.set_cap(100);
    let dir = scratch();
    let yaml = format!(
        "pipeline: crypto\n\
         sources:\n  m1: {{type: twelvedata_history, symbols: [BTCX], interval: 1m, start: \"{}\", timezone: UTC, page_size: 100, api_key: \"${{TD_KEY}}\", url: \"{}\", credits_per_minute: 100000}}\n\
         sinks:\n  store: {{type: sqlite, from: [m1], path: store.db}}\n",
        support::iso(first),
        fake.url()
    );
    write(dir.path(), "crypto.yaml", &yaml);
    backfill(dir.path(), &["crypto.yaml"]);
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let got: Vec<(i64, f64)> = conn
        .prepare("SELECT ts, close FROM intraday_ohlcv WHERE symbol = 'BTCX' ORDER BY ts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Every complete bar once; the forming one (and any that began after the run started)
    // left for the next run.
    let complete: Vec<(i64, f64)> = bars
        .iter()
        .filter(|b| b.start + MINUTE <= now)
        .map(|b| (b.start, b.close))
        .collect();
    assert!(
        got.len() >= complete.len() - 1,
        "{} of {} complete bars",
        got.len(),
        complete.len()
    );
    assert_eq!(got[..], complete[..got.len()], "bars stored in order, once");
    assert!(got
        .iter()
        .all(|(ts, _)| *ts + MINUTE <= chrono::Utc::now().timestamp_millis()));
    let log = fake.log();
    let full = log
        .windows(2)
        .filter(|w| w[0].query["start_date"] == w[1].query["start_date"])
        .count();
    assert!(full >= 1, "a cut page was split and asked again");
    let exact = log.iter().filter(|l| l.status == 200).count();
    println!("{} bars in {exact} pages, {full} pages split", got.len());
    // The kept position stops before the bar still forming: the next run asks from there.
    let kept = positions(&dir.path().join("store.db"));
    let position = kept["twelvedata_history BTCX 1m"];
    assert_eq!(
        position,
        got.last().unwrap().0 + MINUTE,
        "position after the last complete bar"
    );
}

#[test]
fn ticks_of_two_sources_of_one_symbol_keep_distinct_keys() {
    let dir = scratch();
    // Two sources replaying the same ticks (same symbols, seed and times).
    let yaml = "pipeline: twice\n\
         sources:\n  \
         a: {type: synthetic, symbols: [AAA], seed: 3, rate: 50, count: 500, start: 2025-01-02T14:30:00Z}\n  \
         b: {type: synthetic, symbols: [AAA], seed: 3, rate: 50, count: 500, start: 2025-01-02T14:30:00Z}\n\
         operators:\n  bars_a: {type: bars, from: a, interval: 1s}\n\
         sinks:\n  store: {type: sqlite, from: [a, b, bars_a], path: store.db}\n";
    write(dir.path(), "twice.yaml", yaml);
    support::run_ok(dir.path(), &["run", "twice.yaml", "--no-server"]);
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let ticks: i64 = conn
        .query_row("SELECT count(*) FROM realtime_prices", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ticks, 1000, "both sources' ticks stored");
    let sources: Vec<String> = conn
        .prepare("SELECT DISTINCT source FROM intraday_ohlcv")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sources, vec!["a".to_owned()]);
}

#[test]
fn positions_are_kept_in_postgresql_too() {
    let db = support::pg::TestDb::new("history");
    let fake = FakeRest::start(KEY);
    let symbols = symbols(2);
    let fixtures = serve_november(&fake, &symbols);
    let dir = scratch();
    let yaml = td_pipeline(&fake.url(), &symbols, "    credits_per_minute: 10000\n").replace(
        "store: {type: sqlite, from: [history_5m], path: store.db}",
        &format!(
            "store: {{type: postgres, from: [history_5m], url: \"{}\", retention: off}}",
            db.url
        ),
    );
    write(dir.path(), "history.yaml", &yaml);
    backfill(dir.path(), &["history.yaml"]);
    let bars: usize = fixtures.values().map(Vec::len).sum();
    assert_eq!(db.count("intraday_ohlcv"), bars as i64);
    let asked = fake.log().len();
    backfill(dir.path(), &["history.yaml"]);
    assert_eq!(
        fake.log().len(),
        asked,
        "the second run resumes from the positions kept in PostgreSQL"
    );
    assert_eq!(db.count("intraday_ohlcv"), bars as i64);
    assert_eq!(db.count("marketflow_positions"), 2);
}

/// A history pipeline with `recovery:` killed with SIGKILL while the provider stalls, then
/// resumed: each symbol pages on from where the checkpoint cut it (not from its start, nor
/// from the later positions its sinks had acknowledged), and the 1h bars cascaded from the
/// 5m history, the indicators and the store equal an uninterrupted run's.
#[test]
fn a_history_killed_and_resumed_from_a_checkpoint_equals_an_uninterrupted_run() {
    let fake = FakeRest::start(KEY);
    let symbols = symbols(4);
    serve_november(&fake, &symbols);
    // About 100 pages of 100 rows in all, each answered after 20 ms: checkpoints every
    // 100 ms fall between pages.
    fake.set_latency(Duration::from_millis(20));
    let yaml = |recovery: &str| {
        format!(
            "pipeline: history\n{recovery}\
             sources:\n  history_5m:\n    type: twelvedata_history\n    symbols: [{}]\n    \
             interval: 5m\n    start: 2025-10-30\n    end: 2025-11-29\n    api_key: \"${{TD_KEY}}\"\n    \
             url: \"{}\"\n    credits_per_minute: 100000\n    page_size: 100\n\
             operators:\n  bars_1h: {{type: bars, from: history_5m, interval: 1h}}\n  \
             ta: {{type: indicators, from: history_5m, indicators: [{{sma: {{period: 20}}}}, {{rsi: {{period: 14}}}}]}}\n\
             sinks:\n  out: {{type: file, path: out/out.jsonl, from: [bars_1h, ta]}}\n  \
             store: {{type: sqlite, path: out/store.db, from: [history_5m, bars_1h, ta]}}\n",
            symbols.join(", "),
            fake.url()
        )
    };
    let run = |dir: &Path, args: &[&str], log: &str| {
        marketflow()
            .current_dir(dir)
            .args(args)
            .env("TD_KEY", KEY)
            .env("RUST_LOG", "marketflow=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(log)).unwrap())
            .spawn()
            .expect("marketflow starts")
    };
    let whole = scratch();
    write(whole.path(), "history.yaml", &yaml(""));
    let status = run(
        whole.path(),
        &["run", "history.yaml", "--no-server"],
        "whole.log",
    )
    .wait()
    .unwrap();
    assert!(status.success(), "the uninterrupted run failed");
    let reference = support::resume::outcome(&whole.path().join("out"));
    let all_pages = fake.pages().len();
    assert!(all_pages > 40, "the run took only {all_pages} pages");

    // The killed run: the provider stops answering after half the pages.
    let dir = scratch();
    write(
        dir.path(),
        "history.yaml",
        &yaml("recovery: {path: out/recovery.db, checkpoint_interval: 100ms}\n"),
    );
    let served_before = fake.log().len();
    fake.hang_after(served_before + all_pages / 2);
    let mut child = run(
        dir.path(),
        &["run", "history.yaml", "--no-server"],
        "killed.log",
    );
    let started = Instant::now();
    let committed = loop {
        let text = std::fs::read_to_string(dir.path().join("killed.log")).unwrap_or_default();
        let (_, commits) = support::resume::checkpoints_in(&text);
        let waiting = fake.log()[served_before..]
            .iter()
            .filter(|l| l.status == 0)
            .map(|l| l.query["symbol"].clone())
            .collect::<std::collections::BTreeSet<_>>();
        if waiting.len() == symbols.len() && !commits.is_empty() {
            break commits;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "waited 90s for every symbol to wait on the provider ({} of {}) and a checkpoint to commit; the log:\n{text}",
            waiting.len(),
            symbols.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    fake.hang_after(usize::MAX);
    let resumed_at = fake.log().len();
    let status = run(
        dir.path(),
        &["run", "history.yaml", "--no-server", "--resume"],
        "resumed.log",
    )
    .wait()
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("resumed.log")).unwrap();
    assert!(status.success(), "the resumed run failed:\n{text}");
    let (resumed, _) = support::resume::checkpoints_in(&text);
    let second = fake.log().len() - resumed_at;
    println!(
        "uninterrupted: {all_pages} pages; killed after {} checkpoints (last at record {:?}); resumed from record {resumed:?} with {second} pages",
        committed.len(),
        committed.last()
    );
    assert!(
        resumed.is_some_and(|r| r > 0),
        "the resumed run did not resume from a checkpoint:\n{text}"
    );
    assert!(
        second < all_pages,
        "the resumed run asked for {second} pages, as many as a whole run ({all_pages})"
    );
    let got = support::resume::outcome(&dir.path().join("out"));
    assert!(
        got.lines == reference.lines && got.db == reference.db,
        "the resumed history differs from the uninterrupted run's\noutput: {}\nstore: {}",
        support::line_differences(&got.lines, &reference.lines),
        support::line_differences(&got.db, &reference.db)
    );
}
