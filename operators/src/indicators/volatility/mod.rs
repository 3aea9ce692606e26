//! Volatility: bands, ranges and deviations.

pub mod atr;
pub mod bollinger;
pub mod keltner;
pub mod stddev;
