//! The supervisor's side of the operator's requests ([`crate::ops`]):
//! pause and resume a module, move its group's offsets.
//!
//! An offsets reset is applied with the module's consumer stopped, as for
//! a reload that needs a new consumer: the runner finishes the events in
//! flight, commits their offsets and leaves the group (a static member
//! leaves too, see [`crate::kafka::membership`]). The new offsets are then
//! committed by a consumer of the group that does not join it, which the
//! coordinator accepts only while the group has no members; and the
//! module's consumer starts again, from the new offsets (paused if the
//! module is paused). If the commit is refused, nothing moved and the
//! module starts again where it was. On the embedded broker (`weir dev`)
//! only a dry run is possible (see [`crate::ops::reset`]).

use serde_json::json;

use super::Supervisor;
use crate::ops::reset::{self, Move, ResetTo};
use crate::ops::{Op, OpsError, Reply, Request};

/// Said with every reset of a stateful module.
const STATEFUL: &str = "the module keeps state: events read again are applied to its current \
                        store, which is not rewound with the offsets";

impl Supervisor {
    /// Applies one operator request and answers it.
    pub(super) async fn operate(&mut self, request: Request) {
        let answer = match request.op {
            Op::Pause { module, paused } => self.set_pause(&module, paused),
            Op::Offsets {
                module,
                reset,
                dry_run,
            } => self
                .reset_offsets(&module, reset, dry_run)
                .await
                .map(Reply::Done),
        };
        let _ = request.reply.send(answer);
    }

    /// Sets the module's pause switch; its runner applies it.
    fn set_pause(&mut self, module: &str, paused: bool) -> Result<Reply, OpsError> {
        if !self.running.contains_key(module) {
            return Err(OpsError::UnknownModule(module.to_owned()));
        }
        let switch = self.pauses.entry(module.to_owned()).or_default().clone();
        tracing::info!(
            module,
            paused,
            "operator request: {}",
            if paused { "pause" } else { "resume" }
        );
        switch.set(paused);
        Ok(Reply::Switch(switch))
    }

    /// Plans the reset; unless `dry_run`, stops the module's consumer,
    /// commits the plan and starts the consumer again.
    async fn reset_offsets(
        &mut self,
        module: &str,
        specs: Vec<ResetTo>,
        dry_run: bool,
    ) -> Result<serde_json::Value, OpsError> {
        let running = self
            .running
            .get(module)
            .ok_or_else(|| OpsError::UnknownModule(module.to_owned()))?;
        let version = running.slot.load_full();
        let topics = version.manifest.input_topics.clone();
        let group = version.manifest.group_id(module);
        reset::check(&specs, &topics)?;
        // A first plan with the module running: a request that cannot be
        // applied is refused before the module is disturbed.
        let planned = self.plan(&group, &topics, &specs, false).await?;
        if dry_run {
            let mut answer =
                json!({"module": module, "group": group, "dry-run": true, "moves": planned});
            if version.manifest.state.is_some() {
                answer["warning"] = STATEFUL.into();
            }
            return Ok(answer);
        }
        if self.settings.embedded {
            return Err(OpsError::Conflict(
                "offsets cannot be moved on weir dev's embedded broker (librdkafka's mock \
                 cluster refuses commits from outside a group's members); --dry-run works"
                    .into(),
            ));
        }
        let Some(running) = self.running.remove(module) else {
            return Err(OpsError::UnknownModule(module.to_owned()));
        };
        let (slot, source, subscription) = (
            running.slot.clone(),
            running.source.clone(),
            running.subscription.clone(),
        );
        tracing::info!(module, group = %group, "offsets reset: stopping the module's consumer");
        running.stop().await;
        // Planned again now that the consumer committed and left: `from`
        // shows what it committed, `latest` is the end now.
        let result = self.plan(&group, &topics, &specs, true).await;
        if let Err(err) = self.launch(module, slot, source, subscription) {
            tracing::error!(module, error = %err, "cannot restart the module after the offsets reset");
            self.status.not_running(module, err.to_string());
        }
        let moves = result?;
        tracing::info!(module, group = %group, moves = %describe(&moves),
            "offsets reset: committed; the module's consumer started again");
        let mut answer =
            json!({"module": module, "group": group, "dry-run": false, "moves": moves});
        if version.manifest.state.is_some() {
            answer["warning"] = STATEFUL.into();
        }
        Ok(answer)
    }

    /// Plans `specs` for `group` and, with `commit`, commits the plan.
    async fn plan(
        &self,
        group: &str,
        topics: &[String],
        specs: &[ResetTo],
        commit: bool,
    ) -> Result<Vec<Move>, OpsError> {
        let (kafka, group, topics, specs) = (
            self.settings.kafka.clone(),
            group.to_owned(),
            topics.to_vec(),
            specs.to_vec(),
        );
        tokio::task::spawn_blocking(move || {
            let consumer = reset::consumer(&kafka, &group)?;
            let moves = reset::plan(&consumer, &topics, &specs)?;
            if commit {
                reset::commit(&consumer, &group, &moves)?;
            }
            Ok(moves)
        })
        .await
        .map_err(|e| OpsError::Kafka(format!("the offsets task failed: {e}")))?
    }
}

/// `topic[partition]: from -> to, ...` for logs.
fn describe(moves: &[Move]) -> String {
    moves
        .iter()
        .map(|m| {
            let from = m.from.map_or_else(|| "none".to_owned(), |o| o.to_string());
            format!("{}[{}]: {from} -> {}", m.topic, m.partition, m.to)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
