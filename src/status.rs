//! What a running pipeline reports about itself, for `/health`: the engine writes it, the
//! server reads it, neither imports the other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One source as the engine sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// Partitions of it running in this process.
    pub running: usize,
    /// The most advanced watermark of its partitions here (ms; 0 before the first record).
    pub watermark: i64,
    /// What a live feed reports of its connection (`None` for other sources).
    pub feed: Option<FeedStatus>,
    /// What a history source has fetched, by symbol (empty for other sources).
    pub history: BTreeMap<String, HistoryProgress>,
}

/// How far a history source has got with one symbol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryProgress {
    /// Pages (requests that returned data or an empty range) done so far.
    pub pages_done: u64,
    /// Pages planned (it grows when a full page is split).
    pub pages_total: u64,
    /// Bars sent on.
    pub bars: u64,
    /// Every page is done.
    pub done: bool,
}

/// Where a live feed's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedPhase {
    /// Connecting, or waiting to reconnect.
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// Gave up (the server refused the credentials).
    Stopped,
}

/// A live feed's connection, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStatus {
    pub phase: FeedPhase,
    /// When the last frame arrived (ms since the epoch; 0 before the first).
    pub last_message: i64,
    /// Symbols the server refused to stream (at most [`MAX_REJECTED`] are kept).
    pub rejected: Vec<String>,
}

/// Rejected symbols listed per source at most; the metric counts them all.
pub const MAX_REJECTED: usize = 100;

/// The sources of a run, shared between the engine and the server.
#[derive(Clone, Default)]
pub struct RunStatus {
    sources: Arc<Mutex<BTreeMap<String, SourceStatus>>>,
}

impl RunStatus {
    fn update(&self, source: &str, change: impl FnOnce(&mut SourceStatus)) {
        if let Ok(mut sources) = self.sources.lock() {
            change(sources.entry(source.to_owned()).or_default());
        }
    }

    pub fn partition_started(&self, source: &str) {
        self.update(source, |s| s.running += 1);
    }

    pub fn partition_ended(&self, source: &str) {
        self.update(source, |s| s.running = s.running.saturating_sub(1));
    }

    pub fn watermark(&self, source: &str, watermark: i64) {
        self.update(source, |s| s.watermark = s.watermark.max(watermark));
    }

    pub fn source(&self, source: &str) -> SourceStatus {
        self.sources
            .lock()
            .ok()
            .and_then(|s| s.get(source).cloned())
            .unwrap_or_default()
    }

    pub fn history_progress(
        &self,
        source: &str,
        symbol: &str,
        change: impl FnOnce(&mut HistoryProgress),
    ) {
        self.update(source, |s| {
            if let Some(p) = s.history.get_mut(symbol) {
                change(p);
            } else {
                let mut p = HistoryProgress::default();
                change(&mut p);
                s.history.insert(symbol.to_owned(), p);
            }
        });
    }

    /// Every source's status, by name.
    pub fn sources(&self) -> BTreeMap<String, SourceStatus> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update_feed(&self, source: &str, change: impl FnOnce(&mut FeedStatus)) {
        self.update(source, |s| {
            change(s.feed.get_or_insert_with(|| FeedStatus {
                phase: FeedPhase::Connecting,
                last_message: 0,
                rejected: Vec::new(),
            }))
        });
    }

    pub fn feed_phase(&self, source: &str, phase: FeedPhase) {
        self.update_feed(source, |f| f.phase = phase);
    }

    pub fn feed_message(&self, source: &str, at_ms: i64) {
        self.update_feed(source, |f| f.last_message = f.last_message.max(at_ms));
    }

    pub fn feed_rejected(&self, source: &str, symbol: &str) {
        self.update_feed(source, |f| {
            if f.rejected.len() < MAX_REJECTED && !f.rejected.iter().any(|s| s == symbol) {
                f.rejected.push(symbol.to_owned());
            }
        });
    }
}
