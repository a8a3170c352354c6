//! Sharing the cores between guest calls.
//!
//! Guest code runs on blocking threads, but at most one call per core runs
//! at a time: each call holds one of the process's [`CallSlots`]. The
//! sharing is round robin in slices of [`SLICE`]: when other calls wait for
//! a slot, a call that has run for a slice gives its slot up and queues
//! behind them (the queue is first come, first served). Each module may
//! have at most one slot fewer than there are (one, on a single core)
//! queued or running, so a module with many partitions, or one whose
//! handler spins until its timeout, never occupies every core: the others,
//! and the process's own threads, always have one, and every module with
//! work gets a turn at least once per round of the queue.
//!
//! A call's time limit (`limits.timeout`) counts only the time it holds a
//! slot ([`CallClock`]), so waiting for a turn never makes a call time out.
//!
//! Guest code runs on threads of its own ([`spawn_guest`]) whose CPU
//! priority is [`GUEST_NICE`] steps below the process's, so the threads
//! that poll, produce and acknowledge (and the other processes on the
//! machine) get the CPU first when a guest spins. A module's first load
//! compiles at that priority too; a new version of a serving module
//! compiles lower still, at the lowest priority ([`spawn_compile`]), so a
//! reload takes neither the cores of the process's own threads nor those
//! of the calls of the version still serving.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a call runs before it lets waiting calls go first: the engine's
/// epoch tick, which is when wasmtime lets the host look in.
pub const SLICE: Duration = crate::engine::EPOCH_TICK;

/// How many nice steps below the process the guest threads run.
pub const GUEST_NICE: i32 = 10;

/// How many nice steps below the process compilation runs (to the lowest
/// priority, 19, from the usual 0): below the guest threads, so the
/// serving version's calls keep their core while a new version compiles.
pub const COMPILE_NICE: i32 = 19;

/// Runs `work` (guest code: a call, an instantiation) on a guest thread.
pub fn spawn_guest<F, R>(work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    static GUESTS: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    GUESTS
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("weir-guest")
                .on_thread_start(|| lower_priority(GUEST_NICE))
                .build()
                .expect("the guest threads' runtime starts")
        })
        .spawn_blocking(work)
}

/// When a component is compiled, which decides the priority it compiles
/// at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileFor {
    /// A module's first load: nothing of it serves yet; at the guest
    /// threads' priority ([`GUEST_NICE`]).
    Start,
    /// A new version of a module that serves: at [`COMPILE_NICE`], below
    /// the calls of the version still serving.
    Reload,
}

/// Runs `work` (compiling a component: its validation and translation
/// as well as the functions wasmtime compiles in parallel, which stay on
/// the pool `work` runs on) on the compile pool for `purpose`. A panic in
/// `work` comes back as an error instead of ending the process.
pub async fn spawn_compile<F, R>(purpose: CompileFor, work: F) -> Result<R, String>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    static START: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    static RELOAD: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    let (cell, name, nice) = match purpose {
        CompileFor::Start => (&START, "weir-compile", GUEST_NICE),
        CompileFor::Reload => (&RELOAD, "weir-recompile", COMPILE_NICE),
    };
    let pool = cell.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(move |i| format!("{name}-{i}"))
            .start_handler(move |_| lower_priority(nice))
            .build()
            .inspect_err(|err| tracing::warn!(error = %err, "cannot start a compile pool"))
            .ok()
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = move || {
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let _ = tx.send(done);
    };
    match pool {
        Some(pool) => pool.spawn(job),
        None => {
            compile_below_handling();
            rayon::spawn(job);
        }
    }
    match rx.await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(_panic)) => Err("the compile task panicked".to_owned()),
        Err(_) => Err("the compile task was dropped".to_owned()),
    }
}

/// Makes the threads wasmtime compiles on outside [`spawn_compile`]
/// (rayon's global pool: `weir check`, `weir replay`, the engine's own
/// loads) run at the guest threads' priority. Call before the first
/// compilation; once is enough (later calls do nothing).
pub fn compile_below_handling() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let built = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("weir-compile-{i}"))
            .start_handler(|_| lower_priority(GUEST_NICE))
            .build_global();
        if let Err(err) = built {
            tracing::debug!(error = %err, "compile threads already started");
        }
    });
}

