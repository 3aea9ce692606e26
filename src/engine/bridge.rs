//! The bridge between threads and tasks outside the dataflow and the timely workers:
//! bounded channels in both directions, and a waker so that a parked worker notices a
//! new batch at once.

use std::sync::{Arc, Mutex};
use std::thread::Thread;

/// Batches in flight between a source partition and its worker: enough to keep the worker
/// busy while the source prepares the next, small enough to bound memory.
pub const SOURCE_CHANNEL: usize = 16;
/// Batches in flight between the dataflow and a sink.
pub const SINK_CHANNEL: usize = 64;

/// Unparks timely worker threads of this process.
#[derive(Clone, Default)]
pub struct Waker {
    threads: Arc<Mutex<Vec<Option<Thread>>>>,
}

impl Waker {
    /// Records the calling thread as local worker `local_index`.
    pub fn register(&self, local_index: usize) {
        if let Ok(mut threads) = self.threads.lock() {
            if threads.len() <= local_index {
                threads.resize(local_index + 1, None);
            }
            threads[local_index] = Some(std::thread::current());
        }
    }

    pub fn wake(&self, local_index: usize) {
        if let Ok(threads) = self.threads.lock() {
            if let Some(Some(thread)) = threads.get(local_index) {
                thread.unpark();
            }
        }
    }
}
