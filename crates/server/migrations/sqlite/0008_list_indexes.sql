-- An index for every list: each serves a list's filter and its ORDER BY id
-- (keyset paging), so a page costs the same however many rows there are,
-- without a scan or a sort (store::conformance checks the plans). The
-- runner_id ones also serve deleting a runner (ON DELETE CASCADE).
CREATE INDEX users_by_org ON users(org_id, id);
CREATE INDEX groups_by_org ON groups(org_id, id);
CREATE INDEX memberships_by_group ON memberships(group_id, id);
DROP INDEX api_tokens_by_subject;
CREATE INDEX api_tokens_by_subject ON api_tokens(subject_id, kind, id);
CREATE INDEX runners_by_org_kind ON runners(org_id, kind, id);
CREATE INDEX runners_by_org_provider ON runners(org_id, provider, id);
CREATE INDEX runners_by_org_creator ON runners(org_id, creator_id, id);
CREATE INDEX host_tokens_by_org ON host_tokens(org_id, id);
CREATE INDEX host_tokens_by_user ON host_tokens(org_id, user_id, id);
CREATE INDEX host_tokens_by_runner ON host_tokens(runner_id, id);
CREATE INDEX scm_integrations_by_org ON scm_integrations(org_id, id);
CREATE INDEX scm_integrations_by_runner ON scm_integrations(runner_id, id);
CREATE INDEX scm_integrations_by_host ON scm_integrations(org_id, host, id);
CREATE INDEX environment_classes_by_org ON environment_classes(org_id, id);
CREATE INDEX environment_classes_by_runner ON environment_classes(runner_id, id);
