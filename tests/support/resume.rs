//! Runs of a pipeline killed with SIGKILL at random moments, each followed by
//! `marketflow run --resume`, for the recovery tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::{marketflow, Lcg};

/// What the killed and resumed runs logged.
pub struct Resumes {
    /// The records each killed run resumed from (`None`: it started afresh).
    pub resumed_from: Vec<Option<u64>>,
    /// The records the final, complete run resumed from.
    pub final_resumed: Option<u64>,
    /// The most records between two checkpoints one run committed: what a run killed just
    /// before a checkpoint reads again, at most.
    pub widest: Option<u64>,
    /// Each run's log lines about checkpoints, for failure messages.
    pub history: Vec<String>,
    /// Kills that fell while the run was going (not after it had ended).
    pub killed_running: usize,
}

impl Resumes {
    /// Whether any run resumed from a checkpoint past the start.
    pub fn any_resumed(&self) -> bool {
        self.resumed_from
            .iter()
            .chain([&self.final_resumed])
            .any(|r| r.is_some_and(|n| n > 0))
    }
}

/// A value `key=N` in a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What one run logged about checkpoints: the records it resumed from, and those of
/// each checkpoint it committed.
pub fn checkpoints_in(log: &str) -> (Option<u64>, Vec<u64>) {
    let resumed = log
        .lines()
        .find(|l| l.contains("resuming from the checkpoint"))
        .and_then(|l| field(l, "records"));
    let committed = log
        .lines()
        .filter(|l| l.contains("checkpoint committed"))
        .filter_map(|l| field(l, "records"))
        .collect();
    (resumed, committed)
}

/// A run's log lines about checkpoints (resumed from, committed), for failure messages.
fn checkpoint_lines(run: usize, log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("checkpoint") || l.contains("truncat"))
        .collect();
    format!("run {run}:\n  {}", lines.join("\n  "))
}

/// How the killed and resumed runs are started: one process, or a cluster on loopback.
#[derive(Clone, Copy)]
pub enum Launch {
    Single,
    /// `processes` processes of `workers` threads; the last is the one killed (the others
    /// are then killed too, if they have not ended by themselves).
    Cluster {
        processes: usize,
        workers: usize,
    },
}

/// The running processes of one run: process 0 first, which logs the checkpoints.
pub struct Running {
    children: Vec<std::process::Child>,
}

impl Running {
    /// SIGKILLs the last process, then the others: those that ended by themselves (their
    /// peer gone) within `grace` are not killed. Gives how many had to be.
    fn kill(mut self, grace: Duration) -> usize {
        let mut children = std::mem::take(&mut self.children);
        let Some(mut last) = children.pop() else {
            return 0;
        };
        let _ = last.kill();
        let _ = last.wait();
        let until = std::time::Instant::now() + grace;
        let mut killed = 0;
        for child in &mut children {
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                killed += 1;
            }
            let _ = child.wait();
        }
        killed
    }

    fn first(&mut self) -> &mut std::process::Child {
        &mut self.children[0]
    }

    /// Waits for every process; gives their exit statuses.
    fn wait(mut self, deadline: Duration) -> Vec<std::process::ExitStatus> {
        std::mem::take(&mut self.children)
            .into_iter()
            .map(|child| super::wait_with_deadline(child, deadline))
            .collect()
    }
}

