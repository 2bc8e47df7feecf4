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
-- boards lists where Redis counted the session, "<board>:<period>:<op>" comma-separated;
-- username the name it set (NULL: none).
CREATE TEMP TABLE IF NOT EXISTS staged_sessions (
    event_id      uuid NOT NULL,
    session_id    text NOT NULL,
    user_id       bigint NOT NULL,
    score         bigint NOT NULL,
    game_mode     text NOT NULL,
    created_ms    bigint NOT NULL,
    accepted_seq  bigint NOT NULL,
    boards        text NOT NULL,
    username      text
) ON COMMIT DELETE ROWS;

-- name: copy_staged_sessions
-- Text format, as the stream holds the values (created_ms: unix milliseconds).
COPY staged_sessions (event_id, session_id, user_id, score, game_mode, created_ms, accepted_seq, boards, username)
FROM STDIN;

-- name: persist_staged_sessions
-- Inserts the staged sessions not seen before and counts ONLY those on the boards and periods
-- Redis counted them on, in one statement: the batch is first folded to one row per board,
-- period and player by the board's op (a sum, the best, or the newest by acceptance order),
-- then upserted, so a row is written once per batch whatever the number of its sessions. An
-- update that changes nothing (a best not beaten, an older last) is skipped. Rows are upserted
-- in key order so that two workers committing at once take row locks in the same order (no
-- deadlock). Sessions of a board purged after them (committed late by another worker) are not
-- counted there; sessions of a player banned after them (the same) are stored voided by that
-- ban and counted nowhere (bans holds only the players banned now: a tiny join). A player row
-- is made for a user whose global row was created by this statement (xmax is 0 on a row
-- version an INSERT made), so players already known cost no lookup, and for every name set
-- (the newest of the batch, kept only over an older one). Returns the number of sessions that
-- were new. The key of game_sessions holds the creation time and the player besides the event
-- id (a partitioned table's keys hold its partition key): a redelivered entry repeats all
-- three, so its second insert still conflicts and adds nothing.
WITH inserted AS (
    INSERT INTO game_sessions (event_id, session_id, user_id, score, game_mode, created_at,
                               accepted_seq, voided_at, voided_by, void_reason, voided_by_ban)
    SELECT s.event_id, s.session_id, s.user_id, s.score, s.game_mode,
           to_timestamp(s.created_ms / 1000.0), s.accepted_seq,
           b.banned_at, b.banned_by, b.reason, b.user_id IS NOT NULL
    FROM staged_sessions AS s
    LEFT JOIN bans AS b ON b.user_id = s.user_id AND b.banned_seq > s.accepted_seq
    ON CONFLICT (event_id, created_at, user_id) DO NOTHING
    RETURNING event_id, user_id, score, accepted_seq, voided_by_ban
), placed AS (
    SELECT split_part(token, ':', 1) AS board, split_part(token, ':', 2) AS period,
           split_part(token, ':', 3)::"char" AS op, i.user_id, i.score, i.accepted_seq
    FROM inserted AS i
    JOIN staged_sessions AS s USING (event_id)
    CROSS JOIN LATERAL unnest(string_to_array(s.boards, ',')) AS token
    WHERE NOT i.voided_by_ban
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
), named AS (
    SELECT DISTINCT ON (user_id) user_id, username, accepted_seq
    FROM staged_sessions WHERE username IS NOT NULL
    ORDER BY user_id, accepted_seq DESC
), new_players AS (
    INSERT INTO players AS p (user_id, username, name_seq)
    SELECT user_id, username, accepted_seq FROM named
    UNION ALL
    SELECT user_id, NULL::text, 0 FROM scores
    WHERE created AND board = 'global' AND user_id NOT IN (SELECT user_id FROM named)
    ORDER BY 1
    ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, name_seq = excluded.name_seq
    WHERE excluded.username IS NOT NULL AND p.name_seq < excluded.name_seq
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
-- A purged board's periods, and what dropped months carried for it (a board that takes its id
-- later must not inherit them).
WITH carried AS (
    DELETE FROM carried_scores WHERE board = %(board)s
)
DELETE FROM board_scores WHERE board = %(board)s;

-- name: select_board_definitions
-- The defined boards that still hold periods (a rebuild restores them to Redis).
SELECT id, definition::text, position, state, backfilled, changed_seq
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
-- The indexes of the given tables other than their primary keys, with their definitions. A
-- partitioned table's index is written "ON ONLY" (pg_dump attaches its partitions' indexes one
-- by one); built again without ONLY, it is built on every partition.
SELECT i.indexname, replace(i.indexdef, ' ON ONLY ', ' ON ')
FROM pg_indexes AS i
JOIN pg_class AS c ON c.relname = i.indexname
JOIN pg_index AS x ON x.indexrelid = c.oid
WHERE i.schemaname = current_schema() AND i.tablename = ANY(%(tables)s::text[])
  AND NOT x.indisprimary;

