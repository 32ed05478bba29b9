-- What a read of an input proved, kept while the input is unchanged, as
-- migrations/sqlite/0007: one row per reader and input; `stamp` is what the input looked like
-- when it was read, `proved` the reader's JSON. A reader replaces its whole set each time.
CREATE TABLE input_stamps (
    reader      TEXT NOT NULL,
    path        TEXT NOT NULL,
    stamp       TEXT NOT NULL,
    proved      JSON NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (reader, path)
);
