//! Persistence behind one interface. Services see only [`Store`]; one SQL
//! implementation (`sql`) serves both backends: embedded SQLite (`sqlite`, the
//! default) and PostgreSQL (`postgres`, for several replicas on one database).
//!
//! The store knows nothing about callers or permissions: authorization happens
//! in `authz` before a service touches the store.

pub mod batch;
#[cfg(test)]
mod conformance;
pub mod connections;
mod direct_reads;
pub mod group_commit;
pub mod postgres;
pub(crate) mod recent;
mod row;
pub mod sql;
pub mod sqlite;
pub mod timed;
pub mod transfer;
#[cfg(test)]
mod upgrade;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    /// A change refused because of what the request asked for; names the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("store failure: {0}")]
    Internal(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A change applied to a stored value inside the store's transaction, so that
/// concurrent partial updates cannot lose each other's writes.
pub type Mutation<T> = Box<dyn FnOnce(&mut T) -> StoreResult<()> + Send>;

/// A change the store may apply more than once, each time to a fresh read,
/// when another write came between its read and its write
/// ([`Store::update_runner`]). It must derive the new value from what it is
/// given alone.
pub type Retryable<T> = Box<dyn FnMut(&mut T) -> StoreResult<()> + Send>;

/// How many items one page of [`read_all`] asks for.
const READ_ALL_PAGE: usize = 500;

/// Every item of a paged store list, read page by page: for the server's own
/// work (not API answers, which page for the caller).
/// Counts of the SQLite group commit (`group_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFlushes {
    /// Commits counted so far.
    pub commits: u64,
    /// Every commit up to this count is on disk.
    pub durable: u64,
    /// Flushes done.
    pub flushes: u64,
}