-- name: insert_seed_players
INSERT INTO players (user_id, username)
SELECT g, 'user_' || g FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
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
-- local date of the acceptance in the board's time zone) and operator, joined with what the
-- months retention dropped carried for it, full-joined with board_scores; returns up to
-- %(limit)s (period, user_id, stored, recomputed) that disagree.
SELECT period, user_id, b.score AS stored, r.score AS recomputed
FROM (SELECT period, user_id, score FROM board_scores WHERE board = %(board)s) AS b
FULL JOIN ranker_scores_from_log(
    %(op)s::"char", %(reset)s::text, %(timezone)s::text, %(game_mode)s::text,
    %(after_seq)s::bigint, NULL::bigint, NULL::bigint, %(board)s::text
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

-- name: select_storage_sizes
-- The capacity figures (loadgen.bench.capacity): each table's bytes on disk (heap, indexes,
-- TOAST and maps: what a disk holds) and rows, and the WAL position in bytes, so that two
-- readings around a drain give bytes per row and WAL bytes per persisted session. The session
-- log is partitioned: its bytes are its partitions' (the parent holds none).
SELECT (SELECT sum(pg_total_relation_size(relid))::bigint
        FROM pg_partition_tree('game_sessions')) AS sessions_bytes,
       (SELECT count(*) FROM game_sessions) AS sessions,
       pg_total_relation_size('board_scores') AS board_scores_bytes,
       (SELECT count(*) FROM board_scores) AS board_scores,
       pg_total_relation_size('players') AS players_bytes,
       (SELECT count(*) FROM players) AS players,
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal_bytes;

-- name: upsert_player_name
-- A name set alone (PUT /api/players/{id}), as the events stream recorded it: kept only over
-- an older one (name_seq), so a redelivery or a late commit never undoes a newer name.
INSERT INTO players AS p (user_id, username, name_seq)
VALUES (%(user_id)s, %(username)s, %(seq)s)
ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, name_seq = excluded.name_seq
WHERE p.name_seq < excluded.name_seq;

-- name: insert_audit_entry
-- One admin action, once (seq: the stream entry that recorded it). Returns a row only the
-- first time: the caller applies the action's effects only then.
INSERT INTO audit_log (seq, at, key_id, action, target, reason, detail)
VALUES (%(seq)s, to_timestamp(%(at_ms)s / 1000.0), %(key_id)s, %(action)s, %(target)s,
        %(reason)s, %(detail)s)
ON CONFLICT (seq) DO NOTHING
RETURNING seq;

