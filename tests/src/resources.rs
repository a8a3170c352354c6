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
/// a long time (component builds: componentize-py and ComponentizeJS run
/// at normal priority) with the tests that time weir (latency under a
/// spinning guest): run side by side by the test harness's two threads,
/// the builds starve the timed guest threads and the timing says nothing
/// about weir. Hold the guard for the whole test:
/// `let _cpu = cpu_heavy().lock().await;` (async) or
/// `let _cpu = cpu_heavy().blocking_lock();`.
pub fn cpu_heavy() -> &'static tokio::sync::Mutex<()> {
    static CPU: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    CPU.get_or_init(|| tokio::sync::Mutex::new(()))
}
