-- Admin inbox: indexes for the dashboard's counts over agent replies and the inbox filters.

-- replies today / per day: agent messages of an app by time
CREATE INDEX messages_app_admin_created_idx ON messages (app_id, created_at)
    WHERE sender_kind = 'admin' AND NOT is_note;
-- "assigned to me" lists
CREATE INDEX conversations_app_assignee_idx ON conversations (app_id, assignee_id, updated_at DESC);
