//! Backpressure end to end: a sink that takes nothing for 10 s pauses the source, and the
//! process's memory stays flat meanwhile. Alone in its test binary so that no other test
//! moves the resident set.

use std::sync::Mutex;
use std::time::Duration;

use marketflow::components;
use marketflow::config::de::{OneOrMany, Spanned};
use marketflow::connector::{Sink, SinkContext, SinkEvent, Task};
use marketflow::engine::{self, RunOptions};
use marketflow::metrics::metrics;
use marketflow::spec;
use schemars::JsonSchema;
use serde::Deserialize;

/// What the stalled sink saw.
#[derive(Debug, Default, Clone, Copy)]
struct Observed {
    rss_at_start: u64,
    rss_max: u64,
    generated_after_1s: u64,
    generated_at_end: u64,
}

static OBSERVED: Mutex<Option<Observed>> = Mutex::new(None);

/// Takes its first batch, then nothing for `stall_seconds` while sampling the resident
/// set; then stops the run and drains.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct Stalled {
    /// The streams to take.
    from: OneOrMany,
    /// How long to take nothing.
    stall_seconds: u64,
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages in /proc/self/statm");
    pages * 4096
}

fn generated() -> u64 {
    metrics()
        .source_records
        .with_label_values(&["market"])
        .get()
}

impl Sink for Stalled {
    const TYPE: &'static str = "stalled";
    const ABOUT: &'static str = "a sink that blocks";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn build(&self, mut ctx: SinkContext) -> Task {
        let stall = self.stall_seconds;
        Task::Blocking(Box::new(move || {
            // Wait for the stream to flow, then block as a stuck database would.
            while let Some(event) = ctx.records.blocking_recv() {
                if let SinkEvent::Records { .. } = event {
                    break;
                }
            }
            let mut seen = Observed {
                rss_at_start: resident_bytes(),
                ..Observed::default()
            };
            for tenth in 0..stall * 10 {
                std::thread::sleep(Duration::from_millis(100));
                seen.rss_max = seen.rss_max.max(resident_bytes());
                if tenth == 9 {
                    seen.generated_after_1s = generated();
                }
            }
            seen.generated_at_end = generated();
            *OBSERVED.lock().unwrap() = Some(seen);
            ctx.shutdown.trigger();
            while ctx.records.blocking_recv().is_some() {}
            Ok(())
        }))
    }
}

#[test]
fn a_blocked_sink_pauses_the_sources_and_memory_stays_flat() {
    let registry = components::builtin().sink::<Stalled>();
    let yaml = "pipeline: backpressure\nworkers: 2\nsources:\n  market: {type: synthetic, symbols: [A, B, C, D, E, F, G, H], rate: 1000000, count: 2000000000}\noperators:\n  bars: {type: bars, from: market, interval: 1s}\nsinks:\n  stuck: {type: stalled, from: [market, bars], stall_seconds: 10}\n";
    let pipeline = spec::load_with(&registry, "backpressure.yaml", yaml, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    engine::run(&pipeline, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let seen = OBSERVED
        .lock()
        .unwrap()
        .expect("the sink saw records and stalled");
    let grown = seen.rss_max.saturating_sub(seen.rss_at_start);
    eprintln!(
        "resident set: {} MB at the stall, at most {} MB during it (+{} MB); ticks generated: {} after 1 s, {} after 10 s",
        seen.rss_at_start >> 20,
        seen.rss_max >> 20,
        grown >> 20,
        seen.generated_after_1s,
        seen.generated_at_end
    );
    assert!(
        grown < 50 << 20,
        "memory grew by {} MB while the sink was blocked",
        grown >> 20
    );
    assert_eq!(
        seen.generated_after_1s, seen.generated_at_end,
        "the source kept generating while the sink was blocked"
    );
}
