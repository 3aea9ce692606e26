-- The same tiers as migrations/postgres/0001_tables.sql for the embedded store. Times are
-- INTEGER milliseconds since the epoch (UTC): `datetime(ts / 1000, 'unixepoch')` shows them.
CREATE TABLE IF NOT EXISTS realtime_prices (
    symbol TEXT NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL,
    price REAL NOT NULL, volume REAL NOT NULL,
    PRIMARY KEY (symbol, ts, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS intraday_ohlcv (
    symbol TEXT NOT NULL, interval TEXT NOT NULL, ts INTEGER NOT NULL, end_ts INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
    volume REAL NOT NULL, trades INTEGER NOT NULL, vwap REAL, revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, interval, ts)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS historical_ohlcv (
    symbol TEXT NOT NULL, ts INTEGER NOT NULL, end_ts INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
    volume REAL NOT NULL, trades INTEGER NOT NULL, vwap REAL, revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, ts)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS realtime_analytics (
    symbol TEXT NOT NULL, interval TEXT NOT NULL, ts INTEGER NOT NULL,
    indicator_id TEXT NOT NULL, indicator TEXT NOT NULL, outputs TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, interval, indicator_id, ts)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS intraday_analytics (
    symbol TEXT NOT NULL, interval TEXT NOT NULL, ts INTEGER NOT NULL,
    indicator_id TEXT NOT NULL, indicator TEXT NOT NULL, outputs TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, interval, indicator_id, ts)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS daily_analytics (
    symbol TEXT NOT NULL, interval TEXT NOT NULL, ts INTEGER NOT NULL,
    indicator_id TEXT NOT NULL, indicator TEXT NOT NULL, outputs TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, interval, indicator_id, ts)
) WITHOUT ROWID;
