//! Technical indicators as small streaming state machines, one file per indicator,
//! grouped by family. Conventions follow TA-Lib (see `docs/indicators.md`): seeding,
//! Wilder smoothing, population deviations and the index of the first value.

pub mod average;
pub mod momentum;
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
}

/// One value in the first slot.
#[inline]
pub fn single(value: f64) -> Outputs {
    [value, f64::NAN, f64::NAN]
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
}

impl IndicatorKind {
    /// Every kind, in documentation order.
    pub const ALL: [IndicatorKind; 16] = [
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
        }
    }

    /// Output names, in the order of `IndicatorRow::outputs`.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            IndicatorKind::Macd => &["macd", "signal", "hist"],
            IndicatorKind::Bollinger | IndicatorKind::Keltner => &["upper", "middle", "lower"],
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
        }
    }

    /// The period used when none is given.
    fn default_period(&self) -> usize {
        match self {
            IndicatorSpec::Rsi(_)
            | IndicatorSpec::Atr(_)
            | IndicatorSpec::Adx(_)
            | IndicatorSpec::Willr(_) => 14,
            IndicatorSpec::Roc(_) => 10,
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
            | IndicatorSpec::Roc(p) => (
                &p.id,
                with_source(format!("{name}_{}", self.period(p.period)), p.source),
            ),
            IndicatorSpec::Atr(p)
            | IndicatorSpec::Adx(p)
            | IndicatorSpec::Cci(p)
            | IndicatorSpec::Willr(p) => (&p.id, format!("{name}_{}", self.period(p.period))),
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
            IndicatorSpec::Keltner(p) => (
                &p.id,
                format!(
                    "keltner_{}_{}_{}",
                    p.period,
                    p.atr_period,
                    number(p.multiplier)
                ),
            ),
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
            IndicatorSpec::Roc(p) => at_least("period", self.period(p.period), 1),
            IndicatorSpec::Atr(p) => at_least("period", self.period(p.period), 1),
            IndicatorSpec::Adx(p) | IndicatorSpec::Cci(p) | IndicatorSpec::Willr(p) => {
                at_least("period", self.period(p.period), 2)
            }
            IndicatorSpec::Macd(p) => {
                at_least("fast", p.fast, 2)?;
                at_least("slow", p.slow, 2)?;
                at_least("signal", p.signal, 1)?;
                if p.fast >= p.slow {
                    return Err(ParamError {
                        key: "fast",
                        message: format!("`fast` ({}) must be below `slow` ({})", p.fast, p.slow),
                    });
                }
                Ok(())
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
                Box::new(Keltner::new(p.period, p.atr_period, p.multiplier))
            }
        }
    }
}
