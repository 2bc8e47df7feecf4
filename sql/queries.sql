-- Named queries of ranker. Each block opens with "-- name: <verb_noun>"; parameters are
-- psycopg's %(name)s placeholders, never formatted into the text.

-- name: create_migrations_table
-- The record of applied migrations.
CREATE TABLE IF NOT EXISTS ranker_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations
-- Serialises concurrent `ranker migrate` runs (released at the end of the transaction).
SELECT pg_advisory_xact_lock(7261736);

-- name: select_applied_migrations
SELECT version FROM ranker_migrations ORDER BY version;

-- name: insert_migration
INSERT INTO ranker_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: create_staged_sessions
-- A per-connection staging table: a batch is copied in, then persist_staged_sessions moves it.
-- boards lists where Redis counted the session, "<board>:<period>:<op>" comma-separated.
CREATE TEMP TABLE IF NOT EXISTS staged_sessions (
    event_id      uuid NOT NULL,
    session_id    text NOT NULL,
    user_id       bigint NOT NULL,
    score         bigint NOT NULL,
    game_mode     text NOT NULL,
    created_ms    bigint NOT NULL,
    accepted_seq  bigint NOT NULL,
    boards        text NOT NULL
) ON COMMIT DELETE ROWS;

-- name: copy_staged_sessions
-- Text format, as the stream holds the values (created_ms: unix milliseconds).
COPY staged_sessions (event_id, session_id, user_id, score, game_mode, created_ms, accepted_seq, boards)
FROM STDIN;

-- name: persist_staged_sessions
-- Inserts the staged sessions not seen before and counts ONLY those on the boards and periods
-- Redis counted them on, in one statement: the batch is first folded to one row per board,
-- period and player by the board's op (a sum, the best, or the newest by acceptance order),
-- then upserted, so a row is written once per batch whatever the number of its sessions. An
-- update that changes nothing (a best not beaten, an older last) is skipped. Rows are upserted
-- in key order so that two workers committing at once take row locks in the same order (no
-- deadlock). Sessions of a board purged after them (committed late by another worker) are not
-- counted. A player row is made only for a user whose global row was created by this
-- statement (xmax is 0 on a row version an INSERT made), so players already known cost no
-- lookup. Returns the number of sessions that were new.
WITH inserted AS (
    INSERT INTO game_sessions (event_id, session_id, user_id, score, game_mode, created_at, accepted_seq)
    SELECT event_id, session_id, user_id, score, game_mode, to_timestamp(created_ms / 1000.0),
           accepted_seq
    FROM staged_sessions
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, user_id, score, accepted_seq
), placed AS (
    SELECT split_part(token, ':', 1) AS board, split_part(token, ':', 2) AS period,
           split_part(token, ':', 3)::"char" AS op, i.user_id, i.score, i.accepted_seq
    FROM inserted AS i
    JOIN staged_sessions AS s USING (event_id)
    CROSS JOIN LATERAL unnest(string_to_array(s.boards, ',')) AS token
), folded AS (
    SELECT board, period, user_id, op,
           CASE op WHEN 's' THEN sum(score)::bigint
                   WHEN 'h' THEN max(score)
                   WHEN 'l' THEN min(score)
                   ELSE (array_agg(score ORDER BY accepted_seq DESC))[1] END AS score,
           max(accepted_seq) AS seq
    FROM placed AS p
    WHERE NOT EXISTS (
        SELECT 1 FROM board_definitions AS d
        WHERE d.id = p.board AND d.purged_seq > p.accepted_seq
    )
    GROUP BY board, period, user_id, op
), scores AS (
    INSERT INTO board_scores AS b (board, period, user_id, score, seq, op)
    SELECT board, period, user_id, score, seq, op FROM folded ORDER BY board, period, user_id
    ON CONFLICT (board, period, user_id) DO UPDATE SET
        score = ranker_joined(b.op, b.score, excluded.score),
        seq = greatest(b.seq, excluded.seq)
    WHERE ranker_changes(b.op, b.score, b.seq, excluded.score, excluded.seq)
    RETURNING board, user_id, b.xmax = 0 AS created
), new_players AS (
    INSERT INTO players (user_id)
    SELECT user_id FROM scores WHERE created AND board = 'global' ORDER BY user_id
    ON CONFLICT (user_id) DO NOTHING
)
SELECT count(*) AS sessions_added FROM inserted;

