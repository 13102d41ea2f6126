//! Figures as people read them: the text `stream stats` and `batch stats` print, and the
//! aligned tables of the listing commands (`--json` keeps the API's JSON for scripts). Every
//! tenant-controlled string printed here (names, files, reasons, host names) has its control
//! characters replaced, so a crafted reason cannot rewrite the operator's terminal.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use mysimbdp_api::{BatchStats, StreamSeries, StreamStats};
use std::fmt::Write;

/// `rows` under `headers`, columns aligned (those in `right`, counts, to the right), each
/// cell made safe for a terminal; one line per row, no borders.
pub fn table(headers: &[&str], right: &[usize], rows: &[Vec<String>]) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row.iter().map(|cell| text(cell)));
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = String::new();
    for line in table.to_string().lines() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// `s` cut to `max` characters, an ellipsis marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut clipped: String = s.chars().take(max.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

/// Values as a line of block characters, the highest value the tallest block; a missing
/// value (a step without reports) is a space.
pub fn sparkline(values: &[Option<f64>]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let highest = values.iter().flatten().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|value| match value {
            None => ' ',
            Some(_) if highest <= 0.0 => BLOCKS[0],
            Some(v) => {
                let level = (v.max(0.0) / highest * (BLOCKS.len() - 1) as f64).round() as usize;
                BLOCKS[level.min(BLOCKS.len() - 1)]
            }
        })
        .collect()
}

