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

CREATE FUNCTION replyhq_cascade_conversation_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM messages m USING gone g WHERE m.conversation_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER conversations_cascade_messages AFTER DELETE ON conversations
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION replyhq_cascade_conversation_messages();

CREATE FUNCTION replyhq_cascade_user_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM user_changes c USING gone g WHERE c.user_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER end_users_cascade_user_changes AFTER DELETE ON end_users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION replyhq_cascade_user_changes();
