//! `type: file` — ticks or bars from a CSV or JSONL file. File order is arrival order.
//!
//! With `partitions: N` the file is cut into N byte ranges at line boundaries, each read
//! as a partition of its own (its own sequence numbers and watermark) by whichever worker
//! the engine places it on. The position of a partition is its byte offset in the file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context as _;
use marketflow_operators::time::format_timestamp;
use marketflow_operators::{Bar, Interval, Tick};
use schemars::JsonSchema;
use serde::Deserialize;

pub use crate::codec::Format;
use crate::codec::{self, make_bar, make_tick, BarFields, CodecError, NaiveTime};
use crate::config::de::Spanned;
use crate::config::diagnostic::Diagnostic;
use crate::config::values::{Duration, Parsed};
use crate::connector::{
    report_watermark, RecordsKind, RestartFrom, Source, SourceContext, SourceEvent, Stamper,
    StreamType, Task, TaskError,
};
use crate::dead_letter::Rejected;
use crate::metrics::metrics;

/// Ticks or bars read from a file.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Path of the file, relative to the working directory.
    pub path: Spanned<PathBuf>,
    /// `csv` or `jsonl`; by default taken from the extension (`.csv`; `.jsonl`, `.ndjson`, `.json`).
    #[serde(default)]
    pub format: Option<Format>,
    /// `ticks` (default) or `bars`.
    #[serde(default)]
    pub kind: RecordsKind,
    /// Interval of the bars (required with `kind: bars`).
    #[serde(default)]
    pub interval: Option<Parsed<Interval>>,
    /// Bounded out-of-orderness: the watermark trails the latest event time by this much
    /// (default 0s).
    #[serde(
        default,
        deserialize_with = "crate::config::values::duration_within::<_, 0, 86_400_000>"
    )]
    #[schemars(with = "Duration")]
    pub max_delay: Duration,
    /// Time zone of timestamps written without a UTC offset; without it they are rejected.
    #[serde(default)]
    pub timezone: Option<Parsed<chrono_tz::Tz>>,
    /// Read the file as this many byte ranges cut at line boundaries, spread over all
    /// workers and processes (default 1; a regular file only). Each range has its own
    /// watermark; the pipeline's is their minimum.
    #[serde(default = "one")]
    pub partitions: usize,
    /// After this long without a new line (a pipe gone quiet), a partition stops holding
    /// the pipeline's watermark back (default: it always holds it).
    #[serde(
        default,
        deserialize_with = "crate::config::values::optional_duration_within::<_, 1, 86_400_000>"
    )]
    #[schemars(with = "Option<Duration>")]
    pub idle_timeout: Option<Duration>,
}

fn one() -> usize {
    1
}

impl Source for FileSourceConfig {
    const TYPE: &'static str = "file";
    const ABOUT: &'static str =
        "ticks or bars from a CSV or JSONL file (or a pipe); file order is arrival order";

    fn output(&self) -> StreamType {
        self.kind
            .stream_type(self.interval.as_ref().map(|i| i.value))
    }

    fn is_finite(&self) -> bool {
        true
    }

    fn partitions(&self) -> usize {
        self.partitions
    }

    fn max_delay(&self) -> i64 {
        self.max_delay.0
    }

    fn restart_from(&self) -> RestartFrom {
        RestartFrom::Position
    }

