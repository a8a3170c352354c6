//! A module's runner: creates its consumer, positions a new group at
//! `start-at`, subscribes, and polls on a dedicated thread that serves the
//! group (rebalance callbacks in [`super::group`], periodic commits,
//! errors) until the module is stopped, then drains, commits and leaves.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::KafkaSettings;
use super::acks::Producer;
use super::changelog::{KafkaChangelog, PrepareError, prepare};
use super::group::GroupContext;
use super::pause::Pauser;
use super::sink::KafkaSink;
use super::tpl::describe;
use crate::engine::{LoadedModule, WasmEngine};
use crate::manifest::Guarantee;
use crate::metrics::Metrics;
use crate::pipeline::Module;
use crate::pipeline::guest::WasmGuest;
use crate::pipeline::offsets::{Offsets, Scope};
use crate::state::{Queries, Stores};
use crate::status::StatusBoard;

/// Everything a module runner needs from the process.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Kafka connection settings.
    pub kafka: KafkaSettings,
    /// Interval of periodic commits.
    pub commit_interval: Duration,
    /// Budget for draining workers on revoke and shutdown.
    pub drain_timeout: Duration,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The modules' status, for operators.
    pub status: Arc<StatusBoard>,
    /// Where stateful modules keep their local stores.
    pub state_dir: std::path::PathBuf,
    /// Where stateful modules' stores are made queryable over HTTP.
    pub queries: Arc<Queries>,
    /// The brokers are the embedded mock cluster (`weir dev`): changelog
    /// topics' configuration cannot be read.
    pub embedded: bool,
    /// The process's call slots, shared by every module.
    pub slots: Arc<crate::slots::CallSlots>,
    /// The process's budget of output bytes, shared by every module.
    pub budget: Arc<crate::pipeline::budget::Budget>,
    /// The process's `instance-id`: each module consumer is a static group
    /// member (see [`super::membership`]).
    pub instance_id: Option<String>,
}

