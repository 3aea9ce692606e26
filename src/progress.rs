//! Progress of long work (`marketflow backfill`), read from the run's status: a bar per
//! symbol (pages, bars, ETA) on a terminal, plain lines every few seconds otherwise.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::status::{HistoryProgress, RunStatus};

/// How often a terminal's bars are redrawn.
const DRAW_EVERY: Duration = Duration::from_millis(200);
/// How often a plain progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A thread that shows the progress of a run's history sources until stopped.
pub struct ProgressDisplay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    /// Starts showing the progress of `status` on stderr.
    pub fn start(status: RunStatus) -> ProgressDisplay {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let terminal = std::io::stderr().is_terminal();
        let thread = std::thread::Builder::new()
            .name("marketflow-progress".into())
            .spawn(move || {
                if terminal {
                    bars(&status, &flag);
                } else {
                    lines(&status, &flag);
                }
            })
            .ok();
        ProgressDisplay { stop, thread }
    }

    /// Stops, after showing the final state.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every history source's progress by (source, symbol).
fn snapshot(status: &RunStatus) -> BTreeMap<(String, String), HistoryProgress> {
    status
        .sources()
        .into_iter()
        .flat_map(|(source, s)| {
            s.history
                .into_iter()
                .map(move |(symbol, p)| ((source.clone(), symbol), p))
        })
        .collect()
}

fn bars(status: &RunStatus, stop: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} pages {msg} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let mut shown: BTreeMap<(String, String), ProgressBar> = BTreeMap::new();
    loop {
        let last = stop.load(Ordering::SeqCst);
        for (key, p) in snapshot(status) {
            let bar = shown.entry(key.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(p.pages_total));
                bar.set_style(style.clone());
                bar.set_prefix(format!("{} {}", key.0, key.1));
                bar
            });
            bar.set_length(p.pages_total);
            bar.set_position(p.pages_done);
            bar.set_message(format!("{} bars", p.bars));
            if p.done && !bar.is_finished() {
                bar.finish();
            }
        }
        if last {
            break;
        }
        std::thread::sleep(DRAW_EVERY);
    }
}

fn lines(status: &RunStatus, stop: &AtomicBool) {
    let started = Instant::now();
    let mut reported_done: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut last_line = Instant::now();
    loop {
        let last = stop.load(Ordering::SeqCst);
        let now = snapshot(status);
        let mut out = std::io::stderr().lock();
        for (key, p) in &now {
            if p.done && !reported_done.get(key).copied().unwrap_or(false) {
                reported_done.insert(key.clone(), true);
                let _ = writeln!(
                    out,
                    "backfill {} {}: done, {} pages, {} bars",
                    key.0, key.1, p.pages_done, p.bars
                );
            }
        }
        if last_line.elapsed() >= LINE_EVERY || last {
            last_line = Instant::now();
            let (done, total, bars) = now.values().fold((0, 0, 0), |(d, t, b), p| {
                (d + p.pages_done, t + p.pages_total, b + p.bars)
            });
            let symbols_done = now.values().filter(|p| p.done).count();
            let _ = writeln!(
                out,
                "backfill: {done}/{total} pages, {bars} bars, {symbols_done}/{} symbols done, {:.0}s",
                now.len(),
                started.elapsed().as_secs_f64()
            );
        }
        drop(out);
        if last {
            break;
        }
        std::thread::sleep(DRAW_EVERY);
    }
}

/// A thread that shows how far a replay has got: the replayed source's watermark through
/// the event-time span it reads (a bar when the span is known, else the time reached).
pub struct ReplayDisplay(ProgressDisplay);

impl ReplayDisplay {
    /// `span`: the first and last event time to replay (ms), when known.
    pub fn start(status: RunStatus, source: String, span: Option<(i64, i64)>) -> ReplayDisplay {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let terminal = std::io::stderr().is_terminal();
        let thread = std::thread::Builder::new()
            .name("marketflow-progress".into())
            .spawn(move || replay_progress(&status, &source, span, terminal, &flag))
            .ok();
        ReplayDisplay(ProgressDisplay { stop, thread })
    }

    pub fn finish(self) {
        self.0.finish();
    }
}

fn replay_progress(
    status: &RunStatus,
    source: &str,
    span: Option<(i64, i64)>,
    terminal: bool,
    stop: &AtomicBool,
) {
    let seconds = |(from, to): (i64, i64)| ((to - from).max(0) / 1000) as u64;
    let bar = match span {
        Some(span) => ProgressBar::new(seconds(span).max(1)).with_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {percent}% of the span, at {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{prefix} {spinner} at {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_prefix(format!("replay {source}"));
    if !terminal {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut last_line = Instant::now();
    loop {
        let last = stop.load(Ordering::SeqCst);
        let watermark = status.source(source).watermark;
        let at = chrono::DateTime::from_timestamp_millis(watermark)
            .filter(|_| watermark > 0)
            .map_or_else(
                || "the start".to_owned(),
                |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            );
        if let Some((from, to)) = span {
            bar.set_position(seconds((from, watermark.clamp(from, to))));
        } else {
            bar.tick();
        }
        bar.set_message(at.clone());
        if !terminal && (last_line.elapsed() >= LINE_EVERY || last) {
            last_line = Instant::now();
            let share = span.map_or(String::new(), |(from, to)| {
                let done = (watermark.clamp(from, to) - from) as f64 / (to - from).max(1) as f64;
                format!(" ({:.0}% of the span)", done * 100.0)
            });
            eprintln!("replay {source}: at {at}{share}");
        }
        if last {
            bar.finish();
            break;
        }
        std::thread::sleep(DRAW_EVERY);
    }
}
