//! `type: file` — records as JSONL (default) or CSV in a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;

use super::{record_kind, SinkContext, SinkEvent};
use crate::codec::Format;
use crate::codec::{csv_header, write_record_csv, write_record_json, RecordKind};
use crate::engine::Task;
use crate::metrics::metrics;
use crate::spec::de::OneOrMany;
use crate::spec::diagnostic::Diagnostic;
use crate::spec::graph::StreamType;

/// Writes records to a file.
#[derive(Deserialize, Debug, Clone)]
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
    pub fn implied_format(&self) -> Option<Format> {
        Format::from_path(&self.path)
    }

    pub fn build(&self, ctx: SinkContext) -> Task {
        let config = self.clone();
        Task::Blocking(Box::new(move || {
            if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("sink {}: creating {}", ctx.name, parent.display()))?;
            }
            let file = File::create(&config.path).with_context(|| {
                format!("sink {}: creating {}", ctx.name, config.path.display())
            })?;
            let format = config
                .format
                .or_else(|| config.implied_format())
                .unwrap_or(Format::Jsonl);
            write_records(ctx, BufWriter::with_capacity(1 << 20, file), format)
                .with_context(|| format!("writing {}", config.path.display()))
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
    let kinds: Vec<RecordKind> = inputs.iter().map(record_kind).collect();
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

/// Writes every record received until the channel closes, flushing whenever the
/// channel is momentarily empty so a live file can be followed.
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
    let mut buf = Vec::with_capacity(1 << 16);
    loop {
        let event = match ctx.records.try_recv() {
            Ok(event) => event,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                out.flush()?;
                match ctx.records.blocking_recv() {
                    Some(event) => event,
                    None => break,
                }
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
        };
        let SinkEvent::Records(records) = event else {
            continue;
        };
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
    out.flush()?;
    Ok(())
}
