//! `type: file` — ticks or bars from a CSV or JSONL file. File order is arrival order.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context as _;
use marketflow_operators::time::format_timestamp;
use marketflow_operators::{Bar, Interval, Tick};
use serde::Deserialize;

use super::{report_watermark, SourceContext, SourceEvent, Stamper};
pub use crate::codec::Format;
use crate::codec::{self, make_bar, make_tick, BarFields, CodecError, NaiveTime};
use crate::dead_letter::Rejected;
use crate::engine::Task;
use crate::metrics::metrics;
use crate::spec::diagnostic::Diagnostic;
use crate::spec::graph::StreamType;
use crate::spec::values::{Duration, Parsed};

/// Ticks or bars read from a file.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Path of the file, relative to the working directory.
    pub path: PathBuf,
    /// `csv` or `jsonl`; by default taken from the extension (`.csv`; `.jsonl`, `.ndjson`, `.json`).
    #[serde(default)]
    pub format: Option<Format>,
    /// `ticks` (default) or `bars`.
    #[serde(default)]
    pub kind: Kind,
    /// Interval of the bars (required with `kind: bars`).
    #[serde(default)]
    pub interval: Option<Parsed<Interval>>,
    /// Bounded out-of-orderness: the watermark trails the latest event time by this much.
    #[serde(default)]
    pub max_delay: Duration,
    /// Time zone of timestamps written without a UTC offset; without it they are rejected.
    #[serde(default)]
    pub timezone: Option<Parsed<chrono_tz::Tz>>,
}

/// What a file holds.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Ticks,
    Bars,
}

const BATCH: usize = 4096;

impl FileSourceConfig {
    pub fn output(&self) -> StreamType {
        match (self.kind, &self.interval) {
            (Kind::Bars, Some(interval)) => StreamType::Bars {
                interval: interval.value,
                session: None,
            },
            _ => StreamType::Ticks,
        }
    }

    fn format(&self) -> Option<Format> {
        self.format.or_else(|| Format::from_path(&self.path))
    }

    pub fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let pos = self.interval.as_ref().map(|i| i.pos).unwrap_or_default();
        if self.format().is_none() {
            problems.push(
                Diagnostic::new(
                    pos,
                    format!("{path}.format"),
                    format!(
                        "cannot tell the format of `{}` from its extension",
                        self.path.display()
                    ),
                )
                .help("add `format: csv` or `format: jsonl`"),
            );
        }
        match (self.kind, &self.interval) {
            (Kind::Bars, None) => problems.push(
                Diagnostic::new(
                    pos,
                    format!("{path}.interval"),
                    "`kind: bars` needs the bars' `interval`",
                )
                .help("add e.g. `interval: 1m`"),
            ),
            (Kind::Ticks, Some(i)) => problems.push(Diagnostic::new(
                i.pos,
                format!("{path}.interval"),
                "`interval` only applies to `kind: bars`",
            )),
            _ => {}
        }
        problems
    }

    pub fn build(&self, ctx: SourceContext) -> Task {
        let config = self.clone();
        Task::Blocking(Box::new(move || read_file(&config, ctx)))
    }

    fn naive(&self) -> NaiveTime {
        self.timezone
            .as_ref()
            .map_or(NaiveTime::Reject, |tz| NaiveTime::In(tz.value))
    }
}

/// Batches records and reports progress while a file is read.
struct Reader<'a> {
    config: &'a FileSourceConfig,
    ctx: &'a SourceContext,
    stamper: Stamper,
    ticks: Vec<Tick>,
    bars: Vec<Bar>,
    records: u64,
    rejected: u64,
    size: u64,
    last_report: Instant,
}

