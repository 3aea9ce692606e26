//! `type: file` — records as JSONL (default) or CSV in a file.
//!
//! Records are written in a canonical order: by dataflow time, then kind, symbol, interval
//! and event time. A time's records are written once the watermark has passed it, so the
//! file is byte-identical whatever the worker count, process count or partitioning.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use marketflow_operators::Record;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::codec::Format;
use crate::codec::{csv_header, write_record_csv, write_record_json, RecordKind};
use crate::config::de::{OneOrMany, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::connector::{Sink, SinkContext, SinkEvent, StreamType, Task, TaskError};
use crate::metrics::metrics;

/// Writes records to a file.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The streams to write.
    pub from: OneOrMany,
    /// Output file; missing directories are created, an existing file is replaced.
    pub path: PathBuf,
    /// `jsonl` (default, or from the extension) or `csv` (one record kind per file).
    #[serde(default)]
    pub format: Option<Format>,
}

impl FileSinkConfig {
    fn format(&self) -> Option<Format> {
        self.format.or_else(|| Format::from_path(&self.path))
    }
}

impl Sink for FileSinkConfig {
    const TYPE: &'static str = "file";
    const ABOUT: &'static str = "one record per line (JSONL or CSV); directories are created";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn check(&self, path: &str, inputs: &[StreamType]) -> Vec<Diagnostic> {
        check_format(self.format(), &self.from, path, inputs)
    }

    fn build(&self, ctx: SinkContext) -> Task {
        let config = self.clone();
        Task::Blocking(Box::new(move || {
            let create = || -> anyhow::Result<File> {
                if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                File::create(&config.path)
                    .with_context(|| format!("creating {}", config.path.display()))
            };
            let file = create()?;
            let format = config.format().unwrap_or(Format::Jsonl);
            write_records(ctx, BufWriter::with_capacity(1 << 20, file), format)
                .with_context(|| format!("writing {}", config.path.display()))
                .map_err(TaskError::from)
        }))
    }
}

/// Checks that a CSV sink receives one record kind.
pub fn check_format(
    format: Option<Format>,
    from: &OneOrMany,
    path: &str,
    inputs: &[StreamType],
) -> Vec<Diagnostic> {
    let kinds: Vec<RecordKind> = inputs.iter().map(StreamType::record_kind).collect();
    if format == Some(Format::Csv) && kinds.windows(2).any(|w| w[0] != w[1]) {
        let pos = from.0.first().map(|f| f.pos).unwrap_or_default();
        return vec![Diagnostic::new(
            pos,
            format!("{path}.from"),
            "a CSV file holds one kind of record; these streams mix ticks, bars and indicators",
        )
        .help("use one CSV sink per kind, or `format: jsonl`")];
    }
    Vec::new()
}

/// Writes every record received until the channel closes, each dataflow time's records in
/// canonical order once the watermark has passed it, flushing whenever the channel is
/// momentarily empty (a live file can be followed) and acknowledging what was flushed.
pub fn write_records(
    mut ctx: SinkContext,
    mut out: impl Write,
    format: Format,
) -> anyhow::Result<()> {
    let counter = metrics()
        .sink_records
        .with_label_values(&[ctx.name.as_str()]);
    let batches = metrics()
        .sink_batches
        .with_label_values(&[ctx.name.as_str()]);
    if format == Format::Csv {
        if let Some(kind) = ctx.kinds.first() {
            writeln!(out, "{}", csv_header(*kind))?;
        }
    }
    let mut pending: BTreeMap<i64, Vec<Record>> = BTreeMap::new();
    let mut written = i64::MIN;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut write_until = |upto: i64, pending: &mut BTreeMap<i64, Vec<Record>>, out: &mut dyn Write| -> std::io::Result<()> {
        while let Some(entry) = pending.first_entry() {
            if *entry.key() >= upto {
                break;
            }
            let mut records = entry.remove();
            records.sort_unstable_by(canonical_order);
            for record in &records {
                match format {
                    Format::Jsonl => {
                        write_record_json(&mut buf, record);
                        buf.push(b'\n');
                    }
                    Format::Csv => write_record_csv(&mut buf, record),
                }
                if buf.len() >= 1 << 16 {
                    out.write_all(&buf)?;
                    buf.clear();
                }
            }
            out.write_all(&buf)?;
            buf.clear();
            counter.inc_by(records.len() as u64);
            batches.inc();
        }
        Ok(())
    };
    loop {
        let event = match ctx.records.try_recv() {
            Ok(event) => event,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                out.flush()?;
                ctx.ack.acknowledge(written);
                match ctx.records.blocking_recv() {
                    Some(event) => event,
                    None => break,
                }
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
        };
        match event {
            SinkEvent::Records { time, records } => {
                pending.entry(time).or_default().extend(records);
            }
            SinkEvent::Progress(progress) => {
                write_until(progress, &mut pending, &mut out)?;
                written = written.max(progress);
            }
        }
    }
    write_until(i64::MAX, &mut pending, &mut out)?;
    out.flush()?;
    ctx.ack.acknowledge(i64::MAX);
    Ok(())
}

/// The order records of one dataflow time are written in: a function of the records alone.
/// Ticks keep their arrival order (sequence number), so a file of them can be read again
/// as the source delivered them (`marketflow replay --source NAME=file:PATH`).
fn canonical_order(a: &Record, b: &Record) -> Ordering {
    fn rank(r: &Record) -> u8 {
        match r {
            Record::Tick(_) => 0,
            Record::Bar(_) => 1,
            Record::Indicator(_) => 2,
        }
    }
    match (a, b) {
        (Record::Tick(x), Record::Tick(y)) => (x.seq, &x.symbol, x.ts).cmp(&(y.seq, &y.symbol, y.ts)),
        (Record::Bar(x), Record::Bar(y)) => (&x.symbol, x.interval, x.start, x.revision)
            .cmp(&(&y.symbol, y.interval, y.start, y.revision)),
        (Record::Indicator(x), Record::Indicator(y)) => (&x.symbol, x.interval, x.ts, &x.id, x.revision)
            .cmp(&(&y.symbol, y.interval, y.ts, &y.id, y.revision)),
        _ => rank(a).cmp(&rank(b)),
    }
}
