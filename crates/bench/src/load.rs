//! Bulk loading: runners (and, for the fleet, their access tokens) written
//! through the public store API (`SqlStore`, the same calls the services
//! make) in this process, against the database of the running server. One
//! runner is created through the API first and serves as the template, so
//! that every loaded runner has the spec a real `CreateRunner` gives it.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use corral_server::crypto;
use corral_server::domain::{
    ApiToken, OrgRole, Runner, RunnerPolicy, RunnerProvider, RunnerRole, Subject, SystemGroup,
    TokenKind, new_id,
};
use corral_server::store::Store;
use corral_server::store::sql::SqlStore;
use serde_json::json;
use uuid::Uuid;

use crate::http::{Call, Http1};
use crate::server::{Server, StoreKind};

/// Providers in the order loaded runners cycle through them; the filters of
/// the size benchmark pick one of each (see [`Dataset`]).
const PROVIDERS: [RunnerProvider; 6] = [
    RunnerProvider::LinuxHost,
    RunnerProvider::AwsEc2,
    RunnerProvider::DesktopMac,
    RunnerProvider::Gcp,
    RunnerProvider::DevAgent,
    RunnerProvider::Managed,
];

/// Users the loaded runners are spread over as creators (the admin is one).
const CREATORS: usize = 10;

/// What was loaded: enough to aim requests at it.
pub struct Dataset {
    pub runner_ids: Vec<Uuid>,
    /// Creators of the runners, in the order runners cycle through them.
    pub creators: Vec<Uuid>,
}

impl Dataset {
    /// Runners created by `creators[1]`: a tenth of all.
    pub fn filtered_creator(&self) -> Uuid {
        self.creators[1]
    }
}

/// Loads `count` runners (at least one) into the server's store: half remote
/// (AWS EC2, GCP, managed), half local (Linux host, desktop Mac, dev agent);
/// each provider a sixth; creators cycle over ten users.
pub async fn runners(server: &Server, count: usize) -> anyhow::Result<Dataset> {
    let token: Arc<str> = server.admin_token.as_str().into();
    let mut client = Http1::connect(server.port).await?;
    let created = client
        .call_json(&Call::connect(
            "/gitpod.v1.RunnerService/CreateRunner",
            &token,
            json!({"name": "bench-template", "provider": "RUNNER_PROVIDER_LINUX_HOST"}),
        ))
        .await?;
    let template_id: Uuid = created["runner"]["runnerId"]
        .as_str()
        .context("CreateRunner answered no runner id")?
        .parse()?;

    let store = Arc::new(server.open_store().await?);
    let template = store.get_runner(template_id).await?;
    let org_id = template.org_id;
    let mut creators = vec![template.creator.id()];
    for i in 1..CREATORS {
        let user = corral_server::bootstrap::create_user(
            store.as_ref(),
            org_id,
            &format!("creator{i}@bench.invalid"),
            OrgRole::Member,
        )
        .await?;
        creators.push(user.user.id);
    }
    let members = store.system_group(org_id, SystemGroup::Members).await?.id;

    let started = Instant::now();
    let workers = match server.kind {
        // One writer: SQLite has one write lock, more writers only wait for it.
        StoreKind::Sqlite => 1,
        StoreKind::Postgres => 8,
    };
    let rest = count.saturating_sub(1);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let store = store.clone();
        let template = template.clone();
        let creators = creators.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            // Worker w writes runners w+1, w+1+workers, …: index 0 is the template.
            for i in (worker..rest).step_by(workers) {
                let runner = loaded_runner(&template, i + 1, &creators);
                let policies = policies_for(&runner, members);
                store.create_runner(&runner, &policies).await?;
                ids.push(runner.id);
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut runner_ids = vec![template_id];
    for task in tasks {
        runner_ids.extend(task.await??);
    }
    store.close().await;
    if count > 1000 {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "  loaded {count} runners on {} in {secs:.0} s ({:.0}/s)",
            server.kind.name(),
            count as f64 / secs
        );
    }
    Ok(Dataset {
        runner_ids,
        creators,
    })
}

/// Runner `i` of a load: the template's spec, with its own id, name,
/// provider (and so kind) and creator.
fn loaded_runner(template: &Runner, i: usize, creators: &[Uuid]) -> Runner {
    let provider = PROVIDERS[i % PROVIDERS.len()];
    let now = Utc::now();
    Runner {
        id: new_id(),
        name: format!("bench-{i}"),
        kind: provider.kind(),
        provider: Some(provider),
        creator: Subject::User(creators[i % creators.len()]),
        created_at: now,
        updated_at: now,
        ..template.clone()
    }
}

/// What `CreateRunner` grants: members use remote runners.
fn policies_for(runner: &Runner, members: Uuid) -> Vec<RunnerPolicy> {
    match runner.kind {
        corral_server::domain::RunnerKind::Remote => vec![RunnerPolicy {
            runner_id: runner.id,
            group_id: members,
            role: RunnerRole::User,
        }],
        _ => Vec::new(),
    }
}

/// An access token for each runner, stored as the token exchange stores it
/// (`redeem_exchange_token`): what a runner holds after its first start.
pub async fn runner_tokens(store: &SqlStore, runner_ids: &[Uuid]) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(runner_ids.len());
    for &runner_id in runner_ids {
        let runner = store.get_runner(runner_id).await?;
        let token = crypto::new_token(TokenKind::RunnerAccess);
        store
            .create_token(&ApiToken {
                id: new_id(),
                kind: TokenKind::RunnerAccess,
                hash: crypto::token_hash(&token),
                org_id: runner.org_id,
                subject: Subject::Runner(runner_id),
                creator: runner.creator,
                description: "runner access token".into(),
                read_only: false,
                created_at: Utc::now(),
                expires_at: None,
                last_used: None,
                used_at: None,
            })
            .await?;
        tokens.push(token);
    }
    Ok(tokens)
}