/// Lowers the calling thread's CPU priority by `steps` (Linux priorities
/// are per thread; 19 is the lowest).
fn lower_priority(steps: i32) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let thread = Some(rustix::thread::gettid());
        let lowered = getpriority_process(thread)
            .and_then(|nice| setpriority_process(thread, (nice + steps).min(19)));
        if let Err(err) = lowered {
            tracing::debug!(error = %err, "cannot lower a guest thread's priority");
        }
    }
}

/// A first-come, first-served queue for a number of permits, which knows
/// whether anyone waits.
#[derive(Debug)]
struct Queue {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Queue {
    fn new(permits: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(permits)),
            waiting: AtomicUsize::new(0),
        })
    }

    async fn enter(&self) -> OwnedSemaphorePermit {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.expect("a call queue's semaphore is never closed")
    }

    fn contended(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }
}

/// The process's call slots, one per core.
#[derive(Debug)]
pub struct CallSlots {
    queue: Arc<Queue>,
    count: usize,
}

/// A module's share of the slots: how many of its calls may be queued or
/// running at once.
#[derive(Debug, Clone)]
pub struct ModuleShare {
    slots: Arc<CallSlots>,
    gate: Arc<Queue>,
    waits: Option<prometheus::Counter>,
}

/// One call's hold on a slot; released when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<CallSlots>,
    gate: Arc<Queue>,
    /// Dropped before `turn`: the module's turn outlives the slot.
    permit: Option<OwnedSemaphorePermit>,
    turn: Option<OwnedSemaphorePermit>,
    /// Time spent waiting for a slot, first turn and later ones.
    waited: Duration,
    /// Where that time is counted when the call ends.
    waits: Option<prometheus::Counter>,
}

impl CallSlots {
    /// `count` slots (at least one).
    pub fn new(count: usize) -> Arc<Self> {
        let count = count.max(1);
        Arc::new(Self {
            queue: Queue::new(count),
            count,
        })
    }

    /// One slot per core this process may use.
    pub fn per_core() -> Arc<Self> {
        Self::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
    }

    /// The number of slots.
    pub fn count(&self) -> usize {
        self.count
    }

    /// A new module's share: up to [`per_module`](Self::per_module) of its
    /// calls queued or running.
    pub fn share(self: &Arc<Self>) -> ModuleShare {
        ModuleShare {
            slots: self.clone(),
            gate: Queue::new(self.per_module()),
            waits: None,
        }
    }

    /// How many calls of one module may be queued or running at once: one
    /// fewer than the slots, at least one.
    pub fn per_module(&self) -> usize {
        self.count.saturating_sub(1).max(1)
    }
}

impl ModuleShare {
    /// Waits for the module's turn, then for a free slot.
    pub async fn acquire(&self) -> Slot {
        let started = Instant::now();
        let turn = self.gate.enter().await;
        let permit = self.slots.queue.enter().await;
        Slot {
            slots: self.slots.clone(),
            gate: self.gate.clone(),
            permit: Some(permit),
            turn: Some(turn),
            waited: started.elapsed(),
            waits: self.waits.clone(),
        }
    }

    /// Counts the time its calls wait for a slot in `waits` (seconds).
    pub fn counted(mut self, waits: prometheus::Counter) -> Self {
        self.waits = Some(waits);
        self
    }

    /// A share of its own with `count` slots (tests and tools).
    pub fn standalone(count: usize) -> Self {
        CallSlots::new(count).share()
    }
}

impl Slot {
    /// Gives the slot, and the module's turn, to the calls waiting for
    /// either (another module's, or another partition's of this module),
    /// if any, and blocks until it is this call's turn again. Called on the
    /// guest's thread.
    pub fn yield_to_waiting(&mut self) {
        if !self.slots.queue.contended() && !self.gate.contended() {
            return;
        }
        let started = Instant::now();
        self.permit = None;
        self.turn = None;
        self.turn = Some(futures::executor::block_on(self.gate.enter()));
        self.permit = Some(futures::executor::block_on(self.slots.queue.enter()));
        self.waited += started.elapsed();
    }

    /// Time this call has spent waiting for a slot so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(waits) = &self.waits {
            waits.inc_by(self.waited.as_secs_f64());
        }
    }
}

/// The clock of one guest call: how long it has held its slot, against the
/// module's time limit. Without a slot (tools that call a module directly)
/// it is the wall clock.
#[derive(Debug)]
pub struct CallClock {
    limit: Duration,
    ran: Duration,
    since: Instant,
    slot: Option<Slot>,
}

