//! `type: stdout` — records on standard output, for pipes and quick looks.

use serde::Deserialize;

use super::file::write_records;
use super::SinkContext;
use crate::codec::Format;
use crate::engine::Task;
use crate::spec::de::OneOrMany;

/// Prints records to standard output.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// The streams to print.
    pub from: OneOrMany,
    /// `jsonl` (default) or `csv`.
    #[serde(default)]
    pub format: Option<Format>,
}

impl StdoutSinkConfig {
    pub fn build(&self, ctx: SinkContext) -> Task {
        let format = self.format.unwrap_or(Format::Jsonl);
        Task::Blocking(Box::new(move || {
            write_records(ctx, std::io::stdout().lock(), format)
        }))
    }
}
