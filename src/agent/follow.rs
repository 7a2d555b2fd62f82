//! Following dynamic lines on the gateway (issue 14, phase 2), the agent's
//! side. One worker thread ([`spawn`]) owns it, off the probing path: it
//! waits for the kernel's rtnetlink notifications (`agent::netlink`, a
//! wake-up only) or, as a backstop, [`FALLBACK`] (every [`POLL`] when the
//! socket cannot be had or fails), asks its [`Follower`] for the dynamic
//! lines' address and next hop, and when they differ from what apply
//! rendered with (the config's `follow.facts`) asks it to converge the host.
//! Being one thread, it runs at most one converge at a time. It tells the
//! loop on the loop's channel ([`Report`]): when a converge starts and ends
//! (the loop keeps probing and judging meanwhile, and holds its kernel
//! writes until the end: the converge may replace the same nexthops), and
//! when the config it wrote asks for a re-execution, sent only once the
//! converge is whole, after which the worker ends. The follower is
//! `crate::follow::Local` (the same typed gather, render, diff and
//! converge as apply), given by the binary: it sits above `render`, which
//! sits above the agent's config.
use super::config::{Fact, Follow};
use super::netlink::{Watch, Woke};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How often the facts are read when no rtnetlink socket wakes the worker.
pub const POLL: Duration = Duration::from_millis(500);
/// The backstop read while the socket works (a lost notification).
pub const FALLBACK: Duration = Duration::from_secs(2);
/// After a failed read or converge, wait this long before the next attempt
/// (notifications do not shorten it: a failed converge's own changes would
/// wake it at once).
pub const RETRY: Duration = Duration::from_secs(5);
/// After a notification, wait until the kernel has been quiet this long
/// (a client adds the address, then its routes)...
pub const SETTLE: Duration = Duration::from_millis(50);
/// ... but no longer than this in all.
pub const SETTLE_MAX: Duration = Duration::from_millis(500);
/// The least time between two reads when notifications keep coming (a
/// gateway whose routes churn): each read dumps main's routes.
pub const MIN_GAP: Duration = Duration::from_millis(250);
/// How long the worker waits for the loop to hold its writes (the loop may
/// be in a bounded command, 5 s at most): then it converges anyway.
pub const ACK_WAIT: Duration = Duration::from_secs(10);

/// When the worker reads the facts next: a pure schedule (unit-tested with
/// a made-up clock).
#[derive(Debug, Clone)]
pub struct Schedule {
    next: Instant,
    /// The period between reads with nothing happening.
    period: Duration,
    /// A failure's back-off is running until `next`.
    backing_off: bool,
    /// When the last read ended: notifications bring the next one no
    /// closer than [`MIN_GAP`] after it.
    last: Option<Instant>,
}

/// How a read of the facts ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Equal to the config's facts, or converged onto them.
    Done,
    /// The read or the converge failed.
    Failed,
}

impl Schedule {
    /// The first read is due at once (apply may be minutes old).
    pub fn new(now: Instant, period: Duration) -> Schedule {
        Schedule {
            next: now,
            period,
            backing_off: false,
            last: None,
        }
    }
    /// When the next read is due.
    pub fn due(&self) -> Instant {
        self.next
    }
    /// The kernel said something changed: read now (or [`MIN_GAP`] after
    /// the last read), unless backing off.
    pub fn woken(&mut self, now: Instant) {
        if !self.backing_off {
            let soonest = self.last.map_or(now, |l| now.max(l + MIN_GAP));
            self.next = self.next.min(soonest);
        }
    }
    /// The socket is gone: poll at `period` from now on.
    pub fn set_period(&mut self, now: Instant, period: Duration) {
        self.period = period;
        if !self.backing_off {
            self.next = self.next.min(now + period);
        }
    }
    /// A read (and perhaps a converge) ended at `now`.
    pub fn checked(&mut self, now: Instant, how: Checked) {
        self.backing_off = how == Checked::Failed;
        self.last = Some(now);
        self.next = now + if self.backing_off { RETRY } else { self.period };
    }
}

