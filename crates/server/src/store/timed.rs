//! [`TimedStore`]: a [`Store`] that times every call of the store it wraps
//! into `corral_store_operation_duration_seconds{operation="<method>"}`.
//!
//! The label is the trait method's name, so its values are a fixed set. The
//! methods are listed once, below, with their signatures as the trait has
//! them: a method added to the trait and not here fails to compile.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use uuid::Uuid;

use super::{Mutation, Retryable, Store, StoreResult};
use crate::domain::*;
use crate::metrics::Metrics;

/// Times the calls of `inner`.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }
}

macro_rules! timed {
    ($(async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for TimedStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let started = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    self.metrics
                        .record_store_operation(stringify!($name), started.elapsed());
                    result
                }
            )*
        }
    };
}

timed! {
    async fn create_organization(&self, org: &Organization) -> StoreResult<()>;
    async fn get_organization(&self, id: Uuid) -> StoreResult<Organization>;
    async fn first_organization(&self) -> StoreResult<Option<Organization>>;
    async fn create_user(&self, user: &User, role: OrgRole) -> StoreResult<()>;
    async fn get_user(&self, id: Uuid) -> StoreResult<User>;
    async fn update_user(&self, id: Uuid, change: Mutation<User>) -> StoreResult<User>;
    async fn org_role(&self, org_id: Uuid, user_id: Uuid) -> StoreResult<Option<OrgRole>>;
    async fn set_org_role(&self, org_id: Uuid, user_id: Uuid, role: OrgRole) -> StoreResult<()>;
    async fn list_org_members(&self, org_id: Uuid, filter: &OrgMemberFilter, page: PageRequest) -> StoreResult<Page<OrgMember>>;
    async fn create_group(&self, group: &Group) -> StoreResult<()>;
    async fn get_group(&self, id: Uuid) -> StoreResult<Group>;
    async fn get_group_by_name(&self, org_id: Uuid, name: &str) -> StoreResult<Group>;
    async fn system_group(&self, org_id: Uuid, which: SystemGroup) -> StoreResult<Group>;
    async fn list_groups(&self, org_id: Uuid, filter: &GroupFilter, page: PageRequest) -> StoreResult<Page<Group>>;
    async fn update_group(&self, id: Uuid, change: Mutation<Group>) -> StoreResult<Group>;
    async fn delete_group(&self, id: Uuid) -> StoreResult<()>;
    async fn count_members(&self, group_ids: &[Uuid]) -> StoreResult<std::collections::HashMap<Uuid, i64>>;
    async fn create_membership(&self, membership: &Membership) -> StoreResult<()>;
    async fn get_membership(&self, id: Uuid) -> StoreResult<Membership>;
    async fn find_membership(&self, group_id: Uuid, user_id: Uuid) -> StoreResult<Option<Membership>>;
    async fn delete_membership(&self, id: Uuid) -> StoreResult<()>;
    async fn list_memberships(&self, group_id: Uuid, filter: &MembershipFilter, page: PageRequest) -> StoreResult<Page<MemberView>>;
    async fn groups_of_user(&self, user_id: Uuid) -> StoreResult<Vec<Uuid>>;
    async fn create_token(&self, token: &ApiToken) -> StoreResult<()>;
    async fn find_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>>;
    async fn get_token(&self, id: Uuid) -> StoreResult<ApiToken>;
    async fn list_user_tokens(&self, user_ids: &[Uuid], page: PageRequest) -> StoreResult<Page<ApiToken>>;
    async fn delete_token(&self, id: Uuid) -> StoreResult<()>;
    async fn record_token_uses(&self, uses: &[(Uuid, Timestamp)]) -> StoreResult<()>;
    async fn redeem_exchange_token(&self, exchange_id: Uuid, access: &ApiToken, now: Timestamp) -> StoreResult<()>;
    async fn purge_spent_tokens(&self, cutoff: Timestamp) -> StoreResult<u64>;
    async fn log_flushes(&self) -> StoreResult<Option<super::LogFlushes>>;
    async fn claim_oauth_sign_in(&self, id: Uuid, expires_at: Timestamp) -> StoreResult<bool>;
    async fn server_secret(&self, name: &str, initial: &str) -> StoreResult<String>;
    async fn create_runner(&self, runner: &Runner, policies: &[RunnerPolicy]) -> StoreResult<()>;
    async fn get_runner(&self, id: Uuid) -> StoreResult<Runner>;
    async fn list_runners(&self, org_id: Uuid, filter: &RunnerFilter, page: PageRequest) -> StoreResult<Page<Runner>>;
    async fn update_runner(&self, id: Uuid, change: Retryable<Runner>) -> StoreResult<Runner>;
    async fn update_runner_status(&self, id: Uuid, change: Mutation<Runner>) -> StoreResult<Runner>;
    async fn stale_runners(&self, cutoff: Timestamp) -> StoreResult<Vec<Uuid>>;
    async fn count_runners(&self) -> StoreResult<Vec<RunnerCount>>;
    async fn delete_runner(&self, id: Uuid) -> StoreResult<()>;
    async fn list_runner_policies(&self, runner_id: Uuid) -> StoreResult<Vec<RunnerPolicy>>;
    async fn create_runner_policy(&self, policy: &RunnerPolicy) -> StoreResult<()>;
    async fn update_runner_policy(&self, policy: &RunnerPolicy) -> StoreResult<()>;
    async fn delete_runner_policy(&self, runner_id: Uuid, group_id: Uuid) -> StoreResult<()>;
    async fn create_host_token(&self, token: &HostToken) -> StoreResult<()>;
    async fn get_host_token(&self, id: Uuid) -> StoreResult<HostToken>;
    async fn list_host_tokens(&self, org_id: Uuid, filter: &HostTokenFilter, page: PageRequest) -> StoreResult<Page<HostToken>>;
    async fn update_host_token(&self, id: Uuid, change: Mutation<HostToken>) -> StoreResult<HostToken>;
    async fn delete_host_token(&self, id: Uuid) -> StoreResult<()>;
    async fn create_scm_integration(&self, integration: &ScmIntegration) -> StoreResult<()>;
    async fn get_scm_integration(&self, id: Uuid) -> StoreResult<ScmIntegration>;
    async fn list_scm_integrations(&self, org_id: Uuid, filter: &ScmIntegrationFilter, page: PageRequest) -> StoreResult<Page<ScmIntegration>>;
    async fn update_scm_integration(&self, id: Uuid, change: Mutation<ScmIntegration>) -> StoreResult<ScmIntegration>;
    async fn delete_scm_integration(&self, id: Uuid) -> StoreResult<()>;
    async fn create_environment_class(&self, class: &EnvironmentClass) -> StoreResult<()>;
    async fn get_environment_class(&self, id: Uuid) -> StoreResult<EnvironmentClass>;
    async fn list_environment_classes(&self, org_id: Uuid, filter: &EnvironmentClassFilter, page: PageRequest) -> StoreResult<Page<EnvironmentClass>>;
    async fn update_environment_class(&self, id: Uuid, change: Mutation<EnvironmentClass>) -> StoreResult<EnvironmentClass>;
    async fn record_audit_event(&self, event: &AuditEvent) -> StoreResult<()>;
    async fn get_audit_event(&self, id: Uuid) -> StoreResult<AuditEvent>;
    async fn list_audit_events(&self, org_id: Option<Uuid>, filter: &AuditFilter, page: PageRequest) -> StoreResult<Page<AuditEvent>>;
    async fn prune_audit_events(&self, before: Timestamp) -> StoreResult<u64>;
    async fn create_release(&self, release: &Release, chunks: &mut (dyn Iterator<Item = std::io::Result<Vec<u8>>> + Send)) -> StoreResult<()>;
    async fn list_releases(&self, channel: Option<ReleaseChannel>) -> StoreResult<Vec<Release>>;
    async fn get_release(&self, id: Uuid) -> StoreResult<Release>;
    async fn release_chunk(&self, id: Uuid, seq: u32) -> StoreResult<Option<Vec<u8>>>;
    async fn delete_release(&self, id: Uuid) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_timed_by_method() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(
            super::super::sql::SqlStore::open_sqlite(&dir.path().join("corral.db"))
                .await
                .unwrap(),
        );
        let metrics = Arc::new(Metrics::new(&Default::default()));
        let store = TimedStore::wrap(inner, metrics.clone());
        assert!(store.first_organization().await.unwrap().is_none());
        assert!(store.get_runner(new_id()).await.is_err());
        let text = metrics.render(store.as_ref(), 0, true).await;
        for operation in ["first_organization", "get_runner", "count_runners"] {
            let line = format!(
                "corral_store_operation_duration_seconds_count{{operation=\"{operation}\"}} 1\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
}
