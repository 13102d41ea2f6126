//! The host's log output: one line per record, whatever a tenant put into a field. App log
//! lines, app error reasons, message ids, file names and document errors all reach the log;
//! a newline or carriage return in any of them would start a forged record, so every one
//! inside a record is written escaped (`\n`, `\r`). (ANSI escapes in fields are escaped by
//! `tracing-subscriber` itself.)

use std::io::{self, Write};

/// Logs to stderr, filtered by `RUST_LOG` (default: info), one line per record.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLine(io::stderr()))
        .init();
}

/// A writer that keeps each record on one line. The formatter hands it one whole record per
/// write, ending in its own newline.
pub struct OneLine<W>(pub W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        let (body, end) = match record.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (record, &b""[..]),
        };
        if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
            self.0.write_all(record)?;
            return Ok(record.len());
        }
        let mut line = Vec::with_capacity(record.len() + 16);
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                other => line.push(other),
            }
        }
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(record.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(record: &str) -> String {
        let mut out = OneLine(Vec::new());
        out.write_all(record.as_bytes()).unwrap();
        String::from_utf8(out.0).unwrap()
    }

    #[test]
    fn a_record_stays_one_line_whatever_its_fields_hold() {
        assert_eq!(written("plain record\n"), "plain record\n");
        assert_eq!(
            written("app log: ok\n2026-11-29T00:00:00Z INFO batch job settled tenant=\"acme\"\r\n"),
            "app log: ok\\n2026-11-29T00:00:00Z INFO batch job settled tenant=\"acme\"\\r\n"
        );
        assert_eq!(written("no newline"), "no newline");
    }
}
