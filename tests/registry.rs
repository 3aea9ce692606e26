//! The connector contract from outside the crate: a source and a sink type added through
//! the registry alone run in a pipeline, validation suggests them, and the docs' key tables
//! are the registry's.

use std::sync::Mutex;

use marketflow::components;
use marketflow::config::de::{OneOrMany, Spanned};
use marketflow::connector::{
    Sink, SinkContext, SinkEvent, Source, SourceContext, SourceEvent, Stamper, StreamType, Task,
    TaskError,
};
use marketflow::engine::{self, RunOptions};
use marketflow::spec;
use marketflow_operators::{Record, Symbol, Tick};
use schemars::JsonSchema;
use serde::Deserialize;

/// Ticks of one symbol, one a second, price rising by one each.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct Staircase {
    /// How many ticks.
    steps: u64,
    /// Wait until every sink has acknowledged the last tick before ending (default false).
    #[serde(default)]
    await_ack: bool,
}

/// The position the sinks acknowledged, as the source saw it.
static ACKED: Mutex<Option<u64>> = Mutex::new(None);

impl Source for Staircase {
    const TYPE: &'static str = "staircase";
    const ABOUT: &'static str = "a test source";

    fn output(&self) -> StreamType {
        StreamType::Ticks
    }

    fn is_finite(&self) -> bool {
        true
    }

    fn build(&self, ctx: SourceContext) -> Task {
        let (steps, await_ack) = (self.steps, self.await_ack);
        Task::Async(Box::pin(async move {
            let mut stamper = Stamper::new(0);
            let symbol = Symbol::new("STEP").map_err(|e| TaskError::Failed(e.into()))?;
            for i in 0..steps {
                let mut tick = Tick {
                    symbol: symbol.clone(),
                    ts: 1_704_153_600_000 + i as i64 * 1000,
                    price: 100.0 + i as f64,
                    volume: 1.0,
                    seq: 0,
                    wm: 0,
                };
                stamper.stamp_tick(&mut tick);
                let event = SourceEvent::Ticks {
                    records: vec![tick],
                    position: i + 1,
                };
                ctx.out.send(event).await?;
            }
            if await_ack {
                let mut acked = ctx.acked.clone();
                let wait = acked.wait_for(|p| *p == Some(steps));
                let seen = tokio::time::timeout(std::time::Duration::from_secs(30), wait)
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("waited 30 s for the sinks to acknowledge {steps}")
                    })?
                    .map_err(|_| anyhow::anyhow!("the acknowledgements stopped"))?;
                *ACKED.lock().unwrap() = *seen;
            }
            Ok(())
        }))
    }
}

/// Records kept in memory for the test to read.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct Memory {
    /// The streams to keep.
    from: OneOrMany,
}

static KEPT: Mutex<Vec<Record>> = Mutex::new(Vec::new());

impl Sink for Memory {
    const TYPE: &'static str = "memory";
    const ABOUT: &'static str = "a test sink";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn build(&self, mut ctx: SinkContext) -> Task {
        Task::Async(Box::pin(async move {
            while let Some(event) = ctx.records.recv().await {
                match event {
                    SinkEvent::Records { records, .. } => KEPT.lock().unwrap().extend(records),
                    SinkEvent::Progress(p) => ctx.ack.acknowledge(p),
                    // Checkpoints: it keeps nothing to resume from.
                    _ => {}
                }
            }
            Ok(())
        }))
    }
}

const PIPELINE: &str = "pipeline: registry\nsources:\n  steps: {type: staircase, steps: 180}\noperators:\n  bars: {type: bars, from: steps, interval: 1m}\nsinks:\n  kept: {type: memory, from: bars}\n";

