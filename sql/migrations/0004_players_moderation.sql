-- Players and moderation (docs/design.md, "Players and moderation"): display names, voided
-- sessions, bans, and the audit log of admin actions.

-- The acceptance order of the stream entry that set the name (a name set later, or
-- redelivered, never undoes a newer one: the worker keeps the highest).
ALTER TABLE players ADD COLUMN name_seq bigint NOT NULL DEFAULT 0;

-- A voided session stays in the log and counts nowhere: when, by which API key (its key id:
-- never the key) and why. voided_by_ban tells a session a ban voided (an unban counts it
-- again) from one voided alone (it stays voided). Constant defaults: no table rewrite.
ALTER TABLE game_sessions
    ADD COLUMN voided_at      timestamptz,
    ADD COLUMN voided_by      text,
    ADD COLUMN void_reason    text,
    ADD COLUMN voided_by_ban  boolean NOT NULL DEFAULT false;

-- The players banned now (an unban deletes the row; the audit log keeps the history).
-- banned_seq is the stream entry of the ban: a session accepted before it that another worker
-- commits after it is stored voided, as the ban would have voided it.
CREATE TABLE bans (
    user_id     bigint PRIMARY KEY,
    banned_seq  bigint NOT NULL,
    banned_at   timestamptz NOT NULL,
    banned_by   text NOT NULL,
    reason      text NOT NULL
);

-- Every admin action, once: seq is the stream entry that recorded it (a redelivery adds
-- nothing), and orders the log (newest first when read).
CREATE TABLE audit_log (
    seq      bigint PRIMARY KEY,
    at       timestamptz NOT NULL,
    key_id   text NOT NULL,
    action   text NOT NULL,
    target   text NOT NULL,
    reason   text,
    detail   jsonb
);

-- A board's scores from the session log, as before, without the voided sessions, and
-- optionally for one player only (only_user; the planner then reads that player's sessions
-- by game_sessions_user_id_idx).
DROP FUNCTION ranker_scores_from_log("char", text, text, text, bigint, bigint);
CREATE FUNCTION ranker_scores_from_log(
    board_op "char", board_reset text, board_zone text, board_mode text,
    after_seq bigint, before_seq bigint, only_user bigint DEFAULT NULL
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
    WHERE s.voided_at IS NULL
      AND (only_user IS NULL OR s.user_id = only_user)
      AND (board_mode IS NULL OR s.game_mode = board_mode)
      AND (after_seq IS NULL OR s.accepted_seq > after_seq)
      AND (before_seq IS NULL OR s.accepted_seq IS NULL OR s.accepted_seq < before_seq)
    GROUP BY 1, 2
$$;
