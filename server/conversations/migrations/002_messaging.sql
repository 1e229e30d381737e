-- SDK messaging: end users, conversations, messages, receipts and the per-user change log for sync.

CREATE TABLE end_users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id        uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    external_id   text,                              -- the app's own user id (identified users)
    anonymous_id  text,                              -- SDK-generated id of a visitor not yet identified
    name          text,
    email         text,
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb, -- metadata.device: platform, model, os_version, ...
    change_seq    bigint NOT NULL DEFAULT 0,          -- last per-user change number (sync cursor space)
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (external_id IS NOT NULL OR anonymous_id IS NOT NULL)
);
CREATE UNIQUE INDEX end_users_external_key ON end_users (app_id, external_id) WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX end_users_anonymous_key ON end_users (app_id, anonymous_id)
    WHERE anonymous_id IS NOT NULL AND external_id IS NULL;
CREATE INDEX end_users_app_seen_idx ON end_users (app_id, last_seen_at DESC);

CREATE TABLE conversations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id          uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'pending', 'snoozed', 'closed')),
    snoozed_until   timestamptz,
    assignee_id     uuid REFERENCES admins(id) ON DELETE SET NULL,
    tags            text[] NOT NULL DEFAULT '{}',
    subject         text,
    last_seq        integer NOT NULL DEFAULT 0,      -- seq of the newest message; next message gets last_seq + 1
    last_message_at timestamptz,
    last_message_preview text,
    last_message_sender text,
    user_unread     integer NOT NULL DEFAULT 0,      -- messages the user has not read
    admin_unread    integer NOT NULL DEFAULT 0,      -- user messages no agent has read
    first_admin_reply_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_user_idx ON conversations (user_id, updated_at DESC);
CREATE INDEX conversations_app_idx ON conversations (app_id, updated_at DESC);
CREATE INDEX conversations_app_status_idx ON conversations (app_id, status, updated_at DESC);

CREATE TABLE messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id          uuid NOT NULL,
    conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    client_id       text NOT NULL,                   -- sender-generated idempotency key
    sender_kind     text NOT NULL CHECK (sender_kind IN ('user', 'admin', 'bot', 'system')),
    sender_id       uuid,
    body            text NOT NULL,
    attachments     jsonb NOT NULL DEFAULT '[]'::jsonb,
    is_note         boolean NOT NULL DEFAULT false,  -- private agent note, never shown to the user
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, client_id)
);

-- Delivered/read receipts: per participant high-water marks.
CREATE TABLE receipts (
    conversation_id  uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    participant_kind text NOT NULL CHECK (participant_kind IN ('user', 'admin')),
    participant_id   uuid NOT NULL,
    delivered_seq    integer NOT NULL DEFAULT 0,
    read_seq         integer NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, participant_kind, participant_id)
);

-- What changed for a user, numbered per user under the end_users row lock: gapless and in
-- commit order, so a sync cursor never skips a change committed late.
CREATE TABLE user_changes (
    user_id         uuid NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    change_seq      bigint NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('conversation', 'message', 'receipt')),
    conversation_id uuid NOT NULL,
    message_seq     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, change_seq)
);
