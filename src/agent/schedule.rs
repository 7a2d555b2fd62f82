//! When probe rounds start and when they are judged, per line. A round
//! starts every `interval` whatever the earlier rounds' probes are doing (a
//! lost probe holds its own round for `timeout`, not the next one), so a
//! line's detection takes about `interval * down + timeout`, not
//! `(interval or timeout, the larger) * down`. A round is judged when all
//! its probes answered or timed out, and a line's rounds are judged in the
//! order they started, so the state machine sees the same sequence of
//! verdicts as before and its hold-down still counts rounds.
//!
//! Pure: the caller passes the time (tests use a fake clock) and the
//! probes' results; the daemon runs the probes and feeds them back.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long past its `timeout` a round waits for a probe that has not
/// reported (a probe thread that died): then it is judged, the missing
/// probes lost. The probes end themselves at `timeout`; this is a backstop.
pub const GRACE: Duration = Duration::from_secs(1);

/// One started round waiting for its probes.
#[derive(Debug)]
struct Pending<T> {
    seq: u64,
    started: Instant,
    results: Vec<Option<T>>,
}

/// A judged round: its results in target order, `None` for a probe that
/// never reported (count it lost).
#[derive(Debug, PartialEq)]
pub struct Judged<T> {
    pub seq: u64,
    pub started: Instant,
    pub results: Vec<Option<T>>,
}

/// The rounds of one monitored line.
#[derive(Debug)]
pub struct Rounds<T> {
    interval: Duration,
    patience: Duration,
    targets: usize,
    next_due: Instant,
    next_seq: u64,
    pending: VecDeque<Pending<T>>,
}

impl<T> Rounds<T> {
    /// A line probing `targets` targets every `interval`, each probe taking
    /// at most `timeout`; its first round is due at `now`.
    pub fn new(interval: Duration, timeout: Duration, targets: usize, now: Instant) -> Self {
        Rounds {
            // A zero interval would start rounds in a busy loop (the
            // config refuses < 0.2 s; this keeps a bad caller harmless).
            interval: interval.max(Duration::from_millis(1)),
            patience: timeout + GRACE,
            targets,
            next_due: now,
            next_seq: 1,
            pending: VecDeque::new(),
        }
    }

