//! `${VAR}` and `${VAR:-default}` in scalar values, from the environment.
//!
//! Interpolation runs on parsed scalars, not on the raw text, so a value holding YAML
//! syntax (a password with `: ` or `#`) cannot change the document's structure.

use super::diagnostic::Diagnostic;
use super::yaml::{Node, Pos, Value};

/// A variable's value put into the scalar at `pos`: messages about that scalar must not
/// show it (it may be a secret), see [`redact`].
#[derive(Debug, Clone, PartialEq)]
pub struct Substitution {
    pub pos: Pos,
    pub name: String,
    pub value: String,
}

/// Replaces variables in every scalar of `node`; `$$` is a literal `$`. Each value taken
/// from the environment is recorded in `substitutions`.
pub fn interpolate(
    node: &mut Node,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
    substitutions: &mut Vec<Substitution>,
) {
    match &mut node.value {
        Value::Scalar { text, .. } => {
            if text.contains('$') {
                let mut recording = |name: &str| {
                    let value = env(name);
                    if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                        substitutions.push(Substitution {
                            pos: node.pos,
                            name: name.to_owned(),
                            value: value.clone(),
                        });
                    }
                    value
                };
                match expand(text, &mut recording) {
                    Ok(expanded) => *text = expanded,
                    Err((message, help)) => {
                        errors.push(Diagnostic::new(node.pos, path, message).help_opt(help))
                    }
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env, errors, substitutions);
            }
        }
        Value::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                let child = match key.as_str() {
                    Some(k) if path.is_empty() => k.to_owned(),
                    Some(k) => format!("{path}.{k}"),
                    None => path.to_owned(),
                };
                interpolate(value, &child, env, errors, substitutions);
            }
        }
    }
}

/// Removes variables' values from the messages about the scalars they went into: a quoted
/// fragment (in backticks or single quotes) that is part of a value, or the value itself,
/// becomes `${NAME}`. Errors name the variable, never its value.
pub fn redact(diagnostics: &mut [Diagnostic], substitutions: &[Substitution]) {
    for d in diagnostics.iter_mut() {
        for s in substitutions.iter().filter(|s| s.pos.line == d.pos.line) {
            d.message = redact_text(&d.message, s);
            d.help = d.help.as_deref().map(|h| redact_text(h, s));
        }
    }
}

fn redact_text(text: &str, s: &Substitution) -> String {
    let placeholder = format!("${{{}}}", s.name);
    let mut out = text.replace(&s.value, &placeholder);
    for quote in ['`', '\''] {
        let parts: Vec<&str> = out.split(quote).collect();
        if parts.len() < 3 {
            continue;
        }
        // Odd-numbered parts are inside quotes.
        out = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 1 && !part.is_empty() && s.value.contains(part) {
                    placeholder.as_str()
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join(&quote.to_string());
    }
    out
}

fn expand(
    text: &str,
    env: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<String, (String, Option<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = rest.strip_prefix("${") {
            let end = body.find('}').ok_or_else(|| {
                (
                    format!("unterminated `${{` in `{text}`"),
                    Some("write `${NAME}`, or `$$` for a literal `$`".to_owned()),
                )
            })?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err((
                    format!("invalid variable name `{name}`"),
                    Some("names are letters, digits and `_`, not starting with a digit".to_owned()),
                ));
            }
            match (
                env(name).filter(|v| !(v.is_empty() && default.is_some())),
                default,
            ) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err((
                        format!("environment variable `{name}` is not set"),
                        Some(format!("set it, or give a default: `${{{name}:-value}}`")),
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands() {
        assert_eq!(
            expand("postgres://${HOST}:5432", &mut env).unwrap(),
            "postgres://db.local:5432"
        );
        assert_eq!(expand("${PORT:-8000}", &mut env).unwrap(), "8000");
        assert_eq!(expand("${EMPTY:-x}", &mut env).unwrap(), "x");
        assert_eq!(expand("${EMPTY}", &mut env).unwrap(), "");
        assert_eq!(
            expand("cost $5 and $$HOME", &mut env).unwrap(),
            "cost $5 and $HOME"
        );
    }

    #[test]
    fn reports_unset_and_malformed() {
        assert!(expand("${NOPE}", &mut env)
            .unwrap_err()
            .0
            .contains("`NOPE` is not set"));
        assert!(expand("${HOST", &mut env)
            .unwrap_err()
            .0
            .contains("unterminated"));
        assert!(expand("${1X}", &mut env)
            .unwrap_err()
            .0
            .contains("invalid variable name"));
    }
}
