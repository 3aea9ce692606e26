//! `type: stdout` — records on standard output, for pipes and quick looks.

use serde::Deserialize;

use schemars::JsonSchema;

use super::file::{check_format, write_records, Output};
use crate::codec::Format;
use crate::config::de::{OneOrMany, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::connector::{Sink, SinkContext, StreamType, Task, TaskError};

/// Prints records to standard output.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// The streams to print.
    pub from: OneOrMany,
    /// `jsonl` (default) or `csv`.
    #[serde(default)]
    pub format: Option<Format>,
}

impl Sink for StdoutSinkConfig {
    const TYPE: &'static str = "stdout";
    const ABOUT: &'static str = "records on standard output, like `file`";

    fn inputs(&self) -> &[Spanned<String>] {
        &self.from.0
    }

    fn check(&self, path: &str, inputs: &[StreamType]) -> Vec<Diagnostic> {
        check_format(self.format, &self.from, path, inputs)
    }

    fn build(&self, ctx: SinkContext) -> Task {
        let format = self.format.unwrap_or(Format::Jsonl);
        Task::Blocking(Box::new(move || {
            write_records(ctx, Output::plain(std::io::stdout()), format).map_err(TaskError::from)
        }))
    }
}
