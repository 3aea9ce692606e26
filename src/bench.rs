//! `marketflow bench`: ticks/s through the engine against a plain loop.

/// Arguments of `marketflow bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Number of symbols.
    #[arg(long, default_value_t = 100)]
    pub symbols: usize,
}

pub fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    Ok(())
}
