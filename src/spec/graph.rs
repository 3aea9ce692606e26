//! Resolving the graph: every `from` names a stream, no cycles, and each operator and
//! sink gets input of a type it can take. Operators come out in topological order.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

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
    let refs = References::new(declared, sink_names);
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
    /// Every declared stream, also those whose definition has errors (in order, for
    /// suggestions, and as a set).
    declared: Vec<&'a str>,
    declared_set: HashSet<&'a str>,
    sink_names: HashSet<&'a str>,
}

impl<'a> References<'a> {
    fn new(declared: &'a [String], sink_names: &'a [String]) -> References<'a> {
        let declared: Vec<&str> = declared.iter().map(String::as_str).collect();
        References {
            declared_set: declared.iter().copied().collect(),
            declared,
            sink_names: sink_names.iter().map(String::as_str).collect(),
        }
    }

    fn is_declared(&self, name: &str) -> bool {
        self.declared_set.contains(name)
    }

    /// The error for a `from` that names no stream.
    fn unknown(&self, path: String, name: &Spanned<String>) -> Diagnostic {
        let message = if self.sink_names.contains(name.value.as_str()) {
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

/// Kahn's algorithm over operators (sources are ready from the start), in linear time: each
/// operator's output type once its inputs have theirs. What is left waits on a cycle, or on
/// an operator that failed its type check (already reported).
fn order_operators(
    operators: Vec<Named<OperatorSpec>>,
    refs: &References<'_>,
    types: &mut Types,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Named<OperatorSpec>> {
    let mut pending: Vec<Option<Named<OperatorSpec>>> = Vec::new();
    for op in operators {
        let unknown: Vec<Diagnostic> = op
            .spec
            .inputs()
            .iter()
            .filter(|i| !refs.is_declared(&i.value))
            .map(|i| refs.unknown(format!("operators.{}.from", op.name), i))
            .collect();
        if unknown.is_empty() {
            pending.push(Some(op));
        }
        errors.extend(unknown);
    }
    // For each stream, the operators waiting on it; for each operator, inputs not typed yet.
    let mut waiting: HashMap<String, Vec<usize>> = HashMap::new();
    let mut missing: Vec<usize> = Vec::with_capacity(pending.len());
    let mut ready: VecDeque<usize> = VecDeque::new();
    for (index, op) in pending.iter().enumerate() {
        let inputs = op.as_ref().map_or(&[][..], |op| op.spec.inputs());
        let untyped: Vec<&str> = inputs
            .iter()
            .map(|i| i.value.as_str())
            .filter(|i| !types.contains_key(*i))
            .collect();
        for input in &untyped {
            waiting.entry((*input).to_owned()).or_default().push(index);
        }
        missing.push(untyped.len());
        if untyped.is_empty() {
            ready.push_back(index);
        }
    }
    let mut ordered = Vec::new();
    while let Some(index) = ready.pop_front() {
        let Some(op) = pending[index].take() else {
            continue;
        };
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
                for next in waiting.remove(&op.name).unwrap_or_default() {
                    missing[next] -= 1;
                    if missing[next] == 0 {
                        ready.push_back(next);
                    }
                }
                ordered.push(op);
            }
            Err(problems) => errors.extend(problems),
        }
    }
    let left: Vec<Named<OperatorSpec>> = pending.into_iter().flatten().collect();
    report_cycles(&left, errors);
    ordered
}

/// Each cycle among `pending` operators, once, at its first name (in linear time: each
/// operator's first pending input is followed once).
fn report_cycles(pending: &[Named<OperatorSpec>], errors: &mut Vec<Diagnostic>) {
    let index: HashMap<&str, usize> = pending
        .iter()
        .enumerate()
        .map(|(i, o)| (o.name.as_str(), i))
        .collect();
    let next = |i: usize| {
        pending[i]
            .spec
            .inputs()
            .iter()
            .find_map(|input| index.get(input.value.as_str()).copied())
    };
    // 0: not seen; walk number + 1: seen on that walk.
    let mut seen = vec![0usize; pending.len()];
    for start in 0..pending.len() {
        let walk = start + 1;
        let mut at = start;
        while seen[at] == 0 {
            seen[at] = walk;
            match next(at) {
                Some(n) => at = n,
                None => break,
            }
        }
        if seen[at] != walk || next(at).is_none() {
            continue;
        }
        // `at` is on a cycle found by this walk: list it from its smallest name.
        let mut cycle = vec![at];
        let mut i = next(at).unwrap_or(at);
        while i != at {
            cycle.push(i);
            i = next(i).unwrap_or(at);
        }
        let first = cycle
            .iter()
            .copied()
            .min_by(|a, b| pending[*a].name.cmp(&pending[*b].name))
            .unwrap_or(at);
        let rotate = cycle.iter().position(|&c| c == first).unwrap_or(0);
        cycle.rotate_left(rotate);
        let mut names: Vec<&str> = cycle.iter().map(|&c| pending[c].name.as_str()).collect();
        names.push(names[0]);
        let op = &pending[first];
        errors.push(Diagnostic::new(
            op.pos,
            format!("operators.{}", op.name),
            format!("cycle: {}", names.join(" -> ")),
        ));
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
