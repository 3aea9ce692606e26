//! Prometheus metrics of every stage, in one registry served at `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric marketflow exports.
pub struct Metrics {
    pub registry: Registry,
    pub source_records: IntCounterVec,
    pub source_watermark: GaugeVec,
    pub source_reconnects: IntCounterVec,
    pub source_messages: IntCounterVec,
    pub source_decode_errors: IntCounterVec,
    pub source_rejected_symbols: IntCounterVec,
    pub source_volume_resets: IntCounterVec,
    pub source_replayed: IntCounterVec,
    pub history_requests: IntCounterVec,
    pub operator_in: IntCounterVec,
    pub operator_out: IntCounterVec,
    pub late_records: IntCounterVec,
    pub revised_records: IntCounterVec,
    pub outside_session: IntCounterVec,
    pub discarded_at_shutdown: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub sink_records: IntCounterVec,
    pub sink_writer_records: IntCounterVec,
    pub sink_batches: IntCounterVec,
    pub sink_errors: IntCounterVec,
    pub sink_retries: IntCounterVec,
    pub sink_batch_seconds: HistogramVec,
    pub sink_committed_watermark: GaugeVec,
    pub sink_retention_deleted: IntCounterVec,
    pub sink_queued_bytes: IntGaugeVec,
    pub source_up: IntGaugeVec,
    pub source_acked_position: IntGaugeVec,
    pub kafka_consumer_lag: IntGaugeVec,
    pub kafka_committed_offset: IntGaugeVec,
    pub kafka_produced: IntCounterVec,
    pub kafka_produce_errors: IntCounterVec,
    pub source_paused_seconds: prometheus::Counter,
    pub worker_busy_seconds: prometheus::CounterVec,
    pub source_lag: GaugeVec,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub ws_clients: IntGauge,
    pub ws_records: IntCounter,
    pub checkpoints: IntCounter,
    pub ws_dropped: IntCounter,
    pub ws_disconnects: IntCounterVec,
    pub http_connections_refused: IntCounterVec,
    pub http_write_timeouts: IntCounter,
    pub http_auth_failures: IntCounterVec,
    pub http_rate_limited: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub tls_reloads: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

/// Declares a run's labelled counters at 0, so that dashboards and alerts (a rate, an
/// increase) see every documented series from the start, not after its first event.
pub fn declare_run(sources: &[&str], operators: &[&str], sinks: &[&str]) {
    let m = metrics();
    for &source in sources {
        m.source_records.with_label_values(&[source]);
        m.source_reconnects.with_label_values(&[source]);
        m.dead_letters.with_label_values(&[source, "malformed"]);
    }
    for &operator in operators {
        m.late_records.with_label_values(&[operator]);
        m.dead_letters.with_label_values(&[operator, "late"]);
    }
    for &sink in sinks {
        m.sink_records.with_label_values(&[sink]);
        m.sink_errors.with_label_values(&[sink]);
        m.sink_retries.with_label_values(&[sink]);
    }
}

/// Declares the server's labelled counters at 0.
pub fn declare_server() {
    let m = metrics();
    for reason in [
        "closed",
        "shutdown",
        "too_slow",
        "timeout",
        "write_failed",
        "protocol_error",
        "too_big",
        "bad_utf8",
        "unauthorized",
        "rate_limited",
    ] {
        m.ws_disconnects.with_label_values(&[reason]);
    }
    for cap in ["total", "per_client"] {
        m.http_connections_refused.with_label_values(&[cap]);
    }
    for reason in ["missing", "invalid", "scope"] {
        m.http_auth_failures.with_label_values(&[reason]);
    }
    for limit in ["per_key", "per_address", "failed_auth", "ws_commands"] {
        m.http_rate_limited.with_label_values(&[limit]);
    }
}

/// A gauge of a point in time, in seconds since the epoch (Prometheus base units).
fn time_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

/// A latency histogram with buckets from 100 µs to 10 s.
pub fn latency_histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> HistogramVec {
    let buckets = vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ];
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        Metrics {
            source_records: counter(
                r,
                "marketflow_source_records_total",
                "Records read by a source.",
                &["source"],
            ),
            source_watermark: time_gauge(
                r,
                "marketflow_source_watermark_seconds",
                "Watermark of a source, seconds since the epoch.",
                &["source"],
            ),
            source_reconnects: counter(
                r,
                "marketflow_source_reconnects_total",
                "Reconnections of a live source.",
                &["source"],
            ),
            source_messages: counter(
                r,
                "marketflow_source_messages_total",
                "Frames received by a live source (prices, statuses, heartbeats, garbage).",
                &["source"],
            ),
            source_decode_errors: counter(
                r,
                "marketflow_source_decode_errors_total",
                "Frames of a live source that could not be decoded (sent to the dead-letter path).",
                &["source"],
            ),
            source_rejected_symbols: counter(
                r,
                "marketflow_source_rejected_symbols_total",
                "Symbols a live feed's server refused to stream (each counted once).",
                &["source"],
            ),
            history_requests: counter(
                r,
                "marketflow_history_requests_total",
                "HTTP requests of history sources, by outcome: ok, empty, rate_limited (429 or an in-body limit), retried (a transient fault) or refused",
                &["source", "outcome"],
            ),
            source_replayed: counter(
                r,
                "marketflow_source_replayed_total",
                "Prices a live feed sent again after a reconnect (its snapshot of the last ones), dropped.",
                &["source"],
            ),
            source_volume_resets: counter(
                r,
                "marketflow_source_volume_resets_total",
                "Cumulative day volumes that started over: `session` at a new trading day, `decrease` when one went down within a day (the tick's volume is clamped to 0).",
                &["source", "reason"],
            ),
            operator_in: counter(
                r,
                "marketflow_operator_records_in_total",
                "Records received by an operator.",
                &["operator"],
            ),
            operator_out: counter(
                r,
                "marketflow_operator_records_out_total",
                "Records emitted by an operator.",
                &["operator"],
            ),
            late_records: counter(
                r,
                "marketflow_late_records_total",
                "Records behind the watermark of their window.",
                &["operator"],
            ),
            revised_records: counter(
                r,
                "marketflow_revised_records_total",
                "Bars and indicator rows given again with a higher revision after late records.",
                &["operator"],
            ),
            outside_session: counter(
                r,
                "marketflow_outside_session_total",
                "Records outside every session of the calendar.",
                &["operator"],
            ),
            discarded_at_shutdown: counter(
                r,
                "marketflow_discarded_at_shutdown_total",
                "Incomplete bars dropped by an interrupted run.",
                &["operator"],
            ),
            dead_letters: counter(
                r,
                "marketflow_dead_letters_total",
                "Records sent to the dead-letter path.",
                &["stage", "reason"],
            ),
            sink_records: counter(
                r,
                "marketflow_sink_records_total",
                "Records written by a sink.",
                &["sink"],
            ),
            sink_writer_records: counter(
                r,
                "marketflow_sink_writer_records_total",
                "Records written by one writer of a sink: its worker's global index (a sink written in parallel has one writer per worker of every process; others have writer 0).",
                &["sink", "writer"],
            ),
            sink_batches: counter(
                r,
                "marketflow_sink_batches_total",
                "Batches committed by a sink.",
                &["sink"],
            ),
            sink_errors: counter(
                r,
                "marketflow_sink_errors_total",
                "Failed writes of a sink.",
                &["sink"],
            ),
            sink_retries: counter(
                r,
                "marketflow_sink_retries_total",
                "Retried writes of a sink.",
                &["sink"],
            ),
            sink_batch_seconds: latency_histogram(
                r,
                "marketflow_sink_batch_seconds",
                "Time to commit one batch.",
                &["sink"],
            ),
            sink_committed_watermark: time_gauge(
                r,
                "marketflow_sink_committed_watermark_seconds",
                "Every record below this event-time watermark (seconds since the epoch) is committed by the sink.",
                &["sink"],
            ),
            sink_retention_deleted: counter(
                r,
                "marketflow_sink_retention_deleted_total",
                "Rows deleted by the engine's retention (databases without TimescaleDB).",
                &["sink"],
            ),
            sink_queued_bytes: gauge(
                r,
                "marketflow_sink_queued_bytes",
                "Bytes of records the dataflow has handed to a sink that it has not taken yet (the stash in front of its channel and the channel); the sources pause while any sink holds `sink_queue` bytes.",
                &["sink"],
            ),
            source_acked_position: gauge(
                r,
                "marketflow_source_acked_position",
                "The position of a source partition (byte offset, tick count, Kafka offset) that every sink has acknowledged as durable.",
                &["source", "partition"],
            ),
            kafka_consumer_lag: gauge(
                r,
                "marketflow_kafka_consumer_lag",
                "Messages of a Kafka partition not yet read by the source (end offset minus position).",
                &["source", "topic", "partition"],
            ),
            kafka_committed_offset: gauge(
                r,
                "marketflow_kafka_committed_offset",
                "The offset a Kafka source committed to its consumer group (acknowledged by every sink).",
                &["source", "topic", "partition"],
            ),
            kafka_produced: counter(
                r,
                "marketflow_kafka_produced_total",
                "Messages a Kafka sink's broker confirmed.",
                &["sink"],
            ),
            kafka_produce_errors: counter(
                r,
                "marketflow_kafka_produce_errors_total",
                "Messages a Kafka sink could not deliver.",
                &["sink"],
            ),
            source_paused_seconds: register(
                r,
                prometheus::Counter::new(
                    "marketflow_source_paused_seconds_total",
                    "Time sources were held back because a sink was full (backpressure).",
                )
                .expect("valid metric definition"),
            ),
            worker_busy_seconds: register(
                r,
                prometheus::CounterVec::new(
                    Opts::new(
                        "marketflow_worker_busy_seconds_total",
                        "CPU time of each timely worker thread (parked time costs none), by worker index.",
                    ),
                    &["worker"],
                )
                .expect("valid metric definition"),
            ),
            source_up: gauge(
                r,
                "marketflow_source_up",
                "1 while a source runs (connected, for a live source), 0 once it ended.",
                &["source"],
            ),
            source_lag: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "marketflow_source_watermark_lag_seconds",
                        "Wall clock minus the watermark of a running source, at the last scrape or health check.",
                    ),
                    &["source"],
                )
                .expect("valid metric definition"),
            ),
            http_requests: counter(
                r,
                "marketflow_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_seconds: latency_histogram(
                r,
                "marketflow_http_request_seconds",
                "Time to answer an HTTP request, by route template.",
                &["route"],
            ),
            ws_clients: register(
                r,
                IntGauge::new("marketflow_ws_clients", "Connected WebSocket clients.")
                    .expect("valid metric definition"),
            ),
            checkpoints: register(
                r,
                IntCounter::new(
                    "marketflow_checkpoints_total",
                    "Checkpoints committed to the recovery store.",
                )
                .expect("valid metric definition"),
            ),
            ws_records: register(
                r,
                IntCounter::new(
                    "marketflow_ws_records_total",
                    "Records published to the live hub for WebSocket clients.",
                )
                .expect("valid metric definition"),
            ),
            ws_dropped: register(
                r,
                IntCounter::new(
                    "marketflow_ws_dropped_total",
                    "Records dropped for WebSocket clients that could not keep up.",
                )
                .expect("valid metric definition"),
            ),
            ws_disconnects: counter(
                r,
                "marketflow_ws_disconnects_total",
                "WebSocket clients disconnected, by reason.",
                &["reason"],
            ),
            http_connections_refused: counter(
                r,
                "marketflow_http_connections_refused_total",
                "Connections answered 503 and closed at the cap: `total` or `per_client`.",
                &["cap"],
            ),
            http_write_timeouts: register(
                r,
                IntCounter::new(
                    "marketflow_http_write_timeouts_total",
                    "Connections closed because the client took nothing for `write_timeout`.",
                )
                .expect("valid metric definition"),
            ),
            http_auth_failures: counter(
                r,
                "marketflow_http_auth_failures_total",
                "Requests refused by `server.auth`: `missing` key (401), `invalid` key (401), missing `scope` (403).",
                &["reason"],
            ),
            http_rate_limited: counter(
                r,
                "marketflow_http_rate_limited_total",
                "Requests (or WebSocket commands) answered 429 by `server.rate_limit`, by bucket.",
                &["limit"],
            ),
            tls_handshake_failures: counter(
                r,
                "marketflow_tls_handshake_failures_total",
                "TLS handshakes that failed (`error`: garbage, wrong version, no shared cipher) or took too long (`timeout`).",
                &["reason"],
            ),
            tls_reloads: counter(
                r,
                "marketflow_tls_reloads_total",
                "Certificate reloads (file change or SIGHUP) by outcome: `ok`, or `error` (the previous certificate stays).",
                &["outcome"],
            ),
            registry,
        }
    }

    /// The registry as Prometheus text.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Times a block into a histogram.
pub fn observe_since(histogram: &Histogram, start: std::time::Instant) {
    histogram.observe(start.elapsed().as_secs_f64());
}
