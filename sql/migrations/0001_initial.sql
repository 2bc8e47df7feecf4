-- The durable record of ranker: every session once, and per-board totals.

CREATE TABLE IF NOT EXISTS players (
    user_id     bigint PRIMARY KEY,
    username    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per accepted submission, keyed by the event id the API gave it: the write-behind
-- worker inserts with ON CONFLICT DO NOTHING, so a redelivered stream entry is never counted twice.
CREATE TABLE IF NOT EXISTS game_sessions (
    event_id    uuid PRIMARY KEY,
    session_id  text NOT NULL,
    user_id     bigint NOT NULL,
    score       bigint NOT NULL,
    game_mode   text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS game_sessions_session_id_idx ON game_sessions (session_id);
CREATE INDEX IF NOT EXISTS game_sessions_user_id_idx ON game_sessions (user_id);
CREATE INDEX IF NOT EXISTS game_sessions_created_at_idx ON game_sessions (created_at);

-- The totals a rebuild loads into Redis: board is 'global' or 'mode:<game_mode>'.
CREATE TABLE IF NOT EXISTS board_totals (
    board        text NOT NULL,
    user_id      bigint NOT NULL,
    total_score  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (board, user_id)
);
CREATE INDEX IF NOT EXISTS board_totals_board_total_idx ON board_totals (board, total_score DESC);
