//! The query suite shared by the storage tests: a known data set written to a database,
//! and every query the server makes, with its answers as JSON lines, so that two stores
//! (PostgreSQL and SQLite, plain PostgreSQL and TimescaleDB) can be compared answer by answer.

use std::path::Path;

use marketflow::store::{postgres, sqlite, BarQuery, Batch, IndicatorQuery, Store, TickQuery};
use marketflow_operators::fixed::Fixed;
use marketflow_operators::indicators::IndicatorKind;
use marketflow_operators::{Bar, IndicatorRow, Interval, Record, Symbol, Tick};

use super::pg::block_on;

pub const T0: i64 = 1_704_205_800_000; // 2024-01-02T14:30:00Z
pub const MINUTE: i64 = 60_000;

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn tick(symbol: &str, ts: i64, seq: u64, price: f64) -> Record {
    Record::Tick(Tick {
        symbol: sym(symbol),
        ts,
        price,
        volume: 10.0,
        seq,
        wm: ts,
    })
}

fn bar(symbol: &str, interval: Interval, start: i64, close: f64, revision: u32) -> Record {
    Record::Bar(Bar {
        symbol: sym(symbol),
        interval,
        start,
        end: start + interval.millis(),
        open: close - 1.0,
        high: close + 2.0,
        low: close - 2.0,
        close,
        volume: Fixed::from_f64(100.0),
        notional: Fixed::from_f64(100.0 * close),
        trades: 7,
        revision,
        seq: 0,
        wm: start,
        source: Default::default(),
    })
}

fn rsi(symbol: &str, interval: Interval, ts: i64, value: f64) -> Record {
    Record::Indicator(IndicatorRow {
        symbol: sym(symbol),
        interval,
        ts,
        id: "rsi_14".into(),
        kind: IndicatorKind::Rsi,
        outputs: [value, f64::NAN, f64::NAN, f64::NAN, f64::NAN],
        revision: 0,
    })
}

fn macd(symbol: &str, ts: i64, v: f64) -> Record {
    Record::Indicator(IndicatorRow {
        symbol: sym(symbol),
        interval: Interval::M1,
        ts,
        id: "macd_12_26_9".into(),
        kind: IndicatorKind::Macd,
        outputs: [v, v / 2.0, v / 2.0, f64::NAN, f64::NAN],
        revision: 0,
    })
}

/// A known data set: 300 ticks and 60 one-minute bars per symbol, daily bars, indicator
/// rows on 1m and 1d, a revised bar and a stale revision that must not win.
pub fn records() -> Vec<Record> {
    let mut out = Vec::new();
    for (k, s) in ["AAPL", "MSFT"].iter().enumerate() {
        for i in 0..300 {
            out.push(tick(
                s,
                T0 + i * 1_000,
                i as u64,
                100.0 + k as f64 + i as f64 / 100.0,
            ));
        }
        // Two ticks at one instant are two rows.
        out.push(tick(s, T0, 1_000, 99.0));
        for i in 0..60 {
            let ts = T0 + i * MINUTE;
            out.push(bar(s, Interval::M1, ts, 100.0 + i as f64, 0));
            out.push(rsi(s, Interval::M1, ts, 50.0 + i as f64 / 10.0));
            out.push(macd(s, ts, i as f64 / 100.0));
        }
        let mut sourced = bar(s, Interval::M5, T0, 105.0, 0);
        if let Record::Bar(b) = &mut sourced {
            b.source = "history_5m+live".into();
        }
        out.push(sourced);
        // A tick indicator row (the real-time analytics table).
        out.push(Record::Indicator(IndicatorRow {
            symbol: sym(s),
            interval: Interval::parse("5s").unwrap(),
            ts: T0 + 5_000,
            id: "tick_rsi_14".into(),
            kind: IndicatorKind::TickRsi,
            outputs: [55.0, f64::NAN, f64::NAN, f64::NAN, f64::NAN],
            revision: 0,
        }));
        for d in 0..5 {
            let ts = T0 + d * 86_400_000;
            out.push(bar(s, Interval::D1, ts, 150.0 + d as f64, 0));
            out.push(rsi(s, Interval::D1, ts, 40.0 + d as f64));
        }
    }
    // A revision replaces the bar; a late older revision does not undo it.
    out.push(bar("AAPL", Interval::M1, T0, 999.0, 2));
    out.push(bar("AAPL", Interval::M1, T0, 555.0, 1));
    out
}

