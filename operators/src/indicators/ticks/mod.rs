//! Indicators on ticks (the predecessor's real-time analytics), each over a count of the
//! last ticks of a symbol. No TA-Lib equivalents: the definitions are in
//! `docs/indicators.md`, and the tests check them against a plain recomputation.

pub mod price_velocity;
pub mod tick_bollinger;
pub mod tick_ratio;
pub mod tick_rsi;
pub mod tick_vwap;
pub mod volume_momentum;

use serde::{Deserialize, Serialize};

use super::{number, IndicatorKind, Outputs, ParamError};
use crate::record::Tick;

/// A streaming indicator over the ticks of one symbol, in event-time order.
pub trait TickIndicator: Send {
    /// Ticks consumed before the first value: it comes with tick `lookback() + 1`.
    fn lookback(&self) -> usize;
    /// Folds in the next tick; the values once the warm-up is over.
    fn update(&mut self, tick: &Tick) -> Option<Outputs>;
    fn reset(&mut self);
    /// Its state, for a checkpoint.
    fn save(&self) -> Vec<u8>;
    /// Back to a state [`TickIndicator::save`] gave.
    fn load(&mut self, state: &[u8]) -> Result<(), crate::state::StateError>;
}

/// A window of the last ticks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickWindow {
    /// Ticks in the window (default per indicator).
    #[serde(default)]
    pub ticks: Option<usize>,
    #[serde(default)]
    pub id: Option<String>,
}

/// A window of the last price moves (`moves + 1` ticks).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveWindow {
    /// Moves in the window (default per indicator).
    #[serde(default)]
    pub moves: Option<usize>,
    #[serde(default)]
    pub id: Option<String>,
}

/// Tick Bollinger bands: the window and the band width.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickBollingerParams {
    #[serde(default = "twenty")]
    pub ticks: usize,
    #[serde(default = "two")]
    pub stddev: f64,
    #[serde(default)]
    pub id: Option<String>,
}

fn twenty() -> usize {
    20
}
fn two() -> f64 {
    2.0
}

/// One configured tick indicator, as written in a pipeline: `- tick_rsi: {ticks: 15}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickIndicatorSpec {
    PriceVelocity(TickWindow),
    TickRatio(MoveWindow),
    TickVwap(TickWindow),
    VolumeMomentum(TickWindow),
    TickBollinger(TickBollingerParams),
    TickRsi(MoveWindow),
}

impl TickIndicatorSpec {
    pub fn kind(&self) -> IndicatorKind {
        match self {
            TickIndicatorSpec::PriceVelocity(_) => IndicatorKind::PriceVelocity,
            TickIndicatorSpec::TickRatio(_) => IndicatorKind::TickRatio,
            TickIndicatorSpec::TickVwap(_) => IndicatorKind::TickVwap,
            TickIndicatorSpec::VolumeMomentum(_) => IndicatorKind::VolumeMomentum,
            TickIndicatorSpec::TickBollinger(_) => IndicatorKind::TickBollinger,
            TickIndicatorSpec::TickRsi(_) => IndicatorKind::TickRsi,
        }
    }

    /// The window, in ticks or moves as the indicator counts: as given, or the
    /// predecessor's default.
    fn size(&self) -> usize {
        match self {
            TickIndicatorSpec::TickBollinger(p) => p.ticks,
            TickIndicatorSpec::PriceVelocity(w) | TickIndicatorSpec::VolumeMomentum(w) => {
                w.ticks.unwrap_or(10)
            }
            TickIndicatorSpec::TickVwap(w) => w.ticks.unwrap_or(20),
            TickIndicatorSpec::TickRatio(w) => w.moves.unwrap_or(19),
            TickIndicatorSpec::TickRsi(w) => w.moves.unwrap_or(14),
        }
    }