-- name: backfill_board
-- A backfill: the sessions accepted before a board's position (and those persisted before
-- acceptance orders were kept), placed by the board's filter, periods and op as the API would
-- have placed them, folded per (period, player) and merged into board_scores, where the
-- sessions after the position already count. Runs once per board: it claims the board's
-- backfilled flag in the same statement (a second run, or another process's, finds it set and
-- adds nothing). Returns the rows merged.
WITH claimed AS (
    UPDATE board_definitions SET backfilled = true, updated_at = now()
    WHERE id = %(board)s AND position = %(position)s AND state = 'filling' AND NOT backfilled
    RETURNING id
), folded AS (
    SELECT f.* FROM ranker_scores_from_log(
        %(op)s::"char", %(reset)s::text, %(timezone)s::text, %(game_mode)s::text,
        NULL::bigint, %(position_seq)s::bigint
    ) AS f
    WHERE EXISTS (SELECT 1 FROM claimed)
), merged AS (
    INSERT INTO board_scores AS b (board, period, user_id, score, seq, op)
    SELECT %(board)s, period, user_id, score, seq, %(op)s::"char" FROM folded
    ORDER BY period, user_id
    ON CONFLICT (board, period, user_id) DO UPDATE SET
        score = ranker_joined(b.op, b.score, excluded.score),
        seq = greatest(b.seq, excluded.seq)
    WHERE ranker_changes(b.op, b.score, b.seq, excluded.score, excluded.seq)
    RETURNING 1
)
SELECT (SELECT count(*) FROM claimed) AS claimed, (SELECT count(*) FROM merged) AS merged;

-- name: upsert_board_definition
-- One change of a definition, as the events stream recorded it (changed_seq: its entry). A
-- change older than the one stored (a redelivery) changes nothing.
INSERT INTO board_definitions AS d
    (id, definition, position, position_seq, state, backfilled, changed_seq)
VALUES (%(id)s, %(definition)s, %(position)s, %(position_seq)s, %(state)s, %(backfilled)s,
        %(changed_seq)s)
ON CONFLICT (id) DO UPDATE SET
    definition = excluded.definition, position = excluded.position,
    position_seq = excluded.position_seq, state = excluded.state,
    backfilled = CASE WHEN d.position = excluded.position THEN d.backfilled OR excluded.backfilled
                      ELSE excluded.backfilled END,
    changed_seq = excluded.changed_seq,
    purged_seq = CASE WHEN excluded.state = 'purged' THEN excluded.changed_seq
                      ELSE d.purged_seq END,
    updated_at = now()
WHERE d.changed_seq < excluded.changed_seq
RETURNING state;

-- name: delete_board_scores
-- A purged board's periods.
DELETE FROM board_scores WHERE board = %(board)s;

-- name: select_board_definitions
-- The defined boards that still hold periods (a rebuild restores them to Redis).
SELECT id, definition::text, position, state, backfilled
FROM board_definitions WHERE state <> 'purged' ORDER BY position_seq;

-- name: insert_random_sessions
-- Demo data made server-side: sessions %(first)s..%(last)s of seed run %(run)s (8 hex digits),
-- random players 1..%(players)s, scores 1..10000, game modes drawn from %(modes)s, dates within
-- the past year. Event ids are the run followed by the session's number: ordered, so the
-- primary key grows at its end, and never equal to an API's (random, version 4) event id.
INSERT INTO game_sessions (event_id, session_id, user_id, score, game_mode, created_at)
SELECT (%(run)s || lpad(to_hex(g), 24, '0'))::uuid, 'seed-' || %(run)s || '-' || g,
       1 + floor(random() * %(players)s)::bigint, 1 + floor(random() * 10000)::bigint,
       (%(modes)s::text[])[1 + floor(random() * cardinality(%(modes)s::text[]))::int],
       now() - random() * interval '365 days'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g;

-- name: create_run_totals
-- The totals of one seed run's sessions: per mode first, then the global board as the sum of a
-- player's modes (one pass over the sessions instead of two). Dropped at COMMIT.
CREATE TEMP TABLE run_totals ON COMMIT DROP AS
WITH per_mode AS (
    SELECT user_id, game_mode, sum(score)::bigint AS points
    FROM game_sessions
    WHERE event_id BETWEEN (%(run)s || '000000000000000000000000')::uuid
                       AND (%(run)s || 'ffffffffffffffffffffffff')::uuid
    GROUP BY user_id, game_mode
)
SELECT 'mode-' || game_mode AS board, user_id, points FROM per_mode
UNION ALL
SELECT 'global', user_id, sum(points)::bigint FROM per_mode GROUP BY user_id;

-- name: insert_run_totals
-- Into an empty board_scores whose keys were dropped for the load: a plain insert (the
-- built-in boards: one period, summed).
INSERT INTO board_scores (board, period, user_id, score, op)
SELECT board, 'all', user_id, points, 's' FROM run_totals;

-- name: add_run_totals
-- Into a board_scores that has rows: add to the players' totals.
INSERT INTO board_scores AS t (board, period, user_id, score, op)
SELECT board, 'all', user_id, points, 's' FROM run_totals
ON CONFLICT (board, period, user_id) DO UPDATE SET score = t.score + excluded.score;

-- name: select_primary_key
-- The name and definition of a table's primary key constraint.
SELECT conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE conrelid = %(table)s::regclass AND contype = 'p';

-- name: set_bulk_memory
-- Memory for one bulk transaction's sorts, aggregates and index builds (seed only).
SELECT set_config('work_mem', '256MB', true), set_config('maintenance_work_mem', '512MB', true);

