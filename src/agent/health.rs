//! The health state machine of one line: rounds in, state changes out.
//!
//! A round is good when at least `reliability` of the line's targets
//! answered. `down` bad rounds in a row take an up line down, `up` good
//! rounds in a row bring a down line back. On top of the streaks, a
//! hold-down: after a change, the next one waits until `down + up` rounds
//! have passed, so a flapping line changes state at most once in any
//! `down + up` consecutive rounds (mwan3 and VyOS users complain of lines
//! that flip every few seconds). The first change after the agent starts
//! has no hold-down, so a line that is dead at start is failed over at once.
use serde::{Deserialize, Serialize};

/// What the agent believes of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Up,
    Down,
    /// Not monitored (no `health`): counts as alive for fallbacks.
    Unknown,
}

impl State {
    /// Whether traffic may be sent to this line.
    pub fn alive(self) -> bool {
        self != State::Down
    }
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The machine of one monitored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    down: u32,
    up: u32,
    state: State,
    good_run: u32,
    bad_run: u32,
    /// Rounds since the last change; `None`: no change since the start.
    since_change: Option<u64>,
}

impl Machine {
    /// A machine starting in `state` (`Up` or `Down`: what the kernel says).
    pub fn new(state: State, down: u32, up: u32) -> Machine {
        Machine {
            down: down.max(1),
            up: up.max(1),
            state: if state == State::Down {
                State::Down
            } else {
                State::Up
            },
            good_run: 0,
            bad_run: 0,
            since_change: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Rounds a change must wait after the previous one.
    pub fn hold_down(&self) -> u64 {
        u64::from(self.down) + u64::from(self.up)
    }

    /// The streak that made or will make the current decision: bad rounds
    /// in a row (up line) or good ones (down line).
    pub fn streak(&self) -> u32 {
        match self.state {
            State::Down => self.good_run,
            _ => self.bad_run,
        }
    }

    /// Feeds one round's verdict; returns the new state if it changed.
    pub fn round(&mut self, good: bool) -> Option<State> {
        if let Some(n) = self.since_change.as_mut() {
            *n = n.saturating_add(1);
        }
        if good {
            self.good_run = self.good_run.saturating_add(1);
            self.bad_run = 0;
        } else {
            self.bad_run = self.bad_run.saturating_add(1);
            self.good_run = 0;
        }
        let held = self.since_change.is_some_and(|n| n < self.hold_down());
        let next = match self.state {
            State::Up if self.bad_run >= self.down => State::Down,
            State::Down if self.good_run >= self.up => State::Up,
            _ => return None,
        };
        if held {
            return None;
        }
        self.state = next;
        self.since_change = Some(0);
        Some(next)
    }
}

/// Whether a round with `answered` of its targets answering is good.
pub fn round_is_good(answered: usize, reliability: u32) -> bool {
    answered >= reliability as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The round numbers (1-based) at which the machine changed state.
    fn changes(m: &mut Machine, rounds: &[bool]) -> Vec<(usize, State)> {
        rounds
            .iter()
            .enumerate()
            .filter_map(|(i, &g)| m.round(g).map(|s| (i + 1, s)))
            .collect()
    }

    fn seq(s: &str) -> Vec<bool> {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c == 'g')
            .collect()
    }

    #[test]
    fn down_after_down_bad_rounds_up_after_up_good_rounds() {
        let mut m = Machine::new(State::Up, 3, 5);
        // Two bad rounds are not an outage; the third in a row is.
        assert_eq!(changes(&mut m, &seq("bbgbb b")), vec![(6, State::Down)]);
        assert_eq!(m.streak(), 0);
        // Four good rounds are not enough; an interruption starts over.
        let mut m = Machine::new(State::Down, 3, 5);
        assert_eq!(changes(&mut m, &seq("ggggb ggggg")), vec![(10, State::Up)]);
    }

    #[test]
    fn a_line_dead_at_start_is_down_without_hold_down() {
        let mut m = Machine::new(State::Up, 3, 5);
        assert_eq!(changes(&mut m, &seq("bbb")), vec![(3, State::Down)]);
    }

    #[test]
    fn failback_waits_for_the_hold_down() {
        // Down at round 3; the line answers from round 4: five good rounds
        // would bring it back at 8, the hold-down (3 + 5) says 11.
        let mut m = Machine::new(State::Up, 3, 5);
        let c = changes(&mut m, &seq("bbb ggggggggggg"));
        assert_eq!(c, vec![(3, State::Down), (11, State::Up)]);
        // A long outage: the hold-down is over before the good streak is.
        let mut m = Machine::new(State::Up, 3, 5);
        let c = changes(&mut m, &seq("bbbbbbbbbbbb ggggg"));
        assert_eq!(c, vec![(3, State::Down), (17, State::Up)]);
    }

    #[test]
    fn a_flapping_line_changes_at_most_once_per_down_plus_up_rounds() {
        // Every other probe lost, down 1 / up 1: without the hold-down this
        // would change state every round.
        let mut m = Machine::new(State::Up, 1, 1);
        let flap: Vec<bool> = (0..40).map(|i| i % 2 == 1).collect();
        let c = changes(&mut m, &flap);
        assert!(c.len() >= 5, "it does change, slowly: {c:?}");
        for w in c.windows(2) {
            assert!(w[1].0 - w[0].0 >= 2, "{c:?}");
        }
        // With the defaults, alternating rounds never make a streak.
        let mut m = Machine::new(State::Up, 3, 5);
        assert!(changes(&mut m, &flap).is_empty());
        // Bursts: bbb ggggg repeated, the worst case for streaks alone.
        let mut m = Machine::new(State::Up, 3, 5);
        let burst = seq(&"bbbggggg".repeat(6));
        let c = changes(&mut m, &burst);
        assert!(!c.is_empty());
        for w in c.windows(2) {
            assert!(w[1].0 - w[0].0 >= 8, "{c:?}");
        }
    }

    #[test]
    fn reliability_counts_answers() {
        assert!(round_is_good(1, 1) && round_is_good(2, 1) && !round_is_good(0, 1));
        assert!(!round_is_good(1, 2) && round_is_good(2, 2));
    }

    proptest! {
        /// Whatever the rounds: changes alternate, each backed by its
        /// streak, and two changes are at least down+up rounds apart.
        #[test]
        fn hold_down_holds(rounds in proptest::collection::vec(any::<bool>(), 0..400),
                           down in 1u32..6, up in 1u32..8, start_down in any::<bool>()) {
            let start = if start_down { State::Down } else { State::Up };
            let mut m = Machine::new(start, down, up);
            let c = changes(&mut m, &rounds);
            let mut prev = start;
            for (i, s) in &c {
                prop_assert_ne!(*s, prev);
                let need = if *s == State::Down { down } else { up } as usize;
                let want = *s == State::Up;
                prop_assert!(*i >= need);
                prop_assert!(rounds[i - need..*i].iter().all(|&g| g == want));
                prev = *s;
            }
            for w in c.windows(2) {
                prop_assert!((w[1].0 - w[0].0) as u64 >= u64::from(down + up));
            }
        }
    }
}