/// Migrates the database at `url` in `mode` and writes `records` in two transactions.
/// TimescaleDB's retention policies are removed first: the data set is older than their
/// windows.
pub fn write_postgres(url: &str, records: &[Record], mode: postgres::TimescaleMode) {
    block_on(async {
        let mut client = postgres::connect(url).await.unwrap();
        postgres::migrate(&mut client, mode).await.unwrap();
        if postgres::uses_timescaledb(&client).await.unwrap() {
            postgres::set_retention_policies(&client, true)
                .await
                .unwrap();
        }
        let mut writer = postgres::PgWriter::new(client).await.unwrap();
        // Two batches, so that the stale revision arrives in a later transaction.
        let (a, b) = records.split_at(records.len() - 1);
        for part in [a, b] {
            let mut batch = Batch::default();
            part.iter().cloned().for_each(|r| batch.push(r));
            writer.write(&batch).await.unwrap();
        }
    });
}

pub fn write_sqlite(path: &Path, records: &[Record]) {
    let mut conn = sqlite::open(path).unwrap();
    sqlite::migrate(&mut conn).unwrap();
    let (a, b) = records.split_at(records.len() - 1);
    for part in [a, b] {
        let mut batch = Batch::default();
        part.iter().cloned().for_each(|r| batch.push(r));
        sqlite::write(&mut conn, &batch).unwrap();
    }
}

/// Every query the server makes, with its answer as JSON lines.
pub async fn answers(store: &Store) -> Vec<String> {
    let json = |r: &Record| {
        let mut out = Vec::new();
        marketflow::codec::write_record_json(&mut out, r);
        String::from_utf8(out).unwrap()
    };
    let mut out = Vec::new();
    for symbol in ["AAPL", "MSFT", "NONE"] {
        let symbol = sym(symbol);
        for t in store.latest_ticks(&symbol, 5).await.unwrap() {
            out.push(json(&Record::Tick(t)));
        }
        let ranged = TickQuery {
            symbol: symbol.clone(),
            start: Some(T0 + 10_000),
            end: Some(T0 + 13_000),
            limit: 100,
        };
        out.push(format!("ticks {ranged:?}"));
        for t in store.ticks(&ranged).await.unwrap() {
            out.push(json(&Record::Tick(t)));
        }
        let before = vec![T0, T0 + 1, T0 + 5_500, T0 + 10_000_000];
        out.push(format!(
            "prices before {before:?}: {:?}",
            store.prices_before(&symbol, before.clone()).await.unwrap()
        ));
        out.push(format!(
            "realtime interval {:?}",
            store.realtime_interval(&symbol).await.unwrap()
        ));
        for (interval, start, end, limit) in [
            (Interval::M1, None, None, 10),
            (Interval::M1, Some(T0), Some(T0 + 3 * MINUTE), 100),
            (Interval::M1, Some(T0 + 50 * MINUTE), None, 1000),
            (Interval::M5, None, None, 10),
            (Interval::D1, None, Some(T0 + 2 * 86_400_000), 10),
        ] {
            let query = BarQuery {
                symbol: symbol.clone(),
                interval,
                start,
                end,
                limit,
            };
            out.push(format!("bars {query:?}"));
            for b in store.bars(&query).await.unwrap() {
                out.push(format!("source {:?}", b.source));
                out.push(json(&Record::Bar(b)));
            }
        }
        for (interval, indicator, limit) in [
            (Interval::M1, None, 6),
            (Interval::M1, Some("rsi_14"), 3),
            (Interval::M1, Some("macd"), 3),
            (Interval::D1, Some("rsi"), 10),
        ] {
            let query = IndicatorQuery {
                symbol: symbol.clone(),
                interval,
                indicator: indicator.map(str::to_owned),
                start: Some(T0),
                end: None,
                limit,
            };
            out.push(format!("indicators {query:?}"));
            for r in store.indicators(&query).await.unwrap() {
                out.push(json(&Record::Indicator(r)));
            }
        }
    }
    for counted in [false, true] {
        for span in store.symbols(counted).await.unwrap() {
            out.push(format!("{span:?}"));
        }
    }
    out
}
