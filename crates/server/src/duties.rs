//! Background duties run once across the fleet, not once per replica.
//!
//! One replica leads: with PostgreSQL, the one holding a session-level
//! advisory lock ([`DUTIES_LOCK`]) on a connection of its own; every replica
//! keeps trying, so when the leader dies (its session ends, the lock with it)
//! another takes over within [`LOCK_CHECK`]. A server on SQLite runs alone and
//! always leads. Only the leader runs the duties:
//! - `liveness`: runners silent past the grace become INACTIVE ([`crate::liveness`]);
//! - `cleanup`: old replica-bus messages and long-dead replicas go,
//!   exchange tokens expired or used more than a day ago, and audit events
//!   past their retention (`--audit-retention`, 90 days by default).
//!
//! Each run is counted (`corral_background_duty_runs_total` on `GET
//! /metrics`, with whether this replica leads) and logged at debug level;
//! what a run changed is logged at info level where it happens.
//!
//! [`exclusively`] runs a one-off job under a fleet-wide lock (bootstrapping
//! an empty installation, which replicas starting together would otherwise
//! both do).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tokio::task::JoinHandle;

use crate::metrics::{DutyLabels, DutyRuns};
use crate::runner_hub::RunnerHub;
use crate::state::SharedState;

/// The advisory lock whose holder runs the background duties.
pub const DUTIES_LOCK: i64 = 0x636f_7272_616c_0001;
/// The advisory lock held while bootstrapping an empty installation.
pub const BOOTSTRAP_LOCK: i64 = 0x636f_7272_616c_0002;
/// How often a replica tries to lead, and the leader checks it still does.
pub const LOCK_CHECK: Duration = Duration::from_secs(1);
/// How often the leader cleans up.
const CLEANUP_PERIOD: Duration = Duration::from_secs(60);
/// Exchange tokens expired or used longer ago than this are deleted.
const TOKEN_RETENTION_SECS: i64 = 24 * 3600;
/// The longest a query about the lock may take before the connection counts as lost.
const LOCK_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

pub const LIVENESS: &str = "liveness";
pub const CLEANUP: &str = "cleanup";

pub struct Duties {
    leader: Arc<AtomicBool>,
    runs: DutyRuns,
    keeper: Option<JoinHandle<()>>,
}

impl Duties {
    /// A server that runs alone: it leads.
    pub fn single() -> Self {
        Self {
            leader: Arc::new(AtomicBool::new(true)),
            runs: initial_runs(),
            keeper: None,
        }
    }

    /// A replica on the PostgreSQL database at `url`: leads while it holds
    /// [`DUTIES_LOCK`]. Checks the database is reachable before returning.
    pub async fn postgres(url: &str) -> anyhow::Result<Self> {
        PgConnection::connect(url)
            .await
            .context("connecting to PostgreSQL for the duties lock")?
            .close()
            .await?;
        let leader = Arc::new(AtomicBool::new(false));
        let keeper = tokio::spawn(keep_duties_lock(url.to_string(), leader.clone()));
        Ok(Self {
            leader,
            runs: initial_runs(),
            keeper: Some(keeper),
        })
    }

    /// The cleanup duty's work; returns how many entries went. Audit
    /// events older than `audit_retention` go too.
    pub async fn clean_up(
        &self,
        hub: &RunnerHub,
        store: &dyn crate::store::Store,
        audit_retention: Duration,
    ) -> anyhow::Result<u64> {
        let mut removed = hub.cleanup().await?;
        let now = chrono::Utc::now();
        let cutoff = now - chrono::Duration::seconds(TOKEN_RETENTION_SECS);
        removed += store.purge_spent_tokens(cutoff).await?;
        let audit_cutoff = now - chrono::Duration::from_std(audit_retention)?;
        let pruned = store.prune_audit_events(audit_cutoff).await?;
        if pruned > 0 {
            tracing::info!(pruned, "audit events past their retention were deleted");
        }
        Ok(removed + pruned)
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Records that `duty` ran on this replica.
    pub fn ran(&self, duty: &'static str) {
        self.runs.get_or_create(&DutyLabels { duty }).inc();
        tracing::debug!(duty, "background duty ran: {duty}");
    }

    /// How often each duty ran on this replica (the metrics page shows it).
    pub fn runs(&self) -> &DutyRuns {
        &self.runs
    }
}

impl Drop for Duties {
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
    }
}

/// Both duties show from the start, at zero.
fn initial_runs() -> DutyRuns {
    let runs = DutyRuns::default();
    for duty in [LIVENESS, CLEANUP] {
        let _ = runs.get_or_create(&DutyLabels { duty });
    }
    runs
}

/// Keeps trying to take [`DUTIES_LOCK`] on a dedicated connection, and checks
/// the connection while it holds the lock; a lost connection loses the lead.
async fn keep_duties_lock(url: String, leader: Arc<AtomicBool>) {
    let mut conn: Option<PgConnection> = None;
    loop {
        let held = leader.load(Ordering::SeqCst);
        let checked = tokio::time::timeout(LOCK_QUERY_TIMEOUT, async {
            if conn.is_none() {
                conn = Some(PgConnection::connect(&url).await?);
            }
            let c = conn.as_mut().expect("connected above");
            if held {
                sqlx::query("SELECT 1").execute(&mut *c).await?;
                Ok::<bool, sqlx::Error>(true)
            } else {
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(DUTIES_LOCK)
                    .fetch_one(&mut *c)
                    .await
            }
        })
        .await;
        let leads = match checked {
            Ok(Ok(leads)) => leads,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "the duties lock connection failed");
                conn = None;
                false
            }
            Err(_) => {
                tracing::warn!("the duties lock connection did not answer in time");
                conn = None;
                false
            }
        };
        if leads != held {
            leader.store(leads, Ordering::SeqCst);
            if leads {
                tracing::info!("this replica now runs the background duties");
            } else {
                tracing::warn!("this replica no longer runs the background duties");
            }
        }
        tokio::time::sleep(LOCK_CHECK).await;
    }
}

