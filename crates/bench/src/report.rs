//! The report: markdown tables (printed, and written to BENCHMARKS.md) and
//! the machine they were measured on.

use std::fmt::Write as _;

/// A markdown table with a title.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    pub note: String,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: Vec<&'static str>) -> Table {
        Table {
            title: title.into(),
            note: String::new(),
            headers,
            rows: Vec::new(),
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        if !self.note.is_empty() {
            let _ = writeln!(out, "{}\n", self.note);
        }
        let _ = writeln!(out, "| {} |", self.headers.join(" | "));
        let rule: Vec<&str> = self.headers.iter().map(|_| "---").collect();
        let _ = writeln!(out, "|{}|", rule.join("|"));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

/// Requests per second, whole.
pub fn rate(per_second: f64) -> String {
    format!("{per_second:.0}")
}

/// A share as a percentage with one decimal: 0.512 → "51.2 %".
pub fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// Milliseconds with two decimals.
pub fn millis(ms: f64) -> String {
    format!("{ms:.2}")
}

/// A ratio with two decimals and a times sign: 1.234 → "1.23×".
pub fn times(ratio: f64) -> String {
    format!("{ratio:.2}×")
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// ✓ when a target is met, ✗ when not.
pub fn mark(met: bool) -> &'static str {
    if met { "✓" } else { "✗" }
}

/// `part / whole`, 0 when there is no whole.
pub fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// The machine: CPU model, cores, memory, kernel, rustc, date.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0))
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |k| k.trim().to_string());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    format!(
        "- CPU: {cpu}\n- cores: {cores}\n- memory: {memory}\n- kernel: Linux {kernel}\n\
         - rustc: {rustc}\n- date: {date}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_formatted_for_the_tables() {
        assert_eq!(rate(1234.56), "1235");
        assert_eq!(percent(0.5123), "51.2 %");
        assert_eq!(millis(4.987), "4.99");
        assert_eq!(times(1.234), "1.23×");
        assert_eq!(mib(512 * 1024 * 1024), "512 MiB");
        assert_eq!(mark(true), "✓");
        assert_eq!(share(1.0, 0.0), 0.0);
    }

    #[test]
    fn a_table_renders_as_markdown() {
        let mut table = Table::new("Hot path", vec!["Call", "req/s"]);
        table.rows.push(vec!["GetRunner".into(), "100".into()]);
        assert_eq!(
            table.markdown(),
            "### Hot path\n\n| Call | req/s |\n|---|---|\n| GetRunner | 100 |\n"
        );
    }
}