-- name: select_secondary_indexes
-- The indexes of the given tables other than their primary keys, with their definitions.
SELECT i.indexname, i.indexdef
FROM pg_indexes AS i
JOIN pg_class AS c ON c.relname = i.indexname
JOIN pg_index AS x ON x.indexrelid = c.oid
WHERE i.schemaname = current_schema() AND i.tablename = ANY(%(tables)s::text[])
  AND NOT x.indisprimary;

-- name: insert_seed_players
INSERT INTO players (user_id, username)
SELECT g, 'player_' || g FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
ON CONFLICT (user_id) DO NOTHING;

-- name: select_board_scores
-- Every member of one period of a board, for a rebuild (read through a server-side cursor).
SELECT user_id, score FROM board_scores WHERE board = %(board)s AND period = %(period)s;

-- name: select_seqs_of_users
-- The acceptance order of the scores some players hold in one period of a board (a rebuild
-- applies an unpersisted `last` session only over an older one).
SELECT user_id, seq FROM board_scores
WHERE board = %(board)s AND period = %(period)s AND user_id = ANY(%(user_ids)s::bigint[]);

-- name: select_persisted_event_ids
-- Which of these events are in the database (in the rebuild's snapshot).
SELECT event_id FROM game_sessions WHERE event_id = ANY(%(event_ids)s::uuid[]);

-- name: select_recent_sessions
-- Sessions still inside the idempotency window, to restore their idempotency keys (with what
-- each was accepted with: a reuse of its id with other data is refused after a wipe too).
SELECT session_id, event_id::text, (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
       user_id, score, game_mode
FROM game_sessions WHERE created_at > now() - make_interval(secs => %(window_s)s);

-- name: select_scores_of_users
-- The scores of some members of one period of a board (verify, Redis -> SQL direction).
SELECT user_id, score FROM board_scores
WHERE board = %(board)s AND period = %(period)s AND user_id = ANY(%(user_ids)s::bigint[]);

-- name: insert_database_identity
-- Makes this database's identity on first use (a new random id from the caller); a database
-- that has one keeps it: two processes racing here agree on the row that was committed first.
INSERT INTO database_identity (database_id) VALUES (%(database_id)s)
ON CONFLICT (singleton) DO NOTHING;

-- name: select_database_identity
-- This database's identity (a separate statement from the insert: it sees the row another
-- process committed while the insert waited on it).
SELECT database_id FROM database_identity;

-- name: select_any_total
-- Whether any board has a member (seed --if-empty).
SELECT EXISTS (SELECT 1 FROM board_scores) AS has_totals;

-- name: select_periods_of_board
-- The periods of a board that hold scores, newest first (ids of one reset sort by time), older
-- than %(before)s when it is given, with their members.
SELECT period, count(*) AS members FROM board_scores
WHERE board = %(board)s AND (%(before)s::text IS NULL OR period < %(before)s)
GROUP BY period ORDER BY period DESC LIMIT %(limit)s;

-- name: select_session_drift
-- verify --deep: one board's scores recomputed from the session log with the board's filter
-- (game mode; only the sessions after its position unless it was backfilled), periods (the
-- local date of the acceptance in the board's time zone) and operator, full-joined with
-- board_scores; returns up to %(limit)s (period, user_id, stored, recomputed) that disagree.
SELECT period, user_id, b.score AS stored, r.score AS recomputed
FROM (SELECT period, user_id, score FROM board_scores WHERE board = %(board)s) AS b
FULL JOIN ranker_scores_from_log(
    %(op)s::"char", %(reset)s::text, %(timezone)s::text, %(game_mode)s::text,
    %(after_seq)s::bigint, NULL::bigint
) AS r USING (period, user_id)
WHERE b.score IS DISTINCT FROM r.score
LIMIT %(limit)s;

-- name: select_sql_ranks
-- The rank of every member of a board by the window function the original service ran per
-- request: the reference for rank semantics (tests) and the naive baseline (benchmarks).
SELECT user_id, score, RANK() OVER (ORDER BY score DESC) AS rank
FROM board_scores WHERE board = %(board)s AND period = 'all';

-- name: select_rank_by_window
-- The original service's rank lookup: a window function over the whole board for one player,
-- O(n) per call. Only the benchmark runs it, as the baseline ranker replaces.
SELECT rank FROM (
    SELECT user_id, RANK() OVER (ORDER BY score DESC) AS rank
    FROM board_scores WHERE board = %(board)s AND period = 'all'
) AS ranked
WHERE user_id = %(user_id)s;

-- name: vacuum_analyze_tables
-- After a bulk load (the benchmark's seed): visibility map, statistics and hint bits set now,
-- not by autovacuum in the middle of a measurement. Needs autocommit (no transaction).
VACUUM (ANALYZE) players, game_sessions, board_scores;

-- name: checkpoint
CHECKPOINT;
