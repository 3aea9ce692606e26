//! `type: file` — records as JSONL (default) or CSV in a file.
//!
//! Records are written in a canonical order: by dataflow time, then kind, symbol, interval
//! and event time. A time's records are written once the watermark has passed it, so the
//! file is byte-identical whatever the worker count, process count or partitioning.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
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
    /// Output file; missing directories are created, an existing file is replaced (with
    /// `run --resume`, cut back to the checkpoint and continued).
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

    fn resumes_at_offset(&self) -> bool {
        true
    }

    fn build(&self, ctx: SinkContext) -> Task {
        let config = self.clone();
        Task::Blocking(Box::new(move || {
            let shown = config.path.display();
            if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let file = match ctx.resume_offset {
                None => File::create(&config.path).with_context(|| format!("creating {shown}"))?,
                Some(offset) => resume_file(&config.path, offset)?,
            };
            let format = config.format().unwrap_or(Format::Jsonl);
            let out = Output {
                offset: ctx.resume_offset.unwrap_or(0),
                sync: |w: &mut BufWriter<File>| w.get_ref().sync_data(),
                out: BufWriter::with_capacity(1 << 20, file),
            };
            write_records(ctx, out, format)
                .with_context(|| format!("writing {shown}"))
                .map_err(TaskError::from)
        }))
    }
}

/// Opens the output of an interrupted run to go on after a checkpoint: what it wrote past
/// the checkpoint's offset is cut off, so that the resumed file equals an uninterrupted one.
fn resume_file(path: &std::path::Path, offset: u64) -> anyhow::Result<File> {
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {shown} to resume it"))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {shown}"))?
        .len();
    anyhow::ensure!(
        len >= offset,
        "{shown} holds {len} bytes, fewer than the {offset} the checkpoint wrote: it was replaced or cut since; run without --resume"
    );
    file.set_len(offset)
        .with_context(|| format!("truncating {shown}"))?;
    file.sync_all()
        .with_context(|| format!("syncing {shown}"))?;
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(offset))?;
    Ok(file)
}

/// Where `write_records` writes: a stream, its byte offset so far, and how to make what
/// was written durable at a checkpoint.
pub struct Output<W: Write> {
    pub out: W,
    pub offset: u64,
    pub sync: fn(&mut W) -> std::io::Result<()>,
}

impl<W: Write> Output<W> {
    /// A stream that is never resumed (standard output).
    pub fn plain(out: W) -> Output<W> {
        Output {
            out,
            offset: 0,
            sync: |_| Ok(()),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
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
///
/// This thread orders and encodes; a second one writes behind it ([`write_behind`]): the
/// kernel's copy of the bytes into the page cache is a third of what the sink costs, and
/// the sink is one thread for the whole pipeline.
pub fn write_records<W: Write + Send>(
    mut ctx: SinkContext,
    out: Output<W>,
    format: Format,
) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel(WRITES_AHEAD);
    let ack = ctx.ack.clone();
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("file-write".into())
            .spawn_scoped(scope, move || write_behind(out, rx, ack))?;
        let ordered = order_and_encode(&mut ctx, &tx, format);
        drop(tx);
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the thread writing the file panicked"))?;
        // The writer's error first: when it fails, the encoder only sees a closed channel.
        written?;
        ordered
    })
}

/// Encoded batches the encoder may be ahead of the writer by.
const WRITES_AHEAD: usize = 16;

/// What the encoding thread hands the writing thread, in order.
enum Handed {
    Bytes(Vec<u8>),
    /// Flush, then acknowledge this progress.
    Flush(i64),
    /// Flush and sync, then report the checkpoint at this time with the offset.
    Checkpoint(i64),
}

/// The writing thread: writes what it is handed, acknowledging as it is told once what
/// came before is flushed (or synced, at a checkpoint).
fn write_behind<W: std::io::Write>(
    mut out: Output<W>,
    rx: std::sync::mpsc::Receiver<Handed>,
    ack: crate::connector::Acknowledger,
) -> anyhow::Result<()> {
    for write in rx {
        match write {
            Handed::Bytes(bytes) => out.write_all(&bytes)?,
            Handed::Flush(progress) => {
                out.out.flush()?;
                ack.acknowledge(progress);
            }
            Handed::Checkpoint(time) => {
                out.out.flush()?;
                (out.sync)(&mut out.out)?;
                ack.checkpoint(time, out.offset);
            }
        }
    }
    out.out.flush()?;
    Ok(())
}