    fn idle_timeout(&self) -> Option<StdDuration> {
        self.idle_timeout.map(Duration::as_std)
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let pos = self.interval.as_ref().map(|i| i.pos).unwrap_or_default();
        // An unset `${VAR}` in the path is reported by interpolation already.
        let unresolved = self.path.value.to_string_lossy().contains("${");
        if self.format().is_none() && !unresolved {
            problems.push(
                Diagnostic::new(
                    self.path.pos,
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
            (RecordsKind::Bars, None) => problems.push(
                Diagnostic::new(
                    pos,
                    format!("{path}.interval"),
                    "`kind: bars` needs the bars' `interval`",
                )
                .help("add e.g. `interval: 1m`"),
            ),
            (RecordsKind::Ticks, Some(i)) => problems.push(Diagnostic::new(
                i.pos,
                format!("{path}.interval"),
                "`interval` only applies to `kind: bars`",
            )),
            _ => {}
        }
        if !(1..=1024).contains(&self.partitions) {
            problems.push(Diagnostic::new(
                self.path.pos,
                format!("{path}.partitions"),
                format!("partitions must be 1 to 1024, not {}", self.partitions),
            ));
        }
        problems
    }

    fn build(&self, ctx: SourceContext) -> Task {
        let config = self.clone();
        Task::Blocking(Box::new(move || read_file(&config, ctx)))
    }
}

impl FileSourceConfig {
    fn format(&self) -> Option<Format> {
        self.format.or_else(|| Format::from_path(&self.path.value))
    }

    fn naive(&self) -> NaiveTime {
        self.timezone
            .as_ref()
            .map_or(NaiveTime::Reject, |tz| NaiveTime::In(tz.value))
    }
}

/// A block of whole lines of the file.
struct Chunk {
    /// 1-based number of its first line.
    first_line: u64,
    /// File offset just past its last byte (for progress).
    end_offset: u64,
    bytes: Vec<u8>,
    /// Lines skipped before it for being longer than [`MAX_LINE`]: number, first bytes.
    overlong: Vec<(u64, Vec<u8>)>,
}

/// The longest line read: a longer one is skipped to its end and dead-lettered, so that a
/// stream without newlines cannot grow memory without bound.
const MAX_LINE: usize = 1 << 20;
/// Bytes of an over-long line kept for its dead letter.
const REJECTED_PREFIX: usize = 256;

/// What a decoder made of one chunk, in line order.
#[derive(Default)]
struct Decoded {
    ticks: Vec<Tick>,
    bars: Vec<Bar>,
    /// (line, reason, error, raw text) of lines that could not be used.
    rejects: Vec<(u64, &'static str, String, Vec<u8>)>,
    end_offset: u64,
}

/// Turns chunks into records; shared read-only by the decoder threads.
struct Decoder {
    format: Format,
    kind: RecordsKind,
    columns: Option<Columns>,
    naive: NaiveTime,
    interval: Option<Interval>,
    file: String,
}

impl Decoder {
    fn decode(&self, chunk: &Chunk) -> Decoded {
        let mut out = Decoded {
            end_offset: chunk.end_offset,
            ..Decoded::default()
        };
        for (line, prefix) in &chunk.overlong {
            let detail = format!(
                "{}:{line}: a line longer than {MAX_LINE} bytes (its first {} bytes are kept)",
                self.file,
                prefix.len()
            );
            out.rejects
                .push((*line, "line_too_long", detail, prefix.clone()));
        }
        match (self.format, &self.columns) {
            (Format::Csv, Some(columns)) => {
                let mut csv = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(&chunk.bytes[..]);
                let mut record = csv::ByteRecord::new();
                loop {
                    match csv.read_byte_record(&mut record) {
                        Ok(false) => break,
                        Ok(true) => {}
                        Err(e) => {
                            let line = chunk.first_line
                                + e.position().map_or(0, |p| p.line().saturating_sub(1));
                            out.rejects.push((
                                line,
                                "malformed",
                                format!("{}:{line}: {e}", self.file),
                                Vec::new(),
                            ));
                            continue;
                        }
                    }
                    if record.len() == 1 && record.get(0).is_some_and(|f| f.trim_ascii().is_empty())
                    {
                        continue;
                    }
                    let line = chunk.first_line
                        + record.position().map_or(0, |p| p.line().saturating_sub(1));
                    let parsed = match self.kind {
                        _ if record.len() != columns.width => Err(CodecError::FieldCount {
                            expected: columns.width,
                            found: record.len(),
                        }),
                        RecordsKind::Ticks => csv_tick(&record, columns, self.naive).map(Row::Tick),
                        RecordsKind::Bars => {
                            csv_bar(&record, columns, self.interval, self.naive).map(Row::Bar)
                        }
                    };
                    self.keep(
                        parsed,
                        line,
                        || record.iter().collect::<Vec<_>>().join(&b","[..]),
                        &mut out,
                    );
                }
            }
            _ => {
                for (i, line) in chunk.bytes.split(|b| *b == b'\n').enumerate() {
                    let text = line.trim_ascii();
                    if text.is_empty() {
                        continue;
                    }
                    let parsed = match self.kind {
                        RecordsKind::Ticks => {
                            codec::parse_tick_json(text, self.naive).map(Row::Tick)
                        }
                        RecordsKind::Bars => {
                            codec::parse_bar_json(text, self.interval, self.naive).map(Row::Bar)
                        }
                    };
                    self.keep(
                        parsed,
                        chunk.first_line + i as u64,
                        || text.to_vec(),
                        &mut out,
                    );
                }
            }
        }
        out
    }

    fn keep(
        &self,
        parsed: Result<Row, CodecError>,
        line: u64,
        raw: impl FnOnce() -> Vec<u8>,
        out: &mut Decoded,
    ) {
        match parsed {
            Ok(Row::Tick(tick)) => out.ticks.push(tick),
            Ok(Row::Bar(bar)) if Some(bar.interval) != self.interval => {
                let detail = format!(
                    "{}:{line}: bar interval {} where the source declares {}",
                    self.file,
                    bar.interval,
                    self.interval.map(|i| i.to_string()).unwrap_or_default()
                );
                out.rejects.push((line, "interval_mismatch", detail, raw()));
            }
            Ok(Row::Bar(bar)) => out.bars.push(bar),
            Err(e) => out.rejects.push((
                line,
                "malformed",
                format!("{}:{line}: {e}", self.file),
                raw(),
            )),
        }
    }
}

/// A record read from one line.
enum Row {
    Tick(Tick),
    Bar(Bar),
}

/// Bytes per chunk handed to a decoder thread.
const CHUNK: usize = 1 << 20;

/// The part of the file one partition reads, after the CSV header.
struct Opened {
    input: Box<dyn Read + Send>,
    columns: Option<Columns>,
    /// Line number and byte offset of the first line to read.
    first_line: u64,
    offset: u64,
    /// Where the partition ends (the file size for the last one).
    end: u64,
}

/// Opens the file, reads the CSV header, and places the reader at the partition's first
/// line.
fn open_partition(
    config: &FileSourceConfig,
    ctx: &SourceContext,
    path: &str,
) -> anyhow::Result<Opened> {
    let mut file = File::open(&config.path.value)
        .with_context(|| format!("source {}: opening {path}", ctx.name))?;
    let metadata = file.metadata().with_context(|| format!("reading {path}"))?;
    let size = metadata.len();
    let mut input = BufReader::with_capacity(CHUNK, file.try_clone()?);
    let csv = config.format().unwrap_or(Format::Jsonl) == Format::Csv;
    let (columns, header_lines, header_end) = if csv {
        let mut header = Vec::new();
        let read = (&mut input)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut header)
            .with_context(|| format!("reading {path}"))?;
        if read == MAX_LINE && !header.ends_with(b"\n") {
            anyhow::bail!("{path}: the CSV header is longer than {MAX_LINE} bytes");
        }
        let header = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&header[..])
            .byte_records()
            .next()
            .transpose()?
            .unwrap_or_default();
        let columns = find_columns(&header, config.kind).with_context(|| path.to_owned())?;
        (Some(columns), 1, read as u64)
    } else {
        (None, 0, 0)
    };
    if let Some(restart) = &ctx.restart {
        return restart_partition(
            file,
            ctx,
            (columns, header_lines, header_end, size),
            restart,
            path,
        );
    }
    if ctx.partitions == 1 {
        return Ok(Opened {
            input: Box::new(input),
            columns,
            first_line: header_lines + 1,
            offset: header_end,
            end: size,
        });
    }
    if !metadata.is_file() {
        anyhow::bail!(
            "source {}: `partitions` needs a regular file; {path} is not one",
            ctx.name
        );
    }
    let start = partition_cut(&mut file, header_end, size, ctx.partition, ctx.partitions)?;
    let end = partition_cut(
        &mut file,
        header_end,
        size,
        ctx.partition + 1,
        ctx.partitions,
    )?;
    let first_line = count_lines(&mut file, start)? + 1;
    file.seek(SeekFrom::Start(start))?;
    Ok(Opened {
        input: Box::new(file.take(end - start)),
        columns,
        first_line,
        offset: start,
        end,
    })
}

/// Places the reader where a checkpoint cut the partition (`run --resume`).
fn restart_partition(
    mut file: File,
    ctx: &SourceContext,
    (columns, header_lines, header_end, size): (Option<Columns>, u64, u64, u64),
    restart: &crate::connector::Restart,
    path: &str,
) -> anyhow::Result<Opened> {
    if !file.metadata()?.is_file() {
        anyhow::bail!(
            "source {}: {path} is not a regular file, so it cannot be resumed",
            ctx.name
        );
    }
    let (start, end) = if ctx.partitions == 1 {
        (header_end, size)
    } else {
        (
            partition_cut(&mut file, header_end, size, ctx.partition, ctx.partitions)?,
            partition_cut(
                &mut file,
                header_end,
                size,
                ctx.partition + 1,
                ctx.partitions,
            )?,
        )
    };
    let at = restart.position.unwrap_or(start);
    if !(start..=end).contains(&at) {
        anyhow::bail!(
            "source {}: the checkpoint resumes partition {} at byte {at}, outside its bytes {start} to {end} of {path}: the file changed; run without --resume",
            ctx.name,
            ctx.partition
        );
    }
    let first_line = if at == header_end {
        header_lines + 1
    } else {
        count_lines(&mut file, at)? + 1
    };
    file.seek(SeekFrom::Start(at))?;
    Ok(Opened {
        input: Box::new(file.take(end - at)),
        columns,
        first_line,
        offset: at,
        end,
    })
}

/// Where partition `k` of `count` starts: the first line start at or after an equal share
/// of the data, so that every line belongs to exactly one partition.
fn partition_cut(
    file: &mut File,
    data_start: u64,
    size: u64,
    k: usize,
    count: usize,
) -> std::io::Result<u64> {
    if k >= count {
        return Ok(size);
    }
    let share = data_start + (size - data_start) * k as u64 / count as u64;
    if share <= data_start {
        return Ok(data_start);
    }
    file.seek(SeekFrom::Start(share - 1))?;
    // Skip to the end of the line, without keeping it: a line may be huge.
    let mut reader = BufReader::new(file);
    let mut skipped = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(size);
        }
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            return Ok((share + skipped + i as u64).min(size));
        }
        skipped += buf.len() as u64;
        let n = buf.len();
        reader.consume(n);
    }
}