#[test]
fn a_source_and_sink_added_by_one_registry_line_run() {
    let registry = components::builtin().source::<Staircase>().sink::<Memory>();
    let pipeline = spec::load_with(&registry, "registry.yaml", PIPELINE, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    engine::run(&pipeline, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let kept = KEPT.lock().unwrap();
    let bars: Vec<_> = kept
        .iter()
        .filter_map(|r| match r {
            Record::Bar(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(bars.len(), 3, "180 one-second ticks make three 1m bars");
    let mut opens: Vec<f64> = bars.iter().map(|b| b.open).collect();
    opens.sort_by(f64::total_cmp);
    assert_eq!(opens, [100.0, 160.0, 220.0]);
    assert!(bars
        .iter()
        .all(|b| b.trades == 60 && b.high - b.low == 59.0));
}

#[test]
fn validation_suggests_registered_types_and_rejects_unknown_keys() {
    let registry = components::builtin().source::<Staircase>().sink::<Memory>();
    let typo = PIPELINE.replace("type: staircase", "type: staircse");
    let err = spec::load_with(&registry, "t.yaml", &typo, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("t.yaml:3"), "{err}");
    assert!(err.contains("did you mean `staircase`"), "{err}");
    let extra = PIPELINE.replace("steps: 180", "steps: 180, stairs: 2");
    let err = spec::load_with(&registry, "t.yaml", &extra, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stairs"), "{err}");
    // The built-in registry alone does not know the test's types.
    let err = spec::load_str("t.yaml", PIPELINE, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown source type `staircase`"), "{err}");
}

#[test]
fn the_docs_key_tables_are_generated_from_the_registry() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/pipeline-spec.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let registry = components::builtin();
    let rendered = components::render_key_tables(&doc, &registry);
    if std::env::var_os("MARKETFLOW_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    for t in registry
        .sources()
        .iter()
        .map(|t| format!("source:{}", t.name))
        .chain(registry.sinks().iter().map(|t| format!("sink:{}", t.name)))
    {
        assert!(
            doc.contains(&format!("<!-- keys:{t} -->")),
            "docs/pipeline-spec.md has no key table for {t}"
        );
    }
    assert!(
        rendered == doc,
        "docs/pipeline-spec.md's key tables are out of date: run MARKETFLOW_UPDATE_DOCS=1 cargo test --test registry"
    );
}

#[test]
fn sinks_acknowledge_and_the_source_sees_its_position_acknowledged() {
    let registry = components::builtin().source::<Staircase>();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "pipeline: acks\nsources:\n  acked_steps: {{type: staircase, steps: 500, await_ack: true}}\noperators:\n  bars: {{type: bars, from: acked_steps, interval: 1m}}\nsinks:\n  file: {{type: file, from: [acked_steps, bars], path: {:?}}}\n  db: {{type: sqlite, from: [acked_steps, bars], path: {:?}}}\n",
        dir.path().join("out.jsonl").display().to_string(),
        dir.path().join("store.db").display().to_string(),
    );
    let pipeline =
        spec::load_with(&registry, "acks.yaml", &yaml, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    engine::run(&pipeline, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        *ACKED.lock().unwrap(),
        Some(500),
        "the last position acknowledged"
    );
    let gauge = marketflow::metrics::metrics()
        .source_acked_position
        .with_label_values(&["acked_steps", "0"])
        .get();
    assert_eq!(gauge, 500);
}

/// Two partitions: the first sends three minutes of ticks and ends once they are
/// acknowledged; the second sends nothing and stays open until the run stops.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct HalfQuiet {
    /// The streams' idle timeout in milliseconds.
    idle_ms: u64,
}

static QUIET_ACKED: Mutex<Option<u64>> = Mutex::new(None);

impl Source for HalfQuiet {
    const TYPE: &'static str = "half_quiet";
    const ABOUT: &'static str = "a test source with an idle partition";

    fn output(&self) -> StreamType {
        StreamType::Ticks
    }

    fn is_finite(&self) -> bool {
        true
    }

    fn partitions(&self) -> usize {
        2
    }

    fn idle_timeout(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(self.idle_ms))
    }

    fn build(&self, ctx: SourceContext) -> Task {
        Task::Async(Box::pin(async move {
            if ctx.partition == 1 {
                ctx.shutdown.triggered().await;
                return Ok(());
            }
            let mut stamper = Stamper::for_partition(0, 0);
            let symbol = Symbol::new("HALF").map_err(|e| TaskError::Failed(e.into()))?;
            for i in 0..180u64 {
                let mut tick = Tick {
                    symbol: symbol.clone(),
                    ts: 1_704_153_600_000 + i as i64 * 1000,
                    price: 10.0,
                    volume: 1.0,
                    seq: 0,
                    wm: 0,
                };
                stamper.stamp_tick(&mut tick);
                ctx.out
                    .send(SourceEvent::Ticks {
                        records: vec![tick],
                        position: i + 1,
                    })
                    .await?;
            }
            // The sinks can only acknowledge these ticks once the silent partition stops
            // holding the watermark back.
            let mut acked = ctx.acked.clone();
            let wait = acked.wait_for(|p| *p == Some(180));
            let seen = tokio::time::timeout(std::time::Duration::from_secs(30), wait)
                .await
                .map_err(|_| {
                    anyhow::anyhow!("waited 30 s for the idle partition to be passed over")
                })?
                .map_err(|_| anyhow::anyhow!("the acknowledgements stopped"))?;
            *QUIET_ACKED.lock().unwrap() = *seen;
            ctx.shutdown.trigger();
            Ok(())
        }))
    }
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    let registry = components::builtin().source::<HalfQuiet>();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "pipeline: idle\nsources:\n  half: {{type: half_quiet, idle_ms: 200}}\noperators:\n  bars: {{type: bars, from: half, interval: 1m}}\nsinks:\n  out: {{type: file, from: bars, path: {:?}}}\n",
        dir.path().join("bars.jsonl").display().to_string()
    );
    let pipeline =
        spec::load_with(&registry, "idle.yaml", &yaml, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    engine::run(&pipeline, &RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(*QUIET_ACKED.lock().unwrap(), Some(180));
    let bars = std::fs::read_to_string(dir.path().join("bars.jsonl")).unwrap();
    assert!(
        bars.lines().count() >= 2,
        "the first two minutes closed while a partition was silent:\n{bars}"
    );
}