/// The encoding thread: takes the sink's events until the channel closes, and hands the
/// writer each time's records encoded in canonical order once the watermark has passed.
fn order_and_encode(
    ctx: &mut SinkContext,
    out: &std::sync::mpsc::SyncSender<Handed>,
    format: Format,
) -> anyhow::Result<()> {
    let closed = || anyhow::anyhow!("the thread writing the file stopped");
    let send = |write: Handed| out.send(write).map_err(|_| closed());
    let batches = metrics()
        .sink_batches
        .with_label_values(&[ctx.name.as_str()]);
    if format == Format::Csv && ctx.resume_offset.unwrap_or(0) == 0 {
        if let Some(kind) = ctx.kinds.first() {
            send(Handed::Bytes(
                format!("{}\n", csv_header(*kind)).into_bytes(),
            ))?;
        }
    }
    let mut pending: BTreeMap<i64, Vec<Record>> = BTreeMap::new();
    let mut written = i64::MIN;
    let encoders = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let writer = ctx.writer.clone();
    let write_until = |upto: i64, pending: &mut BTreeMap<i64, Vec<Record>>| -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(1 << 16);
        while let Some(entry) = pending.first_entry() {
            if *entry.key() >= upto {
                break;
            }
            let mut records = entry.remove();
            records.sort_unstable_by(canonical_order);
            if records.len() >= PARALLEL_ENCODING && encoders > 1 {
                for round in records.chunks(PARALLEL_ENCODING * encoders) {
                    for encoded in encode_in_parallel(round, format, encoders)? {
                        send(Handed::Bytes(encoded))?;
                    }
                }
            } else {
                for record in &records {
                    encode(&mut buf, record, format);
                    if buf.len() >= 1 << 16 {
                        send(Handed::Bytes(std::mem::take(&mut buf)))?;
                        buf.reserve(1 << 16);
                    }
                }
            }
            writer.wrote(records.len());
            batches.inc();
        }
        if !buf.is_empty() {
            send(Handed::Bytes(buf))?;
        }
        Ok(())
    };
    loop {
        let event = match ctx.records.try_recv() {
            Ok(event) => event,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                send(Handed::Flush(written))?;
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
                write_until(progress, &mut pending)?;
                written = written.max(progress);
            }
            SinkEvent::Checkpoint(time) => {
                write_until(time, &mut pending)?;
                send(Handed::Checkpoint(time))?;
            }
        }
    }
    write_until(i64::MAX, &mut pending)?;
    send(Handed::Flush(i64::MAX))
}

/// Records of one dataflow time from which encoding is shared among threads: the encoding
/// is most of what the sink does (float and timestamp formatting), and the sink is one
/// thread for the whole pipeline, so on many workers it is what they wait for. Below this,
/// a thread costs more than it saves.
const PARALLEL_ENCODING: usize = 1024;

fn encode(buf: &mut Vec<u8>, record: &Record, format: Format) {
    match format {
        Format::Jsonl => {
            write_record_json(buf, record);
            buf.push(b'\n');
        }
        Format::Csv => write_record_csv(buf, record),
    }
}

/// `records` encoded on `threads` threads (this one and helpers), as consecutive pieces in
/// their order.
fn encode_in_parallel(
    records: &[Record],
    format: Format,
    threads: usize,
) -> std::io::Result<Vec<Vec<u8>>> {
    let piece = records.len().div_ceil(threads.max(1)).max(1);
    let encoded = |chunk: &[Record]| {
        let mut buf = Vec::with_capacity(chunk.len() * 160);
        chunk.iter().for_each(|r| encode(&mut buf, r, format));
        buf
    };
    let mut chunks = records.chunks(piece);
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let helpers = chunks
            .map(|chunk| {
                std::thread::Builder::new()
                    .name("file-encode".into())
                    .spawn_scoped(scope, move || encoded(chunk))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut pieces = vec![encoded(first)];
        for helper in helpers {
            let piece = helper
                .join()
                .map_err(|_| std::io::Error::other("a thread encoding records panicked"))?;
            pieces.push(piece);
        }
        Ok(pieces)
    })
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
        (Record::Tick(x), Record::Tick(y)) => {
            (x.seq, &x.symbol, x.ts).cmp(&(y.seq, &y.symbol, y.ts))
        }
        (Record::Bar(x), Record::Bar(y)) => (&x.symbol, x.interval, x.start, x.revision)
            .cmp(&(&y.symbol, y.interval, y.start, y.revision)),
        (Record::Indicator(x), Record::Indicator(y)) => {
            (&x.symbol, x.interval, x.ts, &x.id, x.revision)
                .cmp(&(&y.symbol, y.interval, y.ts, &y.id, y.revision))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}
