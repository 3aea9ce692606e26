//! Volume-based indicators.

pub mod obv;
