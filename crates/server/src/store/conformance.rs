//! The store's contract, checked on every backend: each test below is one
//! function, run by [`conformance!`] on SQLite (a file in a temporary
//! directory) and on PostgreSQL (a database of its own from
//! `corral_testkit`, dropped after the test, also when it fails). The
//! PostgreSQL variants are ignored unless asked for: `scripts/test` runs them.

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use corral_testkit::PostgresDatabase;
use sqlx::Connection;
use uuid::Uuid;

use super::sql::{Dialect, SqlStore};
use super::{Mutation, Retryable, Store, StoreError};
use crate::domain::*;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Runs each listed test function on both backends: `on_sqlite::NAME` and
/// `on_postgres::NAME` (ignored unless asked for).
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        corral_testkit::on_both_stores!($($name),*);
    };
}

/// Runs each listed test function, which takes the concrete `&SqlStore`
/// (query plans, stored text), on both backends: `NAME::on_sqlite` and
/// `NAME::on_postgres` (ignored unless asked for).
macro_rules! on_both_sql_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test]
                async fn on_sqlite() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = SqlStore::open_sqlite(&dir.path().join("corral.db"))
                        .await
                        .unwrap();
                    super::$name(&store).await;
                }

                #[tokio::test]
                #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
                async fn on_postgres() {
                    let database = PostgresDatabase::create().await;
                    let store = SqlStore::open_postgres(database.url()).await.unwrap();
                    super::$name(&store).await;
                    store.close().await;
                }
            }
        )*
    };
}

on_both_sql_stores!(
    integration_hosts_become_their_keys,
    every_list_is_served_by_an_index,
    a_status_report_leaves_the_record_untouched,
    a_write_dropped_before_commit_leaves_nothing,
    an_updated_runner_is_kept_as_the_database_has_it,
);

conformance!(
    records_round_trip_and_vanish_when_deleted,
    lists_page_in_creation_order,
    a_listed_runner_is_as_last_written,
    unique_constraints_answer_already_exists,
    concurrent_updates_of_one_runner_lose_nothing,
    concurrent_updates_of_many_runners_each_keep_their_own,
    status_and_record_updates_at_once_lose_nothing,
    a_status_update_changes_only_the_status,
    concurrent_policies_for_one_group_one_wins,
    an_exchange_token_is_redeemed_once,
    the_last_admin_stays_under_concurrent_demotions,
    silent_runners_are_found_by_their_last_report,
    runners_are_counted_by_phase_provider_and_version,
    deleting_a_runner_takes_what_belongs_to_it,
    groups_filter_by_search_ids_and_system_within_the_org,
    memberships_filter_by_member_name_or_email,
    org_members_filter_by_role_email_search_and_groups,
    the_first_server_secret_stays,
    spent_tokens_are_purged,
    an_oauth_sign_in_is_claimed_once,
    audit_events_filter_page_and_expire,
    one_integration_per_host_under_any_spelling_and_at_once,
    releases_keep_their_chunks_and_publish_all_or_nothing,
    a_suspended_user_is_listed_as_suspended,
);

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("corral.db"))
        .await
        .unwrap();
    test(Arc::new(store)).await;
}

async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let database = PostgresDatabase::create().await;
    let store = Arc::new(SqlStore::open_postgres(database.url()).await.unwrap());
    let shared: Arc<dyn Store> = store.clone();
    test(shared).await;
    store.close().await;
}

/// Replicas that start together on a new database all come up, and the schema
/// is migrated exactly once (sqlx's PostgreSQL migrator takes an advisory lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
async fn postgres_replicas_starting_together_migrate_once() {
    let database = PostgresDatabase::create().await;
    let url = database.url().to_string();
    let opened = at_once((0..4).map(|_| {
        let url = url.clone();
        async move { SqlStore::open_postgres(&url).await }
    }))
    .await;
    let stores: Vec<SqlStore> = opened
        .into_iter()
        .map(|r| r.expect("every replica opens the store"))
        .collect();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let expected: Vec<(i64, bool)> = super::postgres::MIGRATOR
        .iter()
        .map(|m| (m.version, true))
        .collect();
    assert!(expected.len() >= 2);
    assert_eq!(applied, expected, "each migration applied once");
    let _ = conn.close().await;
    // Every replica works on the one schema.
    let first = org(&stores[0], "shared").await;
    for store in &stores {
        assert_eq!(store.get_organization(first.id).await.unwrap(), first);
        store.close().await;
    }
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

pub(super) const ALL: PageRequest = PageRequest {
    after: None,
    limit: 100,
};

async fn org(store: &dyn Store, name: &str) -> Organization {
    let now = Utc::now();
    let org = Organization {
        id: new_id(),
        name: name.into(),
        created_at: now,
        updated_at: now,
    };
    store.create_organization(&org).await.unwrap();
    org
}

async fn user(store: &dyn Store, org_id: Uuid, name: &str, role: OrgRole) -> User {
    let user = User {
        id: new_id(),
        org_id,
        name: name.into(),
        email: format!("{name}@Example.com"),
        status: UserStatus::Active,
        created_at: Utc::now(),
    };
    store.create_user(&user, role).await.unwrap();
    user
}

fn new_group(org_id: Uuid, name: &str) -> Group {
    let now = Utc::now();
    Group {
        id: new_id(),
        org_id,
        name: name.into(),
        description: String::new(),
        system: None,
        created_at: now,
        updated_at: now,
    }
}

pub(super) async fn group(store: &dyn Store, org_id: Uuid, name: &str) -> Group {
    let group = new_group(org_id, name);
    store.create_group(&group).await.unwrap();
    group
}

fn new_membership(group: &Group, user: &User) -> Membership {
    Membership {
        id: new_id(),
        group_id: group.id,
        user_id: user.id,
        created_at: Utc::now(),
    }
}

pub(super) async fn join(store: &dyn Store, group: &Group, user: &User) {
    store
        .create_membership(&new_membership(group, user))
        .await
        .unwrap();
}

fn new_runner(org_id: Uuid, creator: &User, name: &str) -> Runner {
    let now = Utc::now();
    Runner {
        id: new_id(),
        org_id,
        name: name.into(),
        kind: RunnerKind::Local,
        provider: Some(RunnerProvider::LinuxHost),
        creator: Subject::User(creator.id),
        runner_manager_id: None,
        spec: RunnerSpec::default(),
        status: RunnerStatus {
            phase: RunnerPhase::Created,
            ..Default::default()
        },
        config_schema: None,
        created_at: now,
        updated_at: now,
    }
}

/// A runner on which `policies_for` groups hold the admin role.
pub(super) async fn runner(
    store: &dyn Store,
    creator: &User,
    name: &str,
    policies_for: &[&Group],
) -> Runner {
    let runner = new_runner(creator.org_id, creator, name);
    let policies: Vec<_> = policies_for
        .iter()
        .map(|g| RunnerPolicy {
            runner_id: runner.id,
            group_id: g.id,
            role: RunnerRole::Admin,
        })
        .collect();
    store.create_runner(&runner, &policies).await.unwrap();
    runner
}

/// A token of `kind` for `subject`, issued by `creator`.
pub(super) fn new_token(kind: TokenKind, subject: Subject, creator: &User) -> ApiToken {
    ApiToken {
        id: new_id(),
        kind,
        hash: format!("hash-{}", Uuid::new_v4()),
        org_id: creator.org_id,
        subject,
        creator: Subject::User(creator.id),
        description: String::new(),
        read_only: false,
        created_at: Utc::now(),
        expires_at: None,
        last_used: None,
        used_at: None,
    }
}

pub(super) fn new_host_token(runner: &Runner, user: &User, host: &str) -> HostToken {
    HostToken {
        id: new_id(),
        org_id: runner.org_id,
        runner_id: runner.id,
        user_id: user.id,
        host: host.into(),
        source: Some(HostTokenSource::Pat),
        token_encrypted: vec![1, 2, 3],
        refresh_token_encrypted: None,
        expires_at: None,
        integration_id: None,
        scopes: vec!["repo".into()],
        created_at: Utc::now(),
    }
}

pub(super) fn new_integration(runner: &Runner, host: &str) -> ScmIntegration {
    ScmIntegration {
        id: new_id(),
        org_id: runner.org_id,
        runner_id: runner.id,
        scm_id: "github".into(),
        host: host.into(),
        oauth: None,
        pat: true,
        virtual_directory: None,
        created_at: Utc::now(),
    }
}

pub(super) fn new_class(runner: &Runner, name: &str, enabled: bool) -> EnvironmentClass {
    EnvironmentClass {
        id: new_id(),
        org_id: runner.org_id,
        runner_id: runner.id,
        display_name: name.into(),
        description: String::new(),
        configuration: vec![("cpu".into(), "2".into())],
        enabled,
        created_at: Utc::now(),
    }
}

/// Runs the operations at once, each in a task of its own; returns their
/// results in the order given.
async fn at_once<T, Fut>(operations: impl IntoIterator<Item = Fut>) -> Vec<T>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = operations.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

fn successes<T, E>(results: &[Result<T, E>]) -> usize {
    results.iter().filter(|r| r.is_ok()).count()
}

/// A mutation that always applies.
fn change<T>(apply: impl FnOnce(&mut T) + Send + 'static) -> Mutation<T> {
    Box::new(move |value| {
        apply(value);
        Ok(())
    })
}

/// [`change`] for [`Store::update_runner`], which may apply it more than once.
fn retryable<T>(mut apply: impl FnMut(&mut T) + Send + 'static) -> Retryable<T> {
    Box::new(move |value| {
        apply(value);
        Ok(())
    })
}

fn names<T>(page: &Page<T>, name: impl Fn(&T) -> &str) -> Vec<String> {
    page.items.iter().map(|i| name(i).to_string()).collect()
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::NotFound(_))),
        "expected NotFound, got {result:?}"
    );
}

#[track_caller]
fn assert_already_exists<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "expected AlreadyExists, got {result:?}"
    );
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