impl Reader<'_> {
    fn tick(
        &mut self,
        parsed: Result<Tick, CodecError>,
        line: u64,
        raw: &[u8],
    ) -> anyhow::Result<()> {
        match parsed {
            Ok(mut tick) => {
                self.stamper.stamp_tick(&mut tick);
                self.ticks.push(tick);
                if self.ticks.len() >= BATCH {
                    self.flush()?;
                }
            }
            Err(e) => self.reject(e, line, raw),
        }
        Ok(())
    }

    fn bar(
        &mut self,
        parsed: Result<Bar, CodecError>,
        line: u64,
        raw: &[u8],
    ) -> anyhow::Result<()> {
        let expected = self.config.interval.as_ref().map(|i| i.value);
        match parsed {
            Ok(bar) if Some(bar.interval) != expected => {
                let detail = format!(
                    "bar interval {} where the source declares {}",
                    bar.interval,
                    expected.map(|i| i.to_string()).unwrap_or_default()
                );
                self.rejected += 1;
                self.ctx.dead_letters.reject(
                    &self.ctx.name,
                    "interval_mismatch",
                    &detail,
                    Rejected::Line { line, text: raw },
                );
            }
            Ok(mut bar) => {
                self.stamper.stamp_bar(&mut bar);
                self.bars.push(bar);
                if self.bars.len() >= BATCH {
                    self.flush()?;
                }
            }
            Err(e) => self.reject(e, line, raw),
        }
        Ok(())
    }

    fn reject(&mut self, err: CodecError, line: u64, raw: &[u8]) {
        self.rejected += 1;
        let detail = format!("{}:{line}: {err}", self.config.path.display());
        self.ctx.dead_letters.reject(
            &self.ctx.name,
            "malformed",
            &detail,
            Rejected::Line { line, text: raw },
        );
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let n = (self.ticks.len() + self.bars.len()) as u64;
        if n == 0 {
            return Ok(());
        }
        self.records += n;
        metrics()
            .source_records
            .with_label_values(&[self.ctx.name.as_str()])
            .inc_by(n);
        if !self.ticks.is_empty() {
            self.ctx
                .out
                .blocking_send(SourceEvent::Ticks(std::mem::replace(
                    &mut self.ticks,
                    Vec::with_capacity(BATCH),
                )))?;
        }
        if !self.bars.is_empty() {
            self.ctx
                .out
                .blocking_send(SourceEvent::Bars(std::mem::replace(
                    &mut self.bars,
                    Vec::with_capacity(BATCH),
                )))?;
        }
        report_watermark(&self.ctx.name, self.stamper.watermark());
        Ok(())
    }

    /// Logs progress every two seconds; returns false once shutdown was requested.
    fn progress(&mut self, position: u64) -> bool {
        if self.last_report.elapsed() >= StdDuration::from_secs(2) {
            self.last_report = Instant::now();
            let percent = if self.size > 0 {
                position as f64 * 100.0 / self.size as f64
            } else {
                100.0
            };
            tracing::info!(
                source = %self.ctx.name,
                records = self.records,
                rejected = self.rejected,
                event_time = %format_timestamp(self.stamper.watermark()),
                "reading {}: {percent:.0}%", self.config.path.display()
            );
        }
        !self.ctx.shutdown.is_triggered()
    }
}

fn read_file(config: &FileSourceConfig, ctx: SourceContext) -> anyhow::Result<()> {
    let file = File::open(&config.path)
        .with_context(|| format!("source {}: opening {}", ctx.name, config.path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = Reader {
        config,
        ctx: &ctx,
        stamper: Stamper::new(config.max_delay.0),
        ticks: Vec::with_capacity(BATCH),
        bars: Vec::new(),
        records: 0,
        rejected: 0,
        size,
        last_report: Instant::now(),
    };
    let started = Instant::now();
    match config.format() {
        Some(Format::Csv) => read_csv(file, &mut reader)?,
        _ => read_jsonl(file, &mut reader)?,
    }
    reader.flush()?;
    tracing::info!(
        source = %ctx.name,
        records = reader.records,
        rejected = reader.rejected,
        seconds = started.elapsed().as_secs_f64(),
        "finished reading {}", config.path.display()
    );
    Ok(())
}

fn read_jsonl(file: File, reader: &mut Reader<'_>) -> anyhow::Result<()> {
    let naive = reader.config.naive();
    let interval = reader.config.interval.as_ref().map(|i| i.value);
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(256);
    let (mut number, mut position) = (0u64, 0u64);
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", reader.config.path.display()))?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        position += read as u64;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match reader.config.kind {
            Kind::Ticks => reader.tick(codec::parse_tick_json(text, naive), number, text)?,
            Kind::Bars => reader.bar(codec::parse_bar_json(text, interval, naive), number, text)?,
        }
        if number % 65_536 == 0 && !reader.progress(position) {
            return Ok(());
        }
    }
}

/// Column positions found in a CSV header.
struct Columns {
    ts: usize,
    symbol: usize,
    price: [usize; 4],
    volume: Option<usize>,
    interval: Option<usize>,
    trades: Option<usize>,
    vwap: Option<usize>,
}

