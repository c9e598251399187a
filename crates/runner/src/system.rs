//! What the runner reports about its host: a one-line, human-readable summary.

use std::fs;

/// E.g. `Debian GNU/Linux 13 (trixie); kernel 6.8.0-45-generic; 4 CPUs; 15.6 GiB memory`.
/// Parts that cannot be read are left out; never empty.
pub fn system_details() -> String {
    let mut parts = Vec::new();
    parts.push(
        fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| os_name(&s))
            .unwrap_or_else(|| std::env::consts::OS.to_string()),
    );
    if let Ok(kernel) = fs::read_to_string("/proc/sys/kernel/osrelease") {
        let kernel = kernel.trim();
        if !kernel.is_empty() {
            parts.push(format!("kernel {kernel}"));
        }
    }
    parts.push(format!("{} {}", std::env::consts::ARCH, cpus()));
    if let Some(kib) = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_total_kib(&s))
    {
        parts.push(format!("{:.1} GiB memory", kib as f64 / (1024.0 * 1024.0)));
    }
    parts.join("; ")
}

fn cpus() -> String {
    match std::thread::available_parallelism().map(|n| n.get()) {
        Ok(1) => "1 CPU".to_string(),
        Ok(n) => format!("{n} CPUs"),
        Err(_) => "unknown CPUs".to_string(),
    }
}

/// `PRETTY_NAME`, else `NAME VERSION`, from os-release contents.
fn os_name(os_release: &str) -> Option<String> {
    let value = |key: &str| {
        os_release.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            let v = rest.trim().trim_matches('"').trim_matches('\'').to_string();
            (!v.is_empty()).then_some(v)
        })
    };
    value("PRETTY_NAME").or_else(|| {
        let name = value("NAME")?;
        Some(match value("VERSION") {
            Some(version) => format!("{name} {version}"),
            None => name,
        })
    })
}

/// `MemTotal` in KiB from /proc/meminfo contents.
fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_os_release_and_meminfo() {
        let release = "NAME=\"Debian GNU/Linux\"\nVERSION=\"13 (trixie)\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n";
        assert_eq!(
            os_name(release).as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(
            os_name("NAME=Alpine\nVERSION=3.20\n").as_deref(),
            Some("Alpine 3.20")
        );
        assert_eq!(os_name("ID=x\n"), None);
        assert_eq!(
            mem_total_kib("MemTotal:       16303476 kB\nMemFree: 1 kB\n"),
            Some(16303476)
        );
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn details_on_linux_name_kernel_cpus_and_memory() {
        let details = system_details();
        assert!(!details.is_empty());
        assert!(details.contains("kernel "), "{details}");
        assert!(details.contains("CPU"), "{details}");
        assert!(details.contains("GiB memory"), "{details}");
        assert!(!details.contains('\n'));
    }
}