async fn records_round_trip_and_vanish_when_deleted(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    assert_eq!(store.get_organization(a.id).await.unwrap(), a);
    assert_eq!(store.first_organization().await.unwrap(), Some(a.clone()));
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    assert_eq!(store.get_user(root.id).await.unwrap(), root);
    assert_eq!(
        store.org_role(a.id, root.id).await.unwrap(),
        Some(OrgRole::Admin)
    );

    // Runners: create, read, partial update (indexed columns follow), delete.
    let team = group(store, a.id, "team").await;
    let r = runner(store, &root, "build", &[&team]).await;
    assert_eq!(store.get_runner(r.id).await.unwrap(), r);
    let updated = store
        .update_runner(r.id, retryable(|r: &mut Runner| r.name = "renamed".into()))
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(store.get_runner(r.id).await.unwrap(), updated);
    let refused = store
        .update_runner(
            r.id,
            Box::new(|_| Err(StoreError::Conflict("refused".into()))),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(store.get_runner(r.id).await.unwrap().name, "renamed");
    assert_not_found(store.update_runner(new_id(), Box::new(|_| Ok(()))).await);

    // Tokens: by hash, uses recorded (a gone token skipped), deleted.
    let token = new_token(TokenKind::Personal, Subject::User(root.id), &root);
    store.create_token(&token).await.unwrap();
    assert_eq!(
        store.find_token_by_hash(&token.hash).await.unwrap(),
        Some(token.clone())
    );
    let other = new_token(TokenKind::Personal, Subject::User(root.id), &root);
    store.create_token(&other).await.unwrap();
    let at = Utc::now();
    let earlier = at - chrono::Duration::minutes(5);
    store
        .record_token_uses(&[(token.id, at), (new_id(), at), (other.id, earlier)])
        .await
        .unwrap();
    assert_eq!(store.get_token(token.id).await.unwrap().last_used, Some(at));
    assert_eq!(
        store.get_token(other.id).await.unwrap().last_used,
        Some(earlier)
    );
    store.delete_token(other.id).await.unwrap();
    store.delete_token(token.id).await.unwrap();
    assert_eq!(store.find_token_by_hash(&token.hash).await.unwrap(), None);
    assert_not_found(store.delete_token(token.id).await);

    // Runner configuration.
    let host_token = new_host_token(&r, &root, "github.com");
    store.create_host_token(&host_token).await.unwrap();
    assert_eq!(
        store.get_host_token(host_token.id).await.unwrap(),
        host_token
    );
    let changed = store
        .update_host_token(
            host_token.id,
            change(|t: &mut HostToken| t.scopes.push("read:org".into())),
        )
        .await
        .unwrap();
    assert_eq!(changed.scopes, ["repo", "read:org"]);
    store.delete_host_token(host_token.id).await.unwrap();
    assert_not_found(store.get_host_token(host_token.id).await);

    let integration = new_integration(&r, "github.com");
    store.create_scm_integration(&integration).await.unwrap();
    assert_eq!(
        store.get_scm_integration(integration.id).await.unwrap(),
        integration
    );
    store.delete_scm_integration(integration.id).await.unwrap();
    assert_not_found(store.delete_scm_integration(integration.id).await);

    let on = new_class(&r, "on", true);
    let off = new_class(&r, "off", false);
    store.create_environment_class(&on).await.unwrap();
    store.create_environment_class(&off).await.unwrap();
    assert_eq!(store.get_environment_class(off.id).await.unwrap(), off);
    let enabled = |enabled| EnvironmentClassFilter {
        runner_ids: vec![r.id],
        enabled: Some(enabled),
        ..Default::default()
    };
    let list = store
        .list_environment_classes(a.id, &enabled(true), ALL)
        .await
        .unwrap();
    assert_eq!(names(&list, |c| &c.display_name), ["on"]);
    store
        .update_environment_class(off.id, change(|c: &mut EnvironmentClass| c.enabled = true))
        .await
        .unwrap();
    let list = store
        .list_environment_classes(a.id, &enabled(true), ALL)
        .await
        .unwrap();
    assert_eq!(names(&list, |c| &c.display_name), ["on", "off"]);
    let list = store
        .list_environment_classes(a.id, &enabled(false), ALL)
        .await
        .unwrap();
    assert!(list.items.is_empty());

    // Policies.
    assert_eq!(
        store.list_runner_policies(r.id).await.unwrap(),
        [RunnerPolicy {
            runner_id: r.id,
            group_id: team.id,
            role: RunnerRole::Admin
        }]
    );
    let as_user = RunnerPolicy {
        runner_id: r.id,
        group_id: team.id,
        role: RunnerRole::User,
    };
    store.update_runner_policy(&as_user).await.unwrap();
    assert_eq!(store.list_runner_policies(r.id).await.unwrap(), [as_user]);
    store.delete_runner_policy(r.id, team.id).await.unwrap();
    assert_not_found(store.delete_runner_policy(r.id, team.id).await);
    assert_not_found(store.update_runner_policy(&as_user).await);

    // Groups and memberships.
    let renamed = store
        .update_group(team.id, change(|g: &mut Group| g.name = "crew".into()))
        .await
        .unwrap();
    assert_eq!(
        store.get_group_by_name(a.id, "crew").await.unwrap(),
        renamed
    );
    let membership = new_membership(&team, &root);
    store.create_membership(&membership).await.unwrap();
    assert_eq!(
        store.find_membership(team.id, root.id).await.unwrap(),
        Some(membership.clone())
    );
    let admins = store.system_group(a.id, SystemGroup::Admins).await.unwrap();
    let counts = store.count_members(&[team.id, admins.id]).await.unwrap();
    assert_eq!(counts, [(team.id, 1), (admins.id, 1)].into());
    store.delete_membership(membership.id).await.unwrap();
    let counts = store.count_members(&[team.id]).await.unwrap();
    assert_eq!(counts.get(&team.id), None);
    assert!(store.count_members(&[]).await.unwrap().is_empty());
    store.delete_group(team.id).await.unwrap();
    assert_not_found(store.get_group(team.id).await);

    store.delete_runner(r.id).await.unwrap();
    assert_not_found(store.get_runner(r.id).await);
    assert_not_found(store.delete_runner(r.id).await);
}

async fn lists_page_in_creation_order(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(runner(store, &root, &format!("r{i}"), &[]).await.id);
    }
    // Another organization's runners never show up.
    let b = org(store, "b").await;
    let other = user(store, b.id, "other", OrgRole::Admin).await;
    runner(store, &other, "elsewhere", &[]).await;

    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_runners(
                a.id,
                &RunnerFilter::default(),
                PageRequest { after, limit: 2 },
            )
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, created);
    assert_eq!(pages, 3);

    // A page that ends exactly at the last item says there is no next page.
    let page = store
        .list_runners(
            a.id,
            &RunnerFilter::default(),
            PageRequest {
                after: Some(created[2]),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next_after, None);

    // Visibility with nothing granted: only what the caller created.
    let visible = |visibility: Visibility| RunnerFilter {
        visible: Some(visibility),
        ..Default::default()
    };
    let ids = |page: Page<Runner>| page.items.iter().map(|r| r.id).collect::<Vec<_>>();
    let only_created = visible(Visibility {
        creator: Some(other.id),
        ..Default::default()
    });
    let page = store.list_runners(a.id, &only_created, ALL).await.unwrap();
    assert!(page.items.is_empty());
    let nothing = visible(Visibility::default());
    assert!(
        store
            .list_runners(a.id, &nothing, ALL)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // A runner sees itself.
    let itself = visible(Visibility {
        runner_id: Some(created[3]),
        ..Default::default()
    });
    assert_eq!(
        ids(store.list_runners(a.id, &itself, ALL).await.unwrap()),
        [created[3]]
    );
    // Granted to one of the caller's groups (once, whatever the number of
    // groups granting it), or created by the caller.
    let team = group(store, a.id, "team").await;
    let crew = group(store, a.id, "crew").await;
    for (runner_id, group) in [
        (created[4], &team),
        (created[1], &team),
        (created[1], &crew),
    ] {
        store
            .create_runner_policy(&RunnerPolicy {
                runner_id,
                group_id: group.id,
                role: RunnerRole::User,
            })
            .await
            .unwrap();
    }
    let granted = visible(Visibility {
        creator: None,
        group_ids: vec![team.id, crew.id],
        runner_id: None,
    });
    let page = store.list_runners(a.id, &granted, ALL).await.unwrap();
    assert_eq!(ids(page), [created[1], created[4]]);
    let member = user(store, a.id, "member", OrgRole::Member).await;
    let mine = runner(store, &member, "mine", &[]).await;
    let as_member = visible(Visibility {
        creator: Some(member.id),
        group_ids: vec![crew.id],
        runner_id: None,
    });
    let page = store.list_runners(a.id, &as_member, ALL).await.unwrap();
    assert_eq!(ids(page), [created[1], mine.id]);

    // Lists of what belongs to runners, restricted to the visible runners.
    for runner_id in [created[0], created[1], mine.id] {
        let r = store.get_runner(runner_id).await.unwrap();
        store
            .create_scm_integration(&new_integration(&r, "git.test"))
            .await
            .unwrap();
        store
            .create_environment_class(&new_class(&r, "small", true))
            .await
            .unwrap();
    }
    let integrations = store
        .list_scm_integrations(
            a.id,
            &ScmIntegrationFilter {
                host: None,
                runner_ids: vec![],
                runners: as_member.clone(),
            },
            ALL,
        )
        .await
        .unwrap();
    let owners: Vec<Uuid> = integrations.items.iter().map(|i| i.runner_id).collect();
    assert_eq!(owners, [created[1], mine.id]);
    let integrations = store
        .list_scm_integrations(
            a.id,
            &ScmIntegrationFilter {
                host: None,
                runner_ids: vec![created[0], mine.id],
                runners: as_member.clone(),
            },
            ALL,
        )
        .await
        .unwrap();
    let owners: Vec<Uuid> = integrations.items.iter().map(|i| i.runner_id).collect();
    assert_eq!(owners, [mine.id]);
    // By host and by the runners' status phase.
    let reported = change(|r: &mut Runner| r.status.phase = RunnerPhase::Active);
    store.update_runner_status(mine.id, reported).await.unwrap();
    let reporting = RunnerFilter {
        phases: vec![RunnerPhase::Active],
        ..as_member.clone()
    };
    let page = store.list_runners(a.id, &reporting, ALL).await.unwrap();
    assert_eq!(ids(page), [mine.id]);
    for (host, expected) in [("git.test", vec![mine.id]), ("other.test", vec![])] {
        let filter = ScmIntegrationFilter {
            host: Some(host.into()),
            runners: reporting.clone(),
            ..Default::default()
        };
        let found = store
            .list_scm_integrations(a.id, &filter, ALL)
            .await
            .unwrap();
        let owners: Vec<Uuid> = found.items.iter().map(|i| i.runner_id).collect();
        assert_eq!(owners, expected, "{host}");
    }
    let classes = store
        .list_environment_classes(
            a.id,
            &EnvironmentClassFilter {
                runners: as_member,
                ..Default::default()
            },
            ALL,
        )
        .await
        .unwrap();
    let owners: Vec<Uuid> = classes.items.iter().map(|c| c.runner_id).collect();
    assert_eq!(owners, [created[1], mine.id]);
    let remote = RunnerFilter {
        kinds: vec![RunnerKind::Remote],
        ..Default::default()
    };
    let classes = store
        .list_environment_classes(
            a.id,
            &EnvironmentClassFilter {
                runners: remote,
                ..Default::default()
            },
            ALL,
        )
        .await
        .unwrap();
    assert!(classes.items.is_empty());
    assert!(
        store
            .list_user_tokens(&[], ALL)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// A page of runners shows each as last written, whether the store has it
/// kept from an earlier read or not: renamed, reporting, granted, deleted.
async fn a_listed_runner_is_as_last_written(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    let team = group(store, a.id, "team").await;
    let first = runner(store, &root, "first", &[]).await;
    let second = runner(store, &root, "second", &[]).await;
    let list = |filter: RunnerFilter| async move {
        store
            .list_runners(
                a.id,
                &filter,
                PageRequest {
                    after: None,
                    limit: 25,
                },
            )
            .await
            .unwrap()
    };
    let everything = RunnerFilter::default;
    // Read once by id and once listed, so both are kept.
    store.get_runner(first.id).await.unwrap();
    assert_eq!(
        names(&list(everything()).await, |r| &r.name),
        ["first", "second"]
    );

    store
        .update_runner(
            first.id,
            retryable(|r: &mut Runner| r.name = "renamed".into()),
        )
        .await
        .unwrap();
    store
        .update_runner_status(
            second.id,
            change(|r: &mut Runner| r.status.phase = RunnerPhase::Active),
        )
        .await
        .unwrap();
    let page = list(everything()).await;
    assert_eq!(names(&page, |r| &r.name), ["renamed", "second"]);
    assert_eq!(page.items[1].status.phase, RunnerPhase::Active);
    for listed in &page.items {
        assert_eq!(listed, &store.get_runner(listed.id).await.unwrap());
    }

    // Who may see which is the database's answer, never a kept one.
    let sees = |visible: Visibility| RunnerFilter {
        visible: Some(visible),
        ..Default::default()
    };
    let member = Visibility {
        creator: None,
        group_ids: vec![team.id],
        runner_id: None,
    };
    assert!(list(sees(member.clone())).await.items.is_empty());
    store
        .create_runner_policy(&RunnerPolicy {
            runner_id: second.id,
            group_id: team.id,
            role: RunnerRole::User,
        })
        .await
        .unwrap();
    assert_eq!(names(&list(sees(member)).await, |r| &r.name), ["second"]);

    store.delete_runner(first.id).await.unwrap();
    assert_eq!(names(&list(everything()).await, |r| &r.name), ["second"]);
}

async fn unique_constraints_answer_already_exists(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    assert_already_exists(store.create_organization(&a).await);
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    let mut twin = root.clone();
    twin.id = new_id();
    assert_already_exists(store.create_user(&twin, OrgRole::Member).await);

    let team = group(store, a.id, "team").await;
    assert_already_exists(store.create_group(&new_group(a.id, "team")).await);
    let other = group(store, a.id, "other").await;
    let renaming = store
        .update_group(other.id, change(|g: &mut Group| g.name = "team".into()))
        .await;
    assert_already_exists(renaming);
    assert_eq!(store.get_group(other.id).await.unwrap().name, "other");

    join(store, &team, &root).await;
    assert_already_exists(store.create_membership(&new_membership(&team, &root)).await);

    let token = new_token(TokenKind::Personal, Subject::User(root.id), &root);
    store.create_token(&token).await.unwrap();
    let mut same_hash = token.clone();
    same_hash.id = new_id();
    assert_already_exists(store.create_token(&same_hash).await);

    let r = runner(store, &root, "build", &[&team]).await;
    assert_already_exists(store.create_runner(&r, &[]).await);
    let policy = RunnerPolicy {
        runner_id: r.id,
        group_id: team.id,
        role: RunnerRole::User,
    };
    assert_already_exists(store.create_runner_policy(&policy).await);
    store
        .create_host_token(&new_host_token(&r, &root, "github.com"))
        .await
        .unwrap();
    assert_already_exists(
        store
            .create_host_token(&new_host_token(&r, &root, "github.com"))
            .await,
    );
    store
        .create_scm_integration(&new_integration(&r, "github.com"))
        .await
        .unwrap();
    assert_already_exists(
        store
            .create_scm_integration(&new_integration(&r, "github.com"))
            .await,
    );
}

/// `http://git.example.test`, `git.example.test` and `WWW.git.example.test/`
/// are one host: a runner has one integration for it, also when several
/// requests create one at the same time.
async fn one_integration_per_host_under_any_spelling_and_at_once(store: Arc<dyn Store>) {
    let a = org(&*store, "a").await;
    let root = user(&*store, a.id, "root", OrgRole::Admin).await;
    let r = runner(&*store, &root, "r", &[]).await;
    let other = runner(&*store, &root, "other", &[]).await;
    let spellings = [
        "http://git.example.test",
        "git.example.test",
        "https://www.git.example.test/",
        "http://git.example.test",
    ];
    let results = at_once(spellings.map(|host| {
        let store = store.clone();
        let integration = new_integration(&r, host);
        async move { store.create_scm_integration(&integration).await }
    }))
    .await;
    assert_eq!(successes(&results), 1, "{results:?}");
    for result in results.into_iter().filter(Result::is_err) {
        assert_already_exists(result);
    }
    // Another runner, or another port, is another integration.
    store
        .create_scm_integration(&new_integration(&other, "git.example.test"))
        .await
        .unwrap();
    store
        .create_scm_integration(&new_integration(&r, "git.example.test:8443"))
        .await
        .unwrap();
}

/// The migration that made an integration's `host` column its host key turns
/// the spellings older versions stored into keys, and leaves hosts whose keys
/// would collide as they were.
async fn integration_hosts_become_their_keys(store: &SqlStore) {
    let s: &dyn Store = store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let r = runner(s, &root, "r", &[]).await;
    let stored = [
        "http://plain.test:8080",
        "https://www.tfs.test/tfs/coll",
        "http://dup.test",
        "dup.test",
        "keep.test",
    ];
    let mut script = String::new();
    for (i, host) in stored.iter().enumerate() {
        let integration = new_integration(&r, &format!("h{i}.test"));
        s.create_scm_integration(&integration).await.unwrap();
        script.push_str(&format!(
            "UPDATE scm_integrations SET host = '{host}' WHERE id = '{}';\n",
            integration.id
        ));
    }
    store.execute_script(script).await.unwrap();
    let migration = match store.dialect() {
        Dialect::Sqlite => {
            include_str!("../../migrations/sqlite/0006_scm_integration_host_key.sql")
        }
        Dialect::Postgres => {
            include_str!("../../migrations/postgres/0007_scm_integration_host_key.sql")
        }
    };
    store.execute_script(migration.to_string()).await.unwrap();
    assert_eq!(
        store.integration_host_column().await,
        [
            "plain.test:8080",
            "tfs.test",
            "http://dup.test",
            "dup.test",
            "keep.test"
        ]
    );
}

/// Many partial updates of one runner at once, as from several replicas: each
/// appends its own marker, and every one of them is in the result.
async fn concurrent_updates_of_one_runner_lose_nothing(store: Arc<dyn Store>) {
    let a = org(&*store, "a").await;
    let root = user(&*store, a.id, "root", OrgRole::Admin).await;
    let r = runner(&*store, &root, "r", &[]).await;
    let results = at_once((0..20).map(|i| {
        let store = store.clone();
        async move {
            let mark = retryable(move |r: &mut Runner| r.name.push_str(&format!(" m{i};")));
            store.update_runner(r.id, mark).await
        }
    }))
    .await;
    assert_eq!(successes(&results), 20, "{results:?}");
    let name = store.get_runner(r.id).await.unwrap().name;
    for i in 0..20 {
        assert!(name.contains(&format!(" m{i};")), "m{i} was lost: {name}");
    }
    assert_eq!(name.matches(';').count(), 20, "{name}");
}

/// Updates of several runners at once (the SQL store writes them together,
/// several runners to a statement): every runner gets its own changes and
/// no other's, and the answers are what a read then finds.
async fn concurrent_updates_of_many_runners_each_keep_their_own(store: Arc<dyn Store>) {
    let a = org(&*store, "a").await;
    let root = user(&*store, a.id, "root", OrgRole::Admin).await;
    let mut runners = Vec::new();
    for i in 0..8 {
        runners.push(runner(&*store, &root, &format!("r{i}"), &[]).await.id);
    }
    let results = at_once((0..40).map(|i| {
        let (store, id) = (store.clone(), runners[i % runners.len()]);
        async move {
            let mark = retryable(move |r: &mut Runner| r.name.push_str(&format!(" m{i};")));
            store.update_runner(id, mark).await
        }
    }))
    .await;
    assert_eq!(successes(&results), 40, "{results:?}");
    for (n, id) in runners.iter().enumerate() {
        let name = store.get_runner(*id).await.unwrap().name;
        let mut marks: Vec<usize> = name
            .split_whitespace()
            .filter_map(|word| word.strip_prefix('m')?.strip_suffix(';')?.parse().ok())
            .collect();
        marks.sort_unstable();
        let own: Vec<usize> = (0..40).filter(|i| i % runners.len() == n).collect();
        assert_eq!(marks, own, "runner r{n}: {name}");
        assert!(name.starts_with(&format!("r{n} ")), "{name}");
    }
    for (i, result) in results.iter().enumerate() {
        let answered = result.as_ref().unwrap();
        assert!(answered.name.contains(&format!(" m{i};")), "{answered:?}");
    }
}

/// Where a second store on the same database is opened: in a thread of its
/// own with its own runtime, so that it works while the first store's caller
/// is blocked.
#[derive(Clone)]
enum SameDatabase {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl SameDatabase {
    /// Runs `write` on a second store of this database, to its end, from
    /// inside a synchronous closure of the first.
    fn write_meanwhile(&self, write: impl AsyncFnOnce(&SqlStore) + Send) {
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let other = match self {
                        Self::Sqlite(path) => SqlStore::open_sqlite(path).await.unwrap(),
                        Self::Postgres(url) => SqlStore::open_postgres(url).await.unwrap(),
                    };
                    write(&other).await;
                    other.close().await;
                });
            });
        });
    }
}