-- name: insert_ban
-- A ban as the stream recorded it, and every session of the player accepted before it marked
-- voided by it (a session voided alone before keeps its own marks). Sessions accepted before
-- it that another worker commits later are voided as they are inserted (persist_staged_sessions).
-- Returns the number of sessions it voided.
WITH ban AS (
    INSERT INTO bans (user_id, banned_seq, banned_at, banned_by, reason)
    VALUES (%(user_id)s, %(seq)s, to_timestamp(%(at_ms)s / 1000.0), %(key_id)s, %(reason)s)
    ON CONFLICT (user_id) DO NOTHING
    RETURNING banned_at
), voided AS (
    UPDATE game_sessions SET voided_at = (SELECT banned_at FROM ban), voided_by = %(key_id)s,
                             void_reason = %(reason)s, voided_by_ban = true
    WHERE user_id = %(user_id)s AND voided_at IS NULL
      AND (accepted_seq IS NULL OR accepted_seq < %(seq)s)
      AND EXISTS (SELECT 1 FROM ban)
    RETURNING 1
)
SELECT count(*) AS voided FROM voided;

-- name: delete_ban
-- An unban: the ban's row goes, and the sessions it voided count again (those voided alone do
-- not). Returns the number of sessions restored.
WITH unbanned AS (
    DELETE FROM bans WHERE user_id = %(user_id)s RETURNING user_id
), restored AS (
    UPDATE game_sessions SET voided_at = NULL, voided_by = NULL, void_reason = NULL,
                             voided_by_ban = false
    WHERE user_id = %(user_id)s AND voided_by_ban AND EXISTS (SELECT 1 FROM unbanned)
    RETURNING 1
)
SELECT count(*) AS restored FROM restored;

-- name: void_session
-- One session voided alone (one a ban voided becomes voided alone: an unban leaves it voided).
-- Returns the session's player, or no row when it is already voided alone or unknown.
UPDATE game_sessions SET voided_at = to_timestamp(%(at_ms)s / 1000.0), voided_by = %(key_id)s,
                         void_reason = %(reason)s, voided_by_ban = false
WHERE event_id = %(event_id)s AND (voided_at IS NULL OR voided_by_ban)
RETURNING user_id;

-- name: recompute_player_scores
-- One player's rows of one board made what the session log says (ranker_scores_from_log for
-- that player, with what dropped months carried): rows upserted to the recomputed score, and
-- the rows of periods where nothing counted is left deleted (the periods the player's sessions
-- fall in, voided ones included, read by game_sessions_user_id_idx, and those of their carried
-- rows; board_scores has no index on the player). Returns the rows changed and removed.
WITH fresh AS (
    SELECT f.period, f.score, f.seq FROM ranker_scores_from_log(
        %(op)s::"char", %(reset)s::text, %(timezone)s::text, %(game_mode)s::text,
        %(after_seq)s::bigint, %(before_seq)s::bigint, %(user_id)s::bigint, %(board)s::text
    ) AS f
), touched AS (
    SELECT DISTINCT ranker_period(%(reset)s::text, %(timezone)s::text, created_at) AS period
    FROM game_sessions WHERE user_id = %(user_id)s
    UNION
    SELECT period FROM carried_scores WHERE user_id = %(user_id)s AND board = %(board)s
), upserted AS (
    INSERT INTO board_scores AS b (board, period, user_id, score, seq, op)
    SELECT %(board)s, period, %(user_id)s, score, seq, %(op)s::"char" FROM fresh ORDER BY period
    ON CONFLICT (board, period, user_id) DO UPDATE SET score = excluded.score, seq = excluded.seq
    WHERE (b.score, b.seq) IS DISTINCT FROM (excluded.score, excluded.seq)
    RETURNING 1
), removed AS (
    DELETE FROM board_scores AS b USING touched AS t
    WHERE b.board = %(board)s AND b.period = t.period AND b.user_id = %(user_id)s
      AND t.period NOT IN (SELECT period FROM fresh)
    RETURNING 1
)
SELECT (SELECT count(*) FROM upserted) AS changed, (SELECT count(*) FROM removed) AS removed;

