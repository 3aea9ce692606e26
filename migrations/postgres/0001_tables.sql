-- The storage tiers of the system we replace, with primary keys that make every write an
-- idempotent upsert. Times are timestamptz (UTC instants); `ts` is a tick's event time or
-- the start of a bar's window.

CREATE TABLE IF NOT EXISTS realtime_prices (
    symbol  text             NOT NULL,
    ts      timestamptz      NOT NULL,
    seq     bigint           NOT NULL,  -- arrival sequence number: ties at one instant are distinct ticks
    price   double precision NOT NULL,
    volume  double precision NOT NULL,
    PRIMARY KEY (symbol, ts, seq)
);

CREATE TABLE IF NOT EXISTS intraday_ohlcv (
    symbol   text             NOT NULL,
    interval text             NOT NULL,  -- 1s .. 4h, as in pipeline files
    ts       timestamptz      NOT NULL,
    end_ts   timestamptz      NOT NULL,
    open     double precision NOT NULL,
    high     double precision NOT NULL,
    low      double precision NOT NULL,
    close    double precision NOT NULL,
    volume   double precision NOT NULL,
    trades   bigint           NOT NULL,
    vwap     double precision,
    revision integer          NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, interval, ts)
);

CREATE TABLE IF NOT EXISTS historical_ohlcv (
    symbol   text             NOT NULL,
    ts       timestamptz      NOT NULL,  -- start of the UTC day or of the exchange session
    end_ts   timestamptz      NOT NULL,
    open     double precision NOT NULL,
    high     double precision NOT NULL,
    low      double precision NOT NULL,
    close    double precision NOT NULL,
    volume   double precision NOT NULL,
    trades   bigint           NOT NULL,
    vwap     double precision,
    revision integer          NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, ts)
);

-- Indicator rows: one row per (symbol, interval, indicator id, bar). `outputs` holds the
-- record's `values`, e.g. {"macd": 0.12, "signal": 0.09, "hist": 0.03}.
CREATE TABLE IF NOT EXISTS realtime_analytics (
    symbol       text        NOT NULL,
    interval     text        NOT NULL,  -- below 1m
    ts           timestamptz NOT NULL,
    indicator_id text        NOT NULL,  -- e.g. rsi_14
    indicator    text        NOT NULL,  -- e.g. rsi
    outputs      jsonb       NOT NULL,
    revision     integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, interval, indicator_id, ts)
);

CREATE TABLE IF NOT EXISTS intraday_analytics (LIKE realtime_analytics INCLUDING ALL);
CREATE TABLE IF NOT EXISTS daily_analytics (LIKE realtime_analytics INCLUDING ALL);