/// An update of a runner's record that another write overtakes between its
/// read and its write (here: a rename, then a status report, from another
/// replica) notices, applies its change again to a fresh read, and both
/// writes stay.
async fn an_overtaken_update_runs_its_change_again(store: &SqlStore, same: SameDatabase) {
    let s: &dyn Store = store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let r = runner(s, &root, "r", &[]).await;
    // Alone, the change runs once; and the runner is stored spelled as the
    // store spells the runner it reads back, which the optimistic write
    // compares with (else every update would take the locking way).
    let report = change(|r: &mut Runner| r.status.updated_at = Some(Utc::now()));
    s.update_runner_status(r.id, report).await.unwrap();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let schema = retryable(move |r: &mut Runner| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        r.config_schema = Some(vec![1; 64]);
    });
    s.update_runner(r.id, schema).await.unwrap();
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    let read = s.get_runner(r.id).await.unwrap();
    assert_eq!(
        store.runner_record_text(r.id).await,
        super::sql::runner_record_json(&read).unwrap()
    );
    for overtaking in ["rename", "report"] {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counted, same, id) = (runs.clone(), same.clone(), r.id);
        let updated = s
            .update_runner(
                r.id,
                Box::new(move |runner: &mut Runner| {
                    if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        same.write_meanwhile(async |other: &SqlStore| match overtaking {
                            "rename" => {
                                let rename = retryable(|r: &mut Runner| r.name.push_str(" other;"));
                                other.update_runner(id, rename).await.unwrap();
                            }
                            _ => {
                                let report =
                                    change(|r: &mut Runner| r.status.version = "9.9.9".into());
                                other.update_runner_status(id, report).await.unwrap();
                            }
                        });
                    }
                    runner.name.push_str(" mine;");
                    Ok(())
                }),
            )
            .await
            .unwrap();
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "{overtaking}"
        );
        let stored = s.get_runner(r.id).await.unwrap();
        assert_eq!(stored.name, updated.name, "{overtaking}");
        assert_eq!(stored.status, updated.status, "{overtaking}");
    }
    let stored = s.get_runner(r.id).await.unwrap();
    assert_eq!(stored.name, "r other; mine; mine;");
    assert_eq!(stored.status.version, "9.9.9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overtaken_update_runs_its_change_again_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    an_overtaken_update_runs_its_change_again(&store, SameDatabase::Sqlite(path)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
async fn an_overtaken_update_runs_its_change_again_on_postgres() {
    let database = PostgresDatabase::create().await;
    let store = SqlStore::open_postgres(database.url()).await.unwrap();
    let same = SameDatabase::Postgres(database.url().to_string());
    an_overtaken_update_runs_its_change_again(&store, same).await;
    store.close().await;
}

/// Every list query is served by an index: its filter and its ORDER BY id,
/// without a full scan or a sort, so a page costs the same at any size.
/// Checked on the plans, not on timings: each list uses the index meant
/// for it; SQLite's EXPLAIN QUERY PLAN shows no `SCAN` and no temporary
/// B-tree for the order; PostgreSQL's, with sequential scans and sorts
/// disabled, shows neither (it falls back to them only when no index serves).
async fn every_list_is_served_by_an_index(store: &SqlStore) {
    let s: &dyn Store = store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let team = group(s, a.id, "team").await;
    join(s, &team, &root).await;
    let r = runner(s, &root, "r", &[&team]).await;
    let page = PageRequest {
        after: Some(r.id),
        limit: 25,
    };
    let mut plans = Vec::new();
    // Every list but the last narrows by an indexed column; the last
    // (audit events of every organization) walks the primary key.
    macro_rules! plan {
        ($what:expr, $call:expr) => {{
            $call.await.unwrap();
            plans.push(($what, store.last_page_plan().await, true));
        }};
    }
    let runners = |f: fn(&mut RunnerFilter)| {
        let mut filter = RunnerFilter::default();
        f(&mut filter);
        filter
    };
    plan!(
        "runners",
        s.list_runners(a.id, &RunnerFilter::default(), page)
    );
    plan!(
        "runners, first page",
        s.list_runners(a.id, &RunnerFilter::default(), ALL)
    );
    let by_kind = runners(|f| f.kinds = vec![RunnerKind::Local]);
    plan!("runners by kind", s.list_runners(a.id, &by_kind, page));
    let by_provider = runners(|f| f.providers = vec![RunnerProvider::LinuxHost]);
    plan!(
        "runners by provider",
        s.list_runners(a.id, &by_provider, page)
    );
    let by_creator = RunnerFilter {
        creator_ids: vec![root.id],
        ..Default::default()
    };
    plan!(
        "runners by creator",
        s.list_runners(a.id, &by_creator, page)
    );
    let member = RunnerFilter {
        visible: Some(Visibility {
            creator: Some(root.id),
            group_ids: vec![team.id],
            runner_id: None,
        }),
        ..Default::default()
    };
    plan!("runners a member sees", s.list_runners(a.id, &member, page));
    let reporting = RunnerFilter {
        phases: vec![RunnerPhase::Active, RunnerPhase::Degraded],
        ..member.clone()
    };
    plan!(
        "reporting runners a member sees",
        s.list_runners(a.id, &reporting, page)
    );
    plan!(
        "host tokens",
        s.list_host_tokens(a.id, &HostTokenFilter::default(), page)
    );
    let mine = HostTokenFilter {
        user_id: Some(root.id),
        runner_id: None,
    };
    plan!(
        "host tokens of a user",
        s.list_host_tokens(a.id, &mine, page)
    );
    let on_runner = HostTokenFilter {
        user_id: None,
        runner_id: Some(r.id),
    };
    plan!(
        "host tokens on a runner",
        s.list_host_tokens(a.id, &on_runner, page)
    );
    plan!(
        "SCM integrations",
        s.list_scm_integrations(a.id, &ScmIntegrationFilter::default(), page)
    );
    let of_runner = ScmIntegrationFilter {
        runner_ids: vec![r.id],
        ..Default::default()
    };
    plan!(
        "SCM integrations of a runner",
        s.list_scm_integrations(a.id, &of_runner, page)
    );
    let seen_by_member = ScmIntegrationFilter {
        host: None,
        runner_ids: vec![],
        runners: member.clone(),
    };
    plan!(
        "SCM integrations a member sees",
        s.list_scm_integrations(a.id, &seen_by_member, page)
    );
    let for_host = ScmIntegrationFilter {
        host: Some("git.test".into()),
        runners: reporting.clone(),
        ..Default::default()
    };
    plan!(
        "SCM integrations for a host",
        s.list_scm_integrations(a.id, &for_host, page)
    );
    plan!(
        "environment classes",
        s.list_environment_classes(a.id, &EnvironmentClassFilter::default(), page)
    );
    let classes_of_runner = EnvironmentClassFilter {
        runner_ids: vec![r.id],
        ..Default::default()
    };
    plan!(
        "environment classes of a runner",
        s.list_environment_classes(a.id, &classes_of_runner, page)
    );
    plan!(
        "memberships",
        s.list_memberships(team.id, &MembershipFilter::default(), page)
    );
    plan!(
        "organization members",
        s.list_org_members(a.id, &OrgMemberFilter::default(), page)
    );
    plan!("groups", s.list_groups(a.id, &GroupFilter::default(), page));
    plan!("personal tokens", s.list_user_tokens(&[root.id], page));
    plan!(
        "audit events",
        s.list_audit_events(Some(a.id), &AuditFilter::default(), page)
    );
    let newest = AuditFilter {
        newest_first: true,
        ..Default::default()
    };
    plan!(
        "audit events, newest first",
        s.list_audit_events(Some(a.id), &newest, page)
    );
    s.list_audit_events(None, &newest, page).await.unwrap();
    plans.push(("every audit event", store.last_page_plan().await, false));

    // The index that serves each list: its filter's columns, then id.
    let serving = [
        ("runners", "runners_by_org"),
        ("runners, first page", "runners_by_org"),
        ("runners by kind", "runners_by_org_kind"),
        ("runners by provider", "runners_by_org_provider"),
        ("runners by creator", "runners_by_org_creator"),
        ("runners a member sees", "runners_by_org"),
        ("reporting runners a member sees", "runners_by_org"),
        ("host tokens", "host_tokens_by_org"),
        ("host tokens of a user", "host_tokens_by_user"),
        ("host tokens on a runner", "host_tokens_by_runner"),
        ("SCM integrations", "scm_integrations_by_org"),
        ("SCM integrations of a runner", "scm_integrations_by_runner"),
        ("SCM integrations a member sees", "scm_integrations_by_org"),
        ("SCM integrations for a host", "scm_integrations_by_host"),
        ("environment classes", "environment_classes_by_org"),
        (
            "environment classes of a runner",
            "environment_classes_by_runner",
        ),
        ("memberships", "memberships_by_group"),
        ("organization members", "users_by_org"),
        ("groups", "groups_by_org"),
        ("personal tokens", "api_tokens_by_subject"),
        ("audit events", "audit_events_by_org"),
        ("audit events, newest first", "audit_events_by_org"),
        ("every audit event", ""),
    ];
    assert_eq!(serving.len(), plans.len());
    let mut bad = Vec::new();
    for ((what, plan, narrowed), (listed, index)) in plans.iter().zip(serving) {
        assert_eq!(*what, listed);
        let uses = format!("{index} ");
        if !index.is_empty() && !plan.iter().any(|step| step.contains(&uses)) {
            bad.push(format!("{what}: not by {index}:\n  {}", plan.join("\n  ")));
            continue;
        }
        // A narrowed list must search a range of an index, not walk all of
        // one (SQLite `SCAN … USING INDEX`; on PostgreSQL, the check of the
        // index used above rules out a walk of the primary key).
        let unserved = plan.iter().any(|step| match store.dialect() {
            Dialect::Sqlite => {
                step.contains("USE TEMP B-TREE")
                    || (step.starts_with("SCAN ") && (*narrowed || !step.contains(" USING ")))
            }
            Dialect::Postgres => step.contains("Seq Scan") || step.contains("Sort"),
        });
        if unserved {
            bad.push(format!("{what}:\n  {}", plan.join("\n  ")));
        }
    }
    assert!(
        bad.is_empty(),
        "lists not served by an index:\n{}",
        bad.join("\n")
    );
}

/// Status updates (reports) and record updates (UpdateRunner) of one runner
/// at once, as from several replicas: the two kinds lock different rows, and
/// still neither loses the other's writes nor its own.
async fn status_and_record_updates_at_once_lose_nothing(store: Arc<dyn Store>) {
    let a = org(&*store, "a").await;
    let root = user(&*store, a.id, "root", OrgRole::Admin).await;
    let r = runner(&*store, &root, "r", &[]).await;
    let results = at_once((0..20).map(|i| {
        let store = store.clone();
        async move {
            if i % 2 == 0 {
                let mark = retryable(move |r: &mut Runner| r.name.push_str(&format!(" m{i};")));
                store.update_runner(r.id, mark).await
            } else {
                let mark =
                    change(move |r: &mut Runner| r.status.message.push_str(&format!(" s{i};")));
                store.update_runner_status(r.id, mark).await
            }
        }
    }))
    .await;
    assert_eq!(successes(&results), 20, "{results:?}");
    let stored = store.get_runner(r.id).await.unwrap();
    for i in 0..20 {
        let (text, mark) = if i % 2 == 0 {
            (&stored.name, format!(" m{i};"))
        } else {
            (&stored.status.message, format!(" s{i};"))
        };
        assert!(text.contains(&mark), "{mark} was lost: {stored:?}");
    }
}

/// A status update keeps the status, answers the runner (without its
/// configuration schema), and refuses to change anything else (the record
/// is not locked for it).
async fn a_status_update_changes_only_the_status(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    let r = runner(store, &root, "r", &[]).await;
    let schema = vec![7u8; 1000];
    let with_schema = store
        .update_runner(
            r.id,
            retryable(move |r: &mut Runner| r.config_schema = Some(schema.clone())),
        )
        .await
        .unwrap();
    let at = Utc::now();
    let reported = store
        .update_runner_status(
            r.id,
            change(move |r: &mut Runner| {
                r.status.phase = RunnerPhase::Active;
                r.status.version = "1.2.3".into();
                r.status.updated_at = Some(at);
            }),
        )
        .await
        .unwrap();
    let mut expected = with_schema.clone();
    expected.status.phase = RunnerPhase::Active;
    expected.status.version = "1.2.3".into();
    expected.status.updated_at = Some(at);
    // The answer leaves out the configuration schema, which is not read.
    let without_schema = Runner {
        config_schema: None,
        ..expected.clone()
    };
    assert_eq!(reported, without_schema);
    assert_eq!(store.get_runner(r.id).await.unwrap(), expected);
    let refused = store
        .update_runner_status(
            r.id,
            change(|r: &mut Runner| {
                r.status.version = "9".into();
                r.name = "renamed".into();
            }),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Internal(_))),
        "{refused:?}"
    );
    assert_eq!(store.get_runner(r.id).await.unwrap(), expected);
    assert_not_found(
        store
            .update_runner_status(new_id(), Box::new(|_| Ok(())))
            .await,
    );
}

