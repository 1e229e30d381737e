-- TRUNCATE fires no DELETE trigger: without it, truncating conversations or end_users (which the
-- dropped foreign keys refused without CASCADE) would leave messages and user_changes behind.
CREATE FUNCTION replyhq_cascade_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('TRUNCATE %I', TG_ARGV[0]);  -- TG_ARGV[0]: the child table
    RETURN NULL;
END
$$;

CREATE TRIGGER conversations_truncate_messages AFTER TRUNCATE ON conversations
    FOR EACH STATEMENT EXECUTE FUNCTION replyhq_cascade_truncate('messages');

CREATE TRIGGER end_users_truncate_user_changes AFTER TRUNCATE ON end_users
    FOR EACH STATEMENT EXECUTE FUNCTION replyhq_cascade_truncate('user_changes');
