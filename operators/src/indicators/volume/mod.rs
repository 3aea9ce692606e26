//! Volume-based indicators.

pub mod mfi;
pub mod obv;