/// A status report writes the status row alone: the runner's record (with
/// its configuration schema) is not rewritten, byte for byte.
async fn a_status_report_leaves_the_record_untouched(store: &SqlStore) {
    let s: &dyn Store = store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let r = runner(s, &root, "r", &[]).await;
    s.update_runner(
        r.id,
        retryable(|r: &mut Runner| r.config_schema = Some(vec![1; 4096])),
    )
    .await
    .unwrap();
    let record = store.runner_record_text(r.id).await;
    s.update_runner_status(
        r.id,
        change(|r: &mut Runner| r.status.updated_at = Some(Utc::now())),
    )
    .await
    .unwrap();
    assert_eq!(store.runner_record_text(r.id).await, record);
    assert!(
        !record.contains("\"status\""),
        "the record holds no status: {record}"
    );
}

/// On a SQLite file the hot reads (a runner, a page of runners, a page of
/// records) read the file on the calling thread; they see what another
/// connection committed (`corral admin` is another process), and fail as
/// every read does once the store is closed.
#[tokio::test]
async fn hot_reads_of_a_sqlite_file_read_it_directly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    let s: &dyn Store = &store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let r = runner(s, &root, "r", &[]).await;
    store.forget_recent_runners();
    let before = store.direct_reads_done().expect("a file is read directly");
    assert_eq!(s.get_runner(r.id).await.unwrap().name, "r");
    let page = s
        .list_runners(a.id, &RunnerFilter::default(), ALL)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let tokens = s.list_user_tokens(&[root.id], ALL).await.unwrap();
    assert!(tokens.items.is_empty());
    // The runner (kept since), the page's ids, the tokens.
    assert_eq!(store.direct_reads_done().unwrap(), before + 3);

    let other = SqlStore::open_sqlite(&path).await.unwrap();
    other
        .update_runner(r.id, retryable(|r: &mut Runner| r.name = "renamed".into()))
        .await
        .unwrap();
    other.close().await;
    store.forget_recent_runners();
    assert_eq!(s.get_runner(r.id).await.unwrap().name, "renamed");

    store.close().await;
    store.forget_recent_runners();
    assert!(s.get_runner(r.id).await.is_err(), "closed");
}