/// librdkafka statistics interval (lag and broker state for metrics and
/// readiness), unless `[kafka] statistics.interval.ms` sets one.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// Budget of each blocking lookup that positions a new group at `start-at`.
const START_AT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts consuming for `module` on a dedicated thread. The thread returns
/// after `cancel` fires and the module has drained, committed and left its
/// group. Storing a new version into `slot` hot-swaps it: calls in flight
/// finish on the old version, and each partition's next call runs on the
/// new one. Input topics, group, offset reset and `start-at` are read only
/// here. `pause` is the operator's pause switch of the module, applied
/// from the start.
pub fn spawn_runner(
    slot: Arc<ArcSwap<LoadedModule>>,
    engine: Arc<WasmEngine>,
    producer: Producer,
    settings: RunnerSettings,
    cancel: CancellationToken,
    pause: crate::ops::control::PauseSwitch,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let version = slot.load_full();
    let group = version.manifest.group_id(&version.name);
    let instance = settings
        .instance_id
        .as_deref()
        .map(|instance| super::membership::group_instance_id(instance, &version.name))
        .transpose()
        .map_err(|e| anyhow::anyhow!("the group.instance.id of module `{}` {e}", version.name))?;
    let metrics = settings.metrics.module(&version.name);
    let inputs = version.manifest.input_topics.clone();
    let changelog = version
        .manifest
        .state
        .as_ref()
        .map(|s| s.changelog_topic(&version.name));
    let state = changelog.as_ref().map(|topic| {
        let stores = Arc::new(Stores::new(
            version.name.clone(),
            &settings.state_dir,
            topic,
            Arc::new(KafkaChangelog {
                settings: settings.kafka.clone(),
                group: group.clone(),
            }),
            settings.metrics.state(&version.name),
            settings.status.clone(),
        ));
        settings.queries.register(&version.name, &stores);
        stores
    });
    let module = Arc::new(Module {
        name: version.name.clone(),
        guest: Arc::new(WasmGuest {
            slot,
            engine,
            metrics: metrics.clone(),
        }),
        sink: KafkaSink(producer),
        metrics: metrics.clone(),
        status: settings.status.clone(),
        offsets: Arc::new(Offsets::default()),
        runtime: tokio::runtime::Handle::current(),
        state,
        share: settings
            .slots
            .share()
            .counted(settings.metrics.sharing().slot_waits(&version.name)),
        budget: settings.budget.clone(),
    });
    let context = GroupContext::new(
        module,
        settings.kafka.clone(),
        group.clone(),
        cancel.child_token(),
        settings.drain_timeout,
        pause,
    );
    let mut config = settings
        .kafka
        .consumer_config(&group, version.manifest.offset_reset.as_kafka());
    if version.manifest.delivery.guarantee == Guarantee::ExactlyOnce {
        // Never read other transactions' aborted records.
        config.set("isolation.level", "read_committed");
    }
    if let Some(instance) = &instance {
        config.set("group.instance.id", instance);
    }
    settings
        .status
        .consumer(&version.name, &group, instance.as_deref());
    if config.get("statistics.interval.ms").is_none() {
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    // The end of a partition, reported in its queue, is the sign that a
    // partition stalled by a fetch error is fetched again (see
    // `super::stall`): an authorization error is reported only once.
    config.set("enable.partition.eof", "true");
    if changelog.is_some()
        && inputs.len() > 1
        && !settings
            .kafka
            .passthrough
            .contains_key("partition.assignment.strategy")
    {
        // Partition N of every input shares one store: the range assignor
        // gives equal partition numbers of co-partitioned topics to the
        // same member.
        config.set("partition.assignment.strategy", "range");
    }
    let consumer: Arc<BaseConsumer<GroupContext>> =
        Arc::new(config.create_with_context(context).map_err(|e| {
            metrics.stopped();
            anyhow::anyhow!(
                "failed to create the consumer of module `{}`: {}",
                version.name,
                settings.kafka.describe_error(&e)
            )
        })?);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    let topics = version.manifest.input_topics.clone();
    let start_at = version.manifest.start_at;
    tracing::info!(module = &*version.name, digest = version.short_digest(), group = %group,
        group_instance_id = instance.as_deref().unwrap_or("none (dynamic member)"),
        topics = ?topics, batch = version.pre.is_batch(),
        "module started");
    let name = format!("weir-poll-{}", version.name);
    let kafka = settings.kafka.clone();
    let runtime = tokio::runtime::Handle::current();
    let check_policy = !settings.embedded;
    Ok(std::thread::Builder::new().name(name).spawn(move || {
        if let Some(changelog) = &changelog
            && !prepare_state(
                &consumer,
                &kafka,
                &runtime,
                &topics,
                changelog,
                check_policy,
                &cancel,
            )
        {
            return;
        }
        if let Some(at) = start_at {
            position_new_group(&consumer, &topics, at);
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(err) = consumer.subscribe(&names) {
            let module = &consumer.context().module;
            tracing::error!(module = &*module.name, topics = ?topics, error = %err,
                "cannot subscribe; the module does not run");
            module.metrics.stopped();
            return;
        }
        poll_loop(
            consumer,
            settings.commit_interval,
            Pauser::new(settings.drain_timeout),
            cancel,
        )
    })?)
}

/// Stateful modules: checks the input topics and the changelog before
/// subscribing, retrying while the broker cannot be asked. Returns whether
/// the module may subscribe; when it may not, says why in the log and in
/// `/status`.
fn prepare_state(
    consumer: &BaseConsumer<GroupContext>,
    kafka: &KafkaSettings,
    runtime: &tokio::runtime::Handle,
    topics: &[String],
    changelog: &str,
    check_policy: bool,
    cancel: &CancellationToken,
) -> bool {
    let module = &consumer.context().module;
    let mut last = String::new();
    loop {
        match prepare(
            kafka,
            runtime,
            &module.name,
            topics,
            changelog,
            check_policy,
        ) {
            Ok(partitions) => {
                if let Some(stores) = &module.state {
                    stores.set_partitions(partitions);
                }
                return true;
            }
            Err(PrepareError::Refused(why)) => {
                tracing::error!(module = &*module.name, changelog, reason = %why,
                    "the stateful module cannot start");
                module.status.not_running(&module.name, why);
                module.metrics.stopped();
                return false;
            }
            Err(PrepareError::Transient(why)) => {
                if why != last {
                    tracing::warn!(module = &*module.name, changelog, reason = %why,
                        "cannot check the state topics yet; will retry");
                    last = why;
                }
            }
        }
        for _ in 0..20 {
            if cancel.is_cancelled() {
                module.metrics.stopped();
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `start-at`: before the consumer joins its group, commits for every input
/// partition the group has no committed offset for the offset of the first
/// event at or after `at` (the partition's end when there is none), so that
/// fetching starts there. Runs on the poll thread, outside any rebalance
/// callback. When the group already has live members the broker refuses
/// these commits: their partitions are positioned already.
fn position_new_group(consumer: &BaseConsumer<GroupContext>, topics: &[String], at: SystemTime) {
    let module = &*consumer.context().module.name;
    match start_offsets(consumer, topics, at) {
        Ok(start) if start.count() > 0 => {
            tracing::info!(module, start_at = %humantime::format_rfc3339_millis(at),
                partitions = %describe(&start), "new partitions start at `start-at`")
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(module, error = %err,
            "cannot position new partitions at `start-at`; partitions without a committed \
             offset start at `offset-reset`"),
    }
}

/// Finds and commits the `start-at` offsets (see [`position_new_group`]).
fn start_offsets(
    consumer: &BaseConsumer<GroupContext>,
    topics: &[String],
    at: SystemTime,
) -> KafkaResult<TopicPartitionList> {
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), START_AT_TIMEOUT)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                all.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer.committed_offsets(all, START_AT_TIMEOUT)?;
    let mut new = TopicPartitionList::new();
    for e in committed.elements() {
        if !matches!(e.offset(), Offset::Offset(_)) {
            new.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms))?;
        }
    }
    if new.count() == 0 {
        return Ok(new);
    }
    let found = consumer.offsets_for_times(new, START_AT_TIMEOUT)?;
    let mut start = TopicPartitionList::new();
    for e in found.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) if o >= 0 => o,
            _ => {
                consumer
                    .fetch_watermarks(e.topic(), e.partition(), START_AT_TIMEOUT)?
                    .1
            }
        };
        start.add_partition_offset(e.topic(), e.partition(), Offset::Offset(offset))?;
    }
    consumer.commit(&start, CommitMode::Sync)?;
    Ok(start)
}

