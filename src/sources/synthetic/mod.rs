//! `type: synthetic` — a seeded market: geometric Brownian motion prices with Poisson
//! arrivals and log-normal trade sizes. The same seed and settings give the same ticks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration as StdDuration, Instant};

use marketflow_operators::time::{format_timestamp, parse_duration, parse_timestamp, SECOND};
use marketflow_operators::{Symbol, Tick};
use serde::Deserialize;

use schemars::JsonSchema;

use crate::config::diagnostic::Diagnostic;
use crate::config::values::{Duration, Parsed};
use crate::connector::{
    report_watermark, RestartFrom, Source, SourceContext, SourceEvent, Stamper, StreamType, Task,
    TaskError,
};
use crate::metrics::metrics;

/// A synthetic market that needs no keys and no servers.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Symbols to simulate.
    pub symbols: Vec<Parsed<Symbol>>,
    /// Random seed: the same seed and settings give the same ticks (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Ticks per second of event time, per symbol (default 5).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// First event time: RFC 3339, `now` or `now-<duration>` such as `now-6h`.
    /// Default: `now` with `pace: realtime`, otherwise 2024-01-02T00:00:00Z.
    #[serde(default)]
    pub start: Option<Parsed<Start>>,
    /// Stop after this many ticks over all symbols.
    #[serde(default)]
    pub count: Option<u64>,
    /// Stop after this much event time.
    #[serde(default)]
    pub duration: Option<Parsed<Duration>>,
    /// `max` generates as fast as the pipeline takes it; `realtime` follows the wall clock
    /// (event times before now are caught up at once). Default `max`.
    #[serde(default)]
    pub pace: Pace,
    /// Bounded out-of-orderness the watermark allows for (default 0s).
    #[serde(default)]
    pub max_delay: Duration,
    /// Deliver each tick up to this long after its event time (uniformly), to exercise
    /// out-of-order handling. Keep it at or below `max_delay` to have no late ticks
    /// (default 0s).
    #[serde(default)]
    pub disorder: Parsed<Duration>,
    /// Annualised volatility (default 0.4).
    #[serde(default = "default_volatility")]
    pub volatility: f64,
    /// Annualised drift (default 0).
    #[serde(default)]
    pub drift: f64,
    /// Opening prices by symbol (default: 20 to 500, drawn from the seed).
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
    /// Sparser ticks before `start` (`{span: 120d, rate: 0.002}`): months of daily
    /// sessions for indicators to warm up on, without generating them at the full rate.
    /// The walk is one: the full rate continues it at `start`.
    #[serde(default)]
    pub history: Option<History>,
}

/// Ticks before `start` at a lower rate.
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// How long before `start` the history begins, e.g. `120d`.
    pub span: Duration,
    /// Ticks per second of event time per symbol (default 0.002: one every 500 s).
    #[serde(default = "default_history_rate")]
    pub rate: f64,
}

fn default_history_rate() -> f64 {
    0.002
}

fn default_seed() -> u64 {
    42
}

fn default_rate() -> f64 {
    5.0
}

fn default_volatility() -> f64 {
    0.4
}

/// How fast ticks are produced.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    #[default]
    Max,
    Realtime,
}

/// The first event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    At(i64),
    /// Wall-clock now minus this many milliseconds.
    BeforeNow(i64),
}

impl FromStr for Start {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "now" {
            return Ok(Start::BeforeNow(0));
        }
        if let Some(ago) = s.strip_prefix("now-") {
            return parse_duration(ago)
                .map(Start::BeforeNow)
                .map_err(|e| e.to_string());
        }
        parse_timestamp(s)
            .map(Start::At)
            .map_err(|e| format!("{e}; or write `now` or `now-6h`"))
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Start::At(ms) => f.write_str(&format_timestamp(*ms)),
            Start::BeforeNow(0) => f.write_str("now"),
            Start::BeforeNow(ms) => write!(f, "now-{}", Duration(*ms)),
        }
    }
}

const DEFAULT_START: i64 = 1_704_153_600_000; // 2024-01-02T00:00:00Z
const MS_PER_YEAR: f64 = 365.25 * 86_400_000.0;
const BATCH: usize = 1024;

