-- Boards as definitions (docs/design.md, "Boards"): per board, period and player, the score
-- the board's operator keeps; the definitions the game made; where each session was accepted.

-- One row per player per period of a board. board is the board's id ('global', 'mode-<mode>'
-- or a defined board's), period its period id ('all' for a board that never resets). op is
-- how a new session joins the score (s: added, h: the higher kept, l: the lower kept, n: the
-- newest kept, by seq), seq the highest acceptance order (game_sessions.accepted_seq) counted.
-- No index on the score: every session updates a row per board, and with no indexed column
-- changing (and room left on the page by the fillfactor) PostgreSQL updates it in place (HOT),
-- where an index on the score would cost an index entry per update. Ranks are Redis's; the
-- rebuild reads a period whole, by its primary key.
CREATE TABLE board_scores (
    board    text NOT NULL,
    period   text NOT NULL,
    user_id  bigint NOT NULL,
    score    bigint NOT NULL,
    seq      bigint NOT NULL DEFAULT 0,
    op       "char" NOT NULL,
    PRIMARY KEY (board, period, user_id)
) WITH (fillfactor = 85);

-- The totals kept before definitions become the built-in boards' only period, with their data.
INSERT INTO board_scores (board, period, user_id, score, op)
SELECT CASE WHEN board = 'global' THEN 'global' ELSE 'mode-' || substr(board, 6) END,
       'all', user_id, total_score, 's'
FROM board_totals;
DROP TABLE board_totals;

-- The stream entry id that accepted the session, as one number (persistence.stream.accepted_seq);
-- NULL for sessions persisted before this migration, which counted on the built-in boards only.
ALTER TABLE game_sessions ADD COLUMN accepted_seq bigint;

-- The boards a game defined, as the events stream recorded their changes (the built-in ones
-- follow the settings and are not stored). position is the stream entry that created the
-- board (position_seq the same as a number): only sessions accepted after it count on it,
-- unless it was backfilled from the sessions before. state: live, filling (a backfill runs),
-- deleted (stopped counting; periods kept) or purged (periods removed; purged_seq orders
-- the removal against sessions committed late by another worker). changed_seq orders the
-- changes, so a redelivered older change never undoes a newer one.
CREATE TABLE board_definitions (
    id            text PRIMARY KEY,
    definition    jsonb NOT NULL,
    position      text NOT NULL,
    position_seq  bigint NOT NULL,
    state         text NOT NULL CHECK (state IN ('live', 'filling', 'deleted', 'purged')),
    backfilled    boolean NOT NULL DEFAULT false,
    purged_seq    bigint NOT NULL DEFAULT 0,
    changed_seq   bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The period of a board's reset that holds an instant, in a time zone: the id the API gives
-- (ranker/periods.py), for the queries that place sessions from the log (verify --deep, a
-- backfill). ISO weeks are named by the ISO year of their days ("IYYY-\"W\"IW").
CREATE FUNCTION ranker_period(reset text, zone text, at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE reset
        WHEN 'never' THEN 'all'
        WHEN 'daily' THEN to_char(at AT TIME ZONE zone, 'YYYY-MM-DD')
        WHEN 'weekly' THEN to_char(at AT TIME ZONE zone, 'IYYY-"W"IW')
        ELSE to_char(at AT TIME ZONE zone, 'YYYY-MM') END
$$;

-- How a board's op joins a new score to the one kept (s: added, h: the higher, l: the lower,
-- n: the newer by acceptance order), and whether it changes it (an update that changes
-- nothing is skipped: no new row version). Used by every statement that merges scores.
CREATE FUNCTION ranker_joined(op "char", kept bigint, score bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE op WHEN 's' THEN kept + score
                   WHEN 'h' THEN greatest(kept, score)
                   WHEN 'l' THEN least(kept, score)
                   ELSE score END
$$;

CREATE FUNCTION ranker_changes(op "char", kept bigint, kept_seq bigint, score bigint, seq bigint)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT op = 's' OR (op = 'h' AND score > kept) OR (op = 'l' AND score < kept)
           OR (op = 'n' AND seq > kept_seq)
$$;

-- A board's scores computed from the session log alone: the sessions of its game mode (every
-- mode: NULL) accepted after after_seq and before before_seq (NULL: no bound; a session
-- persisted before acceptance orders were kept counts as before any), placed in their periods,
-- folded per (period, player) by the op (the newest by acceptance order, then time and event
-- id). For verify --deep and a backfill.
CREATE FUNCTION ranker_scores_from_log(
    board_op "char", board_reset text, board_zone text, board_mode text,
    after_seq bigint, before_seq bigint
) RETURNS TABLE (period text, user_id bigint, score bigint, seq bigint)
LANGUAGE sql STABLE AS $$
    SELECT ranker_period(board_reset, board_zone, s.created_at), s.user_id,
           CASE board_op WHEN 's' THEN sum(s.score)::bigint
                         WHEN 'h' THEN max(s.score)
                         WHEN 'l' THEN min(s.score)
                         ELSE (array_agg(s.score ORDER BY s.accepted_seq DESC NULLS LAST,
                                                          s.created_at DESC, s.event_id DESC))[1]
           END,
           coalesce(max(s.accepted_seq), 0)
    FROM game_sessions AS s
    WHERE (board_mode IS NULL OR s.game_mode = board_mode)
      AND (after_seq IS NULL OR s.accepted_seq > after_seq)
      AND (before_seq IS NULL OR s.accepted_seq IS NULL OR s.accepted_seq < before_seq)
    GROUP BY 1, 2
$$;
