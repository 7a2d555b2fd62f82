//! Following dynamic lines on the gateway (issue 14, phase 2), the agent's
//! side: every [`CHECK`] the loop asks its [`Follower`] for the dynamic
//! lines' address and next hop; when they differ from what apply rendered
//! with (the config's `follow.facts`), it asks the follower to converge
//! the host, then re-executes itself on the config that wrote. The
//! follower is `crate::follow::Local` (the same typed gather, render, diff
//! and converge as apply), given by the binary: it sits above `render`,
//! which sits above the agent's config.
use super::config::{Fact, Follow};
use std::time::Duration;

/// How often the dynamic lines' facts are read (the issue asks for 2 s).
pub const CHECK: Duration = Duration::from_millis(500);
/// After a failed converge, wait this long before the next attempt.
pub const RETRY: Duration = Duration::from_secs(5);

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

/// The old addresses of `before` that `after` no longer has.
pub fn gone_addresses(before: &[Fact], after: &[Fact]) -> Vec<std::net::Ipv4Addr> {
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
            vec!["203.0.113.77".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert!(gone_addresses(&[fact("cnc", None)], &after).is_empty());
        assert_eq!(gone_addresses(&before[..1], &[fact("cnc", None)]).len(), 1);
    }
}