/// What the worker tells the loop.
#[derive(Debug)]
pub enum Report {
    /// A converge is about to start: hold kernel writes (nexthops) until
    /// it ends, and say so on the sender; the worker waits for that (at
    /// most [`ACK_WAIT`]), so no write of the loop is under way when the
    /// converge gathers.
    Converging(std::sync::mpsc::SyncSender<()>),
    /// It ended; the host may have changed under the loop: re-read the
    /// kernel before writing.
    Converged,
    /// It ended and wrote the agent's config: re-execute on it. The worker
    /// has ended; nothing of the converge is left running.
    Reexec,
}

/// Reads the facts and converges the host onto them.
pub trait Follower: Send + Sync + std::fmt::Debug {
    /// The dynamic lines' facts on this host now.
    fn now(&self, follow: &Follow) -> Result<Vec<Fact>, String>;
    /// Converge onto the facts now; `previous` are the ones the config was
    /// rendered with (their gone addresses' conntrack entries are deleted).
    fn converge(&self, follow: &Follow, previous: &[Fact]) -> Result<Converged, String>;
}

/// What a converge did.
#[derive(Debug, Default)]
pub struct Converged {
    /// Changes applied (besides the agent's config).
    pub changes: usize,
    /// Old addresses whose SNATed conntrack entries were deleted.
    pub flushed: Vec<String>,
    /// The agent's new config was written: re-execute on it.
    pub config_written: bool,
    /// What was run or found, for the log.
    pub notes: Vec<String>,
}

/// Starts the worker for `follow`; its reports go through `tx` wrapped by
/// `wrap` (the loop's message type). None (logged by the caller): no thread.
pub fn spawn<M: Send + 'static>(
    follow: Follow,
    follower: &'static dyn Follower,
    tx: Sender<M>,
    wrap: fn(Report) -> M,
    log: fn(&str),
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("follow".into())
        .spawn(move || work(follow, follower, &|r| tx.send(wrap(r)).is_ok(), log))
}

/// The worker's body: wait, read, converge when moved; returns after a
/// re-execution was asked (or the loop is gone).
pub fn work(
    mut follow: Follow,
    follower: &dyn Follower,
    tell: &dyn Fn(Report) -> bool,
    log: fn(&str),
) {
    let mut watch = match Watch::open() {
        Ok(w) => Some(w),
        Err(e) => {
            log(&format!(
                "follow: no rtnetlink notifications ({e}): polling every {POLL:?}"
            ));
            None
        }
    };
    let period = if watch.is_some() { FALLBACK } else { POLL };
    let mut schedule = Schedule::new(Instant::now(), period);
    loop {
        let due = schedule.due();
        match watch.as_ref().map(|w| w.wait(due, SETTLE, SETTLE_MAX)) {
            Some(Ok(Woke::Changed)) => schedule.woken(Instant::now()),
            Some(Ok(Woke::Timeout)) => {}
            Some(Err(e)) => {
                log(&format!(
                    "follow: rtnetlink failed ({e}): polling every {POLL:?} from now"
                ));
                watch = None;
                schedule.set_period(Instant::now(), POLL);
            }
            None => std::thread::sleep(due.saturating_duration_since(Instant::now())),
        }
        if Instant::now() < schedule.due() {
            continue;
        }
        match step(&mut follow, follower, tell, log) {
            Step::Same | Step::Converged => schedule.checked(Instant::now(), Checked::Done),
            Step::Failed => schedule.checked(Instant::now(), Checked::Failed),
            Step::Stop => return,
        }
    }
}

/// How one read ended.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Same,
    Converged,
    Failed,
    /// Re-execution asked, or nobody listens: the worker ends.
    Stop,
}

