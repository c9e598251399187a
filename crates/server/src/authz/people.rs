//! [`Access`] to organizations, their users and groups, personal access
//! tokens, and the trade of exchange tokens.

use chrono::Utc;
use connectrpc::ConnectError;
use uuid::Uuid;

use super::Target;
use super::access::{Access, missing};
use super::policy::{Action, Resource};
use crate::bootstrap::{PersonalTokenSpec, create_personal_token};
use crate::crypto;
use crate::domain::*;
use crate::errors::store_error;
use crate::store::{Mutation, StoreError};

/// A change of something that belongs to the organization as a whole.
fn org_change(
    org_id: Uuid,
    operation: ChangeOperation,
    kind: ResourceKind,
    id: Uuid,
) -> ChangeEvent {
    ChangeEvent {
        org_id,
        operation,
        kind,
        id,
        creator_id: None,
        runner_id: None,
        owner_id: None,
    }
}

impl Access {
    // Organizations and their members.

    /// Organization `id`: the caller's own (a runner's too); others do not exist.
    pub async fn organization(&self, id: Uuid) -> Result<Organization, ConnectError> {
        let what = format!("organization {id}");
        self.check(Resource::Organization, Action::Read, Target::Org(id), &what)?;
        self.store()
            .get_organization(id)
            .await
            .map_err(missing(&what))
    }

    pub async fn list_members(
        &self,
        org_id: Uuid,
        filter: &OrgMemberFilter,
        page: PageRequest,
    ) -> Result<Page<OrgMember>, ConnectError> {
        let what = format!("organization {org_id}");
        self.check(Resource::OrgMember, Action::Read, Target::Org(org_id), what)?;
        self.store()
            .list_org_members(org_id, filter, page)
            .await
            .map_err(store_error)
    }

    /// Changes a member's organization role. The store refuses to demote the
    /// last admin (`failed_precondition`).
    pub async fn set_role(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        role: OrgRole,
    ) -> Result<(), ConnectError> {
        let what = format!("organization {org_id}");
        self.check(
            Resource::OrgMember,
            Action::Update,
            Target::Org(org_id),
            what,
        )?;
        let user = self.user_of_org(org_id, user_id).await?;
        self.store()
            .set_org_role(org_id, user.id, role)
            .await
            .map_err(store_error)?;
        self.note_change(org_change(
            org_id,
            ChangeOperation::Update,
            ResourceKind::RoleAssignment,
            user.id,
        ));
        Ok(())
    }

    // Users.

    /// A user of the caller's organization; other users do not exist.
    pub async fn org_user(&self, id: Uuid) -> Result<User, ConnectError> {
        let user = self.user_of_org(self.org_id()?, id).await?;
        self.check(
            Resource::User,
            Action::Read,
            Target::Org(user.org_id),
            format!("user {id}"),
        )?;
        Ok(user)
    }

    async fn user_of_org(&self, org_id: Uuid, id: Uuid) -> Result<User, ConnectError> {
        match self.store().get_user(id).await {
            Ok(user) if user.org_id == org_id => Ok(user),
            Ok(_) | Err(StoreError::NotFound(_)) => {
                Err(ConnectError::not_found(format!("user {id} not found")))
            }
            Err(err) => Err(store_error(err)),
        }
    }

    // Personal access tokens.

    /// Issues a personal access token for `owner` (the caller when `None`);
    /// returns its record and the token, which exists nowhere else.
    pub async fn create_personal_token(
        &self,
        owner: Option<Uuid>,
        spec: &PersonalTokenSpec<'_>,
    ) -> Result<(ApiToken, String), ConnectError> {
        let me = self.user()?;
        let owner_id = owner.unwrap_or(me.user.id);
        let target = Target::Owned {
            org_id: me.org_id,
            owner: owner_id,
        };
        let what = format!("user {owner_id}");
        self.check(Resource::PersonalAccessToken, Action::Create, target, what)?;
        let owner = if owner_id == me.user.id {
            me.user.clone()
        } else {
            self.user_of_org(me.org_id, owner_id).await?
        };
        let created = create_personal_token(self.store(), &owner, Subject::User(me.user.id), spec)
            .await
            .map_err(store_error)?;
        self.note_change(ChangeEvent {
            owner_id: Some(owner.id),
            ..org_change(
                owner.org_id,
                ChangeOperation::Create,
                ResourceKind::PersonalAccessToken,
                created.0.id,
            )
        });
        Ok(created)
    }

