-- crusader-mail schema 4: what readers chose on the preferences page (Roster.preferences). One
-- row per reader who chose something other than the default (most readers have none), deleted
-- with the reader (forget, expire_pending). The consent history takes the new actions.
CREATE TABLE preferences (
    mailbox      text COLLATE "C" PRIMARY KEY REFERENCES readers (mailbox) ON DELETE CASCADE,
    frequency    text CHECK (frequency IN ('every_post', 'weekly')),  -- NULL: the editor's cadence
    topics       text[] NOT NULL DEFAULT '{}',  -- names of newsletter.topics; empty: everything
    paused_until timestamptz                     -- NULL: not paused; over once passed
);
ALTER TABLE consent_events DROP CONSTRAINT consent_events_action_check;
ALTER TABLE consent_events ADD CONSTRAINT consent_events_action_check
    CHECK (action IN ('add', 'request', 'confirm', 'unsubscribe', 'bounce', 'complain',
                      'restore', 'preferences', 'pause', 'resume'));
