//! The dead-letter path: records that could not be used, with the reason, counted in
//! metrics, logged (rate-limited) and, when configured, appended to a JSONL file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use marketflow_operators::time::write_timestamp;
use marketflow_operators::{Bar, Tick};
use serde::Deserialize;

use crate::codec::{write_bar_json, write_json_str, write_tick_json};
use crate::metrics::metrics;

/// Where rejected records go (`dead_letter:` in a pipeline).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A JSONL file that receives every rejected record with its reason.
    pub path: PathBuf,
}

/// What was rejected.
pub enum Rejected<'a> {
    Tick(&'a Tick),
    Bar(&'a Bar),
    /// An input line that could not be parsed, with its 1-based line number.
    Line {
        line: u64,
        text: &'a [u8],
    },
    /// A message that could not be decoded, with where it was read.
    Message {
        topic: &'a str,
        partition: i32,
        offset: i64,
        payload: &'a [u8],
    },
    /// A frame of a live feed that could not be decoded, cut to its first 4 KiB.
    Frame {
        text: &'a [u8],
    },
}

/// Cloneable handle to the dead-letter path.
#[derive(Clone)]
pub struct DeadLetters {
    writer: Option<mpsc::SyncSender<Vec<u8>>>,
    logged: Arc<AtomicU64>,
}

/// How many rejections are logged one by one before only every 10,000th is.
const LOG_FIRST: u64 = 20;

impl DeadLetters {
    /// A dead-letter path that only counts and logs.
    pub fn log_only() -> DeadLetters {
        DeadLetters {
            writer: None,
            logged: Arc::default(),
        }
    }

    /// Opens `config.path` for appending; the writer thread ends when every handle is dropped.
    pub fn open(
        config: &DeadLetterConfig,
    ) -> std::io::Result<(DeadLetters, std::thread::JoinHandle<std::io::Result<()>>)> {
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(1024);
        let handle = std::thread::Builder::new()
            .name("dead-letter".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                for line in rx {
                    out.write_all(&line)?;
                }
                out.flush()
            })?;
        Ok((
            DeadLetters {
                writer: Some(tx),
                logged: Arc::default(),
            },
            handle,
        ))
    }

    /// Records one rejection by `stage` for `reason` (a short, stable word such as
    /// `late` or `malformed`) with a human `detail`.
    pub fn reject(&self, stage: &str, reason: &str, detail: &str, what: Rejected<'_>) {
        metrics()
            .dead_letters
            .with_label_values(&[stage, reason])
            .inc();
        let n = self.logged.fetch_add(1, Ordering::Relaxed);
        if n < LOG_FIRST || n % 10_000 == 0 {
            tracing::warn!(
                stage,
                reason,
                detail,
                "record rejected (dead-letter #{})",
                n + 1
            );
        }
        let Some(writer) = &self.writer else { return };
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"{\"type\":\"dead_letter\",\"stage\":");
        write_json_str(&mut line, stage);
        line.extend_from_slice(b",\"reason\":");
        write_json_str(&mut line, reason);
        line.extend_from_slice(b",\"detail\":");
        write_json_str(&mut line, detail);
        line.extend_from_slice(b",\"at\":\"");
        write_timestamp(&mut line, chrono::Utc::now().timestamp_millis());
        line.push(b'"');
        match what {
            Rejected::Tick(t) => {
                line.extend_from_slice(b",\"record\":");
                write_tick_json(&mut line, t);
            }
            Rejected::Bar(b) => {
                line.extend_from_slice(b",\"record\":");
                write_bar_json(&mut line, b);
            }
            Rejected::Line { line: number, text } => {
                line.extend_from_slice(b",\"line\":");
                line.extend_from_slice(number.to_string().as_bytes());
                line.extend_from_slice(b",\"raw\":");
                write_json_str(&mut line, &String::from_utf8_lossy(text));
            }
            Rejected::Message {
                topic,
                partition,
                offset,
                payload,
            } => {
                line.extend_from_slice(b",\"topic\":");
                write_json_str(&mut line, topic);
                line.extend_from_slice(
                    format!(",\"partition\":{partition},\"offset\":{offset}").as_bytes(),
                );
                line.extend_from_slice(b",\"raw\":");
                write_json_str(&mut line, &String::from_utf8_lossy(payload));
            }
            Rejected::Frame { text } => {
                line.extend_from_slice(b",\"raw\":");
                let cut = &text[..text.len().min(4096)];
                write_json_str(&mut line, &String::from_utf8_lossy(cut));
            }
        }
        line.extend_from_slice(b"}\n");
        let _ = writer.send(line);
    }
}
