//! Runners that stop reporting become INACTIVE once the grace period passes.
//! A background duty: only the leading replica sweeps ([`crate::duties`]).

use std::time::Duration;

use chrono::Utc;

use crate::domain::{ChangeEvent, ChangeOperation, ResourceKind, Runner, RunnerPhase};
use crate::state::SharedState;

/// Runs for the life of the server, checking several times per grace period
/// while this replica leads.
pub async fn mark_silent_runners_inactive(state: SharedState) {
    let period =
        (state.runner_grace / 10).clamp(Duration::from_millis(200), Duration::from_secs(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !state.duties.is_leader() {
            continue;
        }
        match sweep(&state).await {
            Ok(_) => state.duties.ran(crate::duties::LIVENESS),
            Err(err) => tracing::warn!(error = %err, "checking runner liveness failed"),
        }
    }
}

/// Marks every runner silent for longer than the grace period INACTIVE.
pub async fn sweep(state: &SharedState) -> anyhow::Result<usize> {
    let grace = chrono::Duration::from_std(state.runner_grace)?;
    let cutoff = Utc::now() - grace;
    // A duty of the server itself, asked for by no caller.
    let store = state.unrestricted_store();
    let stale = store.stale_runners(cutoff).await?;
    let mut marked = 0;
    for runner_id in stale {
        let result = store
            .update_runner_status(
                runner_id,
                Box::new(move |runner: &mut Runner| {
                    // Re-check inside the transaction: a report may have just arrived.
                    let silent = runner.status.updated_at.is_none_or(|at| at < cutoff);
                    if silent
                        && matches!(
                            runner.status.phase,
                            RunnerPhase::Active | RunnerPhase::Degraded
                        )
                    {
                        runner.status.phase = RunnerPhase::Inactive;
                        runner.status.message =
                            "no report from the runner within the grace period".into();
                    }
                    Ok(())
                }),
            )
            .await;
        match result {
            Ok(runner) if runner.status.phase == RunnerPhase::Inactive => {
                tracing::info!(
                    %runner_id,
                    runner_name = %runner.name,
                    last_report = ?runner.status.updated_at,
                    "runner went silent; now INACTIVE"
                );
                marked += 1;
                state
                    .events
                    .publish(ChangeEvent {
                        org_id: runner.org_id,
                        operation: ChangeOperation::UpdateStatus,
                        kind: ResourceKind::Runner,
                        id: runner.id,
                        creator_id: Some(runner.creator.id()),
                        runner_id: Some(runner.id),
                        owner_id: None,
                    })
                    .await;
            }
            Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(marked)
}