/// Lines that end before `offset`.
fn count_lines(file: &mut File, offset: u64) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(CHUNK, file.take(offset));
    let mut lines = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(lines);
        }
        lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        let n = buf.len();
        reader.consume(n);
    }
}

/// Reads the partition in chunks of whole lines, decodes them on several threads, and
/// stamps and sends the records in file order from this thread: the sequence numbers and
/// watermarks are those of a sequential read.
fn read_file(config: &FileSourceConfig, ctx: SourceContext) -> Result<(), TaskError> {
    let path = config.path.display().to_string();
    let Opened {
        input,
        columns,
        first_line,
        offset,
        end: size,
    } = open_partition(config, &ctx, &path)?;
    let format = config.format().unwrap_or(Format::Jsonl);
    let decoder = std::sync::Arc::new(Decoder {
        format,
        kind: config.kind,
        columns,
        naive: config.naive(),
        interval: config.interval.as_ref().map(|i| i.value),
        file: path.clone(),
    });

    let threads =
        (std::thread::available_parallelism().map_or(1, |n| n.get()) / ctx.partitions).clamp(1, 4);
    let (to_decoders, from_decoders) = start_decoders(&decoder, threads)?;
    let splitter = std::thread::Builder::new()
        .name("file-split".into())
        .spawn(move || split(input, first_line, offset, to_decoders))
        .context("starting the reader thread")?;

    let started = Instant::now();
    let mut sender = Sender {
        ctx: &ctx,
        stamper: match ctx.restart.and_then(|r| r.stamper) {
            Some(state) => Stamper::restored(config.max_delay.0, state),
            None => Stamper::for_partition(config.max_delay.0, ctx.partition),
        },
        records: 0,
        rejected: 0,
        last_offset: 0,
        last_report: Instant::now(),
    };
    for index in 0.. {
        let Ok(decoded) = from_decoders[index % threads].recv() else {
            break;
        };
        sender.send(decoded)?;
        if sender.last_report.elapsed() >= StdDuration::from_secs(2) {
            sender.progress(&path, size);
        }
        if ctx.shutdown.is_triggered() {
            break;
        }
    }
    drop(from_decoders);
    splitter
        .join()
        .map_err(|_| anyhow::anyhow!("the file reader thread panicked"))?
        .with_context(|| format!("reading {path}"))?;
    tracing::info!(
        source = %ctx.name,
        records = sender.records,
        rejected = sender.rejected,
        seconds = started.elapsed().as_secs_f64(),
        "finished reading {path}"
    );
    Ok(())
}

