//! Flow control across the whole cluster: what the sinks have acknowledged, and how much
//! room their queues have. The leader (worker 0 of process 0, beside the sinks) measures
//! both and broadcasts them over a small dataflow of their own; every worker applies them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use marketflow_operators::Record;

use tokio::sync::watch;

use crate::connector::{Acknowledger, Position, SinkQueue};
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

/// Bytes a sink's queue may hold before the sources pause (`sink_queue:`), by default.
pub const DEFAULT_SINK_QUEUE: u64 = 16 << 20;

/// Records a partition moves into the dataflow in one step of its worker, at most.
pub const PUMP_RECORDS: usize = 16_384;

/// What the sinks cost per pumped record is first taken to be this many records' worth:
/// high, so that the first steps of a run that fans out (a tick into bars and a dozen
/// indicators) cannot overshoot the queues before the cost has been measured.
const FIRST_FAN_OUT: f64 = 32.0;

/// Records arrived between two measurements of what they cost the sinks.
const SAMPLE_RECORDS: u64 = 1024;

/// The fewest records a batch split by the flow control's budget is cut into.
pub const MIN_PIECE: usize = 64;

/// This process's view of the flow control, shared by its workers.
///
/// Every sink has a queue in bytes (the stash in front of its channel and the channel,
/// [`SinkQueue`]) bounded by the pipeline's `sink_queue`. A worker moves source records
/// into the dataflow only while the most loaded queue has room for them, at the measured
/// cost of a pumped record (bytes queued at the most loaded sink per record: a tick that
/// becomes bars and a dozen indicators costs more than itself), counting what is still on
/// its way through the dataflow. A batch larger than the room is split. So a burst leaves
/// about `sink_queue` in front of a slow sink, whatever the source's pace.
///
/// What is on its way is counted per partition ([`Pumped`]): records pumped at a time
/// arrive once the frontier before the sinks has passed it. A partition ahead of the
/// frontier (a live feed waiting behind its history, a Kafka partition ahead of an idle
/// one) holds only its share of the room, as Flink's watermark alignment pauses a split
/// that is ahead; the partition at the frontier never waits for the others' records, so
/// nothing deadlocks and no wall-clock guess is needed.
pub struct Flow {
    acked: AtomicI64,
    /// The leader said a sink of process 0 is full (sinks run there).
    leader_paused: AtomicBool,
    /// A queue had no room left: the sources hold until it is down to half its limit.
    holding: AtomicBool,
    /// This process's sinks' queues (process 0's), and the bytes each may hold.
    queues: Vec<SinkQueue>,
    limit: i64,
    /// Workers of this process: they share the room left.
    workers: usize,
    /// Records pumped that have arrived in front of the sinks.
    arrived: AtomicU64,
    cost: Mutex<Cost>,
    /// The highest watermark fed into each source's partitions here, for idle partitions.
    max_watermarks: Vec<AtomicI64>,
}

/// The measured cost of a pumped record at the most loaded sink.
struct Cost {
    bytes_per_record: f64,
    arrived: u64,
    entered: Vec<u64>,
}

