//! Errors in a pipeline file, each with its position, the key path and a hint.

use std::fmt;

use super::de::DeError;
use super::yaml::Pos;

/// One problem found in a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// Dotted key path, e.g. `operators.bars_5m.from`.
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            pos,
            path: path.into(),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }

    /// Converts a deserialization error, falling back to `pos`/`path` if it has none.
    pub fn from_de(err: DeError, pos: Pos, path: &str) -> Diagnostic {
        Diagnostic {
            pos: err.pos.unwrap_or(pos),
            path: err.path.unwrap_or_else(|| path.to_owned()),
            message: err.message,
            help: err.help,
        }
    }
}

impl From<Diagnostic> for DeError {
    fn from(d: Diagnostic) -> DeError {
        DeError {
            pos: Some(d.pos),
            path: Some(d.path),
            message: d.message,
            help: d.help,
        }
    }
}

/// Every problem found in one file; reading stops only after all were collected.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    pub file: String,
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let path = if d.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", d.path)
            };
            write!(f, "error: {}:{}: {path}{}", self.file, d.pos, d.message)?;
            if let Some(help) = &d.help {
                write!(f, "\n  help: {help}")?;
            }
        }
        let n = self.items.len();
        write!(
            f,
            "\n{} found {n} error{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Diagnostics {}
