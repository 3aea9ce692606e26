//! Operator `indicators`: technical indicators on a bars stream, one kernel per
//! (symbol, indicator), fed each symbol's bars in event-time order.

use std::collections::{BTreeMap, HashSet};

use compact_str::CompactString;
use marketflow_operators::indicators::{Indicator, IndicatorSpec};
use marketflow_operators::{Bar, Calendar, IndicatorKind, IndicatorRow, Interval, Symbol};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use crate::metrics::metrics;
use crate::spec::de::{from_map_without, from_node, DeError, Spanned};
use crate::spec::diagnostic::Diagnostic;
use crate::spec::graph::StreamType;
use crate::spec::yaml::{Node, Pos, Value};

/// Computes indicators on every bar of a bars stream.
#[derive(Debug, Clone)]
pub struct IndicatorsConfig {
    /// The bars to compute on.
    pub from: Spanned<String>,
    /// The indicators, each `- name: {parameters}`, e.g. `- rsi: {period: 14}`.
    pub indicators: Spanned<Vec<IndicatorEntry>>,
}

/// One configured indicator with the positions of its name and parameters.
#[derive(Debug, Clone)]
pub struct IndicatorEntry {
    pub spec: IndicatorSpec,
    pub pos: Pos,
    params: Node,
}

impl IndicatorEntry {
    /// Where `key` was written, or the indicator's name when it was left to its default.
    fn pos_of(&self, key: &str) -> Pos {
        self.params.get(key).map_or(self.pos, |n| n.pos)
    }
}

/// The keys of an `indicators` operator besides its list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    from: Spanned<String>,
}

impl IndicatorsConfig {
    /// Reads the operator, each list entry on its own so that every bad entry is reported.
    pub fn from_node(node: &Node, path: &str) -> Result<IndicatorsConfig, Vec<DeError>> {
        let mut errors = Vec::new();
        let header = from_map_without::<Header>(node, path, &["type", "indicators"])
            .map_err(|e| errors.push(e))
            .ok();
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
                    match from_node::<IndicatorSpec>(item, &format!("{path}.indicators[{i}]")) {
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
        match header {
            Some(header) if errors.is_empty() => Ok(IndicatorsConfig {
                from: header.from,
                indicators: Spanned::new(list, list_pos),
            }),
            _ => Err(errors),
        }
    }

    pub fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if self.indicators.value.is_empty() {
            problems.push(Diagnostic::new(
                self.indicators.pos,
                format!("{path}.indicators"),
                "list at least one indicator",
            ));
        }
        let mut ids = HashSet::new();
        for (i, entry) in self.indicators.value.iter().enumerate() {
            let at = format!("{path}.indicators[{i}].{}", entry.spec.kind().name());
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

    pub fn output(&self, path: &str, input: &StreamType) -> Result<StreamType, Diagnostic> {
        match input {
            StreamType::Bars { interval, .. } => Ok(StreamType::Indicators {
                interval: *interval,
            }),
            other => Err(Diagnostic::new(
                self.from.pos,
                format!("{path}.from"),
                format!(
                    "indicators are computed on bars; `{}` is {other}",
                    self.from.value
                ),
            )
            .help("add a `bars` operator between them")),
        }
    }
}

/// What the indicators operator needs besides its input.
#[derive(Clone)]
pub struct IndicatorsStage {
    pub name: String,
    pub interval: Interval,
    /// The calendar of the input bars (session VWAP resets on its days).
    pub calendar: Calendar,
    pub specs: Vec<IndicatorSpec>,
}

/// One symbol's kernels, in configuration order.
struct SymbolKernels(Vec<Box<dyn Indicator>>);

/// Computes `stage.specs` on every bar of `input`. Bars are handled per timestamp in
/// timestamp order once the frontier has passed it, so each symbol's kernels see its
/// bars in event-time order whatever the batching.
pub fn indicators<'s>(
    input: StreamVec<'s, u64, Bar>,
    stage: IndicatorsStage,
) -> StreamVec<'s, u64, IndicatorRow> {
    let name = stage.name.clone();
    let exchange = Exchange::new(|b: &Bar| b.symbol.route_hash());
    input.unary_frontier(exchange, &name, move |_capability, _info| {
        let ids: Vec<(CompactString, IndicatorKind)> = stage
            .specs
            .iter()
            .map(|s| (CompactString::new(s.id()), s.kind()))
            .collect();
        let mut kernels: FxHashMap<Symbol, SymbolKernels> = FxHashMap::default();
        let mut pending: BTreeMap<u64, (Capability<u64>, Vec<Bar>)> = BTreeMap::new();
        let records_in = metrics()
            .operator_in
            .with_label_values(&[stage.name.as_str()]);
        let records_out = metrics()
            .operator_out
            .with_label_values(&[stage.name.as_str()]);

        move |(input, frontier), output| {
            input.for_each(|capability, data| {
                records_in.inc_by(data.len() as u64);
                let Some(time) = capability.least().copied() else {
                    return;
                };
                let entry = pending
                    .entry(time)
                    .or_insert_with(|| (capability.delayed(&time, 0), Vec::new()));
                entry.1.append(data);
            });
            while let Some(entry) = pending.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (capability, mut bars) = entry.remove();
                bars.sort_by(|a, b| (&a.symbol, a.start).cmp(&(&b.symbol, b.start)));
                let mut rows = Vec::with_capacity(bars.len() * ids.len());
                for bar in &bars {
                    let state = kernels.entry(bar.symbol.clone()).or_insert_with(|| {
                        SymbolKernels(
                            stage
                                .specs
                                .iter()
                                .map(|s| s.build(&stage.calendar))
                                .collect(),
                        )
                    });
                    for (kernel, (id, kind)) in state.0.iter_mut().zip(&ids) {
                        if let Some(outputs) = kernel.update(bar) {
                            rows.push(IndicatorRow {
                                symbol: bar.symbol.clone(),
                                interval: stage.interval,
                                ts: bar.start,
                                id: id.clone(),
                                kind: *kind,
                                outputs,
                                revision: bar.revision,
                            });
                        }
                    }
                }
                records_out.inc_by(rows.len() as u64);
                output.session(&capability).give_container(&mut rows);
            }
        }
    })
}