fn find_columns(header: &csv::ByteRecord, kind: Kind) -> anyhow::Result<Columns> {
    let names: Vec<String> = header
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_ascii_lowercase()
        })
        .collect();
    let find = |aliases: &[&str]| names.iter().position(|n| aliases.contains(&n.as_str()));
    let need = |aliases: &[&str]| {
        find(aliases).with_context(|| {
            format!(
                "the CSV header `{}` has no `{}` column",
                names.join(","),
                aliases[0]
            )
        })
    };
    Ok(match kind {
        Kind::Ticks => {
            let price = need(&["price"])?;
            Columns {
                ts: need(&["ts", "timestamp", "time"])?,
                symbol: need(&["symbol", "ticker"])?,
                price: [price; 4],
                volume: find(&["volume", "size", "qty"]),
                interval: None,
                trades: None,
                vwap: None,
            }
        }
        Kind::Bars => Columns {
            ts: need(&["start", "ts", "timestamp", "datetime", "date"])?,
            symbol: need(&["symbol", "ticker"])?,
            price: [
                need(&["open"])?,
                need(&["high"])?,
                need(&["low"])?,
                need(&["close"])?,
            ],
            volume: find(&["volume"]),
            interval: find(&["interval"]),
            trades: find(&["trades"]),
            vwap: find(&["vwap"]),
        },
    })
}

fn read_csv(file: File, reader: &mut Reader<'_>) -> anyhow::Result<()> {
    let naive = reader.config.naive();
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let header = csv
        .byte_headers()
        .with_context(|| format!("reading the header of {}", reader.config.path.display()))?
        .clone();
    let columns = find_columns(&header, reader.config.kind)
        .with_context(|| reader.config.path.display().to_string())?;
    let mut record = csv::ByteRecord::new();
    let mut raw = Vec::new();
    let mut count = 0u64;
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                reader.reject(
                    CodecError::Field {
                        field: "csv",
                        message: e.to_string(),
                    },
                    line,
                    b"",
                );
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(e)
                        .with_context(|| format!("reading {}", reader.config.path.display()));
                }
                continue;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        raw.clear();
        for (i, field) in record.iter().enumerate() {
            if i > 0 {
                raw.push(b',');
            }
            raw.extend_from_slice(field);
        }
        match reader.config.kind {
            Kind::Ticks => reader.tick(csv_tick(&record, &columns, naive), line, &raw)?,
            Kind::Bars => {
                let interval = reader.config.interval.as_ref().map(|i| i.value);
                reader.bar(csv_bar(&record, &columns, interval, naive), line, &raw)?
            }
        }
        count += 1;
        if count % 65_536 == 0 && !reader.progress(record.position().map_or(0, |p| p.byte())) {
            return Ok(());
        }
    }
}

fn text<'r>(
    record: &'r csv::ByteRecord,
    index: usize,
    name: &'static str,
) -> Result<&'r str, CodecError> {
    let bytes = record.get(index).ok_or(CodecError::Missing(name))?;
    std::str::from_utf8(bytes).map_err(|_| CodecError::Field {
        field: name,
        message: "not UTF-8".into(),
    })
}

fn number(record: &csv::ByteRecord, index: usize, name: &'static str) -> Result<f64, CodecError> {
    let t = text(record, index, name)?;
    t.parse().map_err(|_| CodecError::Field {
        field: name,
        message: format!("`{t}` is not a number"),
    })
}

fn optional_number(
    record: &csv::ByteRecord,
    index: Option<usize>,
    name: &'static str,
) -> Result<Option<f64>, CodecError> {
    match index {
        Some(i) if record.get(i).is_some_and(|f| !f.is_empty()) => {
            number(record, i, name).map(Some)
        }
        _ => Ok(None),
    }
}

fn csv_tick(record: &csv::ByteRecord, c: &Columns, naive: NaiveTime) -> Result<Tick, CodecError> {
    let ts = naive.parse(text(record, c.ts, "ts")?)?;
    let volume = optional_number(record, c.volume, "volume")?.unwrap_or(0.0);
    make_tick(
        text(record, c.symbol, "symbol")?,
        ts,
        number(record, c.price[0], "price")?,
        volume,
    )
}

fn csv_bar(
    record: &csv::ByteRecord,
    c: &Columns,
    interval: Option<Interval>,
    naive: NaiveTime,
) -> Result<Bar, CodecError> {
    let interval = match c.interval {
        Some(i) => {
            Interval::parse(text(record, i, "interval")?).map_err(|e| CodecError::Field {
                field: "interval",
                message: e.to_string(),
            })?
        }
        None => interval.ok_or(CodecError::Missing("interval"))?,
    };
    make_bar(BarFields {
        symbol: text(record, c.symbol, "symbol")?,
        interval,
        start: naive.parse(text(record, c.ts, "start")?)?,
        ohlc: [
            number(record, c.price[0], "open")?,
            number(record, c.price[1], "high")?,
            number(record, c.price[2], "low")?,
            number(record, c.price[3], "close")?,
        ],
        volume: optional_number(record, c.volume, "volume")?.unwrap_or(0.0),
        trades: optional_number(record, c.trades, "trades")?.map(|t| t as u64),
        vwap: optional_number(record, c.vwap, "vwap")?,
    })
}
