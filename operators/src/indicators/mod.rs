//! Technical indicators as small streaming state machines, one file per indicator,
//! grouped by family. Conventions follow TA-Lib (see `docs/indicators.md`): seeding,
//! Wilder smoothing, population deviations and the index of the first value.

pub mod average;
pub mod momentum;
pub mod ticks;
pub mod volatility;
pub mod volume;
pub mod window;

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::record::{Bar, MAX_OUTPUTS};

/// The values of one update, in the order of `IndicatorKind::outputs()`; unused slots
/// are NaN.
pub type Outputs = [f64; MAX_OUTPUTS];

/// A streaming indicator over bars of one symbol and interval.
pub trait Indicator: Send {
    /// Bars consumed before the first value (TA-Lib's lookback): the first value comes
    /// with bar number `lookback() + 1`.
    fn lookback(&self) -> usize;
    /// Folds in the next bar; the values once the warm-up is over.
    fn update(&mut self, bar: &Bar) -> Option<Outputs>;
    /// Back to the state of a new instance.
    fn reset(&mut self);
    /// Its state, for a checkpoint.
    fn save(&self) -> Vec<u8>;
    /// Back to a state [`Indicator::save`] gave (of an instance with the same parameters).
    fn load(&mut self, state: &[u8]) -> Result<(), crate::state::StateError>;
}

/// One value in the first slot.
#[inline]
pub fn single(value: f64) -> Outputs {
    [value, f64::NAN, f64::NAN, f64::NAN, f64::NAN]
}

/// Three values in the first slots.
#[inline]
pub fn triple(a: f64, b: f64, c: f64) -> Outputs {
    [a, b, c, f64::NAN, f64::NAN]
}

/// Which price of a bar a single-series indicator reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    Open,
    High,
    Low,
    #[default]
    Close,
    /// (high + low) / 2, TA-Lib `MEDPRICE`.
    Hl2,
    /// (high + low + close) / 3, TA-Lib `TYPPRICE`.
    Hlc3,
    /// (open + high + low + close) / 4, TA-Lib `AVGPRICE`.
    Ohlc4,
}

impl PriceSource {
    #[inline]
    pub fn of(self, bar: &Bar) -> f64 {
        match self {
            PriceSource::Open => bar.open,
            PriceSource::High => bar.high,
            PriceSource::Low => bar.low,
            PriceSource::Close => bar.close,
            PriceSource::Hl2 => (bar.high + bar.low) / 2.0,
            PriceSource::Hlc3 => (bar.high + bar.low + bar.close) / 3.0,
            PriceSource::Ohlc4 => (bar.open + bar.high + bar.low + bar.close) / 4.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PriceSource::Open => "open",
            PriceSource::High => "high",
            PriceSource::Low => "low",
            PriceSource::Close => "close",
            PriceSource::Hl2 => "hl2",
            PriceSource::Hlc3 => "hlc3",
            PriceSource::Ohlc4 => "ohlc4",
        }
    }
}

/// Which indicator produced a row; fixes the names of its outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IndicatorKind {
    Sma,
    Ema,
    Wma,
    Rsi,
    Macd,
    Bollinger,
    Atr,
    Stochastic,
    StdDev,
    Vwap,
    Adx,
    Cci,
    Roc,
    WilliamsR,
    Obv,
    Keltner,
    Mom,
    Natr,
    HistVol,
    Mfi,
    Sar,
    Aroon,
    Dema,
    Tema,
    Trix,
    Kama,
    Ppo,
    Cmo,
    Ultosc,
    Adxr,
    PriceVelocity,
    TickRatio,
    TickVwap,
    VolumeMomentum,
    TickBollinger,
    TickRsi,
}