impl Flow {
    pub fn new(sources: usize, queues: Vec<SinkQueue>, limit: u64, workers: usize) -> Flow {
        let entered = vec![0; queues.len()];
        Flow {
            acked: AtomicI64::new(i64::MIN),
            leader_paused: AtomicBool::new(false),
            holding: AtomicBool::new(false),
            queues,
            limit: limit.min(i64::MAX as u64) as i64,
            workers: workers.max(1),
            arrived: AtomicU64::new(0),
            cost: Mutex::new(Cost {
                bytes_per_record: FIRST_FAN_OUT * std::mem::size_of::<Record>() as f64,
                arrived: 0,
                entered,
            }),
            max_watermarks: (0..sources).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    pub fn apply(&self, control: Control) {
        self.acked.fetch_max(control.acked, Ordering::SeqCst);
        self.leader_paused.store(control.paused, Ordering::SeqCst);
    }

    /// The bytes queued at the most loaded sink of this process.
    fn most_queued(&self) -> Option<i64> {
        self.queues.iter().map(SinkQueue::bytes).max()
    }

    /// Whether this process's sinks are full, or the sources hold until they drain.
    fn full(&self) -> bool {
        self.most_queued().is_some_and(|q| {
            q >= self.limit || (self.holding.load(Ordering::SeqCst) && q > self.limit / 2)
        })
    }

    /// Whether sources wait: a sink here is full, or the leader said one is.
    pub fn paused(&self) -> bool {
        self.leader_paused.load(Ordering::SeqCst) || self.full()
    }

    /// How many records a partition may move into the dataflow now (0: none), with
    /// `on_the_way` of its records not arrived yet and `feeds` partitions on its worker.
    pub fn pump_budget(&self, on_the_way: usize, feeds: usize) -> usize {
        if self.leader_paused.load(Ordering::SeqCst) {
            return 0;
        }
        let Some(queued) = self.most_queued() else {
            return PUMP_RECORDS;
        };
        if self.holding.load(Ordering::SeqCst) {
            if queued > self.limit / 2 {
                return 0;
            }
            self.holding.store(false, Ordering::SeqCst);
        }
        let per_record = self.cost.lock().map_or(1.0, |c| c.bytes_per_record);
        let share = (self.limit - queued) as f64 / (self.workers * feeds.max(1)) as f64;
        let room = share - on_the_way as f64 * per_record;
        if room < per_record * MIN_PIECE as f64 {
            // Empty queues and nothing on the way: a piece that costs more than the whole
            // queue still goes in, alone, rather than never.
            if queued <= 0 && on_the_way == 0 {
                return 1;
            }
            // A full queue holds the sources until it is down to half (a stuck sink's
            // queue is not fed a piece at a time, and a draining one takes larger batches).
            if queued > 0 && (self.limit - queued) < per_record as i64 * MIN_PIECE as i64 {
                self.holding.store(true, Ordering::SeqCst);
            }
            return 0;
        }
        ((room / per_record) as usize).clamp(1, PUMP_RECORDS)
    }

    /// Records a worker pumped have arrived in front of the sinks.
    pub fn arrived(&self, records: usize) {
        if records == 0 {
            return;
        }
        self.arrived.fetch_add(records as u64, Ordering::Relaxed);
        self.measure();
    }

    /// Measures what the records arrived since the last measurement cost the sinks: the
    /// cost follows a rise at once and a fall gradually.
    fn measure(&self) {
        let arrived = self.arrived.load(Ordering::Relaxed);
        let Ok(mut cost) = self.cost.try_lock() else {
            return; // another worker is measuring
        };
        let records = arrived.saturating_sub(cost.arrived);
        if records < SAMPLE_RECORDS || self.queues.is_empty() {
            return;
        }
        let mut worst = 0u64;
        for (queue, last) in self.queues.iter().zip(cost.entered.iter_mut()) {
            let entered = queue.entered();
            worst = worst.max(entered.saturating_sub(*last));
            *last = entered;
        }
        cost.arrived = arrived;
        let now = worst as f64 / records as f64;
        cost.bytes_per_record = if now >= cost.bytes_per_record {
            now
        } else {
            (cost.bytes_per_record * 0.8 + now * 0.2).max(1.0)
        };
    }

    pub fn acked(&self) -> i64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// What the leader broadcasts, from the sinks' acknowledgements and queues.
    pub fn control(&self, sinks: &[Acknowledger]) -> Control {
        Control {
            acked: sinks
                .iter()
                .map(Acknowledger::frontier)
                .min()
                .unwrap_or(i64::MAX),
            paused: self.full(),
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

/// One partition's records on their way to the sinks: how many it pumped at each time,
/// until the frontier before the sinks has passed that time (everything pumped at a time
/// has then reached the sinks' queues, or is state an operator keeps, such as an open
/// window).
#[derive(Default)]
pub struct Pumped {
    by_time: VecDeque<(u64, usize)>,
    records: usize,
}

impl Pumped {
    /// `records` went in at `time`.
    pub fn sent(&mut self, time: u64, records: usize) {
        if records == 0 {
            return;
        }
        self.records += records;
        match self.by_time.back_mut() {
            Some(last) if last.0 == time => last.1 += records,
            _ => self.by_time.push_back((time, records)),
        }
    }

    /// The frontier before the sinks is `frontier` (`None`: everything has passed); tells
    /// the flow control what arrived.
    pub fn arrive(&mut self, frontier: Option<u64>, flow: &Flow) {
        let mut arrived = 0;
        while let Some(&(time, records)) = self.by_time.front() {
            if frontier.is_some_and(|f| f <= time) {
                break;
            }
            arrived += records;
            self.by_time.pop_front();
        }
        self.records -= arrived;
        flow.arrived(arrived);
    }

    /// Records still on their way.
    #[cfg(test)]
    pub fn records(&self) -> usize {
        self.records
    }

    /// Records on their way that went in before `time` (the partition's time now): only
    /// these wait for other partitions. Those at its time wait for the partition itself
    /// (the pieces of a split batch keep the batch's time until its last piece moves the
    /// input on), so they must not hold it back.
    pub fn before(&self, time: u64) -> usize {
        self.by_time
            .iter()
            .take_while(|(t, _)| *t < time)
            .map(|(_, records)| records)
            .sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1 << 20;

    fn flow(queues: usize) -> (Flow, Vec<SinkQueue>) {
        let queues: Vec<SinkQueue> = (0..queues)
            .map(|i| SinkQueue::new(&format!("flow-test-{i}")))
            .collect();
        (Flow::new(1, queues.clone(), LIMIT, 1), queues)
    }

    /// Pumps `records` and lets them arrive, each costing `bytes` at the first queue.
    fn pump_and_arrive(flow: &Flow, queue: &SinkQueue, records: usize, bytes: usize) {
        let mut pumped = Pumped::default();
        pumped.sent(7, records);
        queue.add(records * bytes);
        pumped.arrive(Some(8), flow);
        assert_eq!(pumped.records(), 0);
        queue.remove(records * bytes);
    }

    #[test]
    fn without_sinks_here_a_worker_pumps_its_full_step() {
        let (flow, _) = flow(0);
        assert_eq!(flow.pump_budget(0, 1), PUMP_RECORDS);
        assert!(!flow.paused());
    }

    #[test]
    fn a_full_queue_pauses_and_room_is_shared_at_the_measured_cost() {
        let (flow, queues) = flow(2);
        // Before anything is measured a record is taken to cost 32 records' worth.
        let first = flow.pump_budget(0, 1);
        let record = std::mem::size_of::<Record>();
        assert_eq!(first, (LIMIT as usize / (32 * record)).min(PUMP_RECORDS));
        // Records that cost 8 KB each at the most loaded sink: the budget follows at once.
        pump_and_arrive(&flow, &queues[0], 4096, 8_000);
        assert_eq!(flow.pump_budget(0, 1), LIMIT as usize / 8_000);
        // A partition's records still on their way count against its room.
        assert_eq!(flow.pump_budget(50, 1), LIMIT as usize / 8_000 - 50);
        // Partitions of a worker share the room.
        assert_eq!(flow.pump_budget(0, 2), LIMIT as usize / 16_000);
        // A queue at its limit pauses.
        queues[1].add(LIMIT as usize);
        assert!(flow.paused());
        assert_eq!(flow.pump_budget(0, 1), 0);
        queues[1].remove(LIMIT as usize);
        assert!(!flow.paused());
        // A cheaper stream lowers the cost gradually, not at once.
        pump_and_arrive(&flow, &queues[0], 4096, 100);
        let after = flow.pump_budget(0, 1);
        assert!(
            after > LIMIT as usize / 8_000 && after < LIMIT as usize / 100,
            "{after}"
        );
    }

    #[test]
    fn a_record_that_costs_more_than_the_queue_still_goes_in_alone() {
        let (flow, queues) = flow(1);
        pump_and_arrive(&flow, &queues[0], 1024, 2 * LIMIT as usize);
        assert_eq!(
            flow.pump_budget(0, 1),
            1,
            "empty queues, nothing on the way"
        );
        assert_eq!(flow.pump_budget(1, 1), 0, "one is on its way");
    }

    #[test]
    fn records_arrive_once_the_frontier_has_passed_their_time() {
        let (flow, _) = flow(1);
        let mut pumped = Pumped::default();
        pumped.sent(10, 100);
        pumped.sent(10, 50);
        pumped.sent(20, 30);
        assert_eq!(
            pumped.before(20),
            150,
            "those at the partition's time wait for it alone"
        );
        pumped.arrive(Some(10), &flow);
        assert_eq!(
            pumped.records(),
            180,
            "the frontier is at their time, not past it"
        );
        pumped.arrive(Some(11), &flow);
        assert_eq!(pumped.records(), 30);
        // A partition ahead of the frontier holds only its share; the one at the
        // frontier is not held by it.
        assert!(flow.pump_budget(1 << 30, 2) == 0 && flow.pump_budget(0, 2) > 0);
        pumped.arrive(None, &flow);
        assert_eq!(pumped.records(), 0, "an empty frontier: everything passed");
    }

    #[test]
    fn the_leader_pauses_other_processes() {
        let (flow, _) = flow(0);
        flow.apply(Control {
            acked: 0,
            paused: true,
        });
        assert!(flow.paused());
        assert_eq!(flow.pump_budget(0, 1), 0);
    }
}