-- name: select_scores_of_player
-- One player's scores in some periods of some boards (pairs of board and period, by primary
-- key): what moderation writes back to Redis.
SELECT b.board, b.period, b.score
FROM unnest(%(boards)s::text[], %(periods)s::text[]) AS wanted (board, period)
JOIN board_scores AS b ON b.board = wanted.board AND b.period = wanted.period
                      AND b.user_id = %(user_id)s;

-- name: select_session
-- The newest session accepted with a session id (ids are unique within the idempotency window
-- only), with its voiding if any.
SELECT event_id, user_id, score, game_mode, created_at, voided_at, voided_by, void_reason,
       voided_by_ban
FROM game_sessions WHERE session_id = %(session_id)s
ORDER BY accepted_seq DESC NULLS LAST, created_at DESC LIMIT 1;

-- name: select_player_record
-- What an admin sees of a player: the sessions stored, how many count, the ban if any.
SELECT (SELECT count(*) FROM game_sessions WHERE user_id = %(user_id)s) AS sessions,
       (SELECT count(*) FROM game_sessions
        WHERE user_id = %(user_id)s AND voided_at IS NOT NULL) AS voided,
       b.banned_at, b.banned_by, b.reason
FROM (SELECT 1) AS one LEFT JOIN bans AS b ON b.user_id = %(user_id)s;

-- name: select_voided_sessions
-- A player's voided sessions, newest first (up to limit).
SELECT session_id, event_id, score, game_mode, created_at, voided_at, voided_by, void_reason,
       voided_by_ban
FROM game_sessions WHERE user_id = %(user_id)s AND voided_at IS NOT NULL
ORDER BY voided_at DESC, created_at DESC LIMIT %(limit)s;

-- name: select_audit_log
-- Admin actions newest first, older than the cursor (a seq) when one is given.
SELECT seq, at, key_id, action, target, reason, detail::text
FROM audit_log WHERE %(before)s::bigint IS NULL OR seq < %(before)s
ORDER BY seq DESC LIMIT %(limit)s;

-- name: select_bans
-- The players banned now (a rebuild gives Redis back the bans it lost).
SELECT user_id FROM bans;

-- name: select_named_players
-- Every player's name, for a rebuild (read through a server-side cursor).
SELECT user_id, username, name_seq FROM players WHERE username IS NOT NULL;

-- name: select_name_seqs_of_users
-- The acceptance order of the names some players hold (a rebuild applies an unpersisted name
-- only over an older one).
SELECT user_id, name_seq FROM players WHERE user_id = ANY(%(user_ids)s::bigint[]);

-- name: lock_session_months
-- Serialises the changes of game_sessions' partitions (made ahead, dropped by retention) with
-- each other and with backfills (share_session_months): released at the end of the
-- transaction. The partition functions of 0005 take the same lock.
SELECT pg_advisory_xact_lock(7261737);

-- name: share_session_months
-- A backfill reads the whole session log: no month may be dropped under it (retention waits
-- for it, and it for a retention that runs). Shared: backfills do not wait for each other.
SELECT pg_advisory_xact_lock_shared(7261737);

-- name: create_session_partition
-- The partition of the month holding %(month)s, unless it exists (sessions of that month in the
-- default partition move into it); whether it was made.
SELECT ranker_create_session_partition(%(month)s::timestamptz) AS created;

-- name: select_session_months
-- The months game_sessions has a partition of, oldest first (the first instant of each, UTC),
-- read from the partitions' names (ranker_session_partition): the default one is not a month.
SELECT to_timestamp(right(c.relname, 7), 'YYYY_MM')::timestamp AT TIME ZONE 'UTC' AS month
FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'game_sessions'::regclass AND c.relname ~ '^game_sessions_[0-9]{4}_[0-9]{2}$'
ORDER BY 1;

