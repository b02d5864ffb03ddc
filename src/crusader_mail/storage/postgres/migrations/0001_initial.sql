-- crusader-mail schema 1: the roster, the replies waiting to go out, the inbox memory, the
-- archive and the delivery ledgers. Applied by `crusader-mail db upgrade` in one transaction.

-- The readers: one row per mailbox (storage.rules.mailbox_key: the whole address lowercased),
-- in mailbox order compared byte by byte (COLLATE "C"), as the files store keeps them.
CREATE TABLE readers (
    mailbox         text COLLATE "C" PRIMARY KEY,
    email           text COLLATE "C" NOT NULL,  -- normal form, spelt as first given
    name            text NOT NULL DEFAULT '',
    status          text NOT NULL
                    CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
    subscribed_at   timestamptz,
    subscribed_via  text CHECK (subscribed_via IN ('import', 'cli', 'email', 'web', 'sendgrid')),
    confirmed_at    timestamptz,
    confirmed_via   text CHECK (confirmed_via IN ('import', 'cli', 'email', 'web', 'sendgrid')),
    left_at         timestamptz,
    left_via        text CHECK (left_via IN ('import', 'cli', 'email', 'web', 'sendgrid')),
    ref             text NOT NULL DEFAULT '',
    updated_at      timestamptz,
    hint            bytea,  -- the keyed token hint of email (util.tokens.Signer.hint); NULL: not yet
    old_hint        bytea   -- the hint old-form tokens carry (Signer.old_hint); kept only for an
                            -- address that is not all lowercase (else the same as hint)
);
CREATE INDEX readers_by_status ON readers (status, mailbox);
CREATE INDEX readers_by_hint ON readers (hint);
CREATE INDEX readers_without_hint ON readers (mailbox) WHERE hint IS NULL;
CREATE INDEX readers_by_old_hint ON readers (old_hint) WHERE old_hint IS NOT NULL;
CREATE INDEX readers_without_old_hint ON readers (mailbox) WHERE old_hint IS NULL AND email <> mailbox;

-- Which secret_key each hint column was computed with (keyed check values, never the key).
CREATE TABLE store_meta (
    key    text PRIMARY KEY,
    value  bytea NOT NULL
);

-- Replies kept with a change (RosterChanges.queue_mail), sent after it.
CREATE TABLE mail_queue (
    seq            bigserial PRIMARY KEY,
    id             text NOT NULL UNIQUE,
    mailbox        text NOT NULL,  -- of the recipient: forget() drops their mail
    message        jsonb NOT NULL,
    queued_at      timestamptz NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text NOT NULL DEFAULT '',
    next_at        timestamptz NOT NULL,
    claimed_until  timestamptz
);
CREATE INDEX mail_queue_due ON mail_queue (next_at);
CREATE INDEX mail_queue_by_mailbox ON mail_queue (mailbox);

-- Handled messages, webhook events and reply times: keyed hashes only.
CREATE TABLE memory (
    kind  text NOT NULL CHECK (kind IN ('message', 'event', 'reply')),
    key   text NOT NULL,
    at    timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX memory_by_age ON memory (kind, at);

-- The archive: posts, issue records, the feeds' HTTP cache, and a revision counter that every
-- save moves on (a save from an older revision is refused).
CREATE TABLE archive_posts (
    id    text PRIMARY KEY,
    post  jsonb NOT NULL
);
CREATE TABLE archive_issues (
    issue_id  text PRIMARY KEY,
    record    jsonb NOT NULL
);
CREATE TABLE feed_cache (
    feed                text PRIMARY KEY,
    etag                text,
    last_modified       text,
    permanent_redirect  text
);
CREATE TABLE archive_revision (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    revision  bigint NOT NULL
);
INSERT INTO archive_revision (one, revision) VALUES (true, 0);

-- Delivery ledgers: one per issue (sandbox sends keep their own), one row per batch.
CREATE TABLE ledgers (
    issue_id    text NOT NULL,
    sandbox     boolean NOT NULL,
    version     smallint NOT NULL CHECK (version IN (1, 2)),  -- storage.files.ledger's versions
    salt        text NOT NULL,
    key_check   text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (issue_id, sandbox)
);
CREATE TABLE ledger_batches (
    issue_id    text NOT NULL,
    sandbox     boolean NOT NULL,
    batch       integer NOT NULL,
    state       text NOT NULL CHECK (state IN ('pending', 'accepted', 'failed', 'released')),
    readers     bytea NOT NULL,  -- 8-byte big-endian keyed hashes, one per reader
    message_id  text,
    error       text,
    at          timestamptz NOT NULL,
    PRIMARY KEY (issue_id, sandbox, batch),
    FOREIGN KEY (issue_id, sandbox) REFERENCES ledgers ON DELETE CASCADE
);
