//! Operator `bars`: exact event-time OHLCV windows, a thin timely shell around
//! [`BarBuilder`].
//!
//! Window `[s, e)` closes when the input frontier reaches `e` and its bars are emitted at
//! time `e - 1`, which the capability retained from the window's first record allows.
//! Nothing is emitted on a processing-time timer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use marketflow_operators::time::format_timestamp;
use marketflow_operators::{Bar, BarBuilder, BarInput, Calendar, Interval, Placement, Tick};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::dead_letter::{DeadLetters, Rejected};
use crate::metrics::metrics;

/// What the bars operator needs besides its input.
#[derive(Clone)]
pub struct BarsStage {
    pub name: String,
    pub interval: Interval,
    pub calendar: Calendar,
    /// What its bars say they come from (`Bar::source`).
    pub origin: compact_str::CompactString,
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
                    bars.iter_mut()
                        .for_each(|b| b.source.clone_from(&stage.origin));
                    output.session(&capability).give_container(bars);
                }
            });
        }
    })
}
