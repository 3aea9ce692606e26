//! Operator `bars`: its configuration and the type checks of its input.

use marketflow_operators::time::{DAY, MINUTE};
use marketflow_operators::{Calendar, Interval};
use serde::Deserialize;

use crate::config::de::{OneOrMany, Spanned};
use crate::config::diagnostic::Diagnostic;
use crate::config::session::SessionSpec;
use crate::config::values::{Duration, Parsed};
use crate::connector::StreamType;

/// Builds OHLCV bars from ticks, or from bars of a finer interval.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct BarsConfig {
    /// The stream to build from: ticks, or bars whose interval divides this one; or several
    /// streams of one type (`[history_5m, live_5m]`): for bars, a window is taken from the
    /// first listed stream that has it.
    pub from: OneOrMany,
    /// Window length, from `1s` to `1d`.
    pub interval: Parsed<Interval>,
    /// Exchange trading hours; without it windows are aligned on UTC (daily bars are UTC days).
    #[serde(default)]
    pub session: Option<Spanned<SessionSpec>>,
    /// A record whose window has already closed: `drop` (default) counts it and sends it
    /// to the dead-letter path; `revise` folds it into the closed bar, given again with a
    /// higher `revision`, while the watermark is less than `revise_for` past the window's
    /// end (later ones are dropped).
    #[serde(default)]
    pub late: Option<Spanned<LatePolicy>>,
    /// With `late: revise`: how long after a window closes late records may still revise
    /// its bar (up to 1d).
    #[serde(default)]
    pub revise_for: Option<Spanned<Duration>>,
}

/// What happens to late records.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    #[default]
    Drop,
    Revise,
}

impl BarsConfig {
    /// How long closed bars stay revisable, when late records revise them.
    pub fn revise_for(&self) -> Option<i64> {
        match self.late.as_ref().map(|l| l.value) {
            Some(LatePolicy::Revise) => self.revise_for.as_ref().map(|d| d.value.0),
            _ => None,
        }
    }

    /// Checks of `late` and `revise_for` together.
    pub fn check(&self, path: &str) -> Vec<Diagnostic> {
        let late = self.late.as_ref();
        match (late.map(|l| l.value), &self.revise_for) {
            (Some(LatePolicy::Revise), None) => vec![Diagnostic::new(
                late.map(|l| l.pos).unwrap_or_default(),
                format!("{path}.late"),
                "`late: revise` needs `revise_for`: how long after a window closes late records may revise its bar",
            )
            .help("add e.g. `revise_for: 1m`")],
            (Some(LatePolicy::Revise), Some(d)) if !(1..=DAY).contains(&d.value.0) => {
                vec![Diagnostic::new(
                    d.pos,
                    format!("{path}.revise_for"),
                    format!("must be between 1ms and 1d (got {})", d.value),
                )]
            }
            (Some(LatePolicy::Revise), Some(_)) => Vec::new(),
            (_, Some(d)) => vec![Diagnostic::new(
                d.pos,
                format!("{path}.revise_for"),
                "`revise_for` applies with `late: revise` only",
            )
            .help("set `late: revise`, or remove `revise_for`")],
            (_, None) => Vec::new(),
        }
    }

    pub fn calendar(&self) -> Calendar {
        match &self.session {
            Some(s) => Calendar::Session(s.value.session.clone()),
            None => Calendar::Utc,
        }
    }

    /// The output type given the input's, or why the input cannot make these bars.
    pub fn output(&self, path: &str, input: &StreamType) -> Result<StreamType, Diagnostic> {
        let target = self.interval.value;
        let session = self.session.as_ref().map(|s| s.value.clone());
        let Some(from) = self.from.0.first() else {
            return Err(Diagnostic::new(
                Default::default(),
                format!("{path}.from"),
                "no input",
            ));
        };
        let error = |message: String| Diagnostic::new(from.pos, format!("{path}.from"), message);
        match input {
            StreamType::Ticks => {}
            StreamType::Indicators { .. } => {
                return Err(error(format!(
                    "bars are built from ticks or bars; `{}` is {input}",
                    from.value
                )));
            }
            StreamType::Bars {
                interval: fine,
                session: fine_session,
            } => {
                if *fine >= target {
                    return Err(error(format!(
                        "cannot build {target} bars from the {fine} bars of `{}`",
                        from.value
                    ))
                    .help("build from ticks or from bars of a finer interval"));
                }
                match (fine_session, &session) {
                    (None, None) if !fine.divides(target) => {
                        return Err(error(format!(
                            "{fine} bars of `{}` do not tile {target} windows",
                            from.value
                        ))
                        .help("use an interval that is a multiple of the input's"));
                    }
                    (None, None) => {}
                    (None, Some(s)) => {
                        if let Some(problem) = misaligned(&s.session, *fine, target) {
                            return Err(error(format!(
                                "{fine} bars of `{}` do not fit the session windows: {problem}",
                                from.value
                            ))
                            .help("build from finer bars or from ticks"));
                        }
                    }
                    (Some(a), Some(b)) if a == b => {
                        if !target.is_daily() && !fine.divides(target) {
                            return Err(error(format!(
                                "{fine} bars of `{}` do not tile {target} windows",
                                from.value
                            )));
                        }
                    }
                    (Some(_), _) => {
                        return Err(error(format!(
                            "`{}` is aligned on a session; these bars use another calendar",
                            from.value
                        ))
                        .help("build from ticks, or from bars without a session"));
                    }
                }
            }
        }
        Ok(StreamType::Bars {
            interval: target,
            session,
        })
    }
}

/// Why UTC-aligned bars of `fine` cannot tile the windows of `target` in `session`.
fn misaligned(
    session: &marketflow_operators::Session,
    fine: Interval,
    target: Interval,
) -> Option<String> {
    let step = fine.millis();
    let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
    let mut times: Vec<u32> = vec![session.open, session.close];
    times.extend(session.early_closes.values());
    if let Some(t) = times.iter().find(|t| (i64::from(**t) * MINUTE) % step != 0) {
        return Some(format!("{} is not on a {fine} boundary", hm(*t)));
    }
    if !target.is_daily() && target.millis() % step != 0 {
        return Some(format!("{fine} does not divide {target}"));
    }
    // Sample the zone's UTC offsets over recent years (DST included).
    let first =
        marketflow_operators::time::days_from_civil(2015, 1, 1) * marketflow_operators::time::DAY;
    for month in 0..(12 * 20) {
        let offset = session.offset_at(first + month * 30 * marketflow_operators::time::DAY);
        if offset % step != 0 {
            return Some(format!(
                "the UTC offset of {} ({} min) is not a multiple of {fine}",
                session.timezone.name(),
                offset / MINUTE
            ));
        }
    }
    None
}