/// A series' values over its whole window, one per step (`None` where a step has no report).
fn over_window(
    series: &StreamSeries,
    value: fn(&mysimbdp_api::SeriesPoint) -> f64,
) -> Vec<Option<f64>> {
    let step = series.step_secs.max(1);
    let mut values = vec![None; series.window_secs.div_ceil(step) as usize];
    for point in &series.points {
        if let Some(slot) = values.get_mut((point.offset_secs / step) as usize) {
            *slot = Some(value(point));
        }
    }
    values
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in the largest unit that keeps a number ≥ 1: `512 B`, `1.5 KB`, `2.6 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Milliseconds as `850 ms`, `12.5 s`, `3.2 min`.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{:.1} min", ms / 60_000.0)
    }
}

/// A string from the platform (or a tenant) made safe for a terminal: control characters
/// (escape sequences, carriage returns, newlines) shown as `�`.
pub fn text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `stream stats` as text: one aligned line per figure, sparklines of the series when there
/// is one, then the monitor's events.
pub fn stream_stats(stats: &StreamStats, series: Option<&StreamSeries>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stream {}, last {} s ({} report{})",
        text(&stats.stream),
        stats.window_secs,
        stats.reports,
        if stats.reports == 1 { "" } else { "s" }
    );
    let dead_queued = stats
        .dead_letters_queued
        .map_or_else(|| "unknown".to_owned(), count);
    let rows = [
        (
            "messages",
            format!(
                "{} ({:.1}/s)",
                count(stats.messages),
                stats.messages_per_sec
            ),
        ),
        ("documents", count(stats.documents)),
        ("bytes", bytes(stats.bytes)),
        (
            "dead-lettered",
            format!(
                "{} (in the dead-letter queue now: {dead_queued})",
                count(stats.dead_lettered)
            ),
        ),
        ("retried", count(stats.retried)),
        ("errors", count(stats.errors)),
        (
            "latency",
            format!(
                "mean {}, p99 {}",
                duration_ms(stats.latency_avg_ms),
                duration_ms(stats.latency_p99_ms)
            ),
        ),
        ("queue depth", count(stats.queue_depth)),
        (
            "consumers",
            format!(
                "{} running, {} wanted",
                stats.running_consumers, stats.desired_consumers
            ),
        ),
        (
            "throttled",
            if stats.throttled { "yes" } else { "no" }.to_owned(),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<14} {value}");
    }
    if let Some(series) = series.filter(|s| !s.points.is_empty()) {
        let _ = writeln!(
            out,
            "last {} s, one mark per {} s (blank: no report):",
            series.window_secs, series.step_secs
        );
        let highest = |f: fn(&mysimbdp_api::SeriesPoint) -> f64| {
            series.points.iter().map(f).fold(0.0, f64::max)
        };
        for (name, value, unit) in [
            (
                "messages/s",
                (|p| p.messages_per_sec) as fn(&mysimbdp_api::SeriesPoint) -> f64,
                "/s",
            ),
            ("p99 latency", |p| p.latency_p99_ms, " ms"),
            ("queue depth", |p| p.queue_depth as f64, ""),
            ("consumers", |p| f64::from(p.consumers), ""),
        ] {
            let _ = writeln!(
                out,
                "  {name:<14} {}  max {:.1}{unit}",
                sparkline(&over_window(series, value)),
                highest(value)
            );
        }
    }
    for gap in &stats.incomplete {
        let _ = writeln!(
            out,
            "  {:<14} host {} from {} to {} (its figures are in a later report)",
            "incomplete",
            text(&gap.host),
            text(&gap.from),
            text(&gap.to)
        );
    }
    if !stats.events.is_empty() {
        let _ = writeln!(out, "events, newest first:");
        let _ = writeln!(
            out,
            "  {:<25} {:<11} {:<9} {:<16} REASON",
            "AT", "KIND", "CONSUMERS", "HOST"
        );
        for event in &stats.events {
            let consumers = match (event.from, event.to) {
                (Some(from), Some(to)) => format!("{from} -> {to}"),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {:<25} {:<11} {:<9} {:<16} {}",
                text(&event.at),
                text(&event.kind),
                consumers,
                text(&event.host),
                text(&event.reason)
            );
        }
    }
    out
}

/// `batch stats` as text.
pub fn batch_stats(stats: &BatchStats) -> String {
    let rows = [
        (
            "files",
            format!("{} ({})", count(stats.files), bytes(stats.bytes)),
        ),
        ("documents", count(stats.documents)),
        (
            "jobs",
            format!(
                "{} done, {} failed, {} dead-lettered ({:.1} % succeeded)",
                count(stats.done),
                count(stats.failed),
                count(stats.dead),
                stats.success_rate * 100.0
            ),
        ),
        (
            "job duration",
            format!(
                "mean {}, p95 {} (successful jobs)",
                duration_ms(stats.avg_duration_ms),
                duration_ms(stats.p95_duration_ms)
            ),
        ),
    ];
    let mut out = String::new();
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<13} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysimbdp_api::EventView;

    #[test]
    fn counts_bytes_and_durations_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(20_364_318), "20,364,318");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2_600_000), "2.6 MB");
        assert_eq!(duration_ms(14.46), "14.5 ms");
        assert_eq!(duration_ms(12_500.0), "12.5 s");
    }

    #[test]
    fn tenant_strings_cannot_drive_the_terminal() {
        assert_eq!(
            text("ok\x1b[2J\rgone\n"),
            "ok\u{fffd}[2J\u{fffd}gone\u{fffd}"
        );
        let stats = StreamStats {
            stream: "readings".to_owned(),
            window_secs: 60,
            reports: 3,
            messages: 20_001,
            bytes: 2_600_000,
            documents: 40_000,
            messages_per_sec: 333.35,
            dead_lettered: 1,
            dead_letters_queued: Some(1),
            retried: 0,
            errors: 0,
            latency_avg_ms: 5.4,
            latency_p99_ms: 14.5,
            queue_depth: 0,
            running_consumers: 1,
            desired_consumers: 2,
            throttled: false,
            events: vec![EventView {
                at: "2026-11-30T12:00:00Z".to_owned(),
                kind: "scale_up".to_owned(),
                from: Some(1),
                to: Some(2),
                reason: "backlog\x1b]0;owned\x07".to_owned(),
                host: "h1".to_owned(),
            }],
            incomplete: Vec::new(),
        };
        let printed = stream_stats(&stats, None);
        assert!(
            printed.contains("messages       20,001 (333.4/s)"),
            "{printed}"
        );
        assert!(printed.contains("1 running, 2 wanted"), "{printed}");
        assert!(printed.contains("1 -> 2"), "{printed}");
        assert!(
            !printed.contains('\x1b') && !printed.contains('\x07'),
            "{printed}"
        );
    }

    #[test]
    fn tables_align_and_sparklines_scale() {
        let printed = table(
            &["JOB", "TRY", "FILE"],
            &[1],
            &[
                vec!["a1".into(), "1".into(), "x.csv".into()],
                vec!["b22".into(), "10".into(), "evil\x1b[2J.csv".into()],
            ],
        );
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines[0], "JOB  TRY  FILE", "{printed}");
        assert_eq!(lines[1], "a1     1  x.csv", "{printed}");
        assert_eq!(lines[2], "b22   10  evil\u{fffd}[2J.csv", "{printed}");
        assert_eq!(sparkline(&[Some(0.0), Some(5.0), None, Some(10.0)]), "▁▅ █");
        assert_eq!(sparkline(&[Some(0.0), None]), "▁ ");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
