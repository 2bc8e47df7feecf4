-- game_sessions partitioned by UTC month, and what retention keeps of the months it drops
-- (docs/design.md, "Partitions and retention"). The table is rewritten once, in this migration's
-- one transaction: every row is copied into the partitioned table before the old one is dropped,
-- so a failure leaves the database as it was. It holds game_sessions exclusively meanwhile: run
-- it with the workers stopped (or they wait for it; the stream keeps their backlog).

-- The first instant of the UTC month that holds an instant (months of the session log are UTC
-- months whatever a board's time zone: a board period that straddles two is still exact, see
-- carried_scores).
CREATE FUNCTION ranker_month_of(at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

-- A partition's name: game_sessions_YYYY_MM (the UTC month of its sessions).
CREATE FUNCTION ranker_session_partition(month timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT 'game_sessions_' || to_char(ranker_month_of(month) AT TIME ZONE 'UTC', 'YYYY_MM')
$$;

-- Makes the partition of a month unless it exists; whether it made it. Serialised with every
-- other change of partitions by an advisory lock (two workers create the months ahead at the
-- same moment: the second finds the first's). Sessions of that month that landed in the
-- default partition (none had its own yet) move into it in the same transaction, so none is
-- ever in two places or none. The table is made alone and then attached: ATTACH takes only a
-- SHARE UPDATE EXCLUSIVE lock on game_sessions, so inserts into the other months go on (CREATE
-- TABLE ... PARTITION OF would lock the whole table out).
CREATE FUNCTION ranker_create_session_partition(instant timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := ranker_month_of(instant);
    -- A month later in UTC: an interval added to a timestamptz counts in the session's zone.
    hi timestamptz := ((lo AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    name text := ranker_session_partition(instant);
BEGIN
    PERFORM pg_advisory_xact_lock(7261737);
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE game_sessions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   name);
    EXECUTE format('WITH moved AS (DELETE FROM game_sessions_default'
                   ' WHERE created_at >= $1 AND created_at < $2 RETURNING *)'
                   ' INSERT INTO %I SELECT * FROM moved', name) USING lo, hi;
    EXECUTE format('ALTER TABLE game_sessions ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, lo, hi);
    RETURN true;
END
$$;

ALTER TABLE game_sessions RENAME TO game_sessions_unpartitioned;

-- The same columns in the same order. The primary key must hold the partition key
-- (created_at), and holds user_id too: a distributed PostgreSQL (Citus) shards by user_id and
-- needs it in every unique key. A redelivered stream entry carries the same event id, player
-- and creation time, so ON CONFLICT on this key still makes its second insert a no-op; event
-- ids are random UUIDs, so the wider key lets no real duplicate in.
CREATE TABLE game_sessions (
    event_id       uuid NOT NULL,
    session_id     text NOT NULL,
    user_id        bigint NOT NULL,
    score          bigint NOT NULL,
    game_mode      text NOT NULL,
    created_at     timestamptz NOT NULL,
    accepted_seq   bigint,
    voided_at      timestamptz,
    voided_by      text,
    void_reason    text,
    voided_by_ban  boolean NOT NULL DEFAULT false
) PARTITION BY RANGE (created_at);

-- Where a session lands whose month has no partition yet (a clock far off, or the worker down
-- across the months it makes ahead): an insert never fails for want of a partition. The
-- worker's next round gives such a month its own partition and moves its rows there.
CREATE TABLE game_sessions_default PARTITION OF game_sessions DEFAULT;

-- A partition for every month the old table holds sessions of, and for this month.
SELECT ranker_create_session_partition(month)
FROM (SELECT DISTINCT ranker_month_of(created_at) AS month FROM game_sessions_unpartitioned
      UNION SELECT ranker_month_of(now())) AS months
ORDER BY month;

INSERT INTO game_sessions (event_id, session_id, user_id, score, game_mode, created_at,
                           accepted_seq, voided_at, voided_by, void_reason, voided_by_ban)
SELECT event_id, session_id, user_id, score, game_mode, created_at, accepted_seq, voided_at,
       voided_by, void_reason, voided_by_ban
FROM game_sessions_unpartitioned;

DROP TABLE game_sessions_unpartitioned;

-- Keys and indexes built once, after the copy (one sorted build per partition), under their
-- old names. Lookups by event id alone (which of a rebuild's stream entries are stored, a
-- void) use the key's first column in each partition.
ALTER TABLE game_sessions ADD CONSTRAINT game_sessions_pkey
    PRIMARY KEY (event_id, created_at, user_id);
CREATE INDEX game_sessions_session_id_idx ON game_sessions (session_id);
CREATE INDEX game_sessions_user_id_idx ON game_sessions (user_id);
CREATE INDEX game_sessions_created_at_idx ON game_sessions (created_at);

-- What the months retention dropped leave of every board: per player and board period, the
-- dropped sessions folded by the board's op (s: summed, h: the higher, l: the lower, n: the
-- newest, by seq), exactly as board_scores folds them, so that a recomputation from the log
-- (moderation, verify --deep) is this row joined with the retained sessions. Sessions voided
-- by a ban are folded in too (an unban counts them again); sessions voided alone are not. A
-- banned player's rows are left out when read (a ban takes every score). Keyed by the player
-- first: moderation reads one player's rows of a board.
CREATE TABLE carried_scores (
    user_id  bigint NOT NULL,
    board    text NOT NULL,
    period   text NOT NULL,
    score    bigint NOT NULL,
    seq      bigint NOT NULL DEFAULT 0,
    op       "char" NOT NULL,
    PRIMARY KEY (user_id, board, period)
);

-- The months retention dropped (their sessions live on in carried_scores): the horizon
-- verify --deep names.
CREATE TABLE dropped_session_months (
    month       timestamptz PRIMARY KEY,
    dropped_at  timestamptz NOT NULL DEFAULT now()
);

-- Drops the partition of a month (detached first, so that nothing of it is left attached)
-- and records the month; whether it existed. The caller has carried the month's scores in the
-- same transaction.
CREATE FUNCTION ranker_drop_session_partition(instant timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    name text := ranker_session_partition(instant);
BEGIN
    PERFORM pg_advisory_xact_lock(7261737);
    IF to_regclass(quote_ident(name)) IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('ALTER TABLE game_sessions DETACH PARTITION %I', name);
    EXECUTE format('DROP TABLE %I', name);
    INSERT INTO dropped_session_months (month) VALUES (ranker_month_of(instant))
    ON CONFLICT (month) DO UPDATE SET dropped_at = now();
    RETURN true;
END
$$;

-- A board's scores from the session log, as before, joined with what the dropped months
-- carried (board_id: that board's carried rows; NULL: none, as for a backfill, which counts
-- the retained sessions). A carried row sorts before every retained session of its period
-- when they tie on acceptance order (it is older: its month was dropped before them).
DROP FUNCTION ranker_scores_from_log("char", text, text, text, bigint, bigint, bigint);
CREATE FUNCTION ranker_scores_from_log(
    board_op "char", board_reset text, board_zone text, board_mode text,
    after_seq bigint, before_seq bigint, only_user bigint DEFAULT NULL,
    board_id text DEFAULT NULL
) RETURNS TABLE (period text, user_id bigint, score bigint, seq bigint)
LANGUAGE sql STABLE AS $$
    SELECT logged.period, logged.user_id,
           CASE board_op WHEN 's' THEN sum(logged.score)::bigint
                         WHEN 'h' THEN max(logged.score)
                         WHEN 'l' THEN min(logged.score)
                         ELSE (array_agg(logged.score ORDER BY logged.seq DESC NULLS LAST,
                                         logged.created_at DESC, logged.event_id DESC))[1]
           END,
           coalesce(max(logged.seq), 0)
    FROM (
        SELECT ranker_period(board_reset, board_zone, s.created_at) AS period, s.user_id,
               s.score, s.accepted_seq AS seq, s.created_at, s.event_id
        FROM game_sessions AS s
        WHERE s.voided_at IS NULL
          AND (only_user IS NULL OR s.user_id = only_user)
          AND (board_mode IS NULL OR s.game_mode = board_mode)
          AND (after_seq IS NULL OR s.accepted_seq > after_seq)
          AND (before_seq IS NULL OR s.accepted_seq IS NULL OR s.accepted_seq < before_seq)
        UNION ALL
        SELECT c.period, c.user_id, c.score, nullif(c.seq, 0), '-infinity'::timestamptz,
               NULL::uuid
        FROM carried_scores AS c
        WHERE c.board = board_id
          AND (only_user IS NULL OR c.user_id = only_user)
          AND NOT EXISTS (SELECT 1 FROM bans AS b WHERE b.user_id = c.user_id)
    ) AS logged
    GROUP BY 1, 2
$$;