impl Source for SyntheticConfig {
    const TYPE: &'static str = "synthetic";
    const ABOUT: &'static str =
        "a seeded market: the same seed and settings give the same ticks; needs no keys";

    fn output(&self) -> StreamType {
        StreamType::Ticks
    }

    fn is_finite(&self) -> bool {
        self.count.is_some() || self.duration.is_some()
    }

    /// At `pace: max` from a fixed `start` the market is the same every run, so a partition
    /// restarts by generating again the ticks before the cut without sending them. In real
    /// time from now it is a live feed: it goes on from now.
    fn restart_from(&self) -> RestartFrom {
        let start = self.start.as_ref().map(|s| s.value);
        match self.pace {
            Pace::Max if !matches!(start, Some(Start::BeforeNow(_))) => RestartFrom::Position,
            Pace::Realtime if start.is_none() => RestartFrom::Now,
            _ => RestartFrom::Nowhere,
        }
    }

    fn max_delay(&self) -> i64 {
        self.max_delay.0
    }

    fn check(&self, path: &str) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let at = self.symbols.first().map(|s| s.pos).unwrap_or_default();
        if self.symbols.is_empty() {
            problems.push(Diagnostic::new(
                at,
                format!("{path}.symbols"),
                "list at least one symbol",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.symbols {
            if !seen.insert(s.value.clone()) {
                problems.push(Diagnostic::new(
                    s.pos,
                    format!("{path}.symbols"),
                    format!("symbol `{}` is listed twice", s.value),
                ));
            }
        }
        if let Some(history) = &self.history {
            if !(MIN_RATE..=1e6).contains(&history.rate) {
                problems.push(Diagnostic::new(
                    at,
                    format!("{path}.history.rate"),
                    format!(
                        "rate {:?} must be between 0.001 and 1000000 ticks per second",
                        history.rate
                    ),
                ));
            }
            let now = chrono::Utc::now().timestamp_millis();
            if !(1..=MAX_HISTORY_MS).contains(&history.span.0)
                || self.start_ms(now) - history.span.0 < 0
            {
                problems.push(Diagnostic::new(
                    at,
                    format!("{path}.history.span"),
                    "`span` must be above 0, at most 3660d, and not reach before 1970",
                ));
            }
        }
        if !(MIN_RATE..=1e6).contains(&self.rate) {
            problems.push(Diagnostic::new(
                at,
                format!("{path}.rate"),
                format!(
                    "rate {:?} must be between 0.001 and 1000000 ticks per second",
                    self.rate
                ),
            ));
        }
        // Times the run can reach: an event-time start within 1970..2200, and buffers
        // (disorder, max_delay) of a day at most.
        if let Some(start) = &self.start {
            let now = chrono::Utc::now().timestamp_millis();
            let ms = self.start_ms(now);
            if !(0..=MAX_EVENT_TIME).contains(&ms) {
                problems.push(Diagnostic::new(
                    start.pos,
                    format!("{path}.start"),
                    format!("`{}` is outside 1970 to 2200", start.value),
                ));
            }
        }
        for (key, value) in [
            ("disorder", self.disorder.value.0),
            ("max_delay", self.max_delay.0),
        ] {
            if value > MAX_BUFFER_MS {
                problems.push(Diagnostic::new(
                    self.disorder.pos,
                    format!("{path}.{key}"),
                    format!("`{key}` may be at most 1d"),
                ));
            }
        }
        if self
            .duration
            .as_ref()
            .is_some_and(|d| d.value.0 > MAX_EVENT_TIME)
        {
            problems.push(Diagnostic::new(
                at,
                format!("{path}.duration"),
                "`duration` may be at most 200 years",
            ));
        }
        if !(0.0..=10.0).contains(&self.volatility) {
            problems.push(Diagnostic::new(
                at,
                format!("{path}.volatility"),
                "volatility must be between 0 and 10 (annualised)",
            ));
        }
        if !self.drift.is_finite() || self.drift.abs() > 10.0 {
            problems.push(Diagnostic::new(
                at,
                format!("{path}.drift"),
                "drift must be between -10 and 10 (annualised)",
            ));
        }
        for (symbol, price) in &self.prices {
            if !self.symbols.iter().any(|s| s.value.as_str() == symbol) {
                problems.push(Diagnostic::new(
                    at,
                    format!("{path}.prices.{symbol}"),
                    format!("`{symbol}` is not in `symbols`"),
                ));
            }
            if !(price.is_finite() && *price > 0.0 && *price <= MAX_PRICE) {
                problems.push(Diagnostic::new(
                    at,
                    format!("{path}.prices.{symbol}"),
                    "opening prices must be above 0 and at most 1000000000",
                ));
            }
        }
        if self.pace == Pace::Max && !self.is_finite() {
            problems.push(
                Diagnostic::new(
                    at,
                    format!("{path}.pace"),
                    "`pace: max` without `count` or `duration` would never end",
                )
                .help("add `count: 100000` or `duration: 1d`, or use `pace: realtime`"),
            );
        }
        problems
    }

    fn build(&self, ctx: SourceContext) -> Task {
        let config = self.clone();
        Task::Blocking(Box::new(move || generate(&config, ctx)))
    }
}

/// The lowest `rate`: one tick every 1000 s.
const MIN_RATE: f64 = 0.001;
/// Event times stay below 2200-01-01 (ms).
const MAX_EVENT_TIME: i64 = 7_258_118_400_000;
/// The longest `history.span`: ten years.
const MAX_HISTORY_MS: i64 = 3660 * 86_400_000;
/// The longest `disorder` and `max_delay`: a day.
const MAX_BUFFER_MS: i64 = 86_400_000;
/// The highest opening price: the walk stays far from overflowing.
const MAX_PRICE: f64 = 1e9;

impl SyntheticConfig {
    /// The first event time, resolving `now` against the wall clock.
    fn start_ms(&self, now: i64) -> i64 {
        match self.start.as_ref().map(|s| s.value) {
            Some(Start::At(ms)) => ms,
            Some(Start::BeforeNow(ago)) => now - ago,
            None if self.pace == Pace::Realtime => now,
            None => DEFAULT_START,
        }
    }
}

/// xoshiro256++ seeded through splitmix64: small, fast, and stable forever, unlike a
/// library generator whose stream may change between versions.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

struct Instrument {
    symbol: Symbol,
    price: f64,
    last_ts: i64,
}

/// The tick generator, independent of pacing and delivery.
pub struct Market {
    rng: Rng,
    instruments: Vec<Instrument>,
    /// Next event time per instrument.
    schedule: BinaryHeap<Reverse<(i64, usize)>>,
    rate: f64,
    /// Before this event time ticks come at `history_rate`.
    dense_from: i64,
    history_rate: f64,
    volatility: f64,
    drift: f64,
    disorder: i64,
    /// Generated ticks waiting for their (delayed) arrival.
    in_flight: BinaryHeap<Reverse<InFlight>>,
    generated: u64,
}

impl Market {
    pub fn new(config: &SyntheticConfig, start: i64) -> Market {
        let (span, history_rate) = config
            .history
            .as_ref()
            .map_or((0, config.rate), |h| (h.span.0, h.rate));
        let dense_from = start;
        let start = start - span;
        let first_rate = if span > 0 { history_rate } else { config.rate };
        let mut rng = Rng::new(config.seed);
        let mut instruments = Vec::new();
        let mut schedule = BinaryHeap::new();
        for (i, s) in config.symbols.iter().enumerate() {
            let drawn = 20.0 * (25.0f64).powf(rng.uniform());
            let price = config
                .prices
                .get(s.value.as_str())
                .copied()
                .unwrap_or((drawn * 100.0).round() / 100.0);
            instruments.push(Instrument {
                symbol: s.value.clone(),
                price,
                last_ts: start,
            });
            let first = start + exponential_ms(&mut rng, first_rate) - 1;
            schedule.push(Reverse((first, i)));
        }
        Market {
            rng,
            instruments,
            schedule,
            rate: config.rate,
            dense_from,
            history_rate,
            volatility: config.volatility,
            drift: config.drift,
            disorder: config.disorder.value.0,
            in_flight: BinaryHeap::new(),
            generated: 0,
        }
    }

    /// Event time of the next tick to be generated.
    pub fn next_event_time(&self) -> i64 {
        self.schedule
            .peek()
            .map_or(i64::MAX, |Reverse((ts, _))| *ts)
    }

    /// A lower bound of the event time of every tick not yet delivered.
    pub fn earliest_pending(&self) -> i64 {
        let queued = self
            .in_flight
            .peek()
            .map_or(i64::MAX, |Reverse(f)| f.arrival);
        self.next_event_time().min(queued) - self.disorder
    }

    /// Generates the next tick in event-time order and queues it for delivery.
    fn generate(&mut self) {
        let Some(Reverse((ts, i))) = self.schedule.pop() else {
            return;
        };
        let dt_years = (ts - self.instruments[i].last_ts).max(1) as f64 / MS_PER_YEAR;
        let shock = self.rng.normal();
        let inst = &mut self.instruments[i];
        inst.price *= ((self.drift - 0.5 * self.volatility * self.volatility) * dt_years
            + self.volatility * dt_years.sqrt() * shock)
            .exp();
        inst.last_ts = ts;
        let price = ((inst.price * 100.0).round() / 100.0).max(0.01);
        let size = (3.5 + self.rng.normal())
            .exp()
            .round()
            .clamp(1.0, 100_000.0);
        let tick = Tick {
            symbol: inst.symbol.clone(),
            ts,
            price,
            volume: size,
            seq: 0,
            wm: 0,
        };
        let delay = if self.disorder > 0 {
            (self.rng.uniform() * self.disorder as f64) as i64
        } else {
            0
        };
        self.in_flight.push(Reverse(InFlight {
            arrival: ts + delay,
            order: self.generated,
            tick,
        }));
        self.generated += 1;
        let rate = if ts < self.dense_from {
            self.history_rate
        } else {
            self.rate
        };
        let mut next = ts + exponential_ms(&mut self.rng, rate);
        if ts < self.dense_from && next >= self.dense_from {
            // Memoryless: from `start` on, the wait is drawn at the full rate.
            next = self.dense_from + exponential_ms(&mut self.rng, self.rate) - 1;
        }
        self.schedule.push(Reverse((next, i)));
    }

    /// The next tick to arrive, if it arrives at or before `now` (event time).
    /// Ticks generated later can only arrive after the next event time, so a queued tick
    /// arriving before that is final.
    pub fn next_arrival(&mut self, now: i64) -> Option<Tick> {
        loop {
            let ready = self.in_flight.peek().map(|Reverse(f)| f.arrival);
            match ready {
                Some(arrival) if arrival < self.next_event_time() || self.disorder == 0 => {
                    if arrival > now {
                        return None;
                    }
                    return self.in_flight.pop().map(|Reverse(f)| f.tick);
                }
                _ => {
                    if self.next_event_time() > now && self.in_flight.is_empty() {
                        return None;
                    }
                    self.generate();
                }
            }
        }
    }
}

/// A tick on its way, ordered by arrival time, then generation order.
struct InFlight {
    arrival: i64,
    order: u64,
    tick: Tick,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.arrival, self.order) == (other.arrival, other.order)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.arrival, self.order).cmp(&(other.arrival, other.order))
    }
}

