//! Existing installations carry forward: a database at the schema of an
//! earlier release (its migrations only), holding records of every kind as
//! that release wrote them, is opened by the current code (all migrations)
//! and every record reads back equal. On both backends. Bytes are written
//! as arrays of numbers, as before `domain::stored_bytes`.

use std::sync::Arc;

use chrono::Utc;
use corral_testkit::PostgresDatabase;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use uuid::Uuid;

use super::conformance::{group, join, new_class, new_host_token, new_integration, new_token};
use super::sql::{Dialect, SqlStore};
use super::{Store, postgres, sqlite};
use crate::bootstrap;
use crate::domain::*;

/// The last migration of the schema before the runner status moved to a
/// table of its own (sqlite 0007, postgres 0008).
fn last_old_migration(dialect: Dialect) -> i64 {
    match dialect {
        Dialect::Sqlite => 6,
        Dialect::Postgres => 7,
    }
}

/// Applies the migrations of the old schema only.
async fn migrate_to_old_schema(pool: &AnyPool, dialect: Dialect) {
    let all = match dialect {
        Dialect::Sqlite => &sqlite::MIGRATOR,
        Dialect::Postgres => &postgres::MIGRATOR,
    };
    let last = last_old_migration(dialect);
    let old: Vec<_> = all.iter().filter(|m| m.version <= last).cloned().collect();
    assert!(
        all.iter().any(|m| m.version > last),
        "no newer migration to test"
    );
    Migrator::with_migrations(old).run(pool).await.unwrap();
}

/// Everything written, as the store must read it back.
struct Written {
    orgs: Vec<Organization>,
    users: Vec<User>,
    groups: Vec<Group>,
    memberships: Vec<Membership>,
    tokens: Vec<ApiToken>,
    runners: Vec<Runner>,
    policies: Vec<RunnerPolicy>,
    host_tokens: Vec<HostToken>,
    integrations: Vec<ScmIntegration>,
    classes: Vec<EnvironmentClass>,
    events: Vec<AuditEvent>,
    release: Release,
    chunks: Vec<Vec<u8>>,
    secret: String,
}

