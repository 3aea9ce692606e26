//! Oscillators and momentum.

pub mod adx;
pub mod cci;
pub mod macd;
pub mod roc;
pub mod rsi;
pub mod stochastic;
pub mod willr;
