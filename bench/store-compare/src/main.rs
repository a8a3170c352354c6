//! Measured comparison of three embedded key-value engines (fjall, redb, rocksdb) for weir's
//! keyed guest state: one local store per (module, input partition), restored from and
//! checkpointed against a compacted Kafka changelog topic.
//!
//! `store-compare [--keys N]` runs every compiled-in engine, each in a child process of its own
//! (`--engine X`), so that peak RSS is per engine, and prints a Markdown table.
//! `store-compare --crash-test` checks what a process crash after non-fsynced commits leaves.
//! See README.md beside Cargo.toml.

mod engines;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use engines::DATA_DIR;

/// Key length in bytes: `key-` followed by 12 decimal digits.
pub const KEY_LEN: usize = 16;
/// Value length in bytes: an 8-byte version (big-endian) followed by 92 pseudo-random bytes.
pub const VALUE_LEN: usize = 100;
/// Keys per write transaction/batch while loading (models a changelog restore).
const LOAD_BATCH: u64 = 1_000;
/// get+set operations per commit (no fsync per commit).
const COMMIT_EVERY: usize = 256;
/// Entries each prefix scan returns: keys sharing their first 15 bytes.
const SCAN_LEN: usize = 10;

#[derive(Debug, Clone)]
struct Args {
    keys: u64,
    ops: u64,
    scans: u64,
    engine: Option<String>,
    cache_mb: Option<u64>,
    dir: PathBuf,
    crash_test: bool,
    crash_phase: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: store-compare [--keys N] [--ops N] [--scans N] [--cache-mb M] [--dir D] \
         [--engine fjall|redb|rocksdb] [--crash-test]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        keys: 1_000_000,
        ops: 200_000,
        scans: 10_000,
        engine: None,
        cache_mb: None,
        dir: std::env::temp_dir(),
        crash_test: false,
        crash_phase: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--keys" => a.keys = val().parse().unwrap_or_else(|_| usage()),
            "--ops" => a.ops = val().parse().unwrap_or_else(|_| usage()),
            "--scans" => a.scans = val().parse().unwrap_or_else(|_| usage()),
            "--cache-mb" => a.cache_mb = Some(val().parse().unwrap_or_else(|_| usage())),
            "--engine" => a.engine = Some(val()),
            "--dir" => a.dir = PathBuf::from(val()),
            "--crash-test" => a.crash_test = true,
            "--crash-phase" => a.crash_phase = Some(val()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    a
}

/// splitmix64: a small deterministic PRNG, so every engine sees the same key sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `key-000000000042`: 16 bytes, lexicographic order = numeric order.
pub fn make_key(i: u64) -> [u8; KEY_LEN] {
    let mut k = *b"key-000000000000";
    let mut n = i;
    for pos in (4..KEY_LEN).rev() {
        k[pos] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// Version in the first 8 bytes, pseudo-random (incompressible) filler after it.
pub fn make_value(version: u64, rng: &mut Rng) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    v[..8].copy_from_slice(&version.to_be_bytes());
    for chunk in v[8..].chunks_mut(8) {
        let r = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    v
}

pub fn value_version(v: &[u8]) -> u64 {
    u64::from_be_bytes(v[..8].try_into().expect("value shorter than 8 bytes"))
}

/// du(1) semantics: allocated blocks of every file under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            }
            total += md.blocks() * 512;
        }
    }
    total
}

fn proc_status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Reset VmHWM to the current RSS (Linux >= 4.0), so the next read gives a per-phase peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Results of one engine's run, printed by the child as `RESULT key=value ...`.
#[derive(Default, Debug)]
struct Report(BTreeMap<String, String>);
impl Report {
    fn put(&mut self, k: &str, v: impl ToString) {
        self.0.insert(k.to_string(), v.to_string());
    }
    fn line(&self) -> String {
        let mut s = String::from("RESULT");
        for (k, v) in &self.0 {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }
    fn parse(line: &str) -> Option<Report> {
        let rest = line.strip_prefix("RESULT ")?;
        let mut r = Report::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            r.put(k, v);
        }
        Some(r)
    }
    fn get(&self, k: &str) -> &str {
        self.0.get(k).map(String::as_str).unwrap_or("-")
    }
}

