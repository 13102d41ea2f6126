//! The `mysimbdp` command line as tests run it: the built binary, and its output as text.

use std::process::Output;

/// `mysimbdp` with no arguments yet, to run and wait for.
pub fn command() -> std::process::Command {
    std::process::Command::new(crate::files::mysimbdp_binary())
}

/// `mysimbdp` with no arguments yet, to run from async code.
pub fn async_command() -> tokio::process::Command {
    tokio::process::Command::new(crate::files::mysimbdp_binary())
}

/// A finished run: its exit code (None when killed by a signal), stdout and stderr.
pub fn text(output: &Output) -> (Option<i32>, String, String) {
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Its stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