/// A test that fails while a run is going leaves no process behind.
impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn resumed_run(dir: &Path, log: &Path, launch: Launch) -> Running {
    let command = |extra: &[String], log: &Path| {
        marketflow()
            .current_dir(dir)
            .env("RUST_LOG", "marketflow=info")
            .env("NO_COLOR", "1")
            .args(["run", "pipeline.yaml", "--no-server", "--resume"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("marketflow starts")
    };
    let children = match launch {
        Launch::Single => vec![command(&[], log)],
        Launch::Cluster { processes, workers } => {
            let hosts: String = (0..processes)
                .map(|_| format!("127.0.0.1:{}\n", super::free_port()))
                .collect();
            super::write(dir, "hosts.txt", &hosts);
            (0..processes)
                .map(|i| {
                    let extra: Vec<String> = [
                        "--workers",
                        &workers.to_string(),
                        "--processes",
                        &processes.to_string(),
                        "--process",
                        &i.to_string(),
                        "--hostfile",
                        "hosts.txt",
                    ]
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                    let log = match i {
                        0 => log.to_owned(),
                        _ => log.with_extension(format!("p{i}.log")),
                    };
                    command(&extra, &log)
                })
                .collect()
        }
    };
    Running { children }
}

/// Waits until the run logging to `log` has committed a checkpoint (or ended); gives the
/// ms it took. Fails after a minute, with the log.
fn first_commit(child: &mut std::process::Child, log: &Path) -> u64 {
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let ended = child.try_wait().ok().flatten().is_some();
        if ended || text.contains("checkpoint committed") {
            return started.elapsed().as_millis() as u64;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited 60s for a run to commit a checkpoint; its log:\n{text}{}",
            match std::fs::read_to_string(log.with_extension("p1.log")) {
                Ok(other) => format!("\nthe log of its process 1:\n{other}"),
                Err(_) => String::new(),
            }
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `dir/pipeline.yaml` with `--resume` `kills` times, each killed at a random moment
/// of a run that takes about `reference` uninterrupted, then once to its end. Asserts that
/// every run resumed from the newest checkpoint the run before it logged, and that the
/// final run succeeded.
pub fn killed_and_resumed(dir: &Path, kills: usize, reference: Duration, seed: u64) -> Resumes {
    killed_and_resumed_as(dir, kills, KillAt::Time(reference), seed, Launch::Single)
}

/// When each run is killed.
#[derive(Clone, Copy)]
pub enum KillAt {
    /// At a random moment of a share of a run that takes about this long uninterrupted.
    Time(Duration),
    /// Once it has committed a checkpoint past a random record of its band of these (the
    /// k-th of `kills` runs in the k-th of `kills + 1` equal bands): whatever the
    /// machine's load, each kill falls while the run goes, and the kills spread over the
    /// input.
    Records(u64),
}

/// Waits until the run logging to `log` has committed a checkpoint at `records` or more
/// (or ended); gives the ms it took. Fails after two minutes, with the log.
fn commit_past(child: &mut std::process::Child, log: &Path, records: u64) -> u64 {
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let ended = child.try_wait().ok().flatten().is_some();
        if ended || checkpoints_in(&text).1.iter().any(|r| *r >= records) {
            return started.elapsed().as_millis() as u64;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "waited 120s for a run to commit a checkpoint at record {records}; its log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// [`killed_and_resumed`], each run started as `launch` says and killed as `kill_at` says.
pub fn killed_and_resumed_as(
    dir: &Path,
    kills: usize,
    kill_at: KillAt,
    seed: u64,
    launch: Launch,
) -> Resumes {
    let mut rng = Lcg(seed);
    let mut resumed_from = Vec::new();
    let mut previous_commits: Vec<u64> = Vec::new();
    let mut history: Vec<String> = Vec::new();
    let mut widest = None;
    let mut killed_running = 0;

    let newest = |commits: &[u64], resumed_from: &[Option<u64>]| {
        // At least the last checkpoint logged: a kill may fall between a commit and its log.
        commits
            .last()
            .copied()
            .or(resumed_from.last().copied().flatten())
    };
    for kill in 1..=kills {
        let log = dir.join(format!("run{kill}.log"));
        let mut run = resumed_run(dir, &log, launch);
        // Each run gets a random share of between a half and a whole of 1/kills of the
        // reference's time, so that the kills spread over the input. The share starts once
        // the run has committed a checkpoint of its own, so that every run moves the
        // recovery on whatever the machine's speed (a resumed run starts slower than the
        // reference: it reads its checkpoint and cuts its outputs back first).
        let at = match kill_at {
            KillAt::Time(reference) => {
                let reference_ms = reference.as_millis().max(200) as u64;
                let share = (reference_ms / kills as u64).max(2);
                let at = first_commit(run.first(), &log);
                let wait = share / 2 + rng.below(share / 2);
                // A random moment of the run: the point of the test, not a synchronisation.
                std::thread::sleep(Duration::from_millis(wait));
                at + wait
            }
            KillAt::Records(total) => {
                let band = (total / (kills as u64 + 1)).max(1);
                let target = band * kill as u64 + rng.below(band / 2);
                commit_past(run.first(), &log, target)
            }
        };
        let running = run.first().try_wait().ok().flatten().is_none();
        // The others of a cluster may end by themselves once their peer is gone.
        let killed_too = run.kill(Duration::from_secs(10));
        killed_running += usize::from(running);
        let text = std::fs::read_to_string(&log).unwrap();
        history.push(checkpoint_lines(kill, &text));
        let (resumed, commits) = checkpoints_in(&text);
        let last = commits.last().copied().or(resumed);
        let spacing = commits.windows(2).map(|w| w[1] - w[0]).max();
        widest = widest.max(spacing);
        println!(
            "kill {kill} at {at} ms{}{}: the run resumed from record {}, committed {} checkpoints (last at record {}); checkpoints were at most {} records apart",
            if running { "" } else { " (the run had ended)" },
            match killed_too {
                0 => String::new(),
                n => format!(" ({n} more process(es) killed: they had not ended by themselves)"),
            },
            resumed.unwrap_or(0),
            commits.len(),
            last.unwrap_or(0),
            spacing.map_or("-".into(), |s| s.to_string())
        );
        if kill > 1 {
            let logged = newest(&previous_commits, &resumed_from);
            assert!(
                resumed >= logged,
                "run {kill} resumed from {resumed:?}, before the checkpoint at {logged:?}:\n{text}"
            );
        }
        resumed_from.push(resumed);
        previous_commits = commits;
    }
    let log = dir.join("final.log");
    let statuses = resumed_run(dir, &log, launch).wait(Duration::from_secs(300));
    let text = std::fs::read_to_string(&log).unwrap();
    history.push(checkpoint_lines(kills + 1, &text));
    for (process, status) in statuses.iter().enumerate() {
        let log = match process {
            0 => text.clone(),
            _ => std::fs::read_to_string(log.with_extension(format!("p{process}.log")))
                .unwrap_or_default(),
        };
        assert!(
            status.success(),
            "process {process} of the final run failed ({status}):\n{log}"
        );
    }
    let (final_resumed, _) = checkpoints_in(&text);
    let logged = newest(&previous_commits, &resumed_from);
    assert!(
        final_resumed >= logged,
        "the final run resumed from {final_resumed:?}, before the checkpoint at {logged:?}"
    );
    Resumes {
        resumed_from,
        final_resumed,
        widest,
        history,
        killed_running,
    }
}

/// `dir/pipeline.yaml` run once to its end as `launch` says, with `--resume` from a fresh
/// store: how long it took and what it left in `dir/out`, which it then clears (the timing
/// for the kills of a run slower to start than the reference, such as a cluster).
pub fn uninterrupted(dir: &Path, launch: Launch) -> (Duration, Outcome) {
    let started = std::time::Instant::now();
    let log = dir.join("uninterrupted.log");
    let statuses = resumed_run(dir, &log, launch).wait(Duration::from_secs(300));
    let took = started.elapsed();
    for (process, status) in statuses.iter().enumerate() {
        assert!(
            status.success(),
            "process {process} of the uninterrupted run failed ({status}):\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let out = dir.join("out");
    let outcome = outcome(&out);
    std::fs::remove_dir_all(&out).unwrap();
    (took, outcome)
}

/// The reference for a kill test: runs `yaml` (a pipeline without checkpoints) in `dir`
/// once, uninterrupted; gives how long it took and what it left in `dir/out`, which it
/// then clears for the killed runs.
pub fn reference_run(dir: &Path, yaml: &str) -> (Duration, Outcome) {
    super::write(dir, "pipeline.yaml", yaml);
    let started = std::time::Instant::now();
    super::run_ok(dir, &["run", "pipeline.yaml", "--no-server"]);
    let took = started.elapsed();
    let out = dir.join("out");
    let reference = outcome(&out);
    std::fs::remove_dir_all(&out).unwrap();
    (took, reference)
}

/// What a run leaves in `out/`: its output file's lines, sorted, and its database's rows.
pub struct Outcome {
    pub lines: Vec<String>,
    pub db: Vec<String>,
}

/// The outcome of the run that wrote `out/out.jsonl` and `out/store.db`.
pub fn outcome(out: &Path) -> Outcome {
    Outcome {
        lines: super::sorted_lines(&out.join("out.jsonl")),
        db: super::sqlite_dump(&out.join("store.db")),
    }
}

impl Resumes {
    /// Asserts that the resumed runs left `dir/out` as the uninterrupted run left
    /// `expected`, byte for byte; on a mismatch the files are kept and the runs' checkpoint
    /// logs shown. Gives `dir` back for further checks.
    pub fn assert_same(
        &self,
        dir: tempfile::TempDir,
        expected: &Outcome,
        what: &str,
    ) -> tempfile::TempDir {
        let got = outcome(&dir.path().join("out"));
        if got.lines != expected.lines || got.db != expected.db {
            let file = super::line_differences(&got.lines, &expected.lines);
            let db = super::line_differences(&got.db, &expected.db);
            let kept = dir.keep();
            panic!(
                "{what} after kills and resumes differs from the uninterrupted run's\noutput: {file}\ndatabase: {db}\nruns:\n{}\n(files kept in {})",
                self.history.join("\n"),
                kept.display()
            );
        }
        dir
    }
}