/// The decoders' inlets (chunks) and outlets (decoded records), by thread.
type DecoderChannels = (
    Vec<std::sync::mpsc::SyncSender<Chunk>>,
    Vec<std::sync::mpsc::Receiver<Decoded>>,
);

/// Decoder threads, each with a bounded channel of chunks in and of decoded records out.
fn start_decoders(
    decoder: &std::sync::Arc<Decoder>,
    threads: usize,
) -> anyhow::Result<DecoderChannels> {
    let mut to_decoders = Vec::new();
    let mut from_decoders = Vec::new();
    for _ in 0..threads {
        let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<Decoded>(2);
        let decoder = decoder.clone();
        std::thread::Builder::new()
            .name("file-decode".into())
            .spawn(move || {
                for chunk in chunk_rx {
                    if out_tx.send(decoder.decode(&chunk)).is_err() {
                        break;
                    }
                }
            })
            .context("starting a decoder thread")?;
        to_decoders.push(chunk_tx);
        from_decoders.push(out_rx);
    }
    Ok((to_decoders, from_decoders))
}

/// Cuts the file into chunks of whole lines, dealt round-robin to the decoders.
fn split(
    mut input: Box<dyn Read + Send>,
    mut line: u64,
    mut offset: u64,
    decoders: Vec<std::sync::mpsc::SyncSender<Chunk>>,
) -> std::io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut sent = 0usize;
    // The over-long line being skipped (its number and first bytes), and those skipped
    // since the last chunk: they travel with the next chunk to the dead-letter path.
    let mut skipping: Option<(u64, Vec<u8>)> = None;
    let mut overlong: Vec<(u64, Vec<u8>)> = Vec::new();
    loop {
        let start = pending.len();
        pending.resize(start + CHUNK, 0);
        let read = read_available(&mut input, &mut pending[start..])?;
        pending.truncate(start + read);
        let at_end = read == 0;
        if let Some(skipped) = skipping.take() {
            match pending.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    offset += i as u64 + 1;
                    pending.drain(..=i);
                    line = skipped.0 + 1;
                    overlong.push(skipped);
                }
                None if at_end => overlong.push(skipped),
                None => {
                    offset += pending.len() as u64;
                    pending.clear();
                    skipping = Some(skipped);
                    continue;
                }
            }
        }
        // Send whole lines; a partial last line waits for more bytes (or the end).
        let cut = if at_end {
            pending.len()
        } else {
            pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if cut == 0 && !at_end {
            if pending.len() >= MAX_LINE {
                // A line without end in sight: skip it instead of holding it all.
                let prefix = pending[..REJECTED_PREFIX].to_vec();
                offset += pending.len() as u64;
                pending.clear();
                skipping = Some((line, prefix));
            }
            continue;
        }
        if cut == 0 && overlong.is_empty() {
            return Ok(());
        }
        let rest = pending.split_off(cut);
        let bytes = std::mem::replace(&mut pending, rest);
        offset += bytes.len() as u64;
        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        let chunk = Chunk {
            first_line: line,
            end_offset: offset,
            bytes,
            overlong: std::mem::take(&mut overlong),
        };
        line += lines;
        if decoders[sent % decoders.len()].send(chunk).is_err() || at_end {
            return Ok(());
        }
        sent += 1;
    }
}

