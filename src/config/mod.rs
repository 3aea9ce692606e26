//! The language of pipeline files, below every component: the positioned YAML parser, serde
//! from its nodes with positions kept, diagnostics with "did you mean", `${VAR}`
//! interpolation, and the value types (durations, sessions) that configs share.

pub mod de;
pub mod diagnostic;
pub mod interpolate;
pub mod schema;
pub mod session;
pub mod values;
pub mod yaml;
