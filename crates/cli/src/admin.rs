//! `corral admin`: administration straight through the store (works while
//! the server runs, needs no API token).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use corral_server::domain::{
    AuditFilter, OrgMemberFilter, OrgRole, PageRequest, ReleaseChannel, Subject, User, UserStatus,
};
use corral_server::store::Store;
use corral_server::store::transfer;
use corral_server::{bootstrap, open_store, releases};
use uuid::Uuid;

use crate::StoreArgs;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Users of an organization.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Print the audit trail: who changed what, and how it ended (newest first).
    Audit {
        /// Only this organization's events; every organization's by default.
        #[arg(long)]
        org: Option<Uuid>,
        /// Only events of the last DURATION (e.g. 24h, 7d).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Runner releases: executables runners with auto-update install (docs/releases.md).
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Copy an installation into a new, empty database and verify the copy
    /// (row counts and a checksum per table). Stop every server first. The
    /// copy keeps tokens hashed and secrets encrypted: the new installation
    /// needs the same data key (<data-dir>/data-key or CORRAL_DATA_KEY).
    MigrateStore {
        /// The installation's database: sqlite:PATH, sqlite:///abs/path or postgres://….
        #[arg(long, env = "CORRAL_MIGRATE_FROM", hide_env_values = true)]
        from: String,
        /// The new database (created or migrated; must hold no data): sqlite:PATH or postgres://….
        #[arg(long, env = "CORRAL_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// List the users of an organization (the first one by default).
    List {
        /// Organization id; defaults to the first organization.
        #[arg(long)]
        org: Option<Uuid>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Suspend a user (by email or id): their tokens stop working (on a running
    /// server within its --caller-ttl).
    Disable {
        /// The user's email or id.
        user: String,
        /// Organization id (for an email); defaults to the first organization.
        #[arg(long)]
        org: Option<Uuid>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make a suspended user active again.
    Enable {
        /// The user's email or id.
        user: String,
        /// Organization id (for an email); defaults to the first organization.
        #[arg(long)]
        org: Option<Uuid>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Issue a new API token for a user (by email or id) and print it as the last
    /// line: the way back in when an admin's token is lost. Older tokens stay valid.
    ResetToken {
        /// The user's email or id.
        user: String,
        /// Organization id (for an email); defaults to the first organization.
        #[arg(long)]
        org: Option<Uuid>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add a user and print their new API token (last line of output).
    Add {
        #[arg(long)]
        email: String,
        /// Make the user an organization admin.
        #[arg(long)]
        admin: bool,
        /// Organization id; defaults to the first organization.
        #[arg(long)]
        org: Option<Uuid>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum OrgCommand {
    /// Add an organization with its admin and print the admin's API token (last line).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Channel {
    Stable,
    Latest,
}

impl From<Channel> for ReleaseChannel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Stable => ReleaseChannel::Stable,
            Channel::Latest => ReleaseChannel::Latest,
        }
    }
}

#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Publish a runner executable (an ELF file with exec bits) as VERSION on a
    /// channel: stored with its SHA-256 and signed with the release key.
    Publish {
        #[arg(long, value_enum)]
        channel: Channel,
        /// A semantic version, e.g. 1.4.0 or 1.5.0-rc.1.
        #[arg(long)]
        version: String,
        /// The executable (e.g. a `corral` binary built for the runners' hosts).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List published releases (every channel unless one is named).
    List {
        #[arg(long, value_enum)]
        channel: Option<Channel>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Withdraw a release: it is deleted and no longer offered to runners.
    Withdraw {
        #[arg(long, value_enum)]
        channel: Channel,
        #[arg(long)]
        version: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The organization named, or the first one.
async fn organization_or_first(store: &dyn Store, org: Option<Uuid>) -> anyhow::Result<Uuid> {
    Ok(match org {
        Some(id) => store.get_organization(id).await.context("no such organization")?.id,
        None => {
            store
                .first_organization()
                .await?
                .context("the store has no organization yet; start `corral serve` once or use `corral admin org add`")?
                .id
        }
    })
}

/// A user named by id, or by email in `org` (else the first organization).
async fn find_user(store: &dyn Store, user: &str, org: Option<Uuid>) -> anyhow::Result<User> {
    if let Ok(id) = Uuid::parse_str(user) {
        return store
            .get_user(id)
            .await
            .with_context(|| format!("no user {id}"));
    }
    let org_id = organization_or_first(store, org).await?;
    let found = store
        .list_org_members(
            org_id,
            &OrgMemberFilter {
                email: user.trim().to_string(),
                ..Default::default()
            },
            PageRequest {
                after: None,
                limit: 1,
            },
        )
        .await?;
    found
        .items
        .into_iter()
        .next()
        .map(|m| m.user)
        .with_context(|| format!("no user with email {user:?} in organization {org_id}"))
}

async fn set_user_status(
    user: &str,
    org: Option<Uuid>,
    store: &StoreArgs,
    status: UserStatus,
) -> anyhow::Result<()> {
    let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
    let user = find_user(store.as_ref(), user, org).await?;
    let updated = store
        .update_user(
            user.id,
            Box::new(move |u| {
                u.status = status;
                Ok(())
            }),
        )
        .await?;
    let state = match updated.status {
        UserStatus::Active => "active",
        UserStatus::Suspended => "suspended",
    };
    println!("user {} ({}) is {state}", updated.id, updated.email);
    Ok(())
}

pub async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::User {
            command: UserCommand::List { org, store },
        } => {
            let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let org_id = organization_or_first(store.as_ref(), org).await?;
            println!(
                "{:<36} {:<40} {:<24} {:<6} {:<9} CREATED",
                "ID", "EMAIL", "NAME", "ROLE", "STATUS"
            );
            let mut page = PageRequest {
                after: None,
                limit: 500,
            };
            loop {
                let members = store
                    .list_org_members(org_id, &OrgMemberFilter::default(), page)
                    .await?;
                for member in &members.items {
                    let user = &member.user;
                    println!(
                        "{:<36} {:<40} {:<24} {:<6} {:<9} {}",
                        user.id,
                        user.email,
                        user.name,
                        match member.role {
                            OrgRole::Admin => "admin",
                            OrgRole::Member => "member",
                        },
                        match user.status {
                            UserStatus::Active => "active",
                            UserStatus::Suspended => "suspended",
                        },
                        user.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                }
                match members.next_after {
                    Some(after) => page.after = Some(after),
                    None => break,
                }
            }
        }
        AdminCommand::User {
            command: UserCommand::Disable { user, org, store },
        } => set_user_status(&user, org, &store, UserStatus::Suspended).await?,
        AdminCommand::User {
            command: UserCommand::Enable { user, org, store },
        } => set_user_status(&user, org, &store, UserStatus::Active).await?,
        AdminCommand::User {
            command: UserCommand::ResetToken { user, org, store },
        } => {
            let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let user = find_user(store.as_ref(), &user, org).await?;
            let token = bootstrap::issue_personal_token(
                store.as_ref(),
                &user,
                Subject::User(user.id),
                "issued by corral admin user reset-token",
                None,
            )
            .await?;
            if user.status == UserStatus::Suspended {
                eprintln!(
                    "note: user {} is suspended; the token works once `corral admin user enable` makes them active",
                    user.id
                );
            }
            println!("new API token for user {} ({}):", user.id, user.email);
            println!("{token}");
        }
        AdminCommand::User {
            command:
                UserCommand::Add {
                    email,
                    admin,
                    org,
                    store,
                },
        } => {
            let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let org_id = match org {
                Some(id) => store.get_organization(id).await.context("no such organization")?.id,
                None => {
                    store
                        .first_organization()
                        .await?
                        .context("the store has no organization yet; start `corral serve` once or use `corral admin org add`")?
                        .id
                }
            };
            let role = if admin {
                OrgRole::Admin
            } else {
                OrgRole::Member
            };
            let created = bootstrap::create_user(store.as_ref(), org_id, &email, role).await?;
            println!(
                "user {} ({}) added to organization {org_id}",
                created.user.id, created.user.email
            );
            println!("{}", created.token);
        }
        AdminCommand::Org {
            command:
                OrgCommand::Add {
                    name,
                    admin_email,
                    store,
                },
        } => {
            let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let (org, admin) =
                bootstrap::create_organization(store.as_ref(), &name, &admin_email).await?;
            println!(
                "organization {} ({}) added with admin {} ({})",
                org.id, org.name, admin.user.id, admin.user.email
            );
            println!("{}", admin.token);
        }
        AdminCommand::Audit {
            org,
            since,
            limit,
            json,
            store,
        } => {
            let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let filter = AuditFilter {
                from: since
                    .map(|d| chrono::Duration::from_std(d).map(|d| chrono::Utc::now() - d))
                    .transpose()
                    .context("--since is too long")?,
                newest_first: true,
                ..Default::default()
            };
            let mut shown = 0;
            let mut page = PageRequest {
                after: None,
                limit: limit.clamp(1, 500),
            };
            if !json {
                println!(
                    "{:<27} {:<8} {:<36} {:<55} {:<36} {:<20} {:<36} CLIENT",
                    "TIME", "ACTOR", "ACTOR ID", "RPC", "SUBJECT", "OUTCOME", "REQUEST"
                );
            }
            'pages: loop {
                let events = store.list_audit_events(org, &filter, page).await?;
                for event in &events.items {
                    if shown == limit {
                        break 'pages;
                    }
                    shown += 1;
                    if json {
                        println!("{}", serde_json::to_string(event)?);
                        continue;
                    }
                    let (kind, id) = match event.actor {
                        Some(Subject::User(id)) => ("user", id.to_string()),
                        Some(Subject::Runner(id)) => ("runner", id.to_string()),
                        None => ("-", String::new()),
                    };
                    println!(
                        "{:<27} {:<8} {:<36} {:<55} {:<36} {:<20} {:<36} {}",
                        event
                            .at
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        kind,
                        id,
                        event.rpc,
                        event.subject_id.map(|s| s.to_string()).unwrap_or_default(),
                        event.outcome,
                        event.request_id,
                        event.client_address
                    );
                }
                match events.next_after {
                    Some(after) => page.after = Some(after),
                    None => break,
                }
            }
        }
        AdminCommand::Release { command } => release(command).await?,
        AdminCommand::MigrateStore { from, to } => {
            let report = transfer::migrate(&from, &to)
                .await
                .context("migrate-store failed; no rows were committed to the target")?;
            println!("{report}");
            println!(
                "API tokens are copied as hashes and secrets stay encrypted with the data key: \
                 start the new installation with the same data key (the data-key file of the \
                 data dir, or CORRAL_DATA_KEY)."
            );
        }
    }
    Ok(())
}

async fn release(command: ReleaseCommand) -> anyhow::Result<()> {
    match command {
        ReleaseCommand::Publish {
            channel,
            version,
            file,
            store,
        } => {
            let signer = release_signer(&store).await?;
            let db = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let release = releases::publish(db.as_ref(), &signer, channel.into(), &version, &file)
                .await
                .context("the release was not published")?;
            println!(
                "published {} on {} ({} bytes, sha256 {}) as release {}",
                release.version,
                release.channel.name(),
                release.size,
                release.sha256,
                release.id
            );
        }
        ReleaseCommand::List { channel, store } => {
            let db = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let releases = db.list_releases(channel.map(Into::into)).await?;
            println!(
                "{:<36} {:<7} {:<24} {:>12} {:<64} PUBLISHED",
                "ID", "CHANNEL", "VERSION", "BYTES", "SHA256"
            );
            for r in releases {
                println!(
                    "{:<36} {:<7} {:<24} {:>12} {:<64} {}",
                    r.id,
                    r.channel.name(),
                    r.version,
                    r.size,
                    r.sha256,
                    r.published_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
        }
        ReleaseCommand::Withdraw {
            channel,
            version,
            store,
        } => {
            let db = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let channel = ReleaseChannel::from(channel);
            let found = db
                .list_releases(Some(channel))
                .await?
                .into_iter()
                .find(|r| r.version == version)
                .with_context(|| {
                    format!("no release {version} is published on {}", channel.name())
                })?;
            let withdrawn = releases::withdraw(db.as_ref(), found.id).await?;
            println!(
                "withdrew {} from {} (release {})",
                withdrawn.version,
                withdrawn.channel.name(),
                withdrawn.id
            );
        }
    }
    Ok(())
}

/// The release key, as the servers of this installation use it: it needs the
/// installation's data key.
async fn release_signer(store: &StoreArgs) -> anyhow::Result<corral_server::crypto::ReleaseSigner> {
    let data_key = corral_server::crypto::DataKey::load(
        &store.data_dir,
        std::env::var("CORRAL_DATA_KEY").ok().as_deref(),
    )?;
    let db = open_store(&store.data_dir, store.database_url.as_deref()).await?;
    corral_server::crypto::ReleaseSigner::shared(db.as_ref(), &data_key).await
}
