//! The exchange of records by symbol between workers, a batch at a time.
//!
//! Timely's `Exchange` copies every record into a per-target buffer of 8 KiB (128 ticks)
//! and ships each as a message: on 2 workers that is a message and an allocation per 128
//! records, which profiles showed to be most of what a second worker adds. Here a batch
//! is split once into one container per target (sized for its share), and a batch whose
//! records all go to one worker is passed on whole, with no copy.

use timely::communication::Push;
use timely::dataflow::channels::pact::DistributorPact;
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::dataflow::channels::Message;
use timely::progress::Stamp;

/// The pact that sends each record to worker `key(record) % peers`.
pub type ByKey<F> = DistributorPact<Box<dyn FnOnce(usize) -> Split<F>>>;

/// Records to the worker their `key` names (the same function, so the same worker, in every
/// process).
pub fn by_key<D, F>(key: F) -> ByKey<F>
where
    F: FnMut(&D) -> u64 + 'static,
{
    DistributorPact(Box::new(move |peers| Split {
        key,
        peers,
        targets: Vec::new(),
    }))
}

/// Splits each batch into one container per target worker.
pub struct Split<F> {
    key: F,
    peers: usize,
    /// The target of each record of the batch being split (kept to reuse its room).
    targets: Vec<u32>,
}

impl<D, F> Distributor<Vec<D>> for Split<F>
where
    F: FnMut(&D) -> u64,
{
    fn partition<T: Clone, P: Push<Message<T, Vec<D>>>>(
        &mut self,
        container: &mut Vec<D>,
        stamp: &Stamp<T>,
        pushers: &mut [P],
    ) {
        let peers = self.peers.max(1) as u64;
        self.targets.clear();
        self.targets
            .extend(container.iter().map(|d| ((self.key)(d) % peers) as u32));
        let Some(&first) = self.targets.first() else {
            return;
        };
        if self.targets.iter().all(|&t| t == first) {
            Message::push_at(container, stamp.clone(), &mut pushers[first as usize]);
            return;
        }
        let mut counts = vec![0usize; pushers.len()];
        self.targets.iter().for_each(|&t| counts[t as usize] += 1);
        let mut parts: Vec<Vec<D>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
        for (datum, &target) in container.drain(..).zip(&self.targets) {
            parts[target as usize].push(datum);
        }
        for (part, pusher) in parts.iter_mut().zip(pushers.iter_mut()) {
            if !part.is_empty() {
                Message::push_at(part, stamp.clone(), pusher);
            }
        }
    }

    /// Nothing is held between batches.
    fn flush<T: Clone, P: Push<Message<T, Vec<D>>>>(
        &mut self,
        _stamp: &Stamp<T>,
        _pushers: &mut [P],
    ) {
    }

    fn relax(&mut self) {
        self.targets = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use timely::dataflow::operators::Operator;
    use timely::dataflow::InputHandleVec as InputHandle;

    use super::by_key;

    /// Every record reaches the worker `key % peers` once, for a power of two of workers and
    /// another: batches bound for one worker, split ones and empty ones.
    #[test]
    fn every_record_reaches_the_worker_its_key_names_once() {
        for peers in [2usize, 3] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&seen);
            timely::execute(timely::Config::process(peers), move |worker| {
                let index = worker.index();
                let sink = Arc::clone(&sink);
                let mut input: InputHandle<u64, u64> = InputHandle::new();
                worker.dataflow::<u64, _, _>(|scope| {
                    input.to_stream(scope).sink(
                        by_key(|x: &u64| *x),
                        "check",
                        move |(input, _)| {
                            input.for_each(|_, data| {
                                let mut seen = sink.lock().expect("not poisoned");
                                seen.extend(data.iter().map(|x| (index, *x)));
                            })
                        },
                    );
                });
                if index == 0 {
                    // One worker's share, a mixed batch and nothing.
                    input.send_batch(&mut (0..1_000).map(|x| x * peers as u64).collect());
                    input.send_batch(&mut (1_000..3_000).collect());
                    input.send_batch(&mut Vec::new());
                }
            })
            .expect("timely runs");
            let seen = seen.lock().expect("not poisoned").clone();
            let mut values: Vec<u64> = seen.iter().map(|&(_, x)| x).collect();
            values.sort_unstable();
            let mut expected: Vec<u64> = (0..1_000)
                .map(|x| x * peers as u64)
                .chain(1_000..3_000)
                .collect();
            expected.sort_unstable();
            assert_eq!(values, expected, "{peers} workers: lost or doubled records");
            let misplaced: Vec<_> = seen
                .iter()
                .filter(|&&(worker, x)| worker as u64 != x % peers as u64)
                .collect();
            assert!(misplaced.is_empty(), "{peers} workers: {misplaced:?}");
        }
    }
}