pub async fn read_all<T, F, Fut>(mut fetch: F) -> StoreResult<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = StoreResult<Page<T>>>,
{
    let mut items = Vec::new();
    let mut page = PageRequest {
        after: None,
        limit: READ_ALL_PAGE,
    };
    loop {
        let batch = fetch(page).await?;
        items.extend(batch.items);
        match batch.next_after {
            Some(after) => page.after = Some(after),
            None => return Ok(items),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Organizations, users and groups.
    /// Creates an organization with its system groups (admins, members).
    async fn create_organization(&self, org: &Organization) -> StoreResult<()>;
    async fn get_organization(&self, id: Uuid) -> StoreResult<Organization>;
    async fn first_organization(&self) -> StoreResult<Option<Organization>>;
    /// Creates a user and makes them a member (and, for `Admin`, an admin).
    async fn create_user(&self, user: &User, role: OrgRole) -> StoreResult<()>;
    async fn get_user(&self, id: Uuid) -> StoreResult<User>;
    /// Changes a user's record (e.g. its status); its email keeps its column.
    async fn update_user(&self, id: Uuid, change: Mutation<User>) -> StoreResult<User>;
    async fn org_role(&self, org_id: Uuid, user_id: Uuid) -> StoreResult<Option<OrgRole>>;
    async fn set_org_role(&self, org_id: Uuid, user_id: Uuid, role: OrgRole) -> StoreResult<()>;
    async fn list_org_members(
        &self,
        org_id: Uuid,
        filter: &OrgMemberFilter,
        page: PageRequest,
    ) -> StoreResult<Page<OrgMember>>;

    async fn create_group(&self, group: &Group) -> StoreResult<()>;
    async fn get_group(&self, id: Uuid) -> StoreResult<Group>;
    async fn get_group_by_name(&self, org_id: Uuid, name: &str) -> StoreResult<Group>;
    async fn system_group(&self, org_id: Uuid, which: SystemGroup) -> StoreResult<Group>;
    async fn list_groups(
        &self,
        org_id: Uuid,
        filter: &GroupFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Group>>;
    async fn update_group(&self, id: Uuid, change: Mutation<Group>) -> StoreResult<Group>;
    async fn delete_group(&self, id: Uuid) -> StoreResult<()>;
    /// How many members each of `group_ids` has (a page of groups at once);
    /// a group without members is left out.
    async fn count_members(
        &self,
        group_ids: &[Uuid],
    ) -> StoreResult<std::collections::HashMap<Uuid, i64>>;

    async fn create_membership(&self, membership: &Membership) -> StoreResult<()>;
    async fn get_membership(&self, id: Uuid) -> StoreResult<Membership>;
    async fn find_membership(
        &self,
        group_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<Membership>>;
    async fn delete_membership(&self, id: Uuid) -> StoreResult<()>;
    async fn list_memberships(
        &self,
        group_id: Uuid,
        filter: &MembershipFilter,
        page: PageRequest,
    ) -> StoreResult<Page<MemberView>>;
    async fn groups_of_user(&self, user_id: Uuid) -> StoreResult<Vec<Uuid>>;

    // Tokens.
    async fn create_token(&self, token: &ApiToken) -> StoreResult<()>;
    async fn find_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>>;
    async fn get_token(&self, id: Uuid) -> StoreResult<ApiToken>;
    async fn list_user_tokens(
        &self,
        user_ids: &[Uuid],
        page: PageRequest,
    ) -> StoreResult<Page<ApiToken>>;
    async fn delete_token(&self, id: Uuid) -> StoreResult<()>;
    /// Records when tokens were last used, in one transaction. Tokens that
    /// are gone are skipped.
    async fn record_token_uses(&self, uses: &[(Uuid, Timestamp)]) -> StoreResult<()>;
    /// Trades an unused, unexpired exchange token for a runner access token in
    /// one transaction: the exchange token is marked used, the runner's other
    /// access tokens are revoked, and `access` is stored.
    async fn redeem_exchange_token(
        &self,
        exchange_id: Uuid,
        access: &ApiToken,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Deletes exchange tokens that expired or were used before `cutoff`,
    /// and browser sessions that expired before it.
    async fn purge_spent_tokens(&self, cutoff: Timestamp) -> StoreResult<u64>;

    /// Commits that waited for the SQLite write-ahead log to reach the disk,
    /// and the flushes they shared (group commit); `None` where the
    /// database flushes by itself (PostgreSQL, SQLite in NORMAL mode).
    async fn log_flushes(&self) -> StoreResult<Option<LogFlushes>>;

    /// Marks the OAuth sign-in `id` as used, unless it already was: true the
    /// first time only. Marks kept past `expires_at` are dropped (the sealed
    /// state is refused by then anyway).
    async fn claim_oauth_sign_in(&self, id: Uuid, expires_at: Timestamp) -> StoreResult<bool>;

    /// The secret named `name`, storing `initial` first if there is none yet
    /// (so every replica ends up with the same value).
    async fn server_secret(&self, name: &str, initial: &str) -> StoreResult<String>;

    // Runners.
    /// Creates the runner with its initial policies.
    async fn create_runner(&self, runner: &Runner, policies: &[RunnerPolicy]) -> StoreResult<()>;
    async fn get_runner(&self, id: Uuid) -> StoreResult<Runner>;
    async fn list_runners(
        &self,
        org_id: Uuid,
        filter: &RunnerFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Runner>>;
    /// Changes runner `id`: its record, its status, or both, as if alone:
    /// a change of the record alone is written only if neither the record
    /// nor the status changed since they were read (one statement, the
    /// write lock held for it alone), else `change` runs again on a fresh
    /// read; a change of the status, or one that keeps losing, holds both
    /// locked from the read to the write.
    async fn update_runner(&self, id: Uuid, change: Retryable<Runner>) -> StoreResult<Runner>;
    /// Changes runner `id`'s status only (its reports, sign-up, liveness):
    /// holds the status locked from the read to the write and writes only
    /// the status, never the record. `change` sees the runner without its
    /// configuration schema (`config_schema` is `None`; so is it in the
    /// answer), and the record as it was read: a change to anything but
    /// `status` is an error.
    async fn update_runner_status(&self, id: Uuid, change: Mutation<Runner>)
    -> StoreResult<Runner>;
    /// Runners reported ACTIVE or DEGRADED whose last report is older than `cutoff`.
    async fn stale_runners(&self, cutoff: Timestamp) -> StoreResult<Vec<Uuid>>;
    /// How many runners share each phase, provider and reported version: one
    /// grouped query (the metrics page reads it, cached briefly).
    async fn count_runners(&self) -> StoreResult<Vec<RunnerCount>>;
    /// Removes the runner and everything that belongs to it, tokens included.
    async fn delete_runner(&self, id: Uuid) -> StoreResult<()>;

    async fn list_runner_policies(&self, runner_id: Uuid) -> StoreResult<Vec<RunnerPolicy>>;
    async fn create_runner_policy(&self, policy: &RunnerPolicy) -> StoreResult<()>;
    async fn update_runner_policy(&self, policy: &RunnerPolicy) -> StoreResult<()>;
    async fn delete_runner_policy(&self, runner_id: Uuid, group_id: Uuid) -> StoreResult<()>;

    // Runner configuration.
    async fn create_host_token(&self, token: &HostToken) -> StoreResult<()>;
    async fn get_host_token(&self, id: Uuid) -> StoreResult<HostToken>;
    async fn list_host_tokens(
        &self,
        org_id: Uuid,
        filter: &HostTokenFilter,
        page: PageRequest,
    ) -> StoreResult<Page<HostToken>>;
    async fn update_host_token(
        &self,
        id: Uuid,
        change: Mutation<HostToken>,
    ) -> StoreResult<HostToken>;
    async fn delete_host_token(&self, id: Uuid) -> StoreResult<()>;

    async fn create_scm_integration(&self, integration: &ScmIntegration) -> StoreResult<()>;
    async fn get_scm_integration(&self, id: Uuid) -> StoreResult<ScmIntegration>;
    async fn list_scm_integrations(
        &self,
        org_id: Uuid,
        filter: &ScmIntegrationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<ScmIntegration>>;
    async fn update_scm_integration(
        &self,
        id: Uuid,
        change: Mutation<ScmIntegration>,
    ) -> StoreResult<ScmIntegration>;
    async fn delete_scm_integration(&self, id: Uuid) -> StoreResult<()>;

    async fn create_environment_class(&self, class: &EnvironmentClass) -> StoreResult<()>;
    async fn get_environment_class(&self, id: Uuid) -> StoreResult<EnvironmentClass>;
    async fn list_environment_classes(
        &self,
        org_id: Uuid,
        filter: &EnvironmentClassFilter,
        page: PageRequest,
    ) -> StoreResult<Page<EnvironmentClass>>;
    async fn update_environment_class(
        &self,
        id: Uuid,
        change: Mutation<EnvironmentClass>,
    ) -> StoreResult<EnvironmentClass>;

    // The audit trail.
    async fn record_audit_event(&self, event: &AuditEvent) -> StoreResult<()>;
    async fn get_audit_event(&self, id: Uuid) -> StoreResult<AuditEvent>;
    /// A page of events of `org_id` (of every organization when `None`),
    /// oldest first unless the filter asks for the newest.
    async fn list_audit_events(
        &self,
        org_id: Option<Uuid>,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>>;
    /// Deletes events older than `before`; returns how many went.
    async fn prune_audit_events(&self, before: Timestamp) -> StoreResult<u64>;

    // Runner releases (docs/releases.md).
    /// Stores `release` and its artifact, read from `chunks` one chunk at a
    /// time inside one transaction: an error from `chunks` stores nothing.
    /// Refused (`Conflict`) when the channel already holds
    /// `corral_contract::release::MAX_RELEASES_PER_CHANNEL` releases, and
    /// (`AlreadyExists`) when it holds this version.
    async fn create_release(
        &self,
        release: &Release,
        chunks: &mut (dyn Iterator<Item = std::io::Result<Vec<u8>>> + Send),
    ) -> StoreResult<()>;
    /// The releases of `channel` (of every channel when `None`), in the order
    /// they were published; at most `MAX_RELEASES_PER_CHANNEL` per channel.
    async fn list_releases(&self, channel: Option<ReleaseChannel>) -> StoreResult<Vec<Release>>;
    async fn get_release(&self, id: Uuid) -> StoreResult<Release>;
    /// Chunk `seq` (from 0) of a release's artifact; `None` past the last.
    async fn release_chunk(&self, id: Uuid, seq: u32) -> StoreResult<Option<Vec<u8>>>;
    /// Withdraws a release: it and its artifact are deleted.
    async fn delete_release(&self, id: Uuid) -> StoreResult<()>;
}
