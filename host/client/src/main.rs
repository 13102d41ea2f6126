//! `mysimbdp-cli`: the platform's remote commands, without the host's runtime.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mysimbdp_client::Cli::parse();
    match mysimbdp_client::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