fn exponential_ms(rng: &mut Rng, rate: f64) -> i64 {
    ((-rng.uniform().ln() / rate) * SECOND as f64)
        .round()
        .max(1.0) as i64
}

/// The running market of one source: what it has sent and when it ends.
struct Generator<'a> {
    config: &'a SyntheticConfig,
    ctx: SourceContext,
    market: Market,
    stamper: Stamper,
    counter: prometheus::IntCounter,
    start: i64,
    /// Event time at which the market closes (`duration`), or never.
    end: i64,
    /// Ticks to send at most (`count`).
    limit: u64,
    sent: u64,
    wall_now: i64,
    clock_origin: Instant,
}

impl Generator<'_> {
    /// The event time of now: the wall clock from `start` in realtime mode (or the wall
    /// clock itself when `start` is relative to now); unbounded at `pace: max`.
    fn event_now(&self) -> i64 {
        if self.config.pace != Pace::Realtime {
            return i64::MAX;
        }
        let elapsed = self.clock_origin.elapsed().as_millis() as i64;
        match self.config.start.as_ref().map(|s| s.value) {
            Some(Start::At(_)) => self.start + elapsed,
            _ => self.wall_now + elapsed,
        }
    }

    /// The ticks that have arrived by `now`, up to a batch; true once the market is over.
    fn next_batch(&mut self, now: i64) -> (Vec<Tick>, bool) {
        let realtime = self.config.pace == Pace::Realtime;
        let mut batch = Vec::with_capacity(if realtime { 64 } else { BATCH });
        while batch.len() < BATCH && self.sent < self.limit {
            match self.market.next_arrival(now) {
                Some(mut tick) if tick.ts < self.end => {
                    self.stamper.stamp_tick(&mut tick);
                    batch.push(tick);
                    self.sent += 1;
                }
                Some(_) => {
                    if self.market.next_event_time() >= self.end && self.market.in_flight.is_empty()
                    {
                        return (batch, true);
                    }
                }
                None => break,
            }
        }
        (batch, self.sent >= self.limit)
    }

    /// Generates the first `position` ticks again without sending them (a restart).
    fn skip_to(&mut self, position: u64) {
        while self.sent < position.min(self.limit) {
            match self.market.next_arrival(i64::MAX) {
                Some(tick) if tick.ts < self.end => self.sent += 1,
                Some(_) => {
                    if self.market.next_event_time() >= self.end && self.market.in_flight.is_empty()
                    {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    fn send(&self, batch: Vec<Tick>) -> Result<(), TaskError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.counter.inc_by(batch.len() as u64);
        self.ctx.out.blocking_send(SourceEvent::Ticks {
            records: batch,
            position: self.sent,
        })?;
        Ok(())
    }

    /// Realtime: moves the watermark with the clock (no tick still to come has an earlier
    /// event time) and waits for the next arrival; true when the run should stop.
    fn follow_clock(&mut self, now: i64) -> Result<bool, TaskError> {
        let end = self.end;
        if self
            .stamper
            .advance(self.market.earliest_pending().min(now).min(end))
        {
            let watermark = SourceEvent::Watermark(self.stamper.watermark());
            self.ctx.out.blocking_send(watermark)?;
        }
        report_watermark(&self.ctx.name, self.stamper.watermark());
        let wait = (self.market.next_event_time().min(end) - now).clamp(1, 250);
        let stopped = self
            .ctx
            .shutdown
            .wait_timeout(StdDuration::from_millis(wait as u64));
        Ok(stopped || now >= end)
    }
}

fn generate(config: &SyntheticConfig, ctx: SourceContext) -> Result<(), TaskError> {
    let wall_now = chrono::Utc::now().timestamp_millis();
    let start = config.start_ms(wall_now);
    let counter = metrics()
        .source_records
        .with_label_values(&[ctx.name.as_str()]);
    tracing::info!(source = %ctx.name, symbols = config.symbols.len(), start = %format_timestamp(start), pace = ?config.pace, "synthetic market started");
    let mut generator = Generator {
        config,
        market: Market::new(config, start),
        stamper: Stamper::for_partition(config.max_delay.0, ctx.partition),
        counter,
        start,
        end: config
            .duration
            .as_ref()
            .map_or(i64::MAX, |d| start.saturating_add(d.value.0)),
        limit: config.count.unwrap_or(u64::MAX),
        sent: 0,
        wall_now,
        clock_origin: Instant::now(),
        ctx,
    };
    if let Some(restart) = generator.ctx.restart {
        let position = restart.position.unwrap_or(0);
        match config.restart_from() {
            // In real time it goes on from now: only its count continues.
            RestartFrom::Now => generator.sent = position,
            _ => generator.skip_to(position),
        }
        if let Some(state) = restart.stamper {
            generator.stamper = Stamper::restored(config.max_delay.0, state);
        }
    }
    let mut last_progress = Instant::now();
    while !generator.ctx.shutdown.is_triggered() {
        let now = generator.event_now();
        let (batch, over) = generator.next_batch(now);
        generator.send(batch)?;
        if over {
            break;
        }
        if config.pace == Pace::Realtime {
            if generator.follow_clock(now)? {
                break;
            }
        } else if last_progress.elapsed() >= StdDuration::from_secs(2) {
            last_progress = Instant::now();
            let (name, watermark) = (&generator.ctx.name, generator.stamper.watermark());
            report_watermark(name, watermark);
            tracing::info!(source = %name, ticks = generator.sent, event_time = %format_timestamp(watermark), "generating");
        }
    }
    tracing::info!(source = %generator.ctx.name, ticks = generator.sent, "synthetic market finished");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::Pos;

    fn config(disorder: i64) -> SyntheticConfig {
        SyntheticConfig {
            symbols: ["AAPL", "MSFT", "NVDA"]
                .iter()
                .map(|s| Parsed {
                    value: Symbol::new(s).unwrap(),
                    pos: Pos::default(),
                })
                .collect(),
            seed: 7,
            rate: 20.0,
            start: None,
            count: Some(5_000),
            duration: None,
            pace: Pace::Max,
            max_delay: Duration(disorder),
            disorder: Parsed {
                value: Duration(disorder),
                pos: Pos::default(),
            },
            volatility: 0.4,
            drift: 0.0,
            prices: BTreeMap::new(),
            history: None,
        }
    }

    fn run(config: &SyntheticConfig) -> Vec<Tick> {
        let mut market = Market::new(config, DEFAULT_START);
        (0..5_000)
            .map_while(|_| market.next_arrival(i64::MAX))
            .collect()
    }

    #[test]
    fn same_seed_same_market() {
        let a = run(&config(0));
        assert_eq!(a.len(), 5_000);
        assert_eq!(a, run(&config(0)));
        assert!(a.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(a.iter().all(|t| t.price > 0.0 && t.volume >= 1.0));
    }

    #[test]
    fn disorder_reorders_within_the_bound() {
        let ticks = run(&config(1_500));
        assert!(
            ticks.windows(2).any(|w| w[0].ts > w[1].ts),
            "some ticks arrive out of order"
        );
        let mut max_seen = i64::MIN;
        for t in &ticks {
            assert!(
                t.ts >= max_seen.saturating_sub(1_500),
                "tick {} behind {} by more than the disorder",
                t.ts,
                max_seen
            );
            max_seen = max_seen.max(t.ts);
        }
    }

    #[test]
    fn history_comes_before_start_at_its_rate() {
        let mut c = config(0);
        c.history = Some(History {
            span: Duration(86_400_000),
            rate: 0.01,
        });
        let symbols = c.symbols.len() as f64;
        let mut market = Market::new(&c, DEFAULT_START);
        let ticks: Vec<Tick> = (0..20_000)
            .map_while(|_| market.next_arrival(i64::MAX))
            .collect();
        let before = ticks.iter().filter(|t| t.ts < DEFAULT_START).count() as f64;
        // 0.01 a second for a day: 864 per symbol, give or take the Poisson spread.
        let expected = 864.0 * symbols;
        assert!(
            (before - expected).abs() < 0.15 * expected,
            "{before} ticks before start, expected about {expected}"
        );
        assert!(ticks[0].ts >= DEFAULT_START - 86_400_000);
        // Then the full rate (20 a second per symbol).
        let after: Vec<&Tick> = ticks.iter().filter(|t| t.ts >= DEFAULT_START).collect();
        let span = (after[after.len() - 1].ts - after[0].ts) as f64 / 1000.0;
        let rate = after.len() as f64 / span / symbols;
        assert!((rate - 20.0).abs() < 2.0, "{rate} ticks/s after start");
        // One walk: no jump at `start` beyond a normal step.
        let last = ticks.iter().rfind(|t| t.ts < DEFAULT_START).unwrap();
        let next = after.iter().find(|t| t.symbol == last.symbol).unwrap();
        assert!(
            (next.price / last.price - 1.0).abs() < 0.05,
            "{last:?} then {next:?}"
        );
    }

    #[test]
    fn start_forms() {
        assert_eq!("now".parse::<Start>(), Ok(Start::BeforeNow(0)));
        assert_eq!(
            "now-6h".parse::<Start>(),
            Ok(Start::BeforeNow(6 * 3_600_000))
        );
        assert_eq!(
            "2024-01-02T00:00:00Z".parse::<Start>(),
            Ok(Start::At(DEFAULT_START))
        );
        assert!("tomorrow".parse::<Start>().is_err());
    }
}
