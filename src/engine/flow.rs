//! Flow control across the whole cluster: what the sinks have acknowledged, and whether a
//! sink is full. The leader (worker 0 of process 0, beside the sinks) measures both and
//! broadcasts them over a small dataflow of their own; every worker applies them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::connector::{Acknowledger, Position};
use crate::metrics::metrics;

/// What the leader broadcasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Control {
    /// Every sink has made durable every record with a time below this.
    pub acked: i64,
    /// A sink is full: sources wait.
    pub paused: bool,
}

impl Default for Control {
    fn default() -> Control {
        Control {
            acked: i64::MIN,
            paused: false,
        }
    }
}

/// This process's view of the flow control, shared by its workers.
pub struct Flow {
    acked: AtomicI64,
    paused: AtomicBool,
    /// Sink operators of this process holding records their sink cannot take yet.
    blocked_sinks: AtomicUsize,
    /// The highest watermark fed into each source's partitions here, for idle partitions.
    max_watermarks: Vec<AtomicI64>,
}

impl Flow {
    pub fn new(sources: usize) -> Flow {
        Flow {
            acked: AtomicI64::new(i64::MIN),
            paused: AtomicBool::new(false),
            blocked_sinks: AtomicUsize::new(0),
            max_watermarks: (0..sources).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    pub fn apply(&self, control: Control) {
        self.acked.fetch_max(control.acked, Ordering::SeqCst);
        self.paused.store(control.paused, Ordering::SeqCst);
    }

    /// Whether sources wait: the leader said so, or a sink operator of this process is
    /// full now (seen at once, before the leader's word goes round).
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst) || self.blocked_sinks.load(Ordering::SeqCst) > 0
    }

    pub fn acked(&self) -> i64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// A sink operator of this process started or stopped waiting for its sink.
    pub fn sink_blocked(&self, blocked: bool) {
        if blocked {
            self.blocked_sinks.fetch_add(1, Ordering::SeqCst);
        } else {
            self.blocked_sinks.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// What the leader broadcasts, from the sinks' acknowledgements.
    pub fn control(&self, sinks: &[Acknowledger]) -> Control {
        Control {
            acked: sinks
                .iter()
                .map(Acknowledger::frontier)
                .min()
                .unwrap_or(i64::MAX),
            paused: self.blocked_sinks.load(Ordering::SeqCst) > 0,
        }
    }

    pub fn report_watermark(&self, source: usize, watermark: i64) {
        if let Some(w) = self.max_watermarks.get(source) {
            w.fetch_max(watermark, Ordering::SeqCst);
        }
    }

    /// The highest watermark fed into any source's partitions here.
    pub fn max_watermark_any(&self) -> i64 {
        self.max_watermarks
            .iter()
            .map(|w| w.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0)
    }

    pub fn max_watermark(&self, source: usize) -> i64 {
        self.max_watermarks
            .get(source)
            .map_or(0, |w| w.load(Ordering::SeqCst))
    }
}

/// The positions of one source partition on their way to the sinks: each batch's position
/// with the time it was sent at, until the sinks acknowledge a frontier past that time.
pub struct PartitionAck {
    in_flight: VecDeque<(i64, Position)>,
    acked: Option<Position>,
    tx: watch::Sender<Option<Position>>,
    gauge: prometheus::IntGauge,
}

impl PartitionAck {
    pub fn new(
        source: &str,
        partition: usize,
        tx: watch::Sender<Option<Position>>,
    ) -> PartitionAck {
        PartitionAck {
            in_flight: VecDeque::new(),
            acked: None,
            tx,
            gauge: metrics()
                .source_acked_position
                .with_label_values(&[source, partition.to_string().as_str()]),
        }
    }

    /// A batch ending at `position` entered the dataflow at `time`.
    pub fn sent(&mut self, time: i64, position: Position) {
        match self.in_flight.back_mut() {
            Some(last) if last.0 == time => last.1 = position,
            _ => self.in_flight.push_back((time, position)),
        }
    }

    /// The sinks have made durable everything with a time below `frontier`: so every batch
    /// sent at an earlier time.
    pub fn acknowledged(&mut self, frontier: i64) {
        let mut newest = None;
        while let Some(&(time, position)) = self.in_flight.front() {
            if time >= frontier {
                break;
            }
            newest = Some(position);
            self.in_flight.pop_front();
        }
        if let Some(position) = newest {
            if self.acked != Some(position) {
                self.acked = Some(position);
                self.tx.send_replace(Some(position));
                self.gauge.set(position as i64);
            }
        }
    }
}
