-- What a read of an input proved, kept while the input is unchanged (issue 15): one row per
-- reader (`activities`, `early_warning`) and input (a file's path, or a derived input's name).
-- `stamp` is what the input looked like when it was read (a file's device, inode, size,
-- modification and change times: `sources::file::file_stamp`); `proved` is the reader's JSON
-- (an activities file's latest termination time and launches; early warning's inputs and
-- summary). A reader replaces its whole set each time it reads.
CREATE TABLE input_stamps (
    reader      TEXT NOT NULL,
    path        TEXT NOT NULL,
    stamp       TEXT NOT NULL,
    proved      TEXT NOT NULL,
    recorded_at TEXT NOT NULL,   -- RFC 3339 UTC
    PRIMARY KEY (reader, path)
);
