//! `mysimbdp:ingest/log`: app log lines into the host's tracing, capped per call.

use crate::runtime::bindings::batch::mysimbdp::ingest::log::{Host, Level};
use crate::runtime::state::HostState;

/// Longer lines are cut: a log line is for a person, not a data channel.
const MAX_LINE_BYTES: usize = 4096;

impl Host for HostState {
    async fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        self.call.charge_host_call()?;
        if self.call.logs_written >= self.call.log_lines {
            self.call.logs_dropped += 1;
            return Ok(());
        }
        self.call.logs_written += 1;
        if message.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let message = printable(&message);
        let app = &*self.call.label;
        match level {
            Level::Trace => tracing::trace!(target: "mysimbdp::app", app, "{message}"),
            Level::Debug => tracing::debug!(target: "mysimbdp::app", app, "{message}"),
            Level::Info => tracing::info!(target: "mysimbdp::app", app, "{message}"),
            Level::Warn => tracing::warn!(target: "mysimbdp::app", app, "{message}"),
            Level::Error => tracing::error!(target: "mysimbdp::app", app, "{message}"),
        }
        Ok(())
    }
}

/// The line with every control character escaped (`\n` → `\\n`, ESC → `\\u{1b}`): an app
/// must not be able to start a forged record or move the cursor of the host's log.
fn printable(message: &str) -> std::borrow::Cow<'_, str> {
    if !message.chars().any(char::is_control) {
        return message.into();
    }
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_cannot_forge_log_records() {
        assert_eq!(printable("plain line"), "plain line");
        let forged = "ok\n2026-11-29T00:00:00Z INFO batch job settled tenant=\"acme\"\r\u{1b}[2K";
        let line = printable(forged);
        assert!(!line.chars().any(char::is_control), "{line}");
        assert!(line.starts_with("ok\\n2026"), "{line}");
    }
}
