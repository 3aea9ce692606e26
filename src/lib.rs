//! marketflow: a streaming analytics engine for market data on timely dataflow.
//!
//! Layers, each importing only those above it in this list (see docs/architecture.md):
//! `codec`, `metrics`, `shutdown`, `dead_letter`, `status` (utilities); [`config`] (the language of
//! pipeline files); `store` (the databases); [`connector`] (the source/sink contract);
//! `hub` (live fan-out); `sources`, `sinks` (one folder per type); `components` (the
//! registry of built-in types); [`spec`] (the pipeline as data); [`engine`] (timely);
//! `server` (hyper); `bench` and the CLI.

pub mod bench;
pub mod codec;
pub mod components;
pub mod config;
pub mod connector;
pub mod dead_letter;
pub mod engine;
pub mod hub;
pub mod metrics;
pub mod progress;
pub mod seed;
pub mod server;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod spec;
pub mod status;
pub mod store;

/// The embedded default pipeline, the same as `pipelines/demo.yaml`.
pub const DEMO_PIPELINE: &str = include_str!("../pipelines/demo.yaml");
