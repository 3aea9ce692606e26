//! Resolving the graph: every `from` names a stream, no cycles, and each operator and
//! sink gets input of a type it can take. Operators come out in topological order.

use std::collections::{BTreeMap, HashMap};

use super::operators::OperatorSpec;
use super::{Named, SinkRef, SourceRef};
use crate::config::de::{suggest, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::connector::StreamType;

/// Types by stream name, as resolution goes.
type Types = BTreeMap<String, StreamType>;

/// Checks references and types; returns operators in topological order and the type of
/// every source and operator stream.
pub fn resolve(
    sources: &[Named<SourceRef>],
    operators: Vec<Named<OperatorSpec>>,
    sinks: &[Named<SinkRef>],
    declared: &[String],
    sink_names: &[String],
    errors: &mut Vec<Diagnostic>,
) -> (Vec<Named<OperatorSpec>>, Types) {
    check_unique_names(sources, &operators, sinks, errors);
    let refs = References {
        declared: declared.iter().map(String::as_str).collect(),
        sink_names,
    };
    let mut types: Types = sources
        .iter()
        .map(|s| (s.name.clone(), s.spec.output()))
        .collect();
    let ordered = order_operators(operators, &refs, &mut types, errors);
    check_sinks(sinks, &refs, &types, errors);
    (ordered, types)
}

/// Names are shared by all sections: a `from` must be unambiguous.
fn check_unique_names(
    sources: &[Named<SourceRef>],
    operators: &[Named<OperatorSpec>],
    sinks: &[Named<SinkRef>],
    errors: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<&str, (&str, usize)> = HashMap::new();
    let all = sources
        .iter()
        .map(|n| (&n.name, n.pos, "sources"))
        .chain(operators.iter().map(|n| (&n.name, n.pos, "operators")))
        .chain(sinks.iter().map(|n| (&n.name, n.pos, "sinks")));
    for (name, pos, section) in all {
        if let Some((other, line)) = seen.get(name.as_str()) {
            errors.push(Diagnostic::new(
                pos,
                format!("{section}.{name}"),
                format!("the name `{name}` is already used in {other} (line {line})"),
            ));
        } else {
            seen.insert(name, (section, pos.line));
        }
    }
}

/// What a `from` may name.
struct References<'a> {
    /// Every declared stream, also those whose definition has errors.
    declared: Vec<&'a str>,
    sink_names: &'a [String],
}

impl References<'_> {
    fn is_declared(&self, name: &str) -> bool {
        self.declared.contains(&name)
    }

    /// The error for a `from` that names no stream.
    fn unknown(&self, path: String, name: &Spanned<String>) -> Diagnostic {
        let message = if self.sink_names.contains(&name.value) {
            format!(
                "`{}` is a sink; only sources and operators produce streams",
                name.value
            )
        } else {
            format!("unknown stream `{}`", name.value)
        };
        Diagnostic::new(name.pos, path, message).help_opt(suggest(&name.value, &self.declared))
    }
}

