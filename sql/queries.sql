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
CREATE TEMP TABLE IF NOT EXISTS staged_sessions (
    event_id    uuid NOT NULL,
    session_id  text NOT NULL,
    user_id     bigint NOT NULL,
    score       bigint NOT NULL,
    game_mode   text NOT NULL,
    created_ms  bigint NOT NULL
) ON COMMIT DELETE ROWS;

-- name: copy_staged_sessions
-- Text format, as the stream holds the values (created_ms: unix milliseconds).
COPY staged_sessions (event_id, session_id, user_id, score, game_mode, created_ms) FROM STDIN;

-- name: persist_staged_sessions
-- Inserts the staged sessions not seen before and adds ONLY those to the totals of the global
-- board and of their mode's board, in one statement. Rows are upserted in key order so that
-- two workers committing at once take row locks in the same order (no deadlock). A player
-- row is made only for a user whose global total was created by this statement (xmax is 0
-- on a row version an INSERT made, the locker's transaction id on one ON CONFLICT updated),
-- so players already known cost no lookup.
-- Returns the number of sessions that were new.
WITH inserted AS (
    INSERT INTO game_sessions (event_id, session_id, user_id, score, game_mode, created_at)
    SELECT event_id, session_id, user_id, score, game_mode, to_timestamp(created_ms / 1000.0)
    FROM staged_sessions
    ON CONFLICT (event_id) DO NOTHING
    RETURNING user_id, score, game_mode
), per_board AS (
    SELECT 'global' AS board, user_id, sum(score)::bigint AS points
    FROM inserted GROUP BY user_id
    UNION ALL
    SELECT 'mode:' || game_mode, user_id, sum(score)::bigint
    FROM inserted GROUP BY game_mode, user_id
), totals AS (
    INSERT INTO board_totals AS t (board, user_id, total_score, updated_at)
    SELECT board, user_id, points, now() FROM per_board ORDER BY board, user_id
    ON CONFLICT (board, user_id)
    DO UPDATE SET total_score = t.total_score + excluded.total_score, updated_at = excluded.updated_at
    RETURNING board, user_id, t.xmax = 0 AS created
), new_players AS (
    INSERT INTO players (user_id)
    SELECT user_id FROM totals WHERE created AND board = 'global' ORDER BY user_id
    ON CONFLICT (user_id) DO NOTHING
)
SELECT count(*) AS sessions_added FROM inserted;

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
SELECT 'mode:' || game_mode AS board, user_id, points FROM per_mode
UNION ALL
SELECT 'global', user_id, sum(points)::bigint FROM per_mode GROUP BY user_id;

-- name: insert_run_totals
-- Into an empty board_totals whose keys were dropped for the load: a plain insert.
INSERT INTO board_totals (board, user_id, total_score, updated_at)
SELECT board, user_id, points, now() FROM run_totals;

-- name: add_run_totals
-- Into a board_totals that has rows: add to the players' totals.
INSERT INTO board_totals AS t (board, user_id, total_score, updated_at)
SELECT board, user_id, points, now() FROM run_totals
ON CONFLICT (board, user_id)
DO UPDATE SET total_score = t.total_score + excluded.total_score, updated_at = excluded.updated_at;

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

-- name: select_board_totals
-- Every member of one board, for a rebuild (read through a server-side cursor).
SELECT user_id, total_score FROM board_totals WHERE board = %(board)s;

-- name: select_persisted_event_ids
-- Which of these events are in the database (in the rebuild's snapshot).
SELECT event_id FROM game_sessions WHERE event_id = ANY(%(event_ids)s::uuid[]);

-- name: select_recent_sessions
-- Sessions still inside the idempotency window, to restore their idempotency keys (with what
-- each was accepted with: a reuse of its id with other data is refused after a wipe too).
SELECT session_id, event_id::text, (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
       user_id, score, game_mode
FROM game_sessions WHERE created_at > now() - make_interval(secs => %(window_s)s);

-- name: select_totals_of_users
-- The totals of some members of one board (verify, Redis -> SQL direction).
SELECT user_id, total_score FROM board_totals
WHERE board = %(board)s AND user_id = ANY(%(user_ids)s::bigint[]);

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
SELECT EXISTS (SELECT 1 FROM board_totals) AS has_totals;

-- name: select_board_names
-- Every board that has totals (verify reports boards Redis does not know).
SELECT DISTINCT board FROM board_totals;

-- name: select_session_sums
-- Totals recomputed from the sessions, for boards whose totals disagree (verify --deep).
SELECT b.board, b.user_id, b.total_score, coalesce(s.points, 0) AS session_points
FROM board_totals AS b
LEFT JOIN (
    SELECT 'global' AS board, user_id, sum(score)::bigint AS points
    FROM game_sessions GROUP BY user_id
    UNION ALL
    SELECT 'mode:' || game_mode, user_id, sum(score)::bigint
    FROM game_sessions GROUP BY game_mode, user_id
) AS s USING (board, user_id)
WHERE b.total_score <> coalesce(s.points, 0)
LIMIT %(limit)s;

-- name: select_sql_ranks
-- The rank of every member of a board by the window function the original service ran per
-- request: the reference for rank semantics (tests) and the naive baseline (benchmarks).
SELECT user_id, total_score, RANK() OVER (ORDER BY total_score DESC) AS rank
FROM board_totals WHERE board = %(board)s;

-- name: select_rank_by_window
-- The original service's rank lookup: a window function over the whole board for one player,
-- O(n) per call. Only the benchmark runs it, as the baseline ranker replaces.
SELECT rank FROM (
    SELECT user_id, RANK() OVER (ORDER BY total_score DESC) AS rank
    FROM board_totals WHERE board = %(board)s
) AS ranked
WHERE user_id = %(user_id)s;

-- name: vacuum_analyze_tables
-- After a bulk load (the benchmark's seed): visibility map, statistics and hint bits set now,
-- not by autovacuum in the middle of a measurement. Needs autocommit (no transaction).
VACUUM (ANALYZE) players, game_sessions, board_totals;

-- name: checkpoint
CHECKPOINT;