/// On a SQLite file runners stay in memory until written. The store's own
/// writes forget (or keep, as written) the runner they wrote and no other;
/// a write by another process on the file (`corral admin`, another server)
/// makes the store forget every runner within a watch or two
/// (`sqlite::watch`), which runner it changed being unknown.
#[tokio::test]
async fn a_sqlite_store_forgets_its_runners_when_another_process_writes() {
    use crate::store::sqlite::WATCH_EVERY;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    let s: &dyn Store = &store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let r = runner(s, &root, "r", &[]).await;
    let q = runner(s, &root, "q", &[]).await;
    assert_eq!(s.get_runner(r.id).await.unwrap().name, "r");
    assert!(store.keeps_runner(r.id));

    s.update_runner(q.id, retryable(|q: &mut Runner| q.name = "q2".into()))
        .await
        .unwrap();
    s.update_runner_status(
        q.id,
        Box::new(|q: &mut Runner| {
            q.status.message = "busy".into();
            Ok(())
        }),
    )
    .await
    .unwrap();
    tokio::time::sleep(WATCH_EVERY * 4).await;
    assert!(
        store.keeps_runner(r.id),
        "the store's own writes are not another process's"
    );

    let other = SqlStore::open_sqlite(&path).await.unwrap();
    other
        .update_runner(r.id, retryable(|r: &mut Runner| r.name = "renamed".into()))
        .await
        .unwrap();
    other.close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.keeps_runner(r.id) {
        assert!(
            std::time::Instant::now() < deadline,
            "another process's write still not heard of after 10 s"
        );
        tokio::time::sleep(WATCH_EVERY / 2).await;
    }
    assert_eq!(s.get_runner(r.id).await.unwrap().name, "renamed");
    store.close().await;
}

/// On PostgreSQL runners stay in memory until someone changes them: every
/// change committed to a runner's record or status, by another replica or
/// `corral admin`, names the runner on a channel each store listens on
/// (migration 0011), and the store forgets it. Notices sent while that
/// connection is lost are lost too: until it listens again, nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
async fn a_postgres_store_forgets_the_runners_other_replicas_change() {
    let database = PostgresDatabase::create().await;
    let store = SqlStore::open_postgres(database.url()).await.unwrap();
    let s: &dyn Store = &store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let r = runner(s, &root, "r", &[]).await;
    let q = runner(s, &root, "q", &[]).await;
    let other = SqlStore::open_postgres(database.url()).await.unwrap();
    let until = |what: &'static str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        move || {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20))
        }
    };
    let status = |message: &'static str| -> Mutation<Runner> {
        Box::new(move |runner: &mut Runner| {
            runner.status.message = message.into();
            Ok(())
        })
    };

    assert_eq!(s.get_runner(r.id).await.unwrap().name, "r");
    assert_eq!(s.get_runner(q.id).await.unwrap().status.message, "");
    assert!(store.keeps_runner(r.id) && store.keeps_runner(q.id));
    other
        .update_runner(r.id, retryable(|r: &mut Runner| r.name = "renamed".into()))
        .await
        .unwrap();
    let wait = until("a rename by another replica heard of");
    while store.keeps_runner(r.id) {
        wait().await;
    }
    assert_eq!(s.get_runner(r.id).await.unwrap().name, "renamed");
    assert!(store.keeps_runner(q.id), "the other runner is still kept");
    other
        .update_runner_status(q.id, status("busy"))
        .await
        .unwrap();
    let wait = until("a status report through another replica heard of");
    while store.keeps_runner(q.id) {
        wait().await;
    }
    assert_eq!(s.get_runner(q.id).await.unwrap().status.message, "busy");

    // The listening connection is lost, and a change is made meanwhile.
    assert!(store.keeps_runner(r.id));
    let ended = database
        .end_connections_whose_last_statement_starts("LISTEN")
        .await;
    assert_eq!(ended, 2, "the two stores' listeners");
    other
        .update_runner(r.id, retryable(|r: &mut Runner| r.name = "unheard".into()))
        .await
        .unwrap();
    let wait = until("a change while deaf read from the database");
    while s.get_runner(r.id).await.unwrap().name != "unheard" {
        wait().await;
    }
    // Once it listens again, runners are kept, and changes heard, again.
    let wait = until("listening again");
    while !store.keeps_runner(r.id) {
        s.get_runner(r.id).await.unwrap();
        wait().await;
    }
    other
        .update_runner_status(r.id, status("heard"))
        .await
        .unwrap();
    let wait = until("a change after listening again heard of");
    while s.get_runner(r.id).await.unwrap().status.message != "heard" {
        wait().await;
    }
    other.close().await;
    store.close().await;
}

