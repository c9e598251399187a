-- Every replica keeps the runners it read in memory (`store::recent`) and
-- must forget one as soon as anyone changes it: another replica, `corral
-- admin`, a runner's status report. A trigger on both tables a runner lives
-- in names the runner on the channel `corral_runners`; PostgreSQL delivers
-- it when the change commits, and not at all if it rolls back. Each store
-- listens there (`store::postgres`). SQLite has no twin: one file has one
-- server, which asks SQLite whether another process wrote it.
CREATE FUNCTION corral_runner_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed TEXT;
BEGIN
    -- PL/pgSQL plans a branch when it first runs it: each table's trigger
    -- only ever reads its own column.
    IF TG_TABLE_NAME = 'runners' THEN
        IF TG_OP = 'DELETE' THEN changed := OLD.id; ELSE changed := NEW.id; END IF;
    ELSE
        IF TG_OP = 'DELETE' THEN changed := OLD.runner_id; ELSE changed := NEW.runner_id; END IF;
    END IF;
    PERFORM pg_notify('corral_runners', changed);
    RETURN NULL;
END
$$;

CREATE TRIGGER runners_changed AFTER UPDATE OR DELETE ON runners
    FOR EACH ROW EXECUTE FUNCTION corral_runner_changed();
CREATE TRIGGER runner_status_changed AFTER INSERT OR UPDATE OR DELETE ON runner_status
    FOR EACH ROW EXECUTE FUNCTION corral_runner_changed();