    /// A personal access token the caller may see: their own, or, for an
    /// admin, one of their organization's users.
    pub async fn personal_token(&self, id: Uuid) -> Result<ApiToken, ConnectError> {
        self.note_subject(id);
        let what = format!("personal access token {id}");
        let token = self.store().get_token(id).await.map_err(missing(&what))?;
        let Subject::User(owner) = token.subject else {
            return Err(ConnectError::not_found(format!("{what} not found")));
        };
        if token.kind != TokenKind::Personal {
            return Err(ConnectError::not_found(format!("{what} not found")));
        }
        let target = Target::Owned {
            org_id: token.org_id,
            owner,
        };
        self.check(Resource::PersonalAccessToken, Action::Read, target, &what)?;
        Ok(token)
    }

    /// The personal access tokens of `requested` users (the caller's own when
    /// empty); users whose tokens the caller may not see are left out.
    pub async fn list_personal_tokens(
        &self,
        requested: &[Uuid],
        page: PageRequest,
    ) -> Result<Page<ApiToken>, ConnectError> {
        let me = self.user()?;
        let mut user_ids: Vec<Uuid> = Vec::new();
        let wanted = if requested.is_empty() {
            vec![me.user.id]
        } else {
            requested.to_vec()
        };
        for id in wanted {
            if user_ids.contains(&id) {
                continue;
            }
            let Ok(user) = self.user_of_org(me.org_id, id).await else {
                continue;
            };
            let target = Target::Owned {
                org_id: user.org_id,
                owner: user.id,
            };
            if self
                .check(Resource::PersonalAccessToken, Action::Read, target, "user")
                .is_ok()
            {
                user_ids.push(id);
            }
        }
        if user_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_after: None,
            });
        }
        self.store()
            .list_user_tokens(&user_ids, page)
            .await
            .map_err(store_error)
    }

    pub async fn delete_personal_token(&self, id: Uuid) -> Result<(), ConnectError> {
        let token = self.personal_token(id).await?;
        let Subject::User(owner) = token.subject else {
            unreachable!("personal_token returns user tokens only")
        };
        let target = Target::Owned {
            org_id: token.org_id,
            owner,
        };
        let what = format!("personal access token {id}");
        self.check(Resource::PersonalAccessToken, Action::Delete, target, &what)?;
        self.store()
            .delete_token(id)
            .await
            .map_err(missing(&what))?;
        self.note_change(ChangeEvent {
            owner_id: Some(owner),
            ..org_change(
                token.org_id,
                ChangeOperation::Delete,
                ResourceKind::PersonalAccessToken,
                id,
            )
        });
        Ok(())
    }

    // Groups.

    pub async fn create_group(&self, group: &Group) -> Result<(), ConnectError> {
        let what = format!("organization {}", group.org_id);
        self.check(
            Resource::Group,
            Action::Create,
            Target::Org(group.org_id),
            what,
        )?;
        self.store().create_group(group).await.map_err(name_taken)?;
        self.note_change(org_change(
            group.org_id,
            ChangeOperation::Create,
            ResourceKind::Group,
            group.id,
        ));
        Ok(())
    }

    /// Group `id` of the caller's organization; others do not exist.
    pub async fn group(&self, id: Uuid) -> Result<Group, ConnectError> {
        self.note_subject(id);
        let what = format!("group {id}");
        let group = self.store().get_group(id).await.map_err(missing(&what))?;
        self.check(
            Resource::Group,
            Action::Read,
            Target::Org(group.org_id),
            &what,
        )?;
        Ok(group)
    }

    pub async fn group_by_name(&self, name: &str) -> Result<Group, ConnectError> {
        let org_id = self.org_id()?;
        let what = format!("group {name:?}");
        let group = self
            .store()
            .get_group_by_name(org_id, name)
            .await
            .map_err(missing(&what))?;
        self.check(
            Resource::Group,
            Action::Read,
            Target::Org(group.org_id),
            &what,
        )?;
        Ok(group)
    }

    pub async fn list_groups(
        &self,
        filter: &GroupFilter,
        page: PageRequest,
    ) -> Result<Page<Group>, ConnectError> {
        let org_id = self.org_id()?;
        let what = format!("organization {org_id}");
        self.check(Resource::Group, Action::Read, Target::Org(org_id), what)?;
        self.store()
            .list_groups(org_id, filter, page)
            .await
            .map_err(store_error)
    }

    /// How many members each of `groups` (already read through this
    /// access) has, in their order: one query for a page of groups.
    pub async fn member_counts(&self, groups: &[Group]) -> Result<Vec<i64>, ConnectError> {
        for group in groups {
            self.check_members_readable(group)?;
        }
        let ids: Vec<Uuid> = groups.iter().map(|g| g.id).collect();
        let counts = self
            .store()
            .count_members(&ids)
            .await
            .map_err(store_error)?;
        Ok(ids
            .iter()
            .map(|id| counts.get(id).copied().unwrap_or(0))
            .collect())
    }

    /// Changes group `id`; `change` runs inside the store's transaction.
    pub async fn update_group(
        &self,
        id: Uuid,
        change: Mutation<Group>,
    ) -> Result<Group, ConnectError> {
        let group = self.group(id).await?;
        let what = format!("group {id}");
        self.check(
            Resource::Group,
            Action::Update,
            Target::Org(group.org_id),
            what,
        )?;
        let updated = self
            .store()
            .update_group(id, change)
            .await
            .map_err(name_taken)?;
        self.note_change(org_change(
            group.org_id,
            ChangeOperation::Update,
            ResourceKind::Group,
            id,
        ));
        Ok(updated)
    }

    /// Deletes group `id`, with its memberships and runner policies.
    pub async fn delete_group(&self, group: &Group) -> Result<(), ConnectError> {
        let what = format!("group {}", group.id);
        self.check(
            Resource::Group,
            Action::Delete,
            Target::Org(group.org_id),
            &what,
        )?;
        self.store()
            .delete_group(group.id)
            .await
            .map_err(missing(&what))?;
        self.note_change(org_change(
            group.org_id,
            ChangeOperation::Delete,
            ResourceKind::Group,
            group.id,
        ));
        Ok(())
    }

    // Memberships.

    pub async fn create_membership(
        &self,
        group: &Group,
        user_id: Uuid,
    ) -> Result<MemberView, ConnectError> {
        let what = format!("group {}", group.id);
        self.check(
            Resource::Membership,
            Action::Create,
            Target::Org(group.org_id),
            what,
        )?;
        let user = self.user_of_org(group.org_id, user_id).await?;
        let membership = Membership {
            id: new_id(),
            group_id: group.id,
            user_id: user.id,
            created_at: Utc::now(),
        };
        self.store()
            .create_membership(&membership)
            .await
            .map_err(store_error)?;
        self.note_change(org_change(
            group.org_id,
            ChangeOperation::Update,
            ResourceKind::GroupMembership,
            group.id,
        ));
        Ok(MemberView { membership, user })
    }

    /// Membership `id` with its group, when the group is the caller's organization's.
    pub async fn membership_by_id(&self, id: Uuid) -> Result<(Membership, Group), ConnectError> {
        let what = format!("membership {id}");
        let membership = self
            .store()
            .get_membership(id)
            .await
            .map_err(missing(&what))?;
        let group = self
            .group(membership.group_id)
            .await
            .map_err(|_| ConnectError::not_found(format!("{what} not found")))?;
        self.check(
            Resource::Membership,
            Action::Read,
            Target::Org(group.org_id),
            &what,
        )?;
        Ok((membership, group))
    }

    pub async fn delete_membership(
        &self,
        membership: &Membership,
        group: &Group,
    ) -> Result<(), ConnectError> {
        let what = format!("membership {}", membership.id);
        self.check(
            Resource::Membership,
            Action::Delete,
            Target::Org(group.org_id),
            &what,
        )?;
        self.store()
            .delete_membership(membership.id)
            .await
            .map_err(missing(&what))?;
        self.note_change(org_change(
            group.org_id,
            ChangeOperation::Update,
            ResourceKind::GroupMembership,
            group.id,
        ));
        Ok(())
    }

    /// `user_id`'s membership of `group`, with the member.
    pub async fn membership(
        &self,
        group: &Group,
        user_id: Uuid,
    ) -> Result<MemberView, ConnectError> {
        let not_member = || {
            ConnectError::not_found(format!(
                "user {user_id} is not a member of group {}",
                group.id
            ))
        };
        self.check_members_readable(group)?;
        let membership = self
            .store()
            .find_membership(group.id, user_id)
            .await
            .map_err(store_error)?
            .ok_or_else(not_member)?;
        let user = self
            .user_of_org(group.org_id, user_id)
            .await
            .map_err(|_| not_member())?;
        Ok(MemberView { membership, user })
    }

    /// Whether the caller may see who belongs to `group`.
    fn check_members_readable(&self, group: &Group) -> Result<(), ConnectError> {
        let what = format!("group {}", group.id);
        self.check(
            Resource::Membership,
            Action::Read,
            Target::Org(group.org_id),
            what,
        )
    }

    pub async fn list_memberships(
        &self,
        group: &Group,
        filter: &MembershipFilter,
        page: PageRequest,
    ) -> Result<Page<MemberView>, ConnectError> {
        self.check_members_readable(group)?;
        self.store()
            .list_memberships(group.id, filter, page)
            .await
            .map_err(store_error)
    }

    // Exchange tokens: the one call that comes without a token.

    /// Trades a runner's one-time exchange token for a new access token (the
    /// runner's previous access tokens are revoked). Returns the new token.
    pub async fn redeem_exchange_token(&self, presented: &str) -> Result<String, ConnectError> {
        self.check(
            Resource::ExchangeToken,
            Action::Use,
            Target::Unknown,
            "exchange token",
        )?;
        let rejected =
            || ConnectError::unauthenticated("exchange token is invalid, already used or expired");
        if crypto::token_kind(presented) != Some(TokenKind::Exchange) {
            return Err(rejected());
        }
        let exchange = self
            .store()
            .find_token_by_hash(&crypto::token_hash(presented))
            .await
            .map_err(store_error)?
            .filter(|t| t.kind == TokenKind::Exchange)
            .ok_or_else(rejected)?;
        let Subject::Runner(runner_id) = exchange.subject else {
            return Err(rejected());
        };
        self.note_anonymous_actor(exchange.org_id, exchange.subject);
        self.note_subject(runner_id);
        let now = Utc::now();
        let access_token = crypto::new_token(TokenKind::RunnerAccess);
        let access = ApiToken {
            id: new_id(),
            kind: TokenKind::RunnerAccess,
            hash: crypto::token_hash(&access_token),
            org_id: exchange.org_id,
            subject: Subject::Runner(runner_id),
            creator: exchange.creator,
            description: "runner access token".into(),
            read_only: false,
            created_at: now,
            expires_at: None,
            last_used: None,
            used_at: None,
        };
        self.store()
            .redeem_exchange_token(exchange.id, &access, now)
            .await
            .map_err(|err| match err {
                StoreError::Conflict(_) | StoreError::NotFound(_) => rejected(),
                other => store_error(other),
            })?;
        // The runner's previous access tokens were revoked.
        self.note_callers_changed();
        Ok(access_token)
    }
}

/// Name clashes get a message that names the group.
fn name_taken(err: StoreError) -> ConnectError {
    match err {
        StoreError::AlreadyExists(_) => ConnectError::already_exists(
            "a group with this name already exists in the organization",
        ),
        other => store_error(other),
    }
}
