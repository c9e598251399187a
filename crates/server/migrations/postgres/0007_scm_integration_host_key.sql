-- The PostgreSQL twin of migrations/sqlite/0006_scm_integration_host_key.sql.
-- An SCM integration's `host` column holds the host's lookup key
-- (`host[:port]`, lower case, without scheme, path or a leading `www.`; see
-- corral_contract::scm_host::lookup_key), so that UNIQUE (runner_id, host)
-- refuses a second integration for `http://git.example` next to
-- `git.example`. The integration as given stays in `data`.
-- Rows already sharing a key on one runner (possible before this) keep their
-- old value: they stay, and cannot block each other.
CREATE TEMPORARY TABLE scm_host_keys ON COMMIT DROP AS
    SELECT id, runner_id,
           CASE WHEN lower(host) LIKE 'http://%' THEN substr(lower(host), 8)
                WHEN lower(host) LIKE 'https://%' THEN substr(lower(host), 9)
                ELSE lower(host) END AS k
    FROM scm_integrations;
UPDATE scm_host_keys SET k = substr(k, 1, strpos(k, '/') - 1) WHERE strpos(k, '/') > 0;
UPDATE scm_host_keys SET k = substr(k, 5) WHERE k LIKE 'www.%';
UPDATE scm_integrations
SET host = (SELECT k FROM scm_host_keys WHERE scm_host_keys.id = scm_integrations.id)
WHERE (SELECT COUNT(*) FROM scm_host_keys a, scm_host_keys b
       WHERE a.id = scm_integrations.id AND b.runner_id = a.runner_id AND b.k = a.k) = 1;