fn poll_loop(
    consumer: Arc<BaseConsumer<GroupContext>>,
    commit_interval: Duration,
    mut pauser: Pauser,
    cancel: CancellationToken,
) {
    let context = consumer.context();
    let module = context.module.name.clone();
    let mut next_commit = Instant::now() + commit_interval;
    let mut last_error: Option<(String, Instant)> = None;
    while !cancel.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                use rdkafka::Message as _;
                context.stray(message.topic(), message.partition(), message.offset());
            }
            // Only a partition without a queue of its own reports its end
            // here; nothing to do.
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(err)) => {
                // During an outage librdkafka reports the same error on every
                // poll: log it when it changes, or every 30 s.
                let text = err.to_string();
                let now = Instant::now();
                if last_error.as_ref().is_none_or(|(t, at)| {
                    *t != text || now.duration_since(*at) >= Duration::from_secs(30)
                }) {
                    tracing::warn!(module = &*module, error = %text, "kafka consumer error");
                    last_error = Some((text, now));
                }
            }
            None => {}
        }
        pauser.tick(&consumer);
        if Instant::now() >= next_commit {
            context.commit(&consumer, Scope::Moved, CommitMode::Async);
            next_commit = Instant::now() + commit_interval;
        }
    }
    leave(consumer);
}

/// Drains the workers, commits, and leaves the group.
fn leave(consumer: Arc<BaseConsumer<GroupContext>>) {
    let context = consumer.context();
    let module = context.module.name.clone();
    tracing::info!(
        module = &*module,
        "module stopping: draining in-flight events"
    );
    context.stop_workers(&[]);
    context.commit(&consumer, Scope::Again(None), CommitMode::Sync);
    consumer.unsubscribe();
    // Serve the revocation that unsubscribing starts before closing: closing
    // a cooperative consumer while a rebalance is still in flight can hang
    // in librdkafka (confluentinc/librdkafka#4527 and relatives).
    let leave_by = Instant::now() + Duration::from_secs(10);
    while Instant::now() < leave_by
        && consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false)
    {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            use rdkafka::Message as _;
            context.stray(message.topic(), message.partition(), message.offset());
        }
    }
    // Dropping the consumer closes it: it leaves the group (running the
    // revoke callback, which finds nothing left to drain). The workers held
    // the other references; they have all ended.
    let metrics = context.module.metrics.clone();
    if Arc::strong_count(&consumer) > 1 {
        tracing::warn!(module = &*module, "a partition queue outlived its worker");
    }
    let (status, name) = (context.module.status.clone(), context.module.name.clone());
    drop(consumer);
    status.partitions(&name, Vec::new());
    metrics.stopped();
    tracing::info!(module = &*module, "module stopped");
}
