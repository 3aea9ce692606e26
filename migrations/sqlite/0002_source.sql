-- Where each bar came from: the pipeline source that read it (`history_5m`), or for a bar
-- built by an operator the sources of its input (`live`, `history_5m+live`).
ALTER TABLE intraday_ohlcv ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE historical_ohlcv ADD COLUMN source TEXT NOT NULL DEFAULT '';
