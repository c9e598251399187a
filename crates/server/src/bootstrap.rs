//! Creating organizations and users: the first start of `corral serve` and the
//! `corral admin` commands share this.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use uuid::Uuid;

use crate::crypto;
use crate::domain::*;
use crate::store::{Store, StoreResult};

/// A new user and the API token issued for them (shown once).
pub struct NewUser {
    pub user: User,
    pub token: String,
}

/// On an empty store: creates the first organization and its admin, and writes
/// the admin's API token to `<data-dir>/admin-token` (0600). Does nothing when
/// an organization exists.
pub async fn bootstrap_if_empty(
    store: &dyn Store,
    data_dir: &Path,
) -> anyhow::Result<Option<NewUser>> {
    if store.first_organization().await?.is_some() {
        return Ok(None);
    }
    let (_, admin) = create_organization(store, "Default Organization", "admin@localhost").await?;
    let path = data_dir.join("admin-token");
    crypto::write_private_file(&path, format!("{}\n", admin.token).as_bytes())?;
    tracing::info!(path = %path.display(), "created the first organization and its admin; the admin API token is in this file");
    Ok(Some(admin))
}

/// Creates an organization (with its system groups) and its first admin.
pub async fn create_organization(
    store: &dyn Store,
    name: &str,
    admin_email: &str,
) -> anyhow::Result<(Organization, NewUser)> {
    let now = Utc::now();
    let org = Organization {
        id: new_id(),
        name: name.to_string(),
        created_at: now,
        updated_at: now,
    };
    store
        .create_organization(&org)
        .await
        .context("creating the organization")?;
    let admin = create_user(store, org.id, admin_email, OrgRole::Admin).await?;
    Ok((org, admin))
}

/// Adds a user to an organization and issues them an API token.
pub async fn create_user(
    store: &dyn Store,
    org_id: Uuid,
    email: &str,
    role: OrgRole,
) -> anyhow::Result<NewUser> {
    let email = email.trim();
    anyhow::ensure!(email.contains('@'), "{email:?} is not an email address");
    let now = Utc::now();
    let user = User {
        id: new_id(),
        org_id,
        name: email.split('@').next().unwrap_or(email).to_string(),
        email: email.to_string(),
        status: UserStatus::Active,
        created_at: now,
    };
    store
        .create_user(&user, role)
        .await
        .context("creating the user")?;
    let token = issue_personal_token(
        store,
        &user,
        Subject::User(user.id),
        "issued by corral admin",
        None,
    )
    .await?;
    Ok(NewUser { user, token })
}

/// Issues a personal API token for `user`; returns the token (kept only as a hash).
pub async fn issue_personal_token(
    store: &dyn Store,
    user: &User,
    creator: Subject,
    description: &str,
    expires_at: Option<Timestamp>,
) -> anyhow::Result<String> {
    let spec = PersonalTokenSpec {
        description,
        read_only: false,
        expires_at,
    };
    let (_, token) = create_personal_token(store, user, creator, &spec).await?;
    Ok(token)
}

/// What a new personal access token says about itself.
#[derive(Debug, Clone, Copy)]
pub struct PersonalTokenSpec<'a> {
    pub description: &'a str,
    pub read_only: bool,
    pub expires_at: Option<Timestamp>,
}

/// Stores a new personal access token for `user`; returns its record and the
/// token itself, which exists nowhere else (only its hash is stored).
pub async fn create_personal_token(
    store: &dyn Store,
    user: &User,
    creator: Subject,
    spec: &PersonalTokenSpec<'_>,
) -> StoreResult<(ApiToken, String)> {
    let token = crypto::new_token(TokenKind::Personal);
    let record = ApiToken {
        id: new_id(),
        kind: TokenKind::Personal,
        hash: crypto::token_hash(&token),
        org_id: user.org_id,
        subject: Subject::User(user.id),
        creator,
        description: spec.description.to_string(),
        read_only: spec.read_only,
        created_at: Utc::now(),
        expires_at: spec.expires_at,
        last_used: None,
        used_at: None,
    };
    store.create_token(&record).await?;
    Ok((record, token))
}