fn fresh_dir(base: &Path, engine: &str) -> PathBuf {
    let d = base.join(format!("store-compare-{engine}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The benchmark proper, in the child process for one engine.
fn run_engine(args: &Args, engine: &str) -> Report {
    let mut rep = Report::default();
    rep.put("engine", engine);
    rep.put("version", engines::version(engine));
    let dir = fresh_dir(&args.dir, engine);
    let data_dir = dir.join(DATA_DIR);
    let cache = args.cache_mb.map(|m| m * 1024 * 1024);
    rep.put("rss_start_mib", format!("{:.1}", mib(proc_status_kb("VmRSS:"))));

    // 1. load: N keys in write batches of 1,000, non-durable, then one durable sync at the end.
    reset_peak_rss();
    let t_open = Instant::now();
    let mut store = engines::open(engine, &data_dir, cache).expect("open");
    rep.put("create_ms", format!("{:.1}", t_open.elapsed().as_secs_f64() * 1e3));
    let mut rng = Rng::new(0x5EED);
    let t = Instant::now();
    let mut batch: Vec<([u8; KEY_LEN], [u8; VALUE_LEN])> = Vec::with_capacity(LOAD_BATCH as usize);
    let mut i = 0;
    let mut changelog_offset = 0u64;
    while i < args.keys {
        batch.clear();
        let end = (i + LOAD_BATCH).min(args.keys);
        for j in i..end {
            batch.push((make_key(j), make_value(0, &mut rng)));
        }
        changelog_offset = end - 1;
        store.write_batch(&batch, changelog_offset).expect("load batch");
        i = end;
    }
    store.sync().expect("sync after load");
    let load = t.elapsed();
    rep.put("load_s", format!("{:.2}", secs(load)));
    rep.put("load_keys_per_s", format!("{:.0}", args.keys as f64 / secs(load)));
    rep.put("peak_rss_load_mib", format!("{:.1}", mib(proc_status_kb("VmHWM:"))));
    rep.put("disk_after_load_mib", format!("{:.1}", disk_usage(&dir) as f64 / 1048576.0));

    // 2. get+set: read one random key, write it back changed; commit every 256 ops (+ the
    //    checkpoint row, in the same commit), no fsync per commit; one durable sync at the end.
    reset_peak_rss();
    let mut rng_ops = Rng::new(0xD1CE);
    let mut keys = Vec::with_capacity(COMMIT_EVERY);
    let t = Instant::now();
    let mut done = 0u64;
    let mut missing = 0u64;
    while done < args.ops {
        keys.clear();
        let n = (COMMIT_EVERY as u64).min(args.ops - done);
        for _ in 0..n {
            keys.push(make_key(rng_ops.below(args.keys)));
        }
        changelog_offset += n;
        missing += store
            .get_set_round(&keys, changelog_offset, &mut rng_ops)
            .expect("get+set round");
        done += n;
    }
    let t_sync = Instant::now();
    store.sync().expect("final durable sync");
    let sync_end = t_sync.elapsed();
    let gs = t.elapsed();
    assert_eq!(missing, 0, "get+set found missing keys");
    rep.put("getset_ns", format!("{:.0}", gs.as_nanos() as f64 / args.ops as f64));
    rep.put("getset_final_sync_ms", format!("{:.1}", sync_end.as_secs_f64() * 1e3));
    rep.put("peak_rss_getset_mib", format!("{:.1}", mib(proc_status_kb("VmHWM:"))));

    // 3. point gets.
    reset_peak_rss();
    let mut rng_get = Rng::new(0x6E7);
    let gkeys: Vec<[u8; KEY_LEN]> = (0..args.ops).map(|_| make_key(rng_get.below(args.keys))).collect();
    let t = Instant::now();
    let found = store.get_many(&gkeys).expect("gets");
    let g = t.elapsed();
    assert_eq!(found, args.ops, "point gets found missing keys");
    rep.put("get_ns", format!("{:.0}", g.as_nanos() as f64 / args.ops as f64));

    // 4. prefix scans of 10 entries (15-byte prefix `key-00000000012`).
    let groups = args.keys / SCAN_LEN as u64;
    let mut rng_scan = Rng::new(0x5CA7);
    let prefixes: Vec<[u8; KEY_LEN - 1]> = (0..args.scans)
        .map(|_| {
            let k = make_key(rng_scan.below(groups) * SCAN_LEN as u64);
            k[..KEY_LEN - 1].try_into().expect("prefix")
        })
        .collect();
    let t = Instant::now();
    let entries = store.scan_many(&prefixes).expect("scans");
    let s = t.elapsed();
    assert_eq!(entries, args.scans * SCAN_LEN as u64, "prefix scans returned wrong counts");
    rep.put("scan_us", format!("{:.2}", s.as_nanos() as f64 / args.scans as f64 / 1e3));
    rep.put("peak_rss_reads_mib", format!("{:.1}", mib(proc_status_kb("VmHWM:"))));

    // 5. close and reopen.
    let ckpt_before = store.checkpoint().expect("checkpoint");
    assert_eq!(ckpt_before, Some(changelog_offset));
    let t = Instant::now();
    drop(store);
    rep.put("close_ms", format!("{:.1}", t.elapsed().as_secs_f64() * 1e3));
    rep.put("disk_after_close_mib", format!("{:.1}", disk_usage(&dir) as f64 / 1048576.0));
    reset_peak_rss();
    let t = Instant::now();
    let store = engines::open(engine, &data_dir, cache).expect("reopen");
    rep.put("reopen_ms", format!("{:.1}", t.elapsed().as_secs_f64() * 1e3));
    let t = Instant::now();
    let found = store.get_many(&gkeys[..1]).expect("first get after reopen");
    rep.put("first_get_after_reopen_ms", format!("{:.2}", t.elapsed().as_secs_f64() * 1e3));
    assert_eq!(found, 1);
    assert_eq!(store.checkpoint().expect("checkpoint"), Some(changelog_offset));

    // 5b. flush the write buffers, close, reopen: the open then has no journal/WAL to replay.
    let mut store = store;
    let t = Instant::now();
    store.flush_memtables().expect("flush memtables");
    rep.put("flush_ms", format!("{:.1}", t.elapsed().as_secs_f64() * 1e3));
    drop(store);
    let t = Instant::now();
    let store = engines::open(engine, &data_dir, cache).expect("reopen after flush");
    rep.put("reopen_after_flush_ms", format!("{:.1}", t.elapsed().as_secs_f64() * 1e3));
    assert_eq!(store.checkpoint().expect("checkpoint"), Some(changelog_offset));
    assert_eq!(store.get_many(&gkeys[..1]).expect("get after reopen"), 1);
    drop(store);
    rep.put("disk_final_mib", format!("{:.1}", disk_usage(&dir) as f64 / 1048576.0));

    rep.put("peak_rss_process_mib", format!("{:.1}", mib(proc_status_kb("VmHWM:"))));
    if std::env::var_os("STORE_COMPARE_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    rep
}

/// Crash test, child side. Phase `write`: load `keys` keys durably (checkpoint = keys-1), then
/// commit 50 more non-durable get+set rounds, each with its checkpoint row, then abort() the
/// process without closing. Phase `check`: reopen and report the checkpoint found and whether
/// the data agrees with it.
fn crash_child(args: &Args, engine: &str, phase: &str) -> Report {
    let mut rep = Report::default();
    rep.put("engine", engine);
    let data_dir = args.dir.join(DATA_DIR);
    const ROUNDS: u64 = 50;
    match phase {
        "write" => {
            let mut store = engines::open(engine, &data_dir, None).expect("open");
            let mut rng = Rng::new(1);
            let mut i = 0;
            while i < args.keys {
                let end = (i + LOAD_BATCH).min(args.keys);
                let batch: Vec<_> = (i..end).map(|j| (make_key(j), make_value(0, &mut rng))).collect();
                store.write_batch(&batch, end - 1).expect("load");
                i = end;
            }
            store.sync().expect("sync");
            // Round r rewrites keys 0..256 with version r and checkpoint keys-1+r.
            let keys: Vec<_> = (0..COMMIT_EVERY as u64).map(make_key).collect();
            for r in 1..=ROUNDS {
                store.set_round(&keys, r, args.keys - 1 + r, &mut rng).expect("round");
            }
            // Give background threads a moment, as a crash would not come exactly at commit.
            std::thread::sleep(Duration::from_millis(200));
            println!("WROTE durable_checkpoint={} last_checkpoint={}", args.keys - 1, args.keys - 1 + ROUNDS);
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::abort();
        }
        "check" => {
            let t = Instant::now();
            let store = engines::open(engine, &data_dir, None).expect("reopen after crash");
            rep.put("recover_ms", format!("{:.1}", t.elapsed().as_secs_f64() * 1e3));
            let ckpt = store.checkpoint().expect("checkpoint").expect("no checkpoint row");
            let version = store.version_of(&make_key(0)).expect("get").expect("key 0 missing");
            rep.put("checkpoint_after_crash", ckpt);
            rep.put("rounds_kept", ckpt - (args.keys - 1));
            rep.put("data_version_key0", version);
            // The checkpoint row and the data were committed together: they must agree.
            rep.put("consistent", version == ckpt - (args.keys - 1));
        }
        _ => usage(),
    }
    rep
}

fn compiled_engines() -> Vec<&'static str> {
    engines::ENGINES.to_vec()
}

fn run_child(exe: &Path, args: &[String]) -> (bool, String, String) {
    let out = Command::new(exe).args(args).output().expect("spawn child");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn main() {
    let args = parse_args();
    let exe = std::env::current_exe().expect("current exe");

    if let Some(engine) = &args.engine {
        if let Some(phase) = &args.crash_phase {
            let rep = crash_child(&args, engine, phase);
            println!("{}", rep.line());
        } else {
            let rep = run_engine(&args, engine);
            println!("{}", rep.line());
        }
        return;
    }

    if args.crash_test {
        let keys = args.keys;
        println!("crash test: {keys} keys loaded and synced, then 50 commits of 256 sets + checkpoint row without fsync, then abort()");
        println!();
        println!("| engine | checkpoint rounds kept (of 50) | data agrees with checkpoint | recovery open ms |");
        println!("|---|---|---|---|");
        for engine in compiled_engines() {
            let dir = fresh_dir(&args.dir, &format!("crash-{engine}"));
            let common = vec![
                "--engine".to_string(),
                engine.to_string(),
                "--keys".to_string(),
                keys.to_string(),
                "--dir".to_string(),
                dir.display().to_string(),
                "--crash-phase".to_string(),
            ];
            let mut w = common.clone();
            w.push("write".into());
            let (ok, out, err) = run_child(&exe, &w);
            if ok || !out.contains("WROTE") {
                eprintln!("{engine}: write phase did not abort as expected: ok={ok}\n{out}\n{err}");
            }
            let mut c = common;
            c.push("check".into());
            let (ok, out, err) = run_child(&exe, &c);
            match out.lines().find_map(Report::parse) {
                Some(r) if ok => println!(
                    "| {engine} | {} | {} | {} |",
                    r.get("rounds_kept"),
                    r.get("consistent"),
                    r.get("recover_ms")
                ),
                _ => println!("| {engine} | check failed: {} | | |", err.lines().last().unwrap_or("")),
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        return;
    }

    println!(
        "store-compare: keys={} ops={} scans={} cache={} dir={}",
        args.keys,
        args.ops,
        args.scans,
        args.cache_mb.map_or("engine default".to_string(), |m| format!("{m} MiB")),
        args.dir.display()
    );
    let mut reports = Vec::new();
    for engine in compiled_engines() {
        let mut child_args = vec![
            "--engine".to_string(),
            engine.to_string(),
            "--keys".to_string(),
            args.keys.to_string(),
            "--ops".to_string(),
            args.ops.to_string(),
            "--scans".to_string(),
            args.scans.to_string(),
            "--dir".to_string(),
            args.dir.display().to_string(),
        ];
        if let Some(m) = args.cache_mb {
            child_args.push("--cache-mb".into());
            child_args.push(m.to_string());
        }
        let (ok, out, err) = run_child(&exe, &child_args);
        match out.lines().find_map(Report::parse) {
            Some(r) if ok => {
                println!("{}", r.line());
                reports.push(r);
            }
            _ => {
                eprintln!("{engine} failed:\n{out}\n{err}");
            }
        }
    }
    println!();
    let rows: &[(&str, &str)] = &[
        ("version", "crate version"),
        ("load_keys_per_s", "load, keys/s (batches of 1,000)"),
        ("getset_ns", "get+set, ns/op (commit every 256, no fsync)"),
        ("getset_final_sync_ms", "durable sync after get+set, ms"),
        ("get_ns", "point get, ns/get"),
        ("scan_us", "prefix scan of 10, µs/scan"),
        ("close_ms", "close, ms"),
        ("reopen_ms", "reopen, ms"),
        ("first_get_after_reopen_ms", "first get after reopen, ms"),
        ("flush_ms", "flush write buffers (memtables), ms"),
        ("reopen_after_flush_ms", "reopen after that flush + close, ms"),
        ("disk_after_load_mib", "disk after load (du), MiB"),
        ("disk_after_close_mib", "disk after get+set, reads, close (du), MiB"),
        ("disk_final_mib", "disk after flush + reopen + close (du), MiB"),
        ("peak_rss_load_mib", "peak RSS during load, MiB"),
        ("peak_rss_getset_mib", "peak RSS during get+set, MiB"),
        ("peak_rss_reads_mib", "peak RSS during gets + scans, MiB"),
        ("peak_rss_process_mib", "peak RSS from first reopen to exit, MiB"),
    ];
    print!("| metric |");
    for r in &reports {
        print!(" {} |", r.get("engine"));
    }
    println!();
    print!("|---|");
    for _ in &reports {
        print!("---:|");
    }
    println!();
    for (k, label) in rows {
        print!("| {label} |");
        for r in &reports {
            print!(" {} |", r.get(k));
        }
        println!();
    }
}
