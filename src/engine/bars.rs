//! Operator `bars`: exact event-time OHLCV windows, a thin timely shell around
//! [`BarBuilder`].
//!
//! Window `[s, e)` closes when the input frontier reaches `e` and its bars are emitted at
//! time `e - 1`, which the capability retained from the window's first record allows.
//! Nothing is emitted on a processing-time timer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use marketflow_operators::time::{format_timestamp, MINUTE};
use marketflow_operators::{Bar, BarBuilder, BarInput, Calendar, Interval, Placement, Tick};
use serde::Deserialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::dead_letter::{DeadLetters, Rejected};
use crate::metrics::metrics;
use crate::spec::de::Spanned;
use crate::spec::diagnostic::Diagnostic;
use crate::spec::graph::StreamType;
use crate::spec::session::SessionSpec;
use crate::spec::values::Parsed;

/// Builds OHLCV bars from ticks, or from bars of a finer interval.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct BarsConfig {
    /// The stream to build from: ticks, or bars whose interval divides this one.
    pub from: Spanned<String>,
    /// Window length, from `1s` to `1d`.
    pub interval: Parsed<Interval>,
    /// Exchange trading hours; without it windows are aligned on UTC (daily bars are UTC days).
    #[serde(default)]
    pub session: Option<Spanned<SessionSpec>>,
    /// A record whose window has already closed: `drop` counts it and sends it to the
    /// dead-letter path.
    #[serde(default)]
    pub late: LatePolicy,
}

/// What happens to late records.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    #[default]
    Drop,
}

impl BarsConfig {
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
        let from = &self.from;
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

/// What the bars operator needs besides its input.
#[derive(Clone)]
pub struct BarsStage {
    pub name: String,
    pub interval: Interval,
    pub calendar: Calendar,
    pub dead_letters: DeadLetters,
    /// Set when the run was interrupted: open windows are then incomplete and dropped.
    pub interrupted: Arc<AtomicBool>,
}

/// A record the bars operator can report to the dead-letter path.
pub trait Rejectable {
    fn rejected(&self) -> Rejected<'_>;
}

impl Rejectable for Tick {
    fn rejected(&self) -> Rejected<'_> {
        Rejected::Tick(self)
    }
}

impl Rejectable for Bar {
    fn rejected(&self) -> Rejected<'_> {
        Rejected::Bar(self)
    }
}

/// Builds bars of `stage.interval` from `input`; records are exchanged by symbol so that
/// every symbol's windows live on one worker.
pub fn bars<'s, R>(input: StreamVec<'s, u64, R>, stage: BarsStage) -> StreamVec<'s, u64, Bar>
where
    R: BarInput + Rejectable + ExchangeData + Clone,
{
    let name = stage.name.clone();
    let exchange = Exchange::new(|r: &R| r.symbol().route_hash());
    input.unary_frontier(exchange, &name, move |_capability, _info| {
        let mut builder = BarBuilder::new(stage.interval, stage.calendar.clone());
        // One capability per open window end, at `end - 1`.
        let mut capabilities: BTreeMap<i64, Capability<u64>> = BTreeMap::new();
        let m = metrics();
        let records_in = m.operator_in.with_label_values(&[stage.name.as_str()]);
        let records_out = m.operator_out.with_label_values(&[stage.name.as_str()]);
        let late = m.late_records.with_label_values(&[stage.name.as_str()]);
        let outside = m.outside_session.with_label_values(&[stage.name.as_str()]);
        let discarded = m
            .discarded_at_shutdown
            .with_label_values(&[stage.name.as_str()]);

        move |(input, frontier), output| {
            input.for_each(|capability, data| {
                records_in.inc_by(data.len() as u64);
                let mut last_end = i64::MIN;
                let (mut late_count, mut outside_count) = (0, 0);
                for record in data.iter() {
                    match builder.push(record) {
                        Placement::Accepted { window_end } => {
                            if window_end != last_end {
                                last_end = window_end;
                                capabilities.entry(window_end).or_insert_with(|| {
                                    capability.delayed(&((window_end - 1) as u64), 0)
                                });
                            }
                        }
                        Placement::Late { window } => {
                            late_count += 1;
                            let detail = format!(
                                "window {} to {} had closed (watermark {})",
                                format_timestamp(window.start),
                                format_timestamp(window.end),
                                format_timestamp(record.watermark())
                            );
                            stage.dead_letters.reject(
                                &stage.name,
                                "late",
                                &detail,
                                record.rejected(),
                            );
                        }
                        Placement::OutsideSession => outside_count += 1,
                        Placement::Straddles { window } => {
                            let detail = format!(
                                "crosses the window {} to {}",
                                format_timestamp(window.start),
                                format_timestamp(window.end)
                            );
                            stage.dead_letters.reject(
                                &stage.name,
                                "straddles_window",
                                &detail,
                                record.rejected(),
                            );
                        }
                    }
                }
                late.inc_by(late_count);
                outside.inc_by(outside_count);
            });

            let upto = match frontier.frontier().iter().next() {
                Some(t) => *t as i64,
                None if stage.interrupted.load(Ordering::SeqCst) => {
                    discarded.inc_by(builder.discard_open() as u64);
                    capabilities.clear();
                    return;
                }
                None => i64::MAX,
            };
            builder.close_until(upto, |window, bars| {
                if let Some(capability) = capabilities.remove(&window.end) {
                    records_out.inc_by(bars.len() as u64);
                    output.session(&capability).give_container(bars);
                }
            });
        }
    })
}