/// Kahn's algorithm over operators (sources are ready from the start): each operator's
/// output type once its inputs have theirs. What is left waits on a cycle, or on an
/// operator that failed its type check (already reported).
fn order_operators(
    operators: Vec<Named<OperatorSpec>>,
    refs: &References<'_>,
    types: &mut Types,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Named<OperatorSpec>> {
    let mut pending: Vec<Named<OperatorSpec>> = Vec::new();
    for op in operators {
        let unknown: Vec<Diagnostic> = op
            .spec
            .inputs()
            .iter()
            .filter(|i| !refs.is_declared(&i.value))
            .map(|i| refs.unknown(format!("operators.{}.from", op.name), i))
            .collect();
        if unknown.is_empty() {
            pending.push(op);
        }
        errors.extend(unknown);
    }
    let mut ordered = Vec::new();
    while let Some(index) = pending.iter().position(|op| {
        op.spec
            .inputs()
            .iter()
            .all(|i| types.contains_key(&i.value))
    }) {
        let op = pending.remove(index);
        let path = format!("operators.{}", op.name);
        let inputs: Vec<StreamType> = op
            .spec
            .inputs()
            .iter()
            .filter_map(|i| types.get(&i.value).cloned())
            .collect();
        match op.spec.output(&path, &inputs) {
            Ok(output) => {
                types.insert(op.name.clone(), output);
                ordered.push(op);
            }
            Err(problems) => errors.extend(problems),
        }
    }
    report_cycles(&pending, errors);
    ordered
}

/// Each cycle among `pending` operators, once, at its first name.
fn report_cycles(pending: &[Named<OperatorSpec>], errors: &mut Vec<Diagnostic>) {
    for op in pending {
        if let Some(cycle) = find_cycle(&op.name, pending) {
            if cycle.iter().min() == Some(&op.name) {
                errors.push(Diagnostic::new(
                    op.pos,
                    format!("operators.{}", op.name),
                    format!("cycle: {}", cycle.join(" -> ")),
                ));
            }
        }
    }
}

/// Every sink's `from` names a stream, and the sink accepts their types.
fn check_sinks(
    sinks: &[Named<SinkRef>],
    refs: &References<'_>,
    types: &Types,
    errors: &mut Vec<Diagnostic>,
) {
    for sink in sinks {
        let path = format!("sinks.{}", sink.name);
        let mut inputs = Vec::new();
        for input in sink.spec.inputs() {
            match types.get(&input.value) {
                Some(t) => inputs.push(t.clone()),
                None if !refs.is_declared(&input.value) => {
                    errors.push(refs.unknown(format!("{path}.from"), input))
                }
                None => {}
            }
        }
        if inputs.len() == sink.spec.inputs().len() {
            errors.extend(sink.spec.check(&path, &inputs));
        }
    }
}

/// A path from `start` back to itself through `from` links, if there is one.
fn find_cycle(start: &str, operators: &[Named<OperatorSpec>]) -> Option<Vec<String>> {
    let by_name: HashMap<&str, &Named<OperatorSpec>> =
        operators.iter().map(|o| (o.name.as_str(), o)).collect();
    let mut path = vec![start.to_owned()];
    let mut current = start;
    for _ in 0..=operators.len() {
        let op = by_name.get(current)?;
        let next = op
            .spec
            .inputs()
            .iter()
            .map(|i| i.value.as_str())
            .find(|i| by_name.contains_key(i))?;
        path.push(next.to_owned());
        if next == start {
            return Some(path);
        }
        current = next;
    }
    None
}

/// The resolved graph in Graphviz DOT.
pub fn render_dot(pipeline: &super::Pipeline) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n",
        pipeline.name.replace('"', "'")
    );
    for (i, s) in pipeline.sources.iter().enumerate() {
        out += &format!(
            "  \"{}\" [shape=box, label=\"{}\\n{} -> {}\"];\n",
            s.name,
            s.name,
            s.spec.type_name(),
            pipeline.streams[i]
        );
    }
    for (i, o) in pipeline.operators.iter().enumerate() {
        out += &format!(
            "  \"{}\" [shape=ellipse, label=\"{}\\n{} -> {}\"];\n",
            o.name,
            o.name,
            o.spec.type_name(),
            pipeline.streams[pipeline.sources.len() + i]
        );
        for input in o.spec.inputs() {
            out += &format!("  \"{}\" -> \"{}\";\n", input.value, o.name);
        }
    }
    for s in &pipeline.sinks {
        out += &format!(
            "  \"{}\" [shape=cylinder, label=\"{}\\n{}\"];\n",
            s.name,
            s.name,
            s.spec.type_name()
        );
        for input in s.spec.inputs() {
            out += &format!("  \"{}\" -> \"{}\";\n", input.value, s.name);
        }
    }
    out + "}\n"
}

/// The resolved graph as text, one node per line in execution order.
pub fn render_text(pipeline: &super::Pipeline) -> String {
    let mut out = format!("pipeline {}\n", pipeline.name);
    for (i, s) in pipeline.sources.iter().enumerate() {
        out += &format!(
            "  source   {:<16} {:<10} -> {}\n",
            s.name,
            s.spec.type_name(),
            pipeline.streams[i]
        );
    }
    for (i, o) in pipeline.operators.iter().enumerate() {
        let from: Vec<&str> = o.spec.inputs().iter().map(|i| i.value.as_str()).collect();
        out += &format!(
            "  operator {:<16} {:<10} {} -> {}\n",
            o.name,
            o.spec.type_name(),
            from.join(", "),
            pipeline.streams[pipeline.sources.len() + i]
        );
    }
    for s in &pipeline.sinks {
        let from: Vec<&str> = s.spec.inputs().iter().map(|i| i.value.as_str()).collect();
        out += &format!(
            "  sink     {:<16} {:<10} {}\n",
            s.name,
            s.spec.type_name(),
            from.join(", ")
        );
    }
    out
}