/// One read of the facts and, when they moved, one converge.
fn step(
    follow: &mut Follow,
    follower: &dyn Follower,
    tell: &dyn Fn(Report) -> bool,
    log: fn(&str),
) -> Step {
    let now = match follower.now(follow) {
        Ok(n) => n,
        Err(e) => {
            log(&format!(
                "follow: reading the dynamic lines failed (again in {RETRY:?}): {e}"
            ));
            return Step::Failed;
        }
    };
    if now == follow.facts {
        return Step::Same;
    }
    log(&format!(
        "follow: dynamic lines moved: {} -> {}",
        shown(&follow.facts),
        shown(&now)
    ));
    let (ack, held) = std::sync::mpsc::sync_channel(1);
    if !tell(Report::Converging(ack)) {
        return Step::Stop;
    }
    if held.recv_timeout(ACK_WAIT).is_err() {
        log(&format!(
            "follow: the loop did not hold its kernel writes within {ACK_WAIT:?}: converging anyway"
        ));
    }
    let started = Instant::now();
    let r = follower.converge(follow, &follow.facts);
    match r {
        Ok(done) => {
            for n in &done.notes {
                log(&format!("follow: {n}"));
            }
            log(&format!(
                "follow: {} change(s) applied in {} ms, conntrack of {:?} deleted{}",
                done.changes,
                started.elapsed().as_millis(),
                done.flushed,
                if done.config_written {
                    "; config written, re-executing"
                } else {
                    ""
                }
            ));
            if done.config_written {
                // The converge is whole (its script ended, the config is
                // renamed into place): only now may the process image go.
                tell(Report::Reexec);
                return Step::Stop;
            }
            // Nothing to write (the config already had these facts): keep
            // them, so the same move is not followed again.
            follow.facts = now;
            if tell(Report::Converged) {
                Step::Converged
            } else {
                Step::Stop
            }
        }
        Err(e) => {
            log(&format!(
                "follow: converge failed (again in {RETRY:?}): {e}"
            ));
            if tell(Report::Converged) {
                Step::Failed
            } else {
                Step::Stop
            }
        }
    }
}

