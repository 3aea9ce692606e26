//! Moving averages and VWAP.

pub mod ema;
pub mod sma;
pub mod vwap;
pub mod wma;
