//! Volatility: bands, ranges and deviations.

pub mod atr;
pub mod bollinger;
pub mod hist_vol;
pub mod keltner;
pub mod natr;
pub mod stddev;