    /// When the next round is due.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// When the oldest outstanding round is judged even with probes missing.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.started + self.patience)
    }

    /// Rounds started and not judged yet.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Starts the round due by `now`, if any: its number (1, 2, ...), for
    /// the probes to report with. A caller that fell behind (a suspended
    /// machine, a slow loop) gets one round, not the missed ones: the next
    /// is then due an `interval` from `now`.
    pub fn start_due(&mut self, now: Instant) -> Option<u64> {
        if now < self.next_due {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending {
            seq,
            started: now,
            results: (0..self.targets).map(|_| None).collect(),
        });
        self.next_due += self.interval;
        if self.next_due <= now {
            self.next_due = now + self.interval;
        }
        Some(seq)
    }

    /// Records target `target`'s result for round `seq`; false when that
    /// round is already judged (a probe later than its round's patience) or
    /// unknown, or the target was already reported.
    pub fn record(&mut self, seq: u64, target: usize, result: T) -> bool {
        let Some(p) = self.pending.iter_mut().find(|p| p.seq == seq) else {
            return false;
        };
        match p.results.get_mut(target) {
            Some(slot @ None) => {
                *slot = Some(result);
                true
            }
            _ => false,
        }
    }

    /// The rounds ready by `now`, oldest first: from the front, each round
    /// whose probes all reported, or whose patience ran out. A complete
    /// round behind an incomplete one waits for it (verdicts in order).
    pub fn judge(&mut self, now: Instant) -> Vec<Judged<T>> {
        let mut out = Vec::new();
        while let Some(p) = self.pending.front() {
            let complete = p.results.iter().all(Option::is_some);
            if !complete && now < p.started + self.patience {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            out.push(Judged {
                seq: p.seq,
                started: p.started,
                results: p.results,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A fake clock: `at(t)` is `t` ms after a fixed start.
    struct Clock(Instant);
    impl Clock {
        fn at(&self, t: u64) -> Instant {
            self.0 + ms(t)
        }
    }

    #[test]
    fn rounds_start_every_interval_while_earlier_ones_wait() {
        let c = Clock(Instant::now());
        // interval 200 ms, timeout 1 s: five rounds overlap.
        let mut r: Rounds<bool> = Rounds::new(ms(200), ms(1000), 1, c.at(0));
        let mut started = Vec::new();
        for t in (0..=1000).step_by(50) {
            if let Some(seq) = r.start_due(c.at(t)) {
                started.push((seq, t));
            }
        }
        assert_eq!(
            started,
            vec![(1, 0), (2, 200), (3, 400), (4, 600), (5, 800), (6, 1000)]
        );
        assert_eq!(r.outstanding(), 6, "no probe reported: all still out");
        assert!(r.judge(c.at(1000)).is_empty());
    }

    #[test]
    fn detection_is_interval_times_down_plus_timeout() {
        // The outage starts at 0: every probe is lost and reports at its
        // timeout. With down 3, the third bad round is judged at
        // 2 * interval + timeout after the first bad round started, not
        // 3 * timeout as when a round waited for the previous one.
        let c = Clock(Instant::now());
        let (interval, timeout) = (200, 1000);
        let mut r: Rounds<bool> = Rounds::new(ms(interval), ms(timeout), 2, c.at(0));
        let mut judged = Vec::new();
        let mut out: Vec<(u64, u64)> = Vec::new(); // (seq, reports at)
        for t in (0..=3000).step_by(10) {
            if let Some(seq) = r.start_due(c.at(t)) {
                out.push((seq, t + timeout));
            }
            for &(seq, when) in &out {
                if when == t {
                    assert!(r.record(seq, 0, false));
                    assert!(r.record(seq, 1, false));
                }
            }
            for j in r.judge(c.at(t)) {
                judged.push((j.seq, t));
            }
        }
        assert_eq!(judged[..3], [(1, 1000), (2, 1200), (3, 1400)]);
        assert_eq!(judged[2].1, 2 * interval + timeout);
    }

    #[test]
    fn rounds_are_judged_in_order_when_complete() {
        let c = Clock(Instant::now());
        let mut r: Rounds<u8> = Rounds::new(ms(100), ms(500), 2, c.at(0));
        let a = r.start_due(c.at(0)).unwrap();
        let b = r.start_due(c.at(100)).unwrap();
        assert_eq!(r.start_due(c.at(150)), None, "not due yet");
        // b answers first: it waits for a.
        assert!(r.record(b, 0, 10) && r.record(b, 1, 11));
        assert!(r.judge(c.at(160)).is_empty());
        assert!(r.record(a, 1, 1));
        assert!(!r.record(a, 1, 2), "a target reports once");
        assert!(!r.record(a, 2, 2), "no such target");
        assert!(r.judge(c.at(170)).is_empty(), "a still misses target 0");
        assert!(r.record(a, 0, 0));
        let j = r.judge(c.at(180));
        assert_eq!(j.iter().map(|j| j.seq).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(j[0].results, vec![Some(0), Some(1)]);
        assert_eq!(j[1].results, vec![Some(10), Some(11)]);
        assert_eq!(r.outstanding(), 0);
        assert!(!r.record(a, 0, 0), "a judged round takes no more results");
    }

    #[test]
    fn a_probe_that_never_reports_is_lost_after_the_grace() {
        let c = Clock(Instant::now());
        let mut r: Rounds<u8> = Rounds::new(ms(200), ms(300), 2, c.at(0));
        let a = r.start_due(c.at(0)).unwrap();
        assert!(r.record(a, 0, 7));
        assert_eq!(r.deadline(), Some(c.at(300) + GRACE));
        assert!(r.judge(c.at(300) + GRACE - ms(1)).is_empty());
        let j = r.judge(c.at(300) + GRACE);
        assert_eq!(j[0].results, vec![Some(7), None]);
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn a_late_caller_gets_one_round_not_the_missed_ones() {
        let c = Clock(Instant::now());
        let mut r: Rounds<u8> = Rounds::new(ms(200), ms(200), 1, c.at(0));
        assert_eq!(r.start_due(c.at(0)), Some(1));
        // Suspended for 5 s.
        assert_eq!(r.start_due(c.at(5000)), Some(2));
        assert_eq!(r.start_due(c.at(5000)), None);
        assert_eq!(r.next_due(), c.at(5200));
        // A little late (50 ms): the cadence keeps its phase.
        assert_eq!(r.start_due(c.at(5250)), Some(3));
        assert_eq!(r.next_due(), c.at(5400));
    }

    proptest! {
        /// Whatever order the probes report in, and whichever never do:
        /// every round is judged once, in start order, with exactly the
        /// results reported for it, and no later than its patience allows.
        #[test]
        fn judged_once_in_order(reports in proptest::collection::vec((0u64..1500, any::<bool>()), 1..60),
                                targets in 1usize..4) {
            let c = Clock(Instant::now());
            let timeout = 400;
            let mut r: Rounds<u64> = Rounds::new(ms(100), ms(timeout), targets, c.at(0));
            let mut started: Vec<(u64, u64)> = Vec::new();
            let mut judged: Vec<(u64, u64, Vec<Option<u64>>)> = Vec::new();
            // Probe k of the run reports after delay reports[k].0, or never.
            let mut plan: Vec<(u64, u64, usize, u64)> = Vec::new(); // (when, seq, target, value)
            let mut k = 0;
            for t in (0..=4000u64).step_by(10) {
                if t <= 1000 {
                    if let Some(seq) = r.start_due(c.at(t)) {
                        started.push((seq, t));
                        for target in 0..targets {
                            let (delay, reports_at_all) = reports[k % reports.len()];
                            k += 1;
                            if reports_at_all {
                                plan.push((t + delay, seq, target, seq * 10 + target as u64));
                            }
                        }
                    }
                }
                for &(when, seq, target, v) in &plan {
                    if when == t {
                        r.record(seq, target, v);
                    }
                }
                for j in r.judge(c.at(t)) {
                    judged.push((j.seq, t, j.results));
                }
            }
            prop_assert_eq!(judged.len(), started.len());
            for (i, (seq, t, results)) in judged.iter().enumerate() {
                prop_assert_eq!(*seq, started[i].0);
                prop_assert!(*t <= started[i].1 + timeout + GRACE.as_millis() as u64 + 10);
                for (target, res) in results.iter().enumerate() {
                    if let Some(v) = res {
                        prop_assert_eq!(*v, seq * 10 + target as u64);
                    }
                }
            }
        }
    }
}