impl IndicatorKind {
    /// Every kind, in documentation order.
    pub const ALL: [IndicatorKind; 36] = [
        IndicatorKind::Sma,
        IndicatorKind::Ema,
        IndicatorKind::Wma,
        IndicatorKind::Rsi,
        IndicatorKind::Macd,
        IndicatorKind::Bollinger,
        IndicatorKind::Atr,
        IndicatorKind::Stochastic,
        IndicatorKind::StdDev,
        IndicatorKind::Vwap,
        IndicatorKind::Adx,
        IndicatorKind::Cci,
        IndicatorKind::Roc,
        IndicatorKind::WilliamsR,
        IndicatorKind::Obv,
        IndicatorKind::Keltner,
        IndicatorKind::Mom,
        IndicatorKind::Natr,
        IndicatorKind::HistVol,
        IndicatorKind::Mfi,
        IndicatorKind::Sar,
        IndicatorKind::Aroon,
        IndicatorKind::Dema,
        IndicatorKind::Tema,
        IndicatorKind::Trix,
        IndicatorKind::Kama,
        IndicatorKind::Ppo,
        IndicatorKind::Cmo,
        IndicatorKind::Ultosc,
        IndicatorKind::Adxr,
        IndicatorKind::PriceVelocity,
        IndicatorKind::TickRatio,
        IndicatorKind::TickVwap,
        IndicatorKind::VolumeMomentum,
        IndicatorKind::TickBollinger,
        IndicatorKind::TickRsi,
    ];

    /// The name used in pipeline files and in the `indicator` field of rows.
    pub fn name(self) -> &'static str {
        match self {
            IndicatorKind::Sma => "sma",
            IndicatorKind::Ema => "ema",
            IndicatorKind::Wma => "wma",
            IndicatorKind::Rsi => "rsi",
            IndicatorKind::Macd => "macd",
            IndicatorKind::Bollinger => "bollinger",
            IndicatorKind::Atr => "atr",
            IndicatorKind::Stochastic => "stochastic",
            IndicatorKind::StdDev => "stddev",
            IndicatorKind::Vwap => "vwap",
            IndicatorKind::Adx => "adx",
            IndicatorKind::Cci => "cci",
            IndicatorKind::Roc => "roc",
            IndicatorKind::WilliamsR => "willr",
            IndicatorKind::Obv => "obv",
            IndicatorKind::Keltner => "keltner",
            IndicatorKind::Mom => "mom",
            IndicatorKind::Natr => "natr",
            IndicatorKind::HistVol => "hist_vol",
            IndicatorKind::Mfi => "mfi",
            IndicatorKind::Sar => "sar",
            IndicatorKind::Aroon => "aroon",
            IndicatorKind::Dema => "dema",
            IndicatorKind::Tema => "tema",
            IndicatorKind::Trix => "trix",
            IndicatorKind::Kama => "kama",
            IndicatorKind::Ppo => "ppo",
            IndicatorKind::Cmo => "cmo",
            IndicatorKind::Ultosc => "ultosc",
            IndicatorKind::Adxr => "adxr",
            IndicatorKind::PriceVelocity => "price_velocity",
            IndicatorKind::TickRatio => "tick_ratio",
            IndicatorKind::TickVwap => "tick_vwap",
            IndicatorKind::VolumeMomentum => "volume_momentum",
            IndicatorKind::TickBollinger => "tick_bollinger",
            IndicatorKind::TickRsi => "tick_rsi",
        }
    }

    /// Output names, in the order of `IndicatorRow::outputs`.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            IndicatorKind::Macd => &["macd", "signal", "hist"],
            IndicatorKind::Bollinger => &["upper", "middle", "lower", "bandwidth", "percent_b"],
            IndicatorKind::Keltner => &["upper", "middle", "lower"],
            IndicatorKind::Aroon => &["up", "down", "oscillator"],
            IndicatorKind::TickBollinger => &["bandwidth", "position"],
            IndicatorKind::Stochastic => &["k", "d"],
            IndicatorKind::Adx => &["adx", "plus_di", "minus_di"],
            _ => &["value"],
        }
    }
}

/// `period` and `source` of a single-series indicator (SMA, EMA, WMA, RSI, ROC).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    /// Bars in the window (default per indicator, see `docs/indicators.md`).
    #[serde(default)]
    pub period: Option<usize>,
    /// The bar price to read (default `close`).
    #[serde(default)]
    pub source: PriceSource,
    /// Overrides the generated id such as `sma_20`.
    #[serde(default)]
    pub id: Option<String>,
}