impl Default for CallClock {
    fn default() -> Self {
        Self {
            limit: Duration::MAX,
            ran: Duration::ZERO,
            since: Instant::now(),
            slot: None,
        }
    }
}

impl CallClock {
    /// Holds `slot` for the call that is about to start (or none).
    pub fn hold(&mut self, slot: Option<Slot>) {
        self.slot = slot;
    }

    /// Gives the slot back after the call.
    pub fn release(&mut self) -> Option<Slot> {
        self.slot.take()
    }

    /// Starts timing one handler call (an event, or a batch) against
    /// `limit`, from `now`.
    pub fn start(&mut self, limit: Duration, now: Instant) {
        self.limit = limit;
        self.ran = Duration::ZERO;
        self.since = now;
    }

    /// At a slice boundary: adds the time run since the last one, yields
    /// the slot to waiting calls, and tells whether the call is past its
    /// limit.
    pub fn tick(&mut self) -> bool {
        let now = Instant::now();
        self.ran += now - self.since;
        if self.ran >= self.limit {
            return true;
        }
        if let Some(slot) = &mut self.slot {
            slot.yield_to_waiting();
        }
        self.since = Instant::now();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_module_never_holds_every_slot() {
        let slots = CallSlots::new(3);
        let share = slots.share();
        let a = share.acquire().await;
        let _b = share.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), share.acquire()).await;
        assert!(third.is_err(), "a third call of one module waits");
        // The last slot is left for the other modules.
        let _c = tokio::time::timeout(Duration::from_millis(50), slots.share().acquire())
            .await
            .expect("a second module gets the slot the first cannot take");
        // A third module waits for the slots only: it gets one as soon as
        // one is free.
        let other = slots.share();
        let waiting = tokio::spawn(async move { other.acquire().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(a);
        let got = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert!(got.is_ok(), "the other module got the freed slot");
    }

    #[test]
    fn a_spinning_call_lets_a_waiting_one_run_at_its_next_tick() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let slots = CallSlots::new(1);
        let spinner = slots.share();
        let polite = slots.share();
        let slot = runtime.block_on(spinner.acquire());
        let mut clock = CallClock::default();
        clock.hold(Some(slot));
        clock.start(Duration::from_secs(60), Instant::now());
        // The polite module's call waits for the only slot.
        let waiter = runtime.spawn(async move {
            let slot = polite.acquire().await;
            std::thread::sleep(Duration::from_millis(30));
            drop(slot);
        });
        while !slots.queue.contended() {
            std::thread::yield_now();
        }
        let t0 = Instant::now();
        assert!(!clock.tick(), "far from its limit");
        // The tick handed the slot over and came back once it was free.
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
        runtime.block_on(waiter).unwrap();
        // Time spent waiting is not counted against the limit.
        clock.start(Duration::from_millis(20), Instant::now());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!clock.tick());
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.tick(), "past its limit");
        assert!(clock.release().unwrap().waited() >= Duration::from_millis(30));
    }

    #[test]
    fn a_spinning_partition_lets_a_sibling_of_its_module_run() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Two slots: one module may hold only one of them.
        let share = CallSlots::new(2).share();
        let mut clock = CallClock::default();
        clock.hold(Some(runtime.block_on(share.acquire())));
        clock.start(Duration::from_secs(60), Instant::now());
        let sibling = share.clone();
        let waiter = runtime.spawn(async move {
            let slot = sibling.acquire().await;
            std::thread::sleep(Duration::from_millis(30));
            drop(slot);
        });
        while !share.gate.contended() {
            std::thread::yield_now();
        }
        let t0 = Instant::now();
        assert!(!clock.tick());
        assert!(t0.elapsed() >= Duration::from_millis(30), "the sibling ran");
        runtime.block_on(waiter).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn guest_threads_run_below_the_process_priority() {
        use rustix::process::getpriority_process;
        let nice = || getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let here = nice();
        let there = spawn_guest(nice).await.unwrap();
        assert_eq!(there, (here + GUEST_NICE).min(19));
        let starting = spawn_compile(CompileFor::Start, nice).await.unwrap();
        assert_eq!(starting, (here + GUEST_NICE).min(19));
        let reloading = spawn_compile(CompileFor::Reload, nice).await.unwrap();
        assert_eq!(reloading, (here + COMPILE_NICE).min(19));
    }
}
