-- Records and their ciphertext. Nothing here is finer than the day: days are
-- text, YYYY-MM-DD, set by sealform (see src/store/postgres.rs).
CREATE TABLE records (
    receipt text PRIMARY KEY,
    day text NOT NULL CHECK (day ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    size bigint NOT NULL CHECK (size >= 0),
    state text NOT NULL CHECK (state IN ('new', 'exported', 'acked')),
    recipients text[] NOT NULL,
    form text,
    acked_day text CHECK (acked_day ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$')
);

-- The ciphertext in chunks of 1 MiB (the last one shorter), inserted before
-- their record row in the same transaction, hence the deferred check.
CREATE TABLE chunks (
    receipt text NOT NULL REFERENCES records (receipt) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    seq integer NOT NULL CHECK (seq >= 0),
    data bytea NOT NULL,
    PRIMARY KEY (receipt, seq)
);

-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE chunks ALTER COLUMN data SET STORAGE EXTERNAL;
