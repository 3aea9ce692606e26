//! Technical indicators as small streaming state machines, one file per indicator,
//! grouped by family. Conventions follow TA-Lib (see `docs/indicators.md`).

use serde::{Deserialize, Serialize};

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
