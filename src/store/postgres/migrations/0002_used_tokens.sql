-- The form tokens used already, shared by every node (src/used_tokens.rs):
-- a token's random nonce and the day it was issued, nothing finer. A day's
-- rows are deleted once its last token has expired.
CREATE TABLE used_tokens (
    nonce bytea PRIMARY KEY CHECK (length(nonce) = 16),
    day text NOT NULL CHECK (day ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$')
);
CREATE INDEX used_tokens_day ON used_tokens (day);
