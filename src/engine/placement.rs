//! Where things run: worker threads per process, processes, and which worker of the whole
//! cluster reads each source partition.

use crate::spec::Pipeline;

/// The shape of a run and the owner of every source partition.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Worker threads per process.
    pub threads: usize,
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// First global partition number of each source: partitions of all sources are dealt
    /// round-robin over every worker of every process.
    first_partition: Vec<usize>,
}

impl Placement {
    pub fn new(pipeline: &Pipeline, threads: usize, processes: usize, process: usize) -> Placement {
        let mut first_partition = Vec::with_capacity(pipeline.sources.len());
        let mut next = 0;
        for source in &pipeline.sources {
            first_partition.push(next);
            next += source.spec.partitions();
        }
        Placement {
            threads,
            processes,
            process,
            first_partition,
        }
    }

    /// Workers in the whole cluster.
    pub fn peers(&self) -> usize {
        self.threads * self.processes
    }

    /// The global index of the worker that reads `partition` of `source`.
    pub fn owner(&self, source: usize, partition: usize) -> usize {
        (self.first_partition[source] + partition) % self.peers()
    }

    /// Whether that worker is in this process.
    pub fn is_local(&self, worker: usize) -> bool {
        worker / self.threads == self.process
    }

    /// The index among this process's workers of global worker `worker`.
    pub fn local_worker(&self, worker: usize) -> usize {
        worker % self.threads
    }
}