/// Reads what is available, up to `buf.len()` bytes: a regular file fills the buffer, a
/// pipe or FIFO hands over what its writer has written so far, so its records flow
/// without waiting for a full chunk. 0 means the end of the input.
fn read_available(input: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Stamps decoded records in file order and sends them in batches.
struct Sender<'a> {
    ctx: &'a SourceContext,
    stamper: Stamper,
    records: u64,
    rejected: u64,
    last_offset: u64,
    last_report: Instant,
}

impl Sender<'_> {
    fn send(&mut self, mut decoded: Decoded) -> Result<(), TaskError> {
        for (line, reason, detail, raw) in &decoded.rejects {
            self.ctx.dead_letters.reject(
                &self.ctx.name,
                reason,
                detail,
                Rejected::Line {
                    line: *line,
                    text: raw,
                },
            );
        }
        self.rejected += decoded.rejects.len() as u64;
        let n = (decoded.ticks.len() + decoded.bars.len()) as u64;
        self.records += n;
        metrics()
            .source_records
            .with_label_values(&[self.ctx.name.as_str()])
            .inc_by(n);
        for tick in decoded.ticks.iter_mut() {
            self.stamper.stamp_tick(tick);
        }
        for bar in decoded.bars.iter_mut() {
            self.stamper.stamp_bar(bar);
        }
        let position = decoded.end_offset;
        if !decoded.ticks.is_empty() {
            self.ctx.out.blocking_send(SourceEvent::Ticks {
                records: decoded.ticks,
                position,
            })?;
        }
        if !decoded.bars.is_empty() {
            self.ctx.out.blocking_send(SourceEvent::Bars {
                records: decoded.bars,
                position,
            })?;
        }
        report_watermark(&self.ctx.name, self.stamper.watermark());
        self.last_offset = decoded.end_offset;
        Ok(())
    }

    fn progress(&mut self, path: &str, size: u64) {
        self.last_report = Instant::now();
        let percent = if size > 0 {
            self.last_offset as f64 * 100.0 / size as f64
        } else {
            100.0
        };
        tracing::info!(
            source = %self.ctx.name,
            records = self.records,
            rejected = self.rejected,
            event_time = %format_timestamp(self.stamper.watermark()),
            "reading {path}: {percent:.0}%"
        );
    }
}

