//! What a running pipeline reports about itself, for `/health`: the engine writes it, the
//! server reads it, neither imports the other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One source as the engine sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// Partitions of it running in this process.
    pub running: usize,
    /// The most advanced watermark of its partitions here (ms; 0 before the first record).
    pub watermark: i64,
}

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
            .and_then(|s| s.get(source).copied())
            .unwrap_or_default()
    }
}
