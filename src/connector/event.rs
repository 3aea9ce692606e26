//! What crosses the channels between sources, the dataflow and sinks.

use marketflow_operators::{Bar, Record, Tick};

/// Where a source partition stands: a file byte offset, a synthetic tick count, a Kafka
/// offset. Reading again from a position gives every record after it.
pub type Position = u64;

/// One batch from a source partition to its worker.
#[derive(Debug)]
pub enum SourceEvent {
    /// Ticks, and the position just past the last of them.
    Ticks {
        records: Vec<Tick>,
        position: Position,
    },
    /// Bars, and the position just past the last of them.
    Bars {
        records: Vec<Bar>,
        position: Position,
    },
    /// No record with an event time before this will follow (idle sources).
    Watermark(i64),
}

impl SourceEvent {
    /// The records it carries.
    pub fn record_count(&self) -> usize {
        match self {
            SourceEvent::Ticks { records, .. } => records.len(),
            SourceEvent::Bars { records, .. } => records.len(),
            SourceEvent::Watermark(_) => 0,
        }
    }

    /// Keeps the first `n` records and returns the others, with the same position (the
    /// position is reached once they are all in).
    pub fn split_off(&mut self, n: usize) -> SourceEvent {
        match self {
            SourceEvent::Ticks { records, position } => SourceEvent::Ticks {
                records: records.split_off(n.min(records.len())),
                position: *position,
            },
            SourceEvent::Bars { records, position } => SourceEvent::Bars {
                records: records.split_off(n.min(records.len())),
                position: *position,
            },
            SourceEvent::Watermark(w) => SourceEvent::Watermark(*w),
        }
    }
}

/// One batch from the dataflow to a sink. A sink type outside this crate matches it with
/// a wildcard arm: later events (such as `Checkpoint`) are ones it may ignore.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkEvent {
    /// Records of one dataflow time (a watermark in ms: a lower bound of their event
    /// time), in no particular order.
    Records { time: i64, records: Vec<Record> },
    /// Every record with a time below this has been delivered.
    Progress(i64),
    /// A checkpoint at this time: every record below it has been delivered (it comes just
    /// before `Progress` of the same time). A sink that resumes at an offset
    /// ([`Sink::resumes_at_offset`](super::Sink::resumes_at_offset)) makes the records
    /// below it durable and reports its offset ([`Acknowledger::checkpoint`](super::Acknowledger::checkpoint)).
    Checkpoint(i64),
}

impl SinkEvent {
    /// The memory its records hold, as flow control counts it: the batch's allocation
    /// (records own no heap of note: symbols and ids are inline strings).
    pub fn queued_bytes(&self) -> usize {
        match self {
            SinkEvent::Records { records, .. } => {
                records.capacity() * std::mem::size_of::<Record>()
            }
            _ => 0,
        }
    }
}