/// PostgreSQL's reads run on connections the store holds and lends again
/// without a check (see `connections`). When the server ends them (a
/// restart, an operator), the next read still answers: it finds its
/// connection broken and reads once more on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
async fn a_read_whose_connection_the_server_ended_reads_again_on_postgres() {
    let database = PostgresDatabase::create().await;
    let store = SqlStore::open_postgres(database.url()).await.unwrap();
    let s: &dyn Store = &store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let r = runner(s, &root, "r", &[]).await;
    let read = || async {
        store.forget_recent_runners();
        let runner = s.get_runner(r.id).await.unwrap();
        let page = s
            .list_runners(a.id, &RunnerFilter::default(), ALL)
            .await
            .unwrap();
        (runner.name, page.items.len())
    };
    assert_eq!(read().await, ("r".to_string(), 1));

    let ended = database.end_connections().await;
    assert!(ended >= 1, "no connection of the store's was ended");
    assert_eq!(read().await, ("r".to_string(), 1));
    assert_eq!(read().await, ("r".to_string(), 1));
    store.close().await;
}

/// UpdateRunner keeps the runner it wrote in memory: what the next read
/// finds there is what the database holds (compared after forgetting every
/// kept runner), and a status report after it is not hidden by the copy.
async fn an_updated_runner_is_kept_as_the_database_has_it(store: &SqlStore) {
    let s: &dyn Store = store;
    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let r = runner(s, &root, "r", &[]).await;
    s.get_runner(r.id).await.unwrap();
    let updated = s
        .update_runner(
            r.id,
            retryable(|r: &mut Runner| {
                r.name = "renamed".into();
                r.config_schema = Some(vec![7; 300]);
                r.updated_at = Utc::now();
            }),
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(s.get_runner(r.id).await.unwrap(), updated, "from memory");
    store.forget_recent_runners();
    assert_eq!(
        s.get_runner(r.id).await.unwrap(),
        updated,
        "from the database"
    );

    s.update_runner(r.id, retryable(|r: &mut Runner| r.name = "again".into()))
        .await
        .unwrap();
    s.update_runner_status(
        r.id,
        change(|r: &mut Runner| r.status.phase = RunnerPhase::Active),
    )
    .await
    .unwrap();
    let read = s.get_runner(r.id).await.unwrap();
    assert_eq!(
        (read.name.as_str(), read.status.phase),
        ("again", RunnerPhase::Active)
    );
}

/// A write whose call went away inside its transaction (its future dropped
/// before the commit, as when a client disconnects) leaves nothing behind,
/// and the writer's connection serves the next write in a transaction of
/// its own (SQLite refuses a BEGIN inside an open one). Then CreateRunner
/// with a policy, dropped after every number of polls up to its end: each
/// time the runner and its policy are both there or both not.
async fn a_write_dropped_before_commit_leaves_nothing(store: &SqlStore) {
    let s: &dyn Store = store;
    for _ in 0..3 {
        let mut tx = store.begin_write().await.unwrap();
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ('dropped', 'x')")
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
    }
    assert_eq!(s.server_secret("kept", "k").await.unwrap(), "k");
    assert_eq!(
        s.server_secret("dropped", "fresh").await.unwrap(),
        "fresh",
        "the dropped transactions stored nothing"
    );

    let a = org(s, "a").await;
    let root = user(s, a.id, "root", OrgRole::Admin).await;
    let admins = group(s, a.id, "operators").await;
    let mut finished = false;
    for polls in 1.. {
        let runner = new_runner(a.id, &root, &format!("r{polls}"));
        let policy = RunnerPolicy {
            runner_id: runner.id,
            group_id: admins.id,
            role: RunnerRole::Admin,
        };
        let mut create = Box::pin(s.create_runner(&runner, std::slice::from_ref(&policy)));
        for _ in 0..polls {
            if let std::task::Poll::Ready(done) = futures::poll!(create.as_mut()) {
                done.unwrap();
                finished = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        drop(create);
        // All or nothing, also while a commit the drop cut short is still
        // landing (PostgreSQL finishes it on its own).
        let (runners, policies) = store.runner_and_policy_rows(runner.id).await;
        assert_eq!(runners, policies, "after {polls} polls");
        if finished {
            break;
        }
        assert!(polls < 1000, "CreateRunner never finished");
    }
    runner(s, &root, "after", &[&admins]).await;
}

/// Two CreateRunnerPolicy for the same group at once: one wins, the other is
/// told the policy exists. Several rounds, to give the race a chance.
async fn concurrent_policies_for_one_group_one_wins(store: Arc<dyn Store>) {
    let a = org(&*store, "a").await;
    let root = user(&*store, a.id, "root", OrgRole::Admin).await;
    let r = runner(&*store, &root, "r", &[]).await;
    for round in 0..5 {
        let team = group(&*store, a.id, &format!("team {round}")).await;
        let results = at_once([RunnerRole::User, RunnerRole::Admin].map(|role| {
            let store = store.clone();
            let policy = RunnerPolicy {
                runner_id: r.id,
                group_id: team.id,
                role,
            };
            async move { store.create_runner_policy(&policy).await }
        }))
        .await;
        let won = successes(&results);
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::AlreadyExists(_))))
            .count();
        assert_eq!((won, refused), (1, 1), "round {round}: {results:?}");
    }
    assert_eq!(store.list_runner_policies(r.id).await.unwrap().len(), 5);
}

async fn an_exchange_token_is_redeemed_once(store: Arc<dyn Store>) {
    let a = org(&*store, "a").await;
    let root = user(&*store, a.id, "root", OrgRole::Admin).await;
    let r = runner(&*store, &root, "r", &[]).await;
    let exchange = new_token(TokenKind::Exchange, Subject::Runner(r.id), &root);
    store.create_token(&exchange).await.unwrap();
    let results = at_once((0..2).map(|_| {
        let store = store.clone();
        let access = new_token(TokenKind::RunnerAccess, Subject::Runner(r.id), &root);
        async move {
            store
                .redeem_exchange_token(exchange.id, &access, Utc::now())
                .await
        }
    }))
    .await;
    assert_eq!(successes(&results), 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict(_)))),
        "{results:?}"
    );
    assert!(
        store
            .get_token(exchange.id)
            .await
            .unwrap()
            .used_at
            .is_some()
    );
}

/// Replicas racing to create a shared secret all end up with the first one.
async fn the_first_server_secret_stays(store: Arc<dyn Store>) {
    let results = at_once((0..4).map(|i| {
        let store = store.clone();
        async move { store.server_secret("shared", &format!("value-{i}")).await }
    }))
    .await;
    let values: Vec<String> = results.into_iter().map(Result::unwrap).collect();
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert_eq!(
        store.server_secret("shared", "later").await.unwrap(),
        values[0]
    );
    assert_eq!(store.server_secret("other", "x").await.unwrap(), "x");
}

/// Exchange tokens used or expired before the cutoff go, and sessions that
/// expired before it; nothing else does.
async fn spent_tokens_are_purged(store: Arc<dyn Store>) {
    let a = org(&*store, "a").await;
    let root = user(&*store, a.id, "root", OrgRole::Admin).await;
    let r = runner(&*store, &root, "r", &[]).await;
    let now = Utc::now();
    let cutoff = now - chrono::Duration::hours(24);
    let mut expired = new_token(TokenKind::Exchange, Subject::Runner(r.id), &root);
    expired.expires_at = Some(now - chrono::Duration::hours(30));
    let mut used = new_token(TokenKind::Exchange, Subject::Runner(r.id), &root);
    used.used_at = Some(now - chrono::Duration::hours(25));
    let mut fresh = new_token(TokenKind::Exchange, Subject::Runner(r.id), &root);
    fresh.expires_at = Some(now + chrono::Duration::hours(20));
    let mut access = new_token(TokenKind::RunnerAccess, Subject::Runner(r.id), &root);
    access.expires_at = Some(now - chrono::Duration::hours(30));
    let mut old_session = new_token(TokenKind::Session, Subject::User(root.id), &root);
    old_session.expires_at = Some(now - chrono::Duration::hours(30));
    let mut live_session = new_token(TokenKind::Session, Subject::User(root.id), &root);
    live_session.expires_at = Some(now + chrono::Duration::hours(2));
    let mut personal = new_token(TokenKind::Personal, Subject::User(root.id), &root);
    personal.expires_at = Some(now - chrono::Duration::hours(30));
    for t in [
        &expired,
        &used,
        &fresh,
        &access,
        &old_session,
        &live_session,
        &personal,
    ] {
        store.create_token(t).await.unwrap();
    }
    assert_eq!(store.purge_spent_tokens(cutoff).await.unwrap(), 3);
    assert_not_found(store.get_token(expired.id).await);
    assert_not_found(store.get_token(used.id).await);
    assert_not_found(store.get_token(old_session.id).await);
    for kept in [&fresh, &access, &live_session, &personal] {
        store.get_token(kept.id).await.unwrap();
    }
}

