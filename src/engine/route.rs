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