/// Column positions found in a CSV header.
struct Columns {
    /// Fields in the header: a row with another count is malformed.
    width: usize,
    ts: usize,
    symbol: usize,
    price: [usize; 4],
    volume: Option<usize>,
    interval: Option<usize>,
    trades: Option<usize>,
    vwap: Option<usize>,
}

fn find_columns(header: &csv::ByteRecord, kind: RecordsKind) -> anyhow::Result<Columns> {
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
        RecordsKind::Ticks => {
            let price = need(&["price"])?;
            Columns {
                width: names.len(),
                ts: need(&["ts", "timestamp", "time"])?,
                symbol: need(&["symbol", "ticker"])?,
                price: [price; 4],
                volume: find(&["volume", "size", "qty"]),
                interval: None,
                trades: None,
                vwap: None,
            }
        }
        RecordsKind::Bars => Columns {
            width: names.len(),
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

fn text<'r>(
    record: &'r csv::ByteRecord,
    index: usize,
    name: &'static str,
) -> Result<&'r str, CodecError> {
    let bytes = record.get(index).ok_or(CodecError::Missing(name))?;
    std::str::from_utf8(bytes.trim_ascii()).map_err(|_| CodecError::Field {
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
        Some(i) if record.get(i).is_some_and(|f| !f.trim_ascii().is_empty()) => {
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
