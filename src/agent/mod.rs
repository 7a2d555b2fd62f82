//! The line-health agent (issue 11): a program on the gateway that probes
//! each line through the line itself and, when one goes silent, repoints
//! the nexthop objects its routes use to a live fallback, in a number of
//! kernel operations that does not grow with the prefix lists. It runs
//! without the controller (for months), as the `dwprov-agent` binary
//! (`src/bin/dwprov-agent.rs`); docs/agent.md says why it is Rust and what
//! it proves.
//!
//! Pure and unit-tested: [`config`] (the typed JSON config), [`health`] (the
//! state machine with its hold-down), [`schedule`] (when rounds start and
//! are judged), [`plan`] (states -> nexthop and
//! conntrack commands), [`status`] (the status file), [`install`] (what apply
//! checks before it uploads the agent). I/O: [`probe`] (pinned sockets) and
//! [`daemon`] (the loop, commands, logging), [`follow`] (dynamic lines
//! followed on the gateway: re-rendered and converged with apply's code). [`deploy`]: what apply
//! installs (config, unit or supervisor, the binary) and when it restarts.
pub mod config;
pub mod daemon;
pub mod deploy;
pub mod follow;
pub mod health;
pub mod install;
pub mod netlink;
pub mod plan;
pub mod probe;
pub mod schedule;
pub mod status;
