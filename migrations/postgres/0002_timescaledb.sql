-- TimescaleDB tiers: hypertables, compression and retention with the seed's policies, and a
-- continuous aggregate of 5-minute bars from ticks. `marketflow migrate` sets
-- marketflow.timescaledb to 'on' only when the extension is installed and wanted; on plain
-- PostgreSQL this file changes nothing and the engine applies the retention itself.
DO $migration$
BEGIN
    IF coalesce(current_setting('marketflow.timescaledb', true), 'off') <> 'on' THEN
        RAISE NOTICE 'timescaledb not in use: plain tables, retention by the engine';
        RETURN;
    END IF;

    PERFORM create_hypertable('realtime_prices', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
    PERFORM create_hypertable('intraday_ohlcv', 'ts', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM create_hypertable('historical_ohlcv', 'ts', chunk_time_interval => INTERVAL '365 days', if_not_exists => TRUE);
    PERFORM create_hypertable('realtime_analytics', 'ts', chunk_time_interval => INTERVAL '1 hour', if_not_exists => TRUE);
    PERFORM create_hypertable('intraday_analytics', 'ts', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM create_hypertable('daily_analytics', 'ts', chunk_time_interval => INTERVAL '365 days', if_not_exists => TRUE);

    ALTER TABLE intraday_ohlcv SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'interval, ts DESC');
    ALTER TABLE historical_ohlcv SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts DESC');
    ALTER TABLE intraday_analytics SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'interval, indicator_id, ts DESC');
    ALTER TABLE daily_analytics SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'interval, indicator_id, ts DESC');

    PERFORM add_compression_policy('intraday_ohlcv', INTERVAL '3 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('historical_ohlcv', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('intraday_analytics', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('daily_analytics', INTERVAL '30 days', if_not_exists => TRUE);

    PERFORM add_retention_policy('realtime_prices', INTERVAL '5 days', if_not_exists => TRUE);
    PERFORM add_retention_policy('intraday_ohlcv', INTERVAL '2 years', if_not_exists => TRUE);
    PERFORM add_retention_policy('realtime_analytics', INTERVAL '1 hour', if_not_exists => TRUE);
    PERFORM add_retention_policy('intraday_analytics', INTERVAL '90 days', if_not_exists => TRUE);

    -- WITH NO DATA: a continuous aggregate may be created inside a transaction only empty;
    -- the policy fills it.
    EXECUTE $cagg$
        CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_5m_from_ticks
        WITH (timescaledb.continuous) AS
        SELECT symbol,
               time_bucket(INTERVAL '5 minutes', ts) AS ts,
               first(price, ts) AS open,
               max(price)       AS high,
               min(price)       AS low,
               last(price, ts)  AS close,
               sum(volume)      AS volume,
               count(*)         AS trades
        FROM realtime_prices
        GROUP BY symbol, time_bucket(INTERVAL '5 minutes', ts)
        WITH NO DATA
    $cagg$;
    PERFORM add_continuous_aggregate_policy('ohlcv_5m_from_ticks',
        start_offset => INTERVAL '1 day', end_offset => INTERVAL '5 minutes',
        schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);
END
$migration$;
