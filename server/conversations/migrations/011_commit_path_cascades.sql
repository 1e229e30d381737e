-- The two tables every message commit appends to lose their foreign keys; deletes still cascade.
--
-- A foreign key checks each inserted row with its own `SELECT ... FOR KEY SHARE` on the parent.
-- For messages and user_changes that parent is a conversation or a user the same commit
-- statement has just updated (and so locked): the checks could never fail, and they cost
-- Postgres about 14 % of its CPU per message (docs/benchmarks.md). The commit statement
-- (server/messaging/commit.py) inserts messages only for conversations it advanced, and
-- user_changes (there and in record_user_changes) only for users whose change_seq it raised.
--
-- Deleting a conversation or a user still deletes its messages or changes, once per
-- statement, through the triggers below; what the foreign keys' ON DELETE CASCADE did.
ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_fkey;
ALTER TABLE user_changes DROP CONSTRAINT user_changes_user_id_fkey;

-- TG_ARGV: the child table, and its column holding the deleted parents' id.
CREATE FUNCTION replyhq_cascade_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I c USING gone g WHERE c.%I = g.id', TG_ARGV[0], TG_ARGV[1]);
    RETURN NULL;
END
$$;

CREATE TRIGGER conversations_cascade_messages AFTER DELETE ON conversations
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION replyhq_cascade_delete('messages', 'conversation_id');

CREATE TRIGGER end_users_cascade_user_changes AFTER DELETE ON end_users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION replyhq_cascade_delete('user_changes', 'user_id');