/// `period` of an indicator over high, low and close (ATR, ADX, CCI, Williams %R).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarParams {
    #[serde(default)]
    pub period: Option<usize>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacdParams {
    #[serde(default = "twelve")]
    pub fast: usize,
    #[serde(default = "twenty_six")]
    pub slow: usize,
    #[serde(default = "nine")]
    pub signal: usize,
    #[serde(default)]
    pub source: PriceSource,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BollingerParams {
    #[serde(default = "twenty")]
    pub period: usize,
    /// Band width in standard deviations.
    #[serde(default = "two")]
    pub stddev: f64,
    #[serde(default)]
    pub source: PriceSource,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StochasticParams {
    /// Fast %K window.
    #[serde(default = "fourteen")]
    pub k: usize,
    /// SMA smoothing of fast %K into %K.
    #[serde(default = "three")]
    pub k_smooth: usize,
    /// SMA of %K into %D.
    #[serde(default = "three")]
    pub d: usize,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdDevParams {
    #[serde(default = "twenty")]
    pub period: usize,
    /// Multiplier of the deviation (TA-Lib `nbdev`).
    #[serde(default = "one")]
    pub nbdev: f64,
    #[serde(default)]
    pub source: PriceSource,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeltnerParams {
    /// EMA of the middle line.
    #[serde(default = "twenty")]
    pub period: usize,
    /// ATR of the band width.
    #[serde(default = "ten")]
    pub atr_period: usize,
    #[serde(default = "two")]
    pub multiplier: f64,
    /// The middle line: `ema` (default, the StockCharts definition) or `sma`.
    #[serde(default)]
    pub middle: KeltnerMiddle,
    #[serde(default)]
    pub id: Option<String>,
}

/// The middle line of Keltner Channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeltnerMiddle {
    #[default]
    Ema,
    Sma,
}

/// `period` and `source` of historical volatility, and its annualisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistVolParams {
    /// Log returns in the window.
    #[serde(default = "twenty")]
    pub period: usize,
    #[serde(default)]
    pub source: PriceSource,
    /// Bars per year for the annualisation (default: from the bars' interval and session).
    #[serde(default)]
    pub periods_per_year: Option<f64>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SarParams {
    /// Acceleration factor: the start and the step.
    #[serde(default = "two_hundredths")]
    pub acceleration: f64,
    /// The largest acceleration factor.
    #[serde(default = "two_tenths")]
    pub maximum: f64,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoParams {
    #[serde(default = "twelve")]
    pub fast: usize,
    #[serde(default = "twenty_six")]
    pub slow: usize,
    /// `ema` (default) or `sma` (TA-Lib's default `matype`).
    #[serde(default)]
    pub ma: momentum::ppo::Average,
    #[serde(default)]
    pub source: PriceSource,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UltoscParams {
    #[serde(default = "seven")]
    pub short: usize,
    #[serde(default = "fourteen")]
    pub medium: usize,
    #[serde(default = "twenty_eight")]
    pub long: usize,
    #[serde(default)]
    pub id: Option<String>,
}

/// Indicators without parameters (VWAP, OBV).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {
    #[serde(default)]
    pub id: Option<String>,
}

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn three() -> usize {
    3
}
fn seven() -> usize {
    7
}
fn twenty_eight() -> usize {
    28
}
fn two_hundredths() -> f64 {
    0.02
}
fn two_tenths() -> f64 {
    0.2
}
fn nine() -> usize {
    9
}
fn ten() -> usize {
    10
}
fn twelve() -> usize {
    12
}
fn fourteen() -> usize {
    14
}
fn twenty() -> usize {
    20
}
fn twenty_six() -> usize {
    26
}

/// An invalid parameter: its key and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub key: &'static str,
    pub message: String,
}

/// One configured indicator, as written in a pipeline: `- rsi: {period: 14}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorSpec {
    Sma(SeriesParams),
    Ema(SeriesParams),
    Wma(SeriesParams),
    Rsi(SeriesParams),
    Macd(MacdParams),
    Bollinger(BollingerParams),
    Atr(BarParams),
    Stochastic(StochasticParams),
    Stddev(StdDevParams),
    Vwap(NoParams),
    Adx(BarParams),
    Cci(BarParams),
    Roc(SeriesParams),
    Willr(BarParams),
    Obv(NoParams),
    Keltner(KeltnerParams),
    Mom(SeriesParams),
    Natr(BarParams),
    HistVol(HistVolParams),
    Mfi(BarParams),
    Sar(SarParams),
    Aroon(BarParams),
    Dema(SeriesParams),
    Tema(SeriesParams),
    Trix(SeriesParams),
    Kama(SeriesParams),
    Ppo(PpoParams),
    Cmo(SeriesParams),
    Ultosc(UltoscParams),
    Adxr(BarParams),
}

/// Formats a float parameter for an id: `2`, `2.5`.
fn number(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e9 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

impl IndicatorSpec {
    pub fn kind(&self) -> IndicatorKind {
        match self {
            IndicatorSpec::Sma(_) => IndicatorKind::Sma,
            IndicatorSpec::Ema(_) => IndicatorKind::Ema,
            IndicatorSpec::Wma(_) => IndicatorKind::Wma,
            IndicatorSpec::Rsi(_) => IndicatorKind::Rsi,
            IndicatorSpec::Macd(_) => IndicatorKind::Macd,
            IndicatorSpec::Bollinger(_) => IndicatorKind::Bollinger,
            IndicatorSpec::Atr(_) => IndicatorKind::Atr,
            IndicatorSpec::Stochastic(_) => IndicatorKind::Stochastic,
            IndicatorSpec::Stddev(_) => IndicatorKind::StdDev,
            IndicatorSpec::Vwap(_) => IndicatorKind::Vwap,
            IndicatorSpec::Adx(_) => IndicatorKind::Adx,
            IndicatorSpec::Cci(_) => IndicatorKind::Cci,
            IndicatorSpec::Roc(_) => IndicatorKind::Roc,
            IndicatorSpec::Willr(_) => IndicatorKind::WilliamsR,
            IndicatorSpec::Obv(_) => IndicatorKind::Obv,
            IndicatorSpec::Keltner(_) => IndicatorKind::Keltner,
            IndicatorSpec::Mom(_) => IndicatorKind::Mom,
            IndicatorSpec::Natr(_) => IndicatorKind::Natr,
            IndicatorSpec::HistVol(_) => IndicatorKind::HistVol,
            IndicatorSpec::Mfi(_) => IndicatorKind::Mfi,
            IndicatorSpec::Sar(_) => IndicatorKind::Sar,
            IndicatorSpec::Aroon(_) => IndicatorKind::Aroon,
            IndicatorSpec::Dema(_) => IndicatorKind::Dema,
            IndicatorSpec::Tema(_) => IndicatorKind::Tema,
            IndicatorSpec::Trix(_) => IndicatorKind::Trix,
            IndicatorSpec::Kama(_) => IndicatorKind::Kama,
            IndicatorSpec::Ppo(_) => IndicatorKind::Ppo,
            IndicatorSpec::Cmo(_) => IndicatorKind::Cmo,
            IndicatorSpec::Ultosc(_) => IndicatorKind::Ultosc,
            IndicatorSpec::Adxr(_) => IndicatorKind::Adxr,
        }
    }

    /// The period used when none is given.
    fn default_period(&self) -> usize {
        match self {
            IndicatorSpec::Rsi(_)
            | IndicatorSpec::Atr(_)
            | IndicatorSpec::Adx(_)
            | IndicatorSpec::Willr(_)
            | IndicatorSpec::Natr(_)
            | IndicatorSpec::Mfi(_)
            | IndicatorSpec::Aroon(_)
            | IndicatorSpec::Cmo(_)
            | IndicatorSpec::Adxr(_) => 14,
            IndicatorSpec::Roc(_) | IndicatorSpec::Mom(_) => 10,
            IndicatorSpec::Dema(_)
            | IndicatorSpec::Tema(_)
            | IndicatorSpec::Trix(_)
            | IndicatorSpec::Kama(_) => 30,
            _ => 20,
        }
    }

    fn period(&self, given: Option<usize>) -> usize {
        given.unwrap_or_else(|| self.default_period())
    }

    /// The id of the rows, e.g. `rsi_14`, `macd_12_26_9`, `sma_20_hlc3`.
    pub fn id(&self) -> String {
        let name = self.kind().name();
        let with_source = |base: String, source: PriceSource| {
            if source == PriceSource::Close {
                base
            } else {
                format!("{base}_{}", source.name())
            }
        };
        let (custom, generated) = match self {
            IndicatorSpec::Sma(p)
            | IndicatorSpec::Ema(p)
            | IndicatorSpec::Wma(p)
            | IndicatorSpec::Rsi(p)
            | IndicatorSpec::Roc(p)
            | IndicatorSpec::Mom(p)
            | IndicatorSpec::Dema(p)
            | IndicatorSpec::Tema(p)
            | IndicatorSpec::Trix(p)
            | IndicatorSpec::Kama(p)
            | IndicatorSpec::Cmo(p) => (
                &p.id,
                with_source(format!("{name}_{}", self.period(p.period)), p.source),
            ),
            IndicatorSpec::Atr(p)
            | IndicatorSpec::Adx(p)
            | IndicatorSpec::Cci(p)
            | IndicatorSpec::Willr(p)
            | IndicatorSpec::Natr(p)
            | IndicatorSpec::Mfi(p)
            | IndicatorSpec::Aroon(p)
            | IndicatorSpec::Adxr(p) => (&p.id, format!("{name}_{}", self.period(p.period))),
            IndicatorSpec::HistVol(p) => (
                &p.id,
                with_source(format!("hist_vol_{}", p.period), p.source),
            ),
            IndicatorSpec::Sar(p) => (
                &p.id,
                format!("sar_{}_{}", number(p.acceleration), number(p.maximum)),
            ),
            IndicatorSpec::Ppo(p) => {
                let base = format!("ppo_{}_{}", p.fast, p.slow);
                let base = match p.ma {
                    momentum::ppo::Average::Ema => base,
                    momentum::ppo::Average::Sma => format!("{base}_sma"),
                };
                (&p.id, with_source(base, p.source))
            }
            IndicatorSpec::Ultosc(p) => {
                (&p.id, format!("ultosc_{}_{}_{}", p.short, p.medium, p.long))
            }
            IndicatorSpec::Macd(p) => (
                &p.id,
                with_source(format!("macd_{}_{}_{}", p.fast, p.slow, p.signal), p.source),
            ),
            IndicatorSpec::Bollinger(p) => (
                &p.id,
                with_source(
                    format!("bollinger_{}_{}", p.period, number(p.stddev)),
                    p.source,
                ),
            ),
            IndicatorSpec::Stochastic(p) => {
                (&p.id, format!("stochastic_{}_{}_{}", p.k, p.k_smooth, p.d))
            }
            IndicatorSpec::Stddev(p) => {
                let base = if p.nbdev == 1.0 {
                    format!("stddev_{}", p.period)
                } else {
                    format!("stddev_{}_{}", p.period, number(p.nbdev))
                };
                (&p.id, with_source(base, p.source))
            }
            IndicatorSpec::Vwap(p) | IndicatorSpec::Obv(p) => (&p.id, name.to_owned()),
            IndicatorSpec::Keltner(p) => {
                let base = format!(
                    "keltner_{}_{}_{}",
                    p.period,
                    p.atr_period,
                    number(p.multiplier)
                );
                let base = match p.middle {
                    KeltnerMiddle::Ema => base,
                    KeltnerMiddle::Sma => format!("{base}_sma"),
                };
                (&p.id, base)
            }
        };
        custom.clone().unwrap_or(generated)
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), ParamError> {
        let at_least = |key: &'static str, value: usize, min: usize| {
            if value < min {
                Err(ParamError {
                    key,
                    message: format!("`{key}` must be at least {min} (got {value})"),
                })
            } else if value > 100_000 {
                Err(ParamError {
                    key,
                    message: format!("`{key}` must be at most 100000 (got {value})"),
                })
            } else {
                Ok(())
            }
        };
        let fast_below_slow = |fast: usize, slow: usize| {
            if fast < slow {
                Ok(())
            } else {
                Err(ParamError {
                    key: "fast",
                    message: format!("`fast` ({fast}) must be below `slow` ({slow})"),
                })
            }
        };
        let positive = |key: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(ParamError {
                    key,
                    message: format!("`{key}` must be a positive number (got {value})"),
                })
            }
        };
        match self {
            IndicatorSpec::Sma(p)
            | IndicatorSpec::Ema(p)
            | IndicatorSpec::Wma(p)
            | IndicatorSpec::Rsi(p) => at_least("period", self.period(p.period), 2),
            IndicatorSpec::Roc(p) | IndicatorSpec::Mom(p) => {
                at_least("period", self.period(p.period), 1)
            }
            IndicatorSpec::Atr(p) | IndicatorSpec::Natr(p) => {
                at_least("period", self.period(p.period), 1)
            }
            IndicatorSpec::Adx(p)
            | IndicatorSpec::Cci(p)
            | IndicatorSpec::Willr(p)
            | IndicatorSpec::Mfi(p)
            | IndicatorSpec::Aroon(p)
            | IndicatorSpec::Adxr(p) => at_least("period", self.period(p.period), 2),
            IndicatorSpec::Dema(p)
            | IndicatorSpec::Tema(p)
            | IndicatorSpec::Trix(p)
            | IndicatorSpec::Kama(p)
            | IndicatorSpec::Cmo(p) => at_least("period", self.period(p.period), 2),
            IndicatorSpec::HistVol(p) => {
                at_least("period", p.period, 2)?;
                match p.periods_per_year {
                    Some(n) => positive("periods_per_year", n),
                    None => Ok(()),
                }
            }
            IndicatorSpec::Sar(p) => {
                positive("acceleration", p.acceleration)?;
                positive("maximum", p.maximum)
            }
            IndicatorSpec::Ppo(p) => {
                at_least("fast", p.fast, 2)?;
                at_least("slow", p.slow, 2)?;
                fast_below_slow(p.fast, p.slow)
            }
            IndicatorSpec::Ultosc(p) => {
                at_least("short", p.short, 1)?;
                at_least("medium", p.medium, 1)?;
                at_least("long", p.long, 1)
            }
            IndicatorSpec::Macd(p) => {
                at_least("fast", p.fast, 2)?;
                at_least("slow", p.slow, 2)?;
                at_least("signal", p.signal, 1)?;
                fast_below_slow(p.fast, p.slow)
            }
            IndicatorSpec::Bollinger(p) => {
                at_least("period", p.period, 2)?;
                positive("stddev", p.stddev)
            }
            IndicatorSpec::Stochastic(p) => {
                at_least("k", p.k, 1)?;
                at_least("k_smooth", p.k_smooth, 1)?;
                at_least("d", p.d, 1)
            }
            IndicatorSpec::Stddev(p) => {
                at_least("period", p.period, 2)?;
                positive("nbdev", p.nbdev)
            }
            IndicatorSpec::Keltner(p) => {
                at_least("period", p.period, 2)?;
                at_least("atr_period", p.atr_period, 1)?;
                positive("multiplier", p.multiplier)
            }
            IndicatorSpec::Vwap(_) | IndicatorSpec::Obv(_) => Ok(()),
        }
    }

    /// A new kernel; `calendar` is that of the input bars (VWAP resets on its sessions).
    pub fn build(&self, calendar: &Calendar) -> Box<dyn Indicator> {
        use average::{ema::Ema, sma::Sma, vwap::Vwap, wma::Wma};
        use momentum::{
            adx::Adx, cci::Cci, macd::Macd, roc::Roc, rsi::Rsi, stochastic::Stochastic,
            willr::WilliamsR,
        };
        use volatility::{atr::Atr, bollinger::Bollinger, keltner::Keltner, stddev::StdDev};
        match self {
            IndicatorSpec::Sma(p) => Box::new(Sma::new(self.period(p.period), p.source)),
            IndicatorSpec::Ema(p) => Box::new(Ema::new(self.period(p.period), p.source)),
            IndicatorSpec::Wma(p) => Box::new(Wma::new(self.period(p.period), p.source)),
            IndicatorSpec::Rsi(p) => Box::new(Rsi::new(self.period(p.period), p.source)),
            IndicatorSpec::Roc(p) => Box::new(Roc::new(self.period(p.period), p.source)),
            IndicatorSpec::Macd(p) => Box::new(Macd::new(p.fast, p.slow, p.signal, p.source)),
            IndicatorSpec::Bollinger(p) => Box::new(Bollinger::new(p.period, p.stddev, p.source)),
            IndicatorSpec::Atr(p) => Box::new(Atr::new(self.period(p.period))),
            IndicatorSpec::Stochastic(p) => Box::new(Stochastic::new(p.k, p.k_smooth, p.d)),
            IndicatorSpec::Stddev(p) => Box::new(StdDev::new(p.period, p.nbdev, p.source)),
            IndicatorSpec::Vwap(_) => Box::new(Vwap::new(calendar.clone())),
            IndicatorSpec::Adx(p) => Box::new(Adx::new(self.period(p.period))),
            IndicatorSpec::Cci(p) => Box::new(Cci::new(self.period(p.period))),
            IndicatorSpec::Willr(p) => Box::new(WilliamsR::new(self.period(p.period))),
            IndicatorSpec::Obv(_) => Box::new(volume::obv::Obv::default()),
            IndicatorSpec::Keltner(p) => {
                Box::new(Keltner::new(p.period, p.atr_period, p.multiplier, p.middle))
            }
            IndicatorSpec::Mom(p) => {
                Box::new(momentum::mom::Mom::new(self.period(p.period), p.source))
            }
            IndicatorSpec::Natr(p) => Box::new(volatility::natr::Natr::new(self.period(p.period))),
            IndicatorSpec::HistVol(p) => Box::new(volatility::hist_vol::HistVol::new(
                p.period,
                p.source,
                calendar.clone(),
                p.periods_per_year,
            )),
            IndicatorSpec::Mfi(p) => Box::new(volume::mfi::Mfi::new(self.period(p.period))),
            IndicatorSpec::Sar(p) => Box::new(momentum::sar::Sar::new(p.acceleration, p.maximum)),
            IndicatorSpec::Aroon(p) => Box::new(momentum::aroon::Aroon::new(self.period(p.period))),
            IndicatorSpec::Dema(p) => {
                Box::new(average::dema::Dema::new(self.period(p.period), p.source))
            }
            IndicatorSpec::Tema(p) => {
                Box::new(average::tema::Tema::new(self.period(p.period), p.source))
            }
            IndicatorSpec::Trix(p) => {
                Box::new(momentum::trix::Trix::new(self.period(p.period), p.source))
            }
            IndicatorSpec::Kama(p) => {
                Box::new(average::kama::Kama::new(self.period(p.period), p.source))
            }
            IndicatorSpec::Ppo(p) => {
                Box::new(momentum::ppo::Ppo::new(p.fast, p.slow, p.ma, p.source))
            }
            IndicatorSpec::Cmo(p) => {
                Box::new(momentum::cmo::Cmo::new(self.period(p.period), p.source))
            }
            IndicatorSpec::Ultosc(p) => {
                Box::new(momentum::ultosc::Ultosc::new(p.short, p.medium, p.long))
            }
            IndicatorSpec::Adxr(p) => Box::new(momentum::adxr::Adxr::new(self.period(p.period))),
        }
    }
}
