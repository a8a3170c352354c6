//! Replays the checked-in fuzz corpora (`fuzz/corpus/<target>/`) through
//! the entry functions the cargo-fuzz targets call ([`weir::fuzzing`]), on
//! the stable toolchain: every input a fuzzer kept, and every crash found
//! and fixed, stays a regression test. No broker is needed; `host_imports`
//! needs the `fuzz-host` guest from `scripts/build-guests.sh`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use weir::fuzzing;

/// Feeds every file of `fuzz/corpus/<target>` to `entry`; fails listing
/// the files that panicked.
fn replay(target: &str, entry: fn(&[u8])) {
    let dir = weir_tests::repo_root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).expect("read a corpus file");
            catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs panicked (reproduce with scripts/fuzz.sh {target} <file>):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn config_corpus() {
    replay("config", fuzzing::config);
}

#[test]
fn manifest_corpus() {
    replay("manifest", fuzzing::manifest);
}

#[test]
fn replay_events_corpus() {
    replay("replay_events", fuzzing::replay_events);
}

#[test]
fn component_load_corpus() {
    replay("component_load", fuzzing::component_load);
}

#[test]
fn host_imports_corpus() {
    let guest = fuzzing::fuzz_host_path();
    assert!(
        guest.is_file(),
        "test fixture `{}` is missing: run scripts/build-guests.sh first",
        guest.display()
    );
    replay("host_imports", fuzzing::host_imports);
}
