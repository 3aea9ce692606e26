//! Operators: their configs and the types they produce. The engine turns them into timely
//! operators; here they are data.

pub mod bars;
pub mod indicators;
pub mod tick_indicators;

use self::bars::BarsConfig;
use self::indicators::IndicatorsConfig;
use self::tick_indicators::TickIndicatorsConfig;
use crate::config::de::{from_map_without, DeError, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::config::yaml::Node;
use crate::connector::StreamType;

/// The `type`s an operator may have.
pub const OPERATOR_TYPES: &[&str] = &["bars", "indicators", "tick_indicators"];

/// A configured operator.
#[derive(Debug, Clone)]
pub enum OperatorSpec {
    Bars(BarsConfig),
    Indicators(IndicatorsConfig),
    TickIndicators(TickIndicatorsConfig),
}

impl OperatorSpec {
    pub fn from_node(kind: &str, node: &Node, path: &str) -> Result<OperatorSpec, Vec<DeError>> {
        match kind {
            "bars" => from_map_without(node, path, &["type"])
                .map(OperatorSpec::Bars)
                .map_err(|e| vec![e]),
            "indicators" => IndicatorsConfig::from_node(node, path).map(OperatorSpec::Indicators),
            "tick_indicators" => {
                TickIndicatorsConfig::from_node(node, path).map(OperatorSpec::TickIndicators)
            }
            other => Err(vec![DeError::new(format!(
                "unknown operator type `{other}`"
            ))]),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            OperatorSpec::Bars(_) => "bars",
            OperatorSpec::Indicators(_) => "indicators",
            OperatorSpec::TickIndicators(_) => "tick_indicators",
        }
    }

    /// The streams this operator reads.
    pub fn inputs(&self) -> &[Spanned<String>] {
        match self {
            OperatorSpec::Bars(c) => &c.from.0,
            OperatorSpec::Indicators(c) => &c.from.0,
            OperatorSpec::TickIndicators(c) => &c.from.0,
        }
    }

    /// The output type for inputs of the given types (in `inputs()` order).
    pub fn output(&self, path: &str, inputs: &[StreamType]) -> Result<StreamType, Vec<Diagnostic>> {
        let Some(input) = inputs.first() else {
            return Err(Vec::new());
        };
        // Several inputs are one stream merged: they must be of one type.
        let names = self.inputs();
        let mixed: Vec<Diagnostic> = inputs
            .iter()
            .zip(names)
            .skip(1)
            .filter(|(t, _)| *t != input)
            .map(|(t, name)| {
                Diagnostic::new(
                    name.pos,
                    format!("{path}.from"),
                    format!(
                        "`{}` is {t} but `{}` is {input}: the streams of one `from` must be of one type",
                        name.value, names[0].value
                    ),
                )
            })
            .collect();
        if !mixed.is_empty() {
            return Err(mixed);
        }
        match self {
            // Several bars streams of the interval wanted: the merge is the operator.
            OperatorSpec::Bars(c)
                if names.len() > 1
                    && matches!(input, StreamType::Bars { interval, session }
                        if *interval == c.interval.value
                            && *session == c.session.as_ref().map(|s| s.value.clone())) =>
            {
                Ok(input.clone())
            }
            OperatorSpec::Bars(c) => c.output(path, input).map_err(|d| vec![d]),
            OperatorSpec::Indicators(c) => c.output(path, input).map_err(|d| vec![d]),
            OperatorSpec::TickIndicators(c) => c.output(path, input).map_err(|d| vec![d]),
        }
    }

    /// Checks of the operator's own settings.
    pub fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = match self {
            OperatorSpec::Bars(c) => c.check(path),
            OperatorSpec::Indicators(c) => c.check(path),
            OperatorSpec::TickIndicators(c) => c.check(path),
        };
        if self.inputs().is_empty() {
            problems.push(Diagnostic::new(
                Default::default(),
                format!("{path}.from"),
                "list at least one stream",
            ));
        }
        problems
    }
}