fn shown(f: &[Fact]) -> String {
    f.iter()
        .map(|x| {
            format!(
                "{} {} via {}",
                x.line,
                x.address.map_or("-".into(), |a| a.to_string()),
                x.next_hop.map_or("-".into(), |a| a.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The old addresses of `before` that `after` no longer has.
pub fn gone_addresses(before: &[Fact], after: &[Fact]) -> Vec<std::net::IpAddr> {
    before
        .iter()
        .filter_map(|b| {
            let old = b.address?.addr();
            let new = after
                .iter()
                .find(|a| a.line == b.line)
                .and_then(|a| a.address)
                .map(|a| a.addr());
            (new != Some(old)).then_some(old)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn the_schedule_wakes_on_events_but_not_during_a_back_off() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, FALLBACK);
        assert_eq!(s.due(), t0, "the first read is at once");
        s.checked(t0, Checked::Done);
        assert_eq!(s.due(), t0 + FALLBACK, "the backstop");
        let t1 = t0 + Duration::from_millis(300);
        s.woken(t1);
        assert_eq!(s.due(), t1, "a notification: read now");
        s.checked(t1, Checked::Done);
        s.woken(t1 + Duration::from_millis(10));
        assert_eq!(s.due(), t1 + MIN_GAP, "churn: no closer than MIN_GAP");
        s.checked(t1, Checked::Failed);
        s.woken(t1 + Duration::from_millis(10));
        assert_eq!(s.due(), t1 + RETRY, "a failure's back-off holds");
        s.checked(t1 + RETRY, Checked::Done);
        s.set_period(t1 + RETRY, POLL);
        assert_eq!(s.due(), t1 + RETRY + POLL, "polling after the socket went");
    }

    /// A follower whose converge takes a while and counts how many run at
    /// once.
    #[derive(Debug)]
    struct Slow {
        running: AtomicUsize,
        most: AtomicUsize,
        converges: AtomicUsize,
        writes_config: bool,
    }

    impl Follower for Slow {
        fn now(&self, _: &Follow) -> Result<Vec<Fact>, String> {
            Ok(vec![fact("cnc", Some("203.0.113.78/24"))])
        }
        fn converge(&self, _: &Follow, previous: &[Fact]) -> Result<Converged, String> {
            assert_eq!(previous, [fact("cnc", Some("203.0.113.77/24"))]);
            let n = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            self.converges.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(Converged {
                config_written: self.writes_config,
                ..Converged::default()
            })
        }
    }

    fn slow(writes_config: bool) -> Slow {
        Slow {
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            converges: AtomicUsize::new(0),
            writes_config,
        }
    }

    fn follow() -> Follow {
        Follow {
            intent: serde_json::Value::Null,
            facts: vec![fact("cnc", Some("203.0.113.77/24"))],
            templates: Default::default(),
        }
    }

    fn quiet(_: &str) {}

    /// The report's name; a Converging is acknowledged, as the loop does.
    fn name(r: Report) -> &'static str {
        match r {
            Report::Converging(ack) => {
                let _ = ack.send(());
                "Converging"
            }
            Report::Converged => "Converged",
            Report::Reexec => "Reexec",
        }
    }

    /// Without the loop's acknowledgement the worker still converges
    /// (after [`ACK_WAIT`]; here the sender is dropped: at once) and says
    /// so.
    #[test]
    fn a_missing_acknowledgement_is_logged_not_fatal() {
        let f = slow(true);
        let tell = |r: Report| {
            drop(r);
            true
        };
        work(follow(), &f, &tell, quiet);
        assert_eq!(f.converges.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_worker_asks_to_re_execute_only_after_the_converge_and_ends() {
        let f = slow(true);
        let told = Mutex::new(Vec::new());
        let tell = |r: Report| {
            // The converge is never running when the loop hears Reexec.
            if matches!(r, Report::Reexec) {
                assert_eq!(f.running.load(Ordering::SeqCst), 0);
            }
            told.lock().unwrap().push(name(r));
            true
        };
        work(follow(), &f, &tell, quiet);
        assert_eq!(*told.lock().unwrap(), ["Converging", "Reexec"]);
        assert_eq!(f.converges.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_worker_brackets_its_one_converge_for_the_loop() {
        let f = slow(false);
        let told = Mutex::new(Vec::new());
        let start = Instant::now();
        // Stop the worker (the loop "gone") after a few reads.
        let tell = |r: Report| {
            let stop =
                matches!(r, Report::Converged) && start.elapsed() >= Duration::from_millis(100);
            told.lock().unwrap().push(name(r));
            !stop
        };
        let handle = std::thread::scope(|s| s.spawn(|| work(follow(), &f, &tell, quiet)).join());
        assert!(handle.is_ok());
        assert_eq!(f.most.load(Ordering::SeqCst), 1);
        // The moved facts are kept: the same move is converged once.
        assert_eq!(f.converges.load(Ordering::SeqCst), 1);
        assert_eq!(*told.lock().unwrap(), ["Converging", "Converged"]);
    }

    fn fact(line: &str, addr: Option<&str>) -> Fact {
        Fact {
            line: line.into(),
            address: addr.map(|a| a.parse().unwrap()),
            next_hop: None,
        }
    }

    #[test]
    fn only_addresses_that_went_are_flushed() {
        let before = [
            fact("cnc", Some("203.0.113.77/24")),
            fact("x", Some("10.0.0.2/24")),
        ];
        let after = [
            fact("cnc", Some("203.0.113.78/24")),
            fact("x", Some("10.0.0.2/24")),
        ];
        assert_eq!(
            gone_addresses(&before, &after),
            vec!["203.0.113.77".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(gone_addresses(&[fact("cnc", None)], &after).is_empty());
        assert_eq!(gone_addresses(&before[..1], &[fact("cnc", None)]).len(), 1);
    }
}