    /// The id of the rows: `price_velocity_10`, `tick_rsi_14`, `tick_bollinger_20_2`.
    pub fn id(&self) -> String {
        let name = self.kind().name();
        let generated = match self {
            TickIndicatorSpec::TickBollinger(p) => {
                format!("{name}_{}_{}", p.ticks, number(p.stddev))
            }
            _ => format!("{name}_{}", self.size()),
        };
        let custom = match self {
            TickIndicatorSpec::TickBollinger(p) => &p.id,
            TickIndicatorSpec::PriceVelocity(w)
            | TickIndicatorSpec::TickVwap(w)
            | TickIndicatorSpec::VolumeMomentum(w) => &w.id,
            TickIndicatorSpec::TickRatio(w) | TickIndicatorSpec::TickRsi(w) => &w.id,
        };
        custom.clone().unwrap_or(generated)
    }

    pub fn validate(&self) -> Result<(), ParamError> {
        let (key, low) = match self {
            TickIndicatorSpec::TickRatio(_) | TickIndicatorSpec::TickRsi(_) => ("moves", 1),
            _ => ("ticks", 2),
        };
        let size = self.size();
        if !(low..=100_000).contains(&size) {
            return Err(ParamError {
                key,
                message: format!("`{key}` must be between {low} and 100000 (got {size})"),
            });
        }
        if let TickIndicatorSpec::TickBollinger(p) = self {
            if !(p.stddev.is_finite() && p.stddev > 0.0) {
                return Err(ParamError {
                    key: "stddev",
                    message: format!("`stddev` must be a positive number (got {})", p.stddev),
                });
            }
        }
        Ok(())
    }

