//! `session-lock bench` (being written).

/// Arguments of `session-lock bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Directory to run in (default: a fresh temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Short run (under 30 s on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Run the bench; returns the process exit code.
pub fn run(_args: &BenchArgs) -> i32 {
    eprintln!("session-lock bench: not implemented yet");
    1
}