-- name: select_default_months
-- The months of the sessions that landed in the default partition (their month had no
-- partition yet): each gets its own. The default partition is empty but for a clock far off
-- or a worker down across the months made ahead, so this reads next to nothing.
SELECT DISTINCT ranker_month_of(created_at) AS month FROM game_sessions_default ORDER BY 1;

-- name: select_filling_boards
-- Boards whose backfill has not read the session log yet: retention drops no month before it
-- has (the board then counts the month's sessions, as it would have without retention).
SELECT id FROM board_definitions WHERE state = 'filling' AND NOT backfilled ORDER BY id;

-- name: carry_month_scores
-- Before a month's partition is dropped: its sessions that count on one board (the board's
-- filter, periods and op, as ranker_scores_from_log places them; those voided by a ban too,
-- which an unban counts again, not those voided alone) folded per (player, period) and merged
-- into carried_scores by the op, as the worker merges into board_scores (months are carried
-- oldest first, so on a `last` board a tie of acceptance orders, sessions from before they
-- were kept, goes to the newer month). A defined board is read FOR SHARE: a purge committing
-- meanwhile waits for this transaction, then deletes these rows with the board's scores (a
-- board purged first carries nothing). Returns the rows merged.
WITH board AS (
    SELECT 1 FROM board_definitions WHERE id = %(board)s AND state <> 'purged' FOR SHARE
), folded AS (
    SELECT ranker_period(%(reset)s::text, %(timezone)s::text, s.created_at) AS period,
           s.user_id,
           CASE %(op)s::"char" WHEN 's' THEN sum(s.score)::bigint
                               WHEN 'h' THEN max(s.score)
                               WHEN 'l' THEN min(s.score)
                               ELSE (array_agg(s.score ORDER BY s.accepted_seq DESC NULLS LAST,
                                               s.created_at DESC, s.event_id DESC))[1]
           END AS score,
           coalesce(max(s.accepted_seq), 0) AS seq
    FROM game_sessions AS s
    WHERE s.created_at >= %(month)s AND s.created_at < %(month_end)s
      AND (s.voided_at IS NULL OR s.voided_by_ban)
      AND (%(game_mode)s::text IS NULL OR s.game_mode = %(game_mode)s)
      AND (%(after_seq)s::bigint IS NULL OR s.accepted_seq > %(after_seq)s)
      AND (%(before_seq)s::bigint IS NULL OR s.accepted_seq IS NULL
           OR s.accepted_seq < %(before_seq)s)
      AND (%(builtin)s OR EXISTS (SELECT 1 FROM board))
    GROUP BY 1, 2
), merged AS (
    INSERT INTO carried_scores AS c (user_id, board, period, score, seq, op)
    SELECT user_id, %(board)s, period, score, seq, %(op)s::"char" FROM folded
    ORDER BY user_id, period
    ON CONFLICT (user_id, board, period) DO UPDATE SET
        score = ranker_joined(c.op, c.score, excluded.score),
        seq = greatest(c.seq, excluded.seq)
    WHERE (c.op <> 'n' AND ranker_changes(c.op, c.score, c.seq, excluded.score, excluded.seq))
       OR (c.op = 'n' AND excluded.seq >= c.seq)
    RETURNING 1
)
SELECT count(*) AS merged FROM merged;

-- name: set_lock_timeout
-- How long this transaction's next lock may wait: a partition detached while a long reader
-- (a rebuild's snapshot) holds game_sessions would otherwise queue every insert behind it.
SELECT set_config('lock_timeout', %(timeout)s, true);

-- name: drop_session_partition
-- The month's partition detached and dropped, and the month recorded (after its scores were
-- carried, in the same transaction); whether it existed.
SELECT ranker_drop_session_partition(%(month)s::timestamptz) AS dropped;

-- name: select_dropped_months
-- How many months retention dropped, and the end of the newest one: the sessions verify --deep
-- reads start there (older ones live on in carried_scores).
SELECT count(*) AS months,
       max(((month AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC') AS horizon
FROM dropped_session_months;