/// A runner row as the old code wrote it: the whole runner, status
/// included, in `data`, and the liveness columns on `runners`.
async fn insert_old_runner(store: &SqlStore, runner: &Runner) {
    let text = |s: String| format!("'{}'", s.replace('\'', "''"));
    let name = |v: String| text(v.trim_matches('"').to_string());
    let sql = format!(
        "INSERT INTO runners (id, org_id, creator_id, kind, provider, phase, last_seen, data) \
         VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        text(runner.id.to_string()),
        text(runner.org_id.to_string()),
        text(runner.creator.id().to_string()),
        name(to_json(&runner.kind)),
        runner.provider.map_or("NULL".into(), |p| name(to_json(&p))),
        name(to_json(&runner.status.phase)),
        runner.status.updated_at.map_or("NULL".into(), |at| {
            text(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        }),
        text(old_json(runner)),
    );
    store.execute_script(sql).await.unwrap();
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

/// The fields that hold bytes, which the old code stored as arrays of numbers.
const BYTE_FIELDS: &[&str] = &[
    "signature",
    "password_encrypted",
    "honeycomb_api_key_encrypted",
    "public_key",
    "config_schema",
    "token_encrypted",
    "refresh_token_encrypted",
    "encrypted_client_secret",
];

/// `value` as JSON the way the old code wrote it: bytes as arrays of numbers.
fn old_json<T: serde::Serialize>(value: &T) -> String {
    use base64::Engine;
    fn bytes_as_arrays(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, field) in fields.iter_mut() {
                    match field {
                        serde_json::Value::String(text) if BYTE_FIELDS.contains(&name.as_str()) => {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(&*text)
                                .unwrap();
                            *field = bytes.into();
                        }
                        other => bytes_as_arrays(other),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(bytes_as_arrays),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(value).unwrap();
    bytes_as_arrays(&mut json);
    json.to_string()
}

/// Stores `value` as the `data` of row `id` of `table` as the old code
/// wrote it (the rest of the row is written the same way still).
async fn rewrite_as_old<T: serde::Serialize>(store: &SqlStore, table: &str, id: Uuid, value: &T) {
    let data = old_json(value).replace('\'', "''");
    store
        .execute_script(format!(
            "UPDATE {table} SET data = '{data}' WHERE id = '{id}'"
        ))
        .await
        .unwrap();
}

/// Records of every kind, written through the old schema.
async fn write_old_records(store: &SqlStore) -> Written {
    let s: &dyn Store = store;
    let (acme, admin) = bootstrap::create_organization(s, "Acme \"Ü\" 'q'", "admin@acme.test")
        .await
        .unwrap();
    let dev = bootstrap::create_user(s, acme.id, "dev@acme.test", OrgRole::Member)
        .await
        .unwrap();
    let platform = group(s, acme.id, "platform").await;
    join(s, &platform, &dev.user).await;
    let now = Utc::now();
    let mut runners = Vec::new();
    for (name, reporting) in [("linux", true), ("fresh", false)] {
        let mut status = RunnerStatus {
            phase: RunnerPhase::Created,
            ..Default::default()
        };
        if reporting {
            status = RunnerStatus {
                phase: RunnerPhase::Active,
                message: "fine".into(),
                version: "1.2.3".into(),
                capabilities: vec![1, 2],
                additional_info: vec![("k".into(), "v".into())],
                public_key: Some(vec![9; 32]),
                updated_at: Some(now),
                gateway: Some(GatewayInfo {
                    gateway: Gateway {
                        name: "a".into(),
                        url: "https://a.test".into(),
                        region: "eu".into(),
                    },
                    latency_micros: 42,
                }),
                ..Default::default()
            };
        }
        let runner = Runner {
            id: new_id(),
            org_id: acme.id,
            name: name.into(),
            kind: RunnerKind::Local,
            provider: Some(RunnerProvider::LinuxHost),
            creator: Subject::User(admin.user.id),
            runner_manager_id: None,
            spec: RunnerSpec {
                desired_phase: RunnerPhase::Active,
                config: RunnerConfig {
                    region: "eu".into(),
                    honeycomb_api_key_encrypted: Some(vec![1, 2, 3]),
                    metrics: MetricsConfig {
                        enabled: true,
                        password_encrypted: Some(vec![8; 16]),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                variant: RunnerVariant::Standard,
            },
            status,
            config_schema: reporting.then(|| (0..=255u8).collect()),
            created_at: now,
            updated_at: now,
        };
        insert_old_runner(store, &runner).await;
        if reporting {
            let record = store.runner_record_text(runner.id).await;
            assert!(record.contains(r#""config_schema":[0,1,2,"#), "{record}");
        }
        runners.push(runner);
    }
    let policy = RunnerPolicy {
        runner_id: runners[0].id,
        group_id: platform.id,
        role: RunnerRole::Admin,
    };
    s.create_runner_policy(&policy).await.unwrap();
    let access = new_token(
        TokenKind::RunnerAccess,
        Subject::Runner(runners[0].id),
        &admin.user,
    );
    s.create_token(&access).await.unwrap();
    let mut host_token = new_host_token(&runners[0], &dev.user, "github.com");
    host_token.refresh_token_encrypted = Some(vec![4; 40]);
    s.create_host_token(&host_token).await.unwrap();
    rewrite_as_old(store, "host_tokens", host_token.id, &host_token).await;
    let mut integration = new_integration(&runners[0], "git.acme.test");
    integration.oauth = Some(OAuthApp {
        client_id: "client".into(),
        encrypted_client_secret: vec![5; 48],
        issuer_url: "https://git.acme.test".into(),
    });
    s.create_scm_integration(&integration).await.unwrap();
    rewrite_as_old(store, "scm_integrations", integration.id, &integration).await;
    let class = new_class(&runners[0], "small", true);
    s.create_environment_class(&class).await.unwrap();
    let secret = s
        .server_secret("logs-signing-key", "c2VjcmV0")
        .await
        .unwrap();
    let event = AuditEvent {
        id: new_id(),
        org_id: acme.id,
        at: now,
        actor: Some(Subject::User(admin.user.id)),
        token_id: None,
        rpc: "gitpod.v1.RunnerService/CreateRunner".into(),
        kind: AuditKind::ResourceChange,
        subject_kind: ResourceKind::Runner,
        subject_id: Some(runners[0].id),
        outcome: "ok".into(),
        request_id: "r-1".into(),
        client_address: "192.0.2.1".into(),
    };
    s.record_audit_event(&event).await.unwrap();
    let release = Release {
        id: new_id(),
        channel: ReleaseChannel::Stable,
        version: "1.2.3".into(),
        size: 4,
        sha256: "00".repeat(32),
        signature: vec![1; 64],
        published_at: now,
    };
    let chunks = vec![vec![0, 1], vec![254, 255]];
    let mut source = chunks.clone().into_iter().map(Ok);
    s.create_release(&release, &mut source).await.unwrap();
    rewrite_as_old(store, "releases", release.id, &release).await;

    let admins = s.system_group(acme.id, SystemGroup::Admins).await.unwrap();
    let members = s.system_group(acme.id, SystemGroup::Members).await.unwrap();
    let mut memberships = Vec::new();
    for g in [&admins, &members, &platform] {
        let page = s
            .list_memberships(g.id, &MembershipFilter::default(), super::conformance::ALL)
            .await
            .unwrap();
        memberships.extend(page.items.into_iter().map(|m| m.membership));
    }
    let mut tokens = vec![access];
    for user in [&admin.user, &dev.user] {
        let page = s
            .list_user_tokens(&[user.id], super::conformance::ALL)
            .await
            .unwrap();
        tokens.extend(page.items);
    }
    Written {
        orgs: vec![acme],
        users: vec![admin.user, dev.user],
        groups: vec![admins, members, platform],
        memberships,
        tokens,
        runners,
        policies: vec![policy],
        host_tokens: vec![host_token],
        integrations: vec![integration],
        classes: vec![class],
        events: vec![event],
        release,
        chunks,
        secret,
    }
}

/// Every record written reads back equal, one by one and in the lists.
async fn assert_all_read_back(store: &dyn Store, w: &Written) {
    for org in &w.orgs {
        assert_eq!(&store.get_organization(org.id).await.unwrap(), org);
    }
    for user in &w.users {
        assert_eq!(&store.get_user(user.id).await.unwrap(), user);
    }
    for group in &w.groups {
        assert_eq!(&store.get_group(group.id).await.unwrap(), group);
    }
    for membership in &w.memberships {
        assert_eq!(
            &store.get_membership(membership.id).await.unwrap(),
            membership
        );
    }
    for token in &w.tokens {
        assert_eq!(&store.get_token(token.id).await.unwrap(), token);
    }
    for runner in &w.runners {
        assert_eq!(&store.get_runner(runner.id).await.unwrap(), runner);
    }
    let listed = store
        .list_runners(
            w.orgs[0].id,
            &RunnerFilter::default(),
            super::conformance::ALL,
        )
        .await
        .unwrap();
    assert_eq!(listed.items, w.runners);
    for policy in &w.policies {
        let policies = store.list_runner_policies(policy.runner_id).await.unwrap();
        assert_eq!(policies, [*policy]);
    }
    for token in &w.host_tokens {
        assert_eq!(&store.get_host_token(token.id).await.unwrap(), token);
    }
    for integration in &w.integrations {
        assert_eq!(
            &store.get_scm_integration(integration.id).await.unwrap(),
            integration
        );
    }
    for class in &w.classes {
        assert_eq!(&store.get_environment_class(class.id).await.unwrap(), class);
    }
    for event in &w.events {
        assert_eq!(&store.get_audit_event(event.id).await.unwrap(), event);
    }
    assert_eq!(store.get_release(w.release.id).await.unwrap(), w.release);
    for (seq, chunk) in w.chunks.iter().enumerate() {
        let stored = store.release_chunk(w.release.id, seq as u32).await.unwrap();
        assert_eq!(stored.as_ref(), Some(chunk));
    }
    assert_eq!(
        store
            .server_secret("logs-signing-key", "other")
            .await
            .unwrap(),
        w.secret
    );
    // The liveness sweep finds the reporting runner by its last report.
    let stale = store
        .stale_runners(Utc::now() + chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(stale, [w.runners[0].id]);
}

/// Writes at the old schema through `url`, then opens the store with
/// `open` (all migrations) and reads everything back.
async fn upgrade<F, Fut>(url: &str, dialect: Dialect, open: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<SqlStore>>,
{
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap();
    migrate_to_old_schema(&pool, dialect).await;
    pool.close().await;
    let connections =
        super::connections::Connections::held(1, super::connections::connecting_to(url));
    let old = SqlStore::new(connections.clone(), connections, None, dialect);
    let written = write_old_records(&old).await;
    old.close().await;
    let store = Arc::new(open().await.unwrap());
    assert_all_read_back(&*store, &written).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_records_of_the_previous_schema_survive_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral.db");
    let url = format!("sqlite:{}?mode=rwc", path.display());
    upgrade(&url, Dialect::Sqlite, || SqlStore::open_sqlite(&path)).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
async fn postgres_records_of_the_previous_schema_survive_the_upgrade() {
    let database = PostgresDatabase::create().await;
    let url = database.url().to_string();
    upgrade(&url, Dialect::Postgres, || SqlStore::open_postgres(&url)).await;
}
