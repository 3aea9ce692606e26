//! Operator `indicators`: its configuration, read entry by entry so that every bad entry
//! is reported.

use std::collections::HashSet;

use marketflow_operators::indicators::ticks::TickIndicatorSpec;
use marketflow_operators::indicators::{IndicatorSpec, ParamError};
use serde::Deserialize;

use crate::config::de::{from_map_without, from_node, DeError, OneOrMany, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::config::yaml::{Node, Pos, Value};
use crate::connector::StreamType;

/// Computes indicators on every bar of a bars stream.
#[derive(Debug, Clone)]
pub struct IndicatorsConfig {
    /// The bars to compute on; or several bars streams of one interval
    /// (`[history_5m, live_5m]`): a window is taken from the first listed stream that has it.
    pub from: OneOrMany,
    /// The indicators, each `- name: {parameters}`, e.g. `- rsi: {period: 14}`.
    pub indicators: Spanned<Vec<IndicatorEntry>>,
}

/// An indicator as configured (on bars or on ticks): what reading and checking a list
/// of them needs.
pub trait Configured: serde::de::DeserializeOwned + Clone + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn id(&self) -> String;
    fn validate(&self) -> Result<(), ParamError>;
}

impl Configured for IndicatorSpec {
    fn name(&self) -> &'static str {
        self.kind().name()
    }
    fn id(&self) -> String {
        IndicatorSpec::id(self)
    }
    fn validate(&self) -> Result<(), ParamError> {
        IndicatorSpec::validate(self)
    }
}

impl Configured for TickIndicatorSpec {
    fn name(&self) -> &'static str {
        self.kind().name()
    }
    fn id(&self) -> String {
        TickIndicatorSpec::id(self)
    }
    fn validate(&self) -> Result<(), ParamError> {
        TickIndicatorSpec::validate(self)
    }
}

/// One configured indicator with the positions of its name and parameters.
#[derive(Debug, Clone)]
pub struct IndicatorEntry<S = IndicatorSpec> {
    pub spec: S,
    pub pos: Pos,
    params: Node,
}

impl<S> IndicatorEntry<S> {
    /// Where `key` was written, or the indicator's name when it was left to its default.
    fn pos_of(&self, key: &str) -> Pos {
        self.params.get(key).map_or(self.pos, |n| n.pos)
    }
}

/// The keys of an `indicators` operator besides its list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    from: OneOrMany,
}

impl IndicatorsConfig {
    /// Reads the operator, each list entry on its own so that every bad entry is reported.
    pub fn from_node(node: &Node, path: &str) -> Result<IndicatorsConfig, Vec<DeError>> {
        let mut errors = Vec::new();
        let header = from_map_without::<Header>(node, path, &["type", "indicators"])
            .map_err(|e| errors.push(e))
            .ok();
        let indicators = read_list(node, path, &mut errors);
        match header {
            Some(header) if errors.is_empty() => Ok(IndicatorsConfig {
                from: header.from,
                indicators,
            }),
            _ => Err(errors),
        }
    }

    pub fn check(&self, path: &str) -> Vec<Diagnostic> {
        check_list(&self.indicators, path)
    }

    pub fn output(&self, path: &str, input: &StreamType) -> Result<StreamType, Diagnostic> {
        match input {
            StreamType::Bars { interval, .. } => Ok(StreamType::Indicators {
                interval: *interval,
            }),
            other => Err(Diagnostic::new(
                self.from.0.first().map(|f| f.pos).unwrap_or_default(),
                format!("{path}.from"),
                format!(
                    "indicators are computed on bars; `{}` is {other}",
                    self.from.0.first().map_or("", |f| f.value.as_str())
                ),
            )
            .help("add a `bars` operator between them, or use `tick_indicators` on ticks")),
        }
    }
}

/// Reads the `indicators` list of an operator node, each entry on its own so that every
/// bad entry is reported in `errors`.
pub fn read_list<S: Configured>(
    node: &Node,
    path: &str,
    errors: &mut Vec<DeError>,
) -> Spanned<Vec<IndicatorEntry<S>>> {
    let mut list = Vec::new();
    let list_pos = match node.get("indicators") {
        None => {
            errors.push(DeError::new("missing required key `indicators`").at_node(node, path));
            node.pos
        }
        Some(Node {
            value: Value::Seq(items),
            pos,
        }) => {
            for (i, item) in items.iter().enumerate() {
                match from_node::<S>(item, &format!("{path}.indicators[{i}]")) {
                    Ok(spec) => {
                        let (pos, params) = match &item.value {
                            Value::Map(entries) if entries.len() == 1 => {
                                (entries[0].0.pos, entries[0].1.clone())
                            }
                            _ => (item.pos, item.clone()),
                        };
                        list.push(IndicatorEntry { spec, pos, params });
                    }
                    Err(e) => errors.push(e),
                }
            }
            *pos
        }
        Some(other) => {
            errors.push(
                DeError::new(format!(
                    "expected a list of indicators, found {}",
                    other.kind()
                ))
                .at_node(other, &format!("{path}.indicators")),
            );
            other.pos
        }
    };
    Spanned::new(list, list_pos)
}

/// The checks of an indicator list: not empty, valid parameters, distinct ids.
pub fn check_list<S: Configured>(
    list: &Spanned<Vec<IndicatorEntry<S>>>,
    path: &str,
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    if list.value.is_empty() {
        problems.push(Diagnostic::new(
            list.pos,
            format!("{path}.indicators"),
            "list at least one indicator",
        ));
    }
    let mut ids = HashSet::new();
    for (i, entry) in list.value.iter().enumerate() {
        let at = format!("{path}.indicators[{i}].{}", entry.spec.name());
        if let Err(e) = entry.spec.validate() {
            problems.push(Diagnostic::new(
                entry.pos_of(e.key),
                format!("{at}.{}", e.key),
                e.message,
            ));
        }
        let id = entry.spec.id();
        if !ids.insert(id.clone()) {
            problems.push(
                Diagnostic::new(
                    entry.pos,
                    at,
                    format!("the id `{id}` is used twice in this operator"),
                )
                .help("set `id:` on one of them"),
            );
        }
    }
    problems
}
