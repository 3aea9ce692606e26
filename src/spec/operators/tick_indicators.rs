//! Operator `tick_indicators`: indicators over the last ticks of each symbol, emitted once
//! per symbol and event-time window (`every`).

use marketflow_operators::indicators::ticks::TickIndicatorSpec;
use marketflow_operators::time::{MINUTE, SECOND};
use marketflow_operators::Interval;
use serde::Deserialize;

use super::indicators::{check_list, read_list, IndicatorEntry};
use crate::config::de::{from_map_without, DeError, OneOrMany, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::config::values::Parsed;
use crate::config::yaml::Node;
use crate::connector::StreamType;

/// Computes indicators on ticks.
#[derive(Debug, Clone)]
pub struct TickIndicatorsConfig {
    /// The ticks to compute on.
    pub from: OneOrMany,
    /// The event-time window of the rows: each symbol's values after its last tick of each
    /// window, stamped with the window's start (default `1s`, at most `30s`).
    pub every: Parsed<Interval>,
    pub indicators: Spanned<Vec<IndicatorEntry<TickIndicatorSpec>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    from: OneOrMany,
    #[serde(default)]
    every: Option<Parsed<Interval>>,
}

impl TickIndicatorsConfig {
    pub fn from_node(node: &Node, path: &str) -> Result<TickIndicatorsConfig, Vec<DeError>> {
        let mut errors = Vec::new();
        let header = from_map_without::<Header>(node, path, &["type", "indicators"])
            .map_err(|e| errors.push(e))
            .ok();
        let indicators = read_list(node, path, &mut errors);
        match header {
            Some(header) if errors.is_empty() => Ok(TickIndicatorsConfig {
                from: header.from,
                every: header.every.unwrap_or_else(|| Parsed {
                    value: Interval::from_millis(SECOND).expect("1s is an interval"),
                    pos: node.pos,
                }),
                indicators,
            }),
            _ => Err(errors),
        }
    }

    pub fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = check_list(&self.indicators, path);
        // Rows below a minute go to the real-time analytics table.
        if self.every.value.millis() > MINUTE / 2 {
            problems.push(Diagnostic::new(
                self.every.pos,
                format!("{path}.every"),
                format!("`every` must be at most 30s (got {})", self.every.value),
            ));
        }
        problems
    }

    pub fn output(&self, path: &str, input: &StreamType) -> Result<StreamType, Diagnostic> {
        match input {
            StreamType::Ticks => Ok(StreamType::Indicators {
                interval: self.every.value,
            }),
            other => Err(Diagnostic::new(
                self.from.0.first().map(|f| f.pos).unwrap_or_default(),
                format!("{path}.from"),
                format!(
                    "tick indicators are computed on ticks; `{}` is {other}",
                    self.from.0.first().map_or("", |f| f.value.as_str())
                ),
            )
            .help("use an `indicators` operator on bars")),
        }
    }
}