/// An OAuth sign-in is claimed once, also when two callbacks race; expired
/// marks are dropped without reviving anything.
async fn an_oauth_sign_in_is_claimed_once(store: Arc<dyn Store>) {
    let expires = Utc::now() + chrono::Duration::minutes(10);
    let id = Uuid::now_v7();
    let (first, second) = tokio::join!(
        store.claim_oauth_sign_in(id, expires),
        store.claim_oauth_sign_in(id, expires)
    );
    let claims = [first.unwrap(), second.unwrap()];
    assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
    assert!(!store.claim_oauth_sign_in(id, expires).await.unwrap());
    let stale = Uuid::now_v7();
    let past = Utc::now() - chrono::Duration::minutes(1);
    assert!(store.claim_oauth_sign_in(stale, past).await.unwrap());
    assert!(
        store
            .claim_oauth_sign_in(Uuid::now_v7(), expires)
            .await
            .unwrap()
    );
    // The id claimed before is still claimed after the sweep.
    assert!(!store.claim_oauth_sign_in(id, expires).await.unwrap());
}

/// Two admins demote each other at once: one demotion goes through, the
/// other finds it would leave no admin.
async fn the_last_admin_stays_under_concurrent_demotions(store: Arc<dyn Store>) {
    let a = org(&*store, "a").await;
    let first = user(&*store, a.id, "first", OrgRole::Admin).await;
    let second = user(&*store, a.id, "second", OrgRole::Admin).await;
    let results = at_once([first.id, second.id].map(|id| {
        let store = store.clone();
        async move { store.set_org_role(a.id, id, OrgRole::Member).await }
    }))
    .await;
    assert_eq!(successes(&results), 1, "{results:?}");
    let admins = store
        .list_org_members(
            a.id,
            &OrgMemberFilter {
                roles: vec![OrgRole::Admin],
                ..Default::default()
            },
            ALL,
        )
        .await
        .unwrap();
    assert_eq!(admins.items.len(), 1);
}

async fn silent_runners_are_found_by_their_last_report(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    let now = Utc::now();
    let long_ago = now - chrono::Duration::minutes(5);
    let mut stale_ones = Vec::new();
    for (phase, at, stale) in [
        (RunnerPhase::Active, long_ago, true),
        (RunnerPhase::Degraded, long_ago, true),
        (RunnerPhase::Active, now, false),
        (RunnerPhase::Inactive, long_ago, false),
    ] {
        let r = runner(store, &root, "reporting", &[]).await;
        store
            .update_runner(
                r.id,
                retryable(move |r: &mut Runner| {
                    r.status.phase = phase;
                    r.status.updated_at = Some(at);
                }),
            )
            .await
            .unwrap();
        if stale {
            stale_ones.push(r.id);
        }
    }
    runner(store, &root, "never connected", &[]).await;

    let stale = store
        .stale_runners(now - chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(stale.len(), 2, "{stale:?}");
    assert!(stale_ones.iter().all(|id| stale.contains(id)), "{stale:?}");
}

async fn runners_are_counted_by_phase_provider_and_version(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    assert!(store.count_runners().await.unwrap().is_empty());
    for (phase, provider, version) in [
        (
            RunnerPhase::Active,
            Some(RunnerProvider::LinuxHost),
            "1.2.0",
        ),
        (
            RunnerPhase::Active,
            Some(RunnerProvider::LinuxHost),
            "1.2.0",
        ),
        (
            RunnerPhase::Active,
            Some(RunnerProvider::LinuxHost),
            "1.3.0",
        ),
        (
            RunnerPhase::Inactive,
            Some(RunnerProvider::LinuxHost),
            "1.2.0",
        ),
        (RunnerPhase::Active, None, "1.2.0"),
    ] {
        let mut r = new_runner(a.id, &root, "counted");
        r.provider = provider;
        store.create_runner(&r, &[]).await.unwrap();
        store
            .update_runner(
                r.id,
                retryable(move |r: &mut Runner| {
                    r.status.phase = phase;
                    r.status.version = version.into();
                }),
            )
            .await
            .unwrap();
    }
    runner(store, &root, "never connected", &[]).await;

    let mut counts: Vec<_> = store
        .count_runners()
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                format!("{:?}/{:?}/{}", c.phase, c.provider, c.version),
                c.count,
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("Active/None/1.2.0".to_string(), 1),
            ("Active/Some(LinuxHost)/1.2.0".to_string(), 2),
            ("Active/Some(LinuxHost)/1.3.0".to_string(), 1),
            ("Created/Some(LinuxHost)/".to_string(), 1),
            ("Inactive/Some(LinuxHost)/1.2.0".to_string(), 1),
        ]
    );
}

async fn deleting_a_runner_takes_what_belongs_to_it(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    let team = group(store, a.id, "team").await;
    let r = runner(store, &root, "r", &[&team]).await;
    let access = new_token(TokenKind::RunnerAccess, Subject::Runner(r.id), &root);
    store.create_token(&access).await.unwrap();
    let host_token = new_host_token(&r, &root, "gitlab.com");
    store.create_host_token(&host_token).await.unwrap();
    let class = new_class(&r, "small", true);
    store.create_environment_class(&class).await.unwrap();

    store.delete_runner(r.id).await.unwrap();
    assert_not_found(store.get_token(access.id).await);
    assert_not_found(store.get_host_token(host_token.id).await);
    assert_not_found(store.get_environment_class(class.id).await);
    assert!(store.list_runner_policies(r.id).await.unwrap().is_empty());
    // The group outlives the runner.
    assert_eq!(store.get_group(team.id).await.unwrap(), team);
}

async fn groups_filter_by_search_ids_and_system_within_the_org(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let b = org(store, "b").await;
    let ops = group(store, a.id, "Platform Ops").await;
    let dev = group(store, a.id, "developers").await;
    group(store, b.id, "ops elsewhere").await;

    let list = |filter: GroupFilter| {
        let store = &store;
        async move { store.list_groups(a.id, &filter, ALL).await.unwrap() }
    };
    let all = list(GroupFilter::default()).await;
    assert_eq!(
        names(&all, |g| &g.name),
        ["admins", "members", "Platform Ops", "developers"]
    );
    let search = list(GroupFilter {
        search: "OPS".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&search, |g| &g.name), ["Platform Ops"]);
    let by_id = list(GroupFilter {
        group_ids: vec![dev.id, ops.id],
        ..Default::default()
    })
    .await;
    assert_eq!(names(&by_id, |g| &g.name), ["Platform Ops", "developers"]);
    let system = list(GroupFilter {
        system: Some(true),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&system, |g| &g.name), ["admins", "members"]);
    let other = list(GroupFilter {
        system: Some(false),
        search: "e".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&other, |g| &g.name), ["developers"]);

    // Filtering happens before paging: pages hold only matches.
    let filter = GroupFilter {
        system: Some(false),
        ..Default::default()
    };
    let first = store
        .list_groups(
            a.id,
            &filter,
            PageRequest {
                after: None,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&first, |g| &g.name), ["Platform Ops"]);
    let second = store
        .list_groups(
            a.id,
            &filter,
            PageRequest {
                after: first.next_after,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&second, |g| &g.name), ["developers"]);
    assert_eq!(second.next_after, None);
}

async fn memberships_filter_by_member_name_or_email(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let team = group(store, a.id, "team").await;
    let alice = user(store, a.id, "alice", OrgRole::Member).await;
    let bob = user(store, a.id, "bob", OrgRole::Member).await;
    join(store, &team, &alice).await;
    join(store, &team, &bob).await;

    let search = |s: &str| MembershipFilter { search: s.into() };
    let all = store
        .list_memberships(team.id, &search(""), ALL)
        .await
        .unwrap();
    assert_eq!(names(&all, |m| &m.user.name), ["alice", "bob"]);
    let by_name = store
        .list_memberships(team.id, &search("ALI"), ALL)
        .await
        .unwrap();
    assert_eq!(names(&by_name, |m| &m.user.name), ["alice"]);
    let by_email = store
        .list_memberships(team.id, &search("bob@example"), ALL)
        .await
        .unwrap();
    assert_eq!(names(&by_email, |m| &m.user.name), ["bob"]);
}

async fn org_members_filter_by_role_email_search_and_groups(store: Arc<dyn Store>) {
    let store = &*store;
    let a = org(store, "a").await;
    let b = org(store, "b").await;
    let root = user(store, a.id, "root", OrgRole::Admin).await;
    let alice = user(store, a.id, "alice", OrgRole::Member).await;
    let bob = user(store, a.id, "bob", OrgRole::Member).await;
    user(store, b.id, "alice", OrgRole::Admin).await;
    let team = group(store, a.id, "team").await;
    join(store, &team, &alice).await;

    let list = |filter: OrgMemberFilter| {
        let store = &store;
        async move { store.list_org_members(a.id, &filter, ALL).await.unwrap() }
    };
    let all = list(OrgMemberFilter::default()).await;
    assert_eq!(names(&all, |m| &m.user.name), ["root", "alice", "bob"]);
    assert_eq!(all.items[0].role, OrgRole::Admin);
    assert_eq!(all.items[1].role, OrgRole::Member);

    let admins = list(OrgMemberFilter {
        roles: vec![OrgRole::Admin],
        ..Default::default()
    })
    .await;
    assert_eq!(names(&admins, |m| &m.user.name), ["root"]);
    let members = list(OrgMemberFilter {
        roles: vec![OrgRole::Member],
        ..Default::default()
    })
    .await;
    assert_eq!(names(&members, |m| &m.user.name), ["alice", "bob"]);
    let both = list(OrgMemberFilter {
        roles: vec![OrgRole::Admin, OrgRole::Member],
        ..Default::default()
    })
    .await;
    assert_eq!(both.items.len(), 3);

    let email = list(OrgMemberFilter {
        email: "BOB@example.com".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&email, |m| &m.user.name), ["bob"]);
    let search = list(OrgMemberFilter {
        search: "OO".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&search, |m| &m.user.name), ["root"]);
    let search = list(OrgMemberFilter {
        search: "b@EXAMPLE".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&search, |m| &m.user.name), ["bob"]);
    let ids = list(OrgMemberFilter {
        user_ids: vec![bob.id, root.id],
        ..Default::default()
    })
    .await;
    assert_eq!(names(&ids, |m| &m.user.name), ["root", "bob"]);
    let suspended = list(OrgMemberFilter {
        statuses: vec![UserStatus::Suspended],
        ..Default::default()
    })
    .await;
    assert!(suspended.items.is_empty());
    // A status named over and over is one condition (SQLite would refuse a
    // query with a parameter for each).
    let mut statuses = vec![UserStatus::Active; 50_000];
    statuses.push(UserStatus::Suspended);
    let repeated = list(OrgMemberFilter {
        statuses,
        ..Default::default()
    })
    .await;
    assert_eq!(repeated.items.len(), 3);

    let not_in_team = list(OrgMemberFilter {
        exclude_group_ids: vec![team.id],
        ..Default::default()
    })
    .await;
    assert_eq!(names(&not_in_team, |m| &m.user.name), ["root", "bob"]);
    let no_team = list(OrgMemberFilter {
        exclude_members_in_any_team: true,
        ..Default::default()
    })
    .await;
    assert_eq!(names(&no_team, |m| &m.user.name), ["root", "bob"]);
}

