-- Answers to tipsters, as staff pushed them (src/replies/mailboxes/postgres.rs):
-- the mailbox they were pushed to (an address derived from the tipster's reply
-- code, which names nothing else), the answer's id, the day it was pushed and
-- the OpenPGP message. No column links a mailbox to a record; nothing here is
-- finer than the day.
CREATE TABLE reply_answers (
    mailbox text NOT NULL CHECK (mailbox ~ '^[a-z2-7]{32}$'),
    id text NOT NULL CHECK (id ~ '^[a-z2-7]{26}$'),
    day text NOT NULL CHECK (day ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    ciphertext bytea NOT NULL,
    PRIMARY KEY (mailbox, id)
);
CREATE INDEX reply_answers_day ON reply_answers (day);

-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE reply_answers ALTER COLUMN ciphertext SET STORAGE EXTERNAL;
