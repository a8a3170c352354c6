//! What the test process itself uses (Linux `/proc/self`), for tests that
//! check weir in-process stays bounded.

/// The test process's resident set size, in KiB (`VmRSS`); 0 if unknown.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The number of threads of the test process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// The number of open file descriptors of the test process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Serialises, within one test binary, the tests that load every core for
/// a long time (component builds: componentize-py and ComponentizeJS, and
/// weir compiling the 12-18 MB Python and JavaScript components), so the
/// harness's two threads never run two of them at once and the tests
/// beside them keep some CPU. Hold the guard for the whole test:
/// `let _cpu = cpu_heavy().lock().await;` (async) or
/// `let _cpu = cpu_heavy().blocking_lock();`. (Timed tests live in test
/// binaries of their own, e.g. `tests/tests/hostile.rs`.)
pub fn cpu_heavy() -> &'static tokio::sync::Mutex<()> {
    static CPU: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    CPU.get_or_init(|| tokio::sync::Mutex::new(()))
}
