//! Sequence numbers and watermarks, stamped by each source partition.

use marketflow_operators::{Bar, Tick};

use crate::metrics::metrics;

/// Bits of a sequence number left to a partition's own count; the partition index is
/// above them, so ties in event time follow partition order, then arrival order.
const PARTITION_SHIFT: u32 = 40;

/// Stamps records with a sequence number and the partition's watermark:
/// `max event time seen - max_delay`, never moving backwards.
#[derive(Debug, Clone)]
pub struct Stamper {
    max_delay: i64,
    max_seen: i64,
    watermark: i64,
    seq: u64,
}

impl Stamper {
    pub fn new(max_delay_ms: i64) -> Stamper {
        Stamper::for_partition(max_delay_ms, 0)
    }

    /// A stamper for partition `partition`: its sequence numbers are disjoint from the
    /// other partitions' and ordered after those of lower partitions.
    pub fn for_partition(max_delay_ms: i64, partition: usize) -> Stamper {
        Stamper {
            max_delay: max_delay_ms.max(0),
            max_seen: i64::MIN,
            watermark: 0,
            seq: (partition as u64) << PARTITION_SHIFT,
        }
    }

    #[inline]
    fn observe(&mut self, ts: i64) -> (u64, i64) {
        if ts > self.max_seen {
            self.max_seen = ts;
            self.watermark = self.watermark.max(ts - self.max_delay);
        }
        let seq = self.seq;
        self.seq += 1;
        (seq, self.watermark)
    }

    #[inline]
    pub fn stamp_tick(&mut self, tick: &mut Tick) {
        (tick.seq, tick.wm) = self.observe(tick.ts);
    }

    #[inline]
    pub fn stamp_bar(&mut self, bar: &mut Bar) {
        (bar.seq, bar.wm) = self.observe(bar.start);
    }

    /// Moves the watermark to `to` if that is later (wall-clock progress of an idle source).
    pub fn advance(&mut self, to: i64) -> bool {
        if to > self.watermark {
            self.watermark = to;
            true
        } else {
            false
        }
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// A stamper that continues from `state` (a checkpoint), with the same `max_delay`.
    pub fn restored(max_delay_ms: i64, state: StamperState) -> Stamper {
        Stamper {
            max_delay: max_delay_ms.max(0),
            max_seen: state.max_seen,
            watermark: state.watermark,
            seq: state.seq,
        }
    }
}

/// Where a stamper stands: what a checkpoint keeps of it so that the records after the
/// cut get the numbers and watermarks they would have had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct StamperState {
    pub max_seen: i64,
    pub watermark: i64,
    /// The partition's next sequence number.
    pub seq: u64,
}

/// Publishes a source's watermark gauge.
pub fn report_watermark(source: &str, watermark: i64) {
    metrics()
        .source_watermark
        .with_label_values(&[source])
        .set(watermark as f64 / 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use marketflow_operators::Symbol;

    fn stamp(s: &mut Stamper, ts: i64) -> (u64, i64) {
        let mut t = Tick {
            symbol: Symbol::new("A").unwrap(),
            ts,
            price: 1.0,
            volume: 1.0,
            seq: 0,
            wm: 0,
        };
        s.stamp_tick(&mut t);
        (t.seq, t.wm)
    }

    #[test]
    fn watermark_trails_the_maximum() {
        let mut s = Stamper::new(2_000);
        assert_eq!(stamp(&mut s, 10_000), (0, 8_000));
        assert_eq!(stamp(&mut s, 9_000), (1, 8_000));
        assert_eq!(stamp(&mut s, 12_500), (2, 10_500));
    }

    #[test]
    fn partitions_number_after_each_other() {
        let mut first = Stamper::for_partition(0, 0);
        let mut second = Stamper::for_partition(0, 1);
        let (a, _) = stamp(&mut second, 5);
        let (b, _) = stamp(&mut first, 5);
        assert!(b < a);
    }
}
