-- crusader-mail schema 3: the consent history (Roster.history). One row per change of a reader
-- (storage.rules.event), inserted in the transaction of the change and never updated; `seq` is
-- the order stored. Only forgetting a reader (forget, expire_pending) deletes their rows, in the
-- transaction that deletes the reader. No foreign key: a restored history may come before, or
-- without, its readers (restore_history stores events as given).
CREATE TABLE consent_events (
    seq      bigserial PRIMARY KEY,
    mailbox  text COLLATE "C" NOT NULL,  -- storage.rules.mailbox_key(email)
    at       timestamptz NOT NULL,
    email    text COLLATE "C" NOT NULL,  -- as the roster kept it
    action   text NOT NULL
             CHECK (action IN ('add', 'request', 'confirm', 'unsubscribe', 'bounce', 'complain',
                               'restore')),
    status   text NOT NULL
             CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
    via      text NOT NULL CHECK (via IN ('import', 'cli', 'email', 'web', 'sendgrid')),
    ref      text NOT NULL DEFAULT ''
);
CREATE INDEX consent_events_by_mailbox ON consent_events (mailbox, at, seq);
