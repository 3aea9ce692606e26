//! marketflow: a streaming analytics engine for market data on timely dataflow.
//!
//! A pipeline file ([`spec`]) wires sources, operators and sinks; the [`engine`] compiles it
//! into one timely dataflow per worker. Kernels without I/O live in `marketflow-operators`.

pub mod bench;
pub mod codec;
pub mod dead_letter;
pub mod engine;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod spec;
pub mod store;

/// The embedded default pipeline, the same as `pipelines/demo.yaml`.
pub const DEMO_PIPELINE: &str = include_str!("../pipelines/demo.yaml");
