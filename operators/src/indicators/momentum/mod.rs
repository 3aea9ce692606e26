//! Oscillators and momentum.

pub mod adx;
pub mod adxr;
pub mod aroon;
pub mod cci;
pub mod cmo;
pub mod macd;
pub mod mom;
pub mod ppo;
pub mod roc;
pub mod rsi;
pub mod sar;
pub mod stochastic;
pub mod trix;
pub mod ultosc;
pub mod willr;