/// Runs `job` while holding a fleet-wide lock (with PostgreSQL at `url`), so
/// that replicas starting together run it one after the other.
pub async fn exclusively<T>(
    url: Option<&str>,
    lock: i64,
    job: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let Some(url) = url else {
        return job.await;
    };
    let mut conn = PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL for a fleet-wide lock")?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock)
        .execute(&mut conn)
        .await
        .context("taking a fleet-wide lock")?;
    let result = job.await;
    // Closing the session releases the lock too; unlock first to be prompt.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result
}

/// Starts the duties; each runs only while this replica leads.
pub fn spawn(state: SharedState) {
    tokio::spawn(crate::liveness::mark_silent_runners_inactive(state.clone()));
    tokio::spawn(cleanup_loop(state));
}

/// Cleans up soon after this replica starts leading, then every [`CLEANUP_PERIOD`].
async fn cleanup_loop(state: SharedState) {
    let mut last_run: Option<tokio::time::Instant> = None;
    loop {
        if !state.duties.is_leader() {
            last_run = None;
        } else if last_run.is_none_or(|at| at.elapsed() >= CLEANUP_PERIOD) {
            last_run = Some(tokio::time::Instant::now());
            match state
                .duties
                .clean_up(
                    &state.hub,
                    state.unrestricted_store().as_ref(),
                    state.audit_retention,
                )
                .await
            {
                Ok(removed) => {
                    if removed > 0 {
                        tracing::info!(removed, "cleanup removed old entries");
                    }
                    state.duties.ran(CLEANUP);
                }
                Err(err) => tracing::warn!(error = %err, "cleaning up failed"),
            }
        }
        tokio::time::sleep(LOCK_CHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On PostgreSQL, on a database of its own (so no other test competes
    /// for the lock).
    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn one_replica_leads_and_another_takes_over() {
        let db = crate::bus::database_with_replica_tables().await;
        let first = Duties::postgres(db.url()).await.unwrap();
        wait_until(|| first.is_leader()).await;
        let second = Duties::postgres(db.url()).await.unwrap();
        tokio::time::sleep(LOCK_CHECK * 3).await;
        assert!(!second.is_leader(), "one leader at a time");
        drop(first);
        wait_until(|| second.is_leader()).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn exclusive_jobs_run_one_after_the_other() {
        let db = crate::bus::database_with_replica_tables().await;
        let running = std::sync::atomic::AtomicUsize::new(0);
        let overlapped = AtomicBool::new(false);
        let job = || async {
            if running.fetch_add(1, Ordering::SeqCst) > 0 {
                overlapped.store(true, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        };
        let (first, second) = tokio::join!(
            exclusively(Some(db.url()), BOOTSTRAP_LOCK, job()),
            exclusively(Some(db.url()), BOOTSTRAP_LOCK, job()),
        );
        first.unwrap();
        second.unwrap();
        assert!(!overlapped.load(Ordering::SeqCst));
    }

    /// With the PostgreSQL store: old exchange tokens go, others stay.
    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn old_exchange_tokens_are_purged() {
        use crate::domain::{ApiToken, Subject, TokenKind};
        use crate::store::Store as _;
        use chrono::Utc;
        let db = corral_testkit::PostgresDatabase::create().await;
        let store = crate::store::sql::SqlStore::open_postgres(db.url())
            .await
            .unwrap();
        let now = Utc::now();
        let token = |kind, created_hours_ago: i64, used: bool| {
            let created_at = now - chrono::Duration::hours(created_hours_ago);
            ApiToken {
                id: uuid::Uuid::now_v7(),
                kind,
                hash: uuid::Uuid::new_v4().to_string(),
                org_id: uuid::Uuid::now_v7(),
                subject: Subject::Runner(uuid::Uuid::now_v7()),
                creator: Subject::User(uuid::Uuid::now_v7()),
                description: String::new(),
                read_only: false,
                created_at,
                expires_at: Some(created_at + chrono::Duration::hours(24)),
                last_used: None,
                used_at: used.then_some(created_at + chrono::Duration::hours(1)),
            }
        };
        let expired_long_ago = token(TokenKind::Exchange, 72, false);
        let used_long_ago = token(TokenKind::Exchange, 30, true);
        let recently_expired = token(TokenKind::Exchange, 30, false);
        let fresh = token(TokenKind::Exchange, 1, false);
        let old_access = token(TokenKind::RunnerAccess, 72, false);
        for t in [
            &expired_long_ago,
            &used_long_ago,
            &recently_expired,
            &fresh,
            &old_access,
        ] {
            store.create_token(t).await.unwrap();
        }
        let cutoff = now - chrono::Duration::seconds(TOKEN_RETENTION_SECS);
        assert_eq!(store.purge_spent_tokens(cutoff).await.unwrap(), 2);
        for gone in [&expired_long_ago, &used_long_ago] {
            assert!(store.get_token(gone.id).await.is_err());
        }
        for kept in [&recently_expired, &fresh, &old_access] {
            store.get_token(kept.id).await.unwrap();
        }
    }

    async fn wait_until(condition: impl Fn() -> bool) {
        for _ in 0..300 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out");
    }
}