    pub fn build(&self) -> Box<dyn TickIndicator> {
        let n = self.size();
        match self {
            TickIndicatorSpec::PriceVelocity(_) => Box::new(price_velocity::PriceVelocity::new(n)),
            TickIndicatorSpec::TickRatio(_) => Box::new(tick_ratio::TickRatio::new(n)),
            TickIndicatorSpec::TickVwap(_) => Box::new(tick_vwap::TickVwap::new(n)),
            TickIndicatorSpec::VolumeMomentum(_) => {
                Box::new(volume_momentum::VolumeMomentum::new(n))
            }
            TickIndicatorSpec::TickBollinger(p) => {
                Box::new(tick_bollinger::TickBollinger::new(n, p.stddev))
            }
            TickIndicatorSpec::TickRsi(_) => Box::new(tick_rsi::TickRsi::new(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbol::Symbol;

    /// A random walk of ticks with flat stretches and zero sizes.
    fn ticks(n: usize) -> Vec<Tick> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut price = 100.0;
        (0..n)
            .map(|i| {
                let r = next();
                if !(300..330).contains(&i) {
                    price += ((r % 201) as f64 - 100.0) / 100.0;
                    price = (price * 100.0_f64).round() / 100.0;
                }
                let volume = if (500..540).contains(&i) {
                    0.0
                } else {
                    (r >> 20) as f64 % 500.0
                };
                Tick {
                    symbol: Symbol::new("T").unwrap(),
                    ts: i as i64 * 250,
                    price,
                    volume,
                    seq: i as u64,
                    wm: 0,
                }
            })
            .collect()
    }

    /// The definitions of docs/indicators.md, recomputed from scratch at tick `i`.
    fn reference(spec: &TickIndicatorSpec, t: &[Tick], i: usize) -> Option<Vec<f64>> {
        let n = spec.size();
        let p = |k: usize| t[k].price;
        match spec {
            TickIndicatorSpec::PriceVelocity(_) => {
                (i + 1 >= n).then(|| vec![(p(i) / p(i + 1 - n) - 1.0) * 100.0])
            }
            TickIndicatorSpec::TickRatio(_) => (i >= n).then(|| {
                let up = (i + 1 - n..=i).filter(|&k| p(k) > p(k - 1)).count();
                let down = (i + 1 - n..=i).filter(|&k| p(k) < p(k - 1)).count();
                vec![match (up, down) {
                    (0, 0) => 1.0,
                    (_, 0) => 10.0,
                    _ => up as f64 / down as f64,
                }]
            }),
            TickIndicatorSpec::TickVwap(_) => (i + 1 >= n).then(|| {
                let w = &t[i + 1 - n..=i];
                let v: f64 = w.iter().map(|t| t.volume).sum();
                let pv: f64 = w.iter().map(|t| t.price * t.volume).sum();
                let mean = w.iter().map(|t| t.price).sum::<f64>() / n as f64;
                vec![if v > 0.0 { pv / v } else { mean }]
            }),
            TickIndicatorSpec::VolumeMomentum(_) => (i + 1 >= 2 * n).then(|| {
                let sum = |a: usize, b: usize| t[a..b].iter().map(|t| t.volume).sum::<f64>();
                let (earlier, recent) = (sum(i + 1 - 2 * n, i + 1 - n), sum(i + 1 - n, i + 1));
                vec![if earlier > 0.0 {
                    recent / earlier
                } else if recent > 0.0 {
                    f64::NAN
                } else {
                    1.0
                }]
            }),
            TickIndicatorSpec::TickBollinger(b) => (i + 1 >= n).then(|| {
                let w: Vec<f64> = t[i + 1 - n..=i].iter().map(|t| t.price).collect();
                let mean = w.iter().sum::<f64>() / n as f64;
                let sd = (w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
                // A flat window: rounding noise in the mean is no deviation.
                let sd = if sd < 1e-9 * mean { 0.0 } else { sd };
                let (upper, lower) = (mean + b.stddev * sd, mean - b.stddev * sd);
                let position = if upper > lower {
                    (p(i) - lower) / (upper - lower)
                } else {
                    0.5
                };
                vec![(upper - lower) / mean, position]
            }),
            TickIndicatorSpec::TickRsi(_) => (i >= n).then(|| {
                let gains: f64 = (i + 1 - n..=i).map(|k| (p(k) - p(k - 1)).max(0.0)).sum();
                let losses: f64 = (i + 1 - n..=i).map(|k| (p(k - 1) - p(k)).max(0.0)).sum();
                vec![if gains + losses > 0.0 {
                    100.0 * gains / (gains + losses)
                } else {
                    50.0
                }]
            }),
        }
    }

    #[test]
    fn tick_indicators_follow_their_definitions() {
        let t = ticks(2_000);
        let specs: Vec<TickIndicatorSpec> = [
            r#"{"price_velocity":{}}"#,
            r#"{"price_velocity":{"ticks":50}}"#,
            r#"{"tick_ratio":{}}"#,
            r#"{"tick_vwap":{}}"#,
            r#"{"volume_momentum":{}}"#,
            r#"{"tick_bollinger":{}}"#,
            r#"{"tick_rsi":{}}"#,
            r#"{"tick_rsi":{"moves":2}}"#,
        ]
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
        let ids: Vec<String> = specs.iter().map(TickIndicatorSpec::id).collect();
        assert_eq!(
            ids,
            [
                "price_velocity_10",
                "price_velocity_50",
                "tick_ratio_19",
                "tick_vwap_20",
                "volume_momentum_10",
                "tick_bollinger_20_2",
                "tick_rsi_14",
                "tick_rsi_2"
            ]
        );
        for spec in &specs {
            spec.validate().unwrap();
            let mut kernel = spec.build();
            let mut first = None;
            for (i, tick) in t.iter().enumerate() {
                let got = kernel.update(tick);
                let want = reference(spec, &t, i);
                assert_eq!(got.is_some(), want.is_some(), "{} at tick {i}", spec.id());
                let (Some(got), Some(want)) = (got, want) else {
                    continue;
                };
                first.get_or_insert(i);
                for (k, w) in want.iter().enumerate() {
                    let g = got[k];
                    let same =
                        (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-9 * w.abs().max(1.0);
                    assert!(
                        same,
                        "{} at tick {i} output {k}: got {g}, want {w}",
                        spec.id()
                    );
                }
            }
            assert_eq!(first, Some(kernel.lookback()), "{}: first value", spec.id());
        }
    }
}