/// The audit trail lists by organization, actor, subject and time, oldest
/// or newest first, pages either way, and forgets what is past retention.
async fn audit_events_filter_page_and_expire(store: Arc<dyn Store>) {
    let a = org(store.as_ref(), "Audited").await;
    let b = org(store.as_ref(), "Elsewhere").await;
    let (user, other_user, runner, group) = (new_id(), new_id(), new_id(), new_id());
    let start = Utc::now() - chrono::Duration::days(10);
    let mut recorded = Vec::new();
    for (org_id, day, actor, kind, subject, outcome) in [
        (
            a.id,
            0,
            Some(Subject::User(user)),
            ResourceKind::Runner,
            runner,
            "ok",
        ),
        (
            a.id,
            1,
            Some(Subject::Runner(runner)),
            ResourceKind::Runner,
            runner,
            "ok",
        ),
        (
            a.id,
            2,
            Some(Subject::User(user)),
            ResourceKind::Group,
            group,
            "permission_denied",
        ),
        (
            b.id,
            3,
            Some(Subject::User(other_user)),
            ResourceKind::Group,
            new_id(),
            "ok",
        ),
        (
            a.id,
            9,
            None,
            ResourceKind::Runner,
            runner,
            "unauthenticated",
        ),
    ] {
        let event = AuditEvent {
            id: new_id(),
            org_id,
            at: start + chrono::Duration::days(day),
            actor,
            token_id: actor.map(|_| new_id()),
            rpc: "gitpod.v1.RunnerService/UpdateRunner".into(),
            kind: AuditKind::ResourceChange,
            subject_kind: kind,
            subject_id: Some(subject),
            outcome: outcome.into(),
            request_id: format!("request-{day}"),
            client_address: "192.0.2.7".into(),
        };
        store.record_audit_event(&event).await.unwrap();
        recorded.push(event);
    }
    let ids = |page: &Page<AuditEvent>| page.items.iter().map(|e| e.id).collect::<Vec<_>>();
    let of = |picks: &[usize]| picks.iter().map(|&i| recorded[i].id).collect::<Vec<_>>();
    let all = PageRequest {
        after: None,
        limit: 100,
    };
    let list = |org: Option<Uuid>, filter: AuditFilter, page: PageRequest| {
        let store = store.clone();
        async move { store.list_audit_events(org, &filter, page).await.unwrap() }
    };
    assert_eq!(
        ids(&list(Some(a.id), AuditFilter::default(), all).await),
        of(&[0, 1, 2, 4])
    );
    assert_eq!(
        ids(&list(None, AuditFilter::default(), all).await),
        of(&[0, 1, 2, 3, 4])
    );
    let by_actor = AuditFilter {
        actor_ids: vec![user],
        ..Default::default()
    };
    assert_eq!(ids(&list(Some(a.id), by_actor, all).await), of(&[0, 2]));
    let by_kind = AuditFilter {
        actor_kinds: vec![SubjectKind::Runner],
        ..Default::default()
    };
    assert_eq!(ids(&list(Some(a.id), by_kind, all).await), of(&[1]));
    let by_subject = AuditFilter {
        subject_ids: vec![group],
        subject_kinds: vec![ResourceKind::Group],
        ..Default::default()
    };
    assert_eq!(ids(&list(None, by_subject, all).await), of(&[2]));
    let in_time = AuditFilter {
        from: Some(start + chrono::Duration::days(1)),
        to: Some(start + chrono::Duration::days(3)),
        ..Default::default()
    };
    assert_eq!(ids(&list(Some(a.id), in_time, all).await), of(&[1, 2]));
    // Newest first, two at a time.
    let newest = AuditFilter {
        newest_first: true,
        ..Default::default()
    };
    let first = list(
        Some(a.id),
        newest.clone(),
        PageRequest {
            after: None,
            limit: 2,
        },
    )
    .await;
    assert_eq!(ids(&first), of(&[4, 2]));
    let second = list(
        Some(a.id),
        newest,
        PageRequest {
            after: first.next_after,
            limit: 2,
        },
    )
    .await;
    assert_eq!(ids(&second), of(&[1, 0]));
    assert_eq!(second.next_after, None);
    // One event round-trips whole.
    assert_eq!(
        store.get_audit_event(recorded[2].id).await.unwrap(),
        recorded[2]
    );
    assert_not_found(store.get_audit_event(new_id()).await);
    // Retention: what is older than the cutoff goes, on every organization.
    let pruned = store
        .prune_audit_events(start + chrono::Duration::days(2))
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    assert_eq!(
        ids(&list(None, AuditFilter::default(), all).await),
        of(&[2, 3, 4])
    );
}

async fn releases_keep_their_chunks_and_publish_all_or_nothing(store: Arc<dyn Store>) {
    let release = |channel, version: &str| Release {
        id: new_id(),
        channel,
        version: version.into(),
        size: 3,
        sha256: "ab".repeat(32),
        signature: vec![7; 64],
        published_at: Utc::now(),
    };
    let chunk_bytes = corral_contract::release::CHUNK_BYTES;
    let big = vec![vec![1u8; chunk_bytes], vec![2u8; chunk_bytes], vec![3u8; 5]];
    let stable = release(ReleaseChannel::Stable, "1.0.0");
    store
        .create_release(&stable, &mut big.clone().into_iter().map(Ok))
        .await
        .unwrap();
    for (seq, chunk) in big.iter().enumerate() {
        assert_eq!(
            store
                .release_chunk(stable.id, seq as u32)
                .await
                .unwrap()
                .as_ref(),
            Some(chunk)
        );
    }
    assert_eq!(store.release_chunk(stable.id, 3).await.unwrap(), None);
    assert_eq!(store.get_release(stable.id).await.unwrap(), stable);

    // The same version twice on one channel is refused; on another it is not.
    let again = release(ReleaseChannel::Stable, "1.0.0");
    assert!(matches!(
        store.create_release(&again, &mut std::iter::empty()).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let latest = release(ReleaseChannel::Latest, "1.0.0");
    store
        .create_release(&latest, &mut std::iter::once(Ok(vec![9])))
        .await
        .unwrap();

    // A failing artifact stores nothing, not even its first chunks.
    let broken = release(ReleaseChannel::Stable, "2.0.0");
    let mut failing = vec![Ok(vec![1]), Err(std::io::Error::other("changed"))].into_iter();
    assert!(matches!(
        store.create_release(&broken, &mut failing).await,
        Err(StoreError::Invalid { .. })
    ));
    assert_not_found(store.get_release(broken.id).await);
    assert_eq!(store.release_chunk(broken.id, 0).await.unwrap(), None);

    let versions = |releases: Vec<Release>| releases.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        versions(
            store
                .list_releases(Some(ReleaseChannel::Stable))
                .await
                .unwrap()
        ),
        vec![stable.id]
    );
    assert_eq!(
        versions(store.list_releases(None).await.unwrap()),
        vec![stable.id, latest.id]
    );

    // Withdrawing deletes the release and its artifact.
    store.delete_release(stable.id).await.unwrap();
    assert_not_found(store.get_release(stable.id).await);
    assert_eq!(store.release_chunk(stable.id, 0).await.unwrap(), None);
    assert!(matches!(
        store.delete_release(stable.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        versions(store.list_releases(None).await.unwrap()),
        vec![latest.id]
    );
}

async fn a_suspended_user_is_listed_as_suspended(store: Arc<dyn Store>) {
    let org = org(store.as_ref(), "acme").await;
    let bob = user(store.as_ref(), org.id, "bob", OrgRole::Member).await;
    let alice = user(store.as_ref(), org.id, "alice", OrgRole::Member).await;
    let updated = store
        .update_user(
            bob.id,
            change(|u: &mut User| u.status = UserStatus::Suspended),
        )
        .await
        .unwrap();
    assert_eq!(updated.status, UserStatus::Suspended);
    assert_eq!(store.get_user(bob.id).await.unwrap(), updated);
    assert_eq!(
        store.get_user(alice.id).await.unwrap().status,
        UserStatus::Active
    );
    let suspended = store
        .list_org_members(
            org.id,
            &OrgMemberFilter {
                statuses: vec![UserStatus::Suspended],
                ..Default::default()
            },
            PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let ids: Vec<Uuid> = suspended.items.iter().map(|m| m.user.id).collect();
    assert_eq!(ids, [bob.id]);
    assert!(matches!(
        store
            .update_user(
                new_id(),
                change(|u: &mut User| u.status = UserStatus::Suspended)
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}
