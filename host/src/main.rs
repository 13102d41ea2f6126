//! The `mysimbdp` command: parse arguments, set up logging, hand over to the library.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mysimbdp_host::cli::Cli::parse();
    mysimbdp_host::cli::init_tracing();
    match mysimbdp_host::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
