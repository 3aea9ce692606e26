//! Pure kernels of marketflow: record types, time and calendars, the bar window state
//! machine and the technical indicators. No I/O, no threads, no dataflow: everything here
//! is a plain synchronous function of its inputs, tested and benchmarked on its own.

pub mod bars;
pub mod calendar;
pub mod fixed;
pub mod indicators;
pub mod interval;
pub mod record;
pub mod revise;
pub mod state;
pub mod symbol;
pub mod time;

pub use bars::{aggregate, BarBuilder, BarInput, Placement};
pub use calendar::{Calendar, Session, Window, Windower};
pub use fixed::Fixed;
pub use indicators::IndicatorKind;
pub use interval::Interval;
pub use record::{Bar, IndicatorRow, Record, Tick};
pub use revise::Revisions;
pub use symbol::Symbol;
