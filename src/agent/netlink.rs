//! The follower's wake-up (issue 14): a NETLINK_ROUTE socket subscribed to
//! the kernel's link, IPv4 address and IPv4 route notifications. It is only
//! a doorbell: any message (or an overrun, ENOBUFS) means "read the facts
//! again" through the typed read (`model::resolve` via the follower), so
//! nothing here parses netlink beyond draining it. A socket that fails is
//! the caller's cue to fall back to polling (`agent::follow`).
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Read buffer for draining: notifications are small, a full one is fine.
const BUF: usize = 64 * 1024;

/// A subscribed NETLINK_ROUTE socket (non-blocking, close-on-exec: the
/// agent re-executes itself and must not leak it into the new image).
#[derive(Debug)]
pub struct Watch {
    fd: OwnedFd,
}

/// What waiting gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// The kernel said something changed (or its queue overran).
    Changed,
    /// Nothing until the deadline.
    Timeout,
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

impl Watch {
    /// Opens and subscribes the socket.
    pub fn open() -> Result<Watch, String> {
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(os_error("rtnetlink socket"));
        }
        // SAFETY: `raw` is a fresh descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups =
            (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV4_ROUTE) as u32;
        // SAFETY: `sa` lives across the call and the length is its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(sa).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(os_error("rtnetlink bind"));
        }
        Ok(Watch { fd })
    }

    /// Waits until a notification arrives or `until`; on one, drains the
    /// queue and keeps draining until it has been quiet for `settle` (at
    /// most `settle_max` in all), so an address and the route a DHCP or PPP
    /// client adds after it are read together.
    pub fn wait(
        &self,
        until: Instant,
        settle: Duration,
        settle_max: Duration,
    ) -> Result<Woke, String> {
        if !self.poll(until)? {
            return Ok(Woke::Timeout);
        }
        self.drain()?;
        let end = Instant::now() + settle_max;
        loop {
            let quiet = (Instant::now() + settle).min(end);
            if !self.poll(quiet)? {
                return Ok(Woke::Changed);
            }
            self.drain()?;
            if Instant::now() >= end {
                return Ok(Woke::Changed);
            }
        }
    }

    /// True when readable before `until` (an error condition counts: the
    /// drain reads it).
    fn poll(&self, until: Instant) -> Result<bool, String> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            // Round up: a deadline 0.4 ms away must not spin at 0 ms.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
            let mut p = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, count 1.
            let r = unsafe { libc::poll(&mut p, 1, ms) };
            if r < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(os_error("rtnetlink poll"));
            }
            if r == 0 {
                if Instant::now() < until {
                    continue;
                }
                return Ok(false);
            }
            if p.revents & libc::POLLNVAL != 0 {
                return Err("rtnetlink poll: descriptor not open".into());
            }
            return Ok(true);
        }
    }

    /// Reads everything queued. ENOBUFS (the kernel dropped notifications)
    /// is only a wake-up too: the facts are re-read whole anyway.
    fn drain(&self) -> Result<(), String> {
        let mut buf = vec![0u8; BUF];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                continue;
            }
            if n == 0 {
                return Err("rtnetlink: socket closed".into());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(()),
                Some(libc::EINTR) | Some(libc::ENOBUFS) => continue,
                _ => return Err(format!("rtnetlink recv: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opening needs no privilege; nothing changes in a quiet moment is not
    /// guaranteed (other tests touch links), so only the timeout's bound is
    /// checked when no message came.
    #[test]
    fn a_wait_ends_by_its_deadline() {
        let Ok(w) = Watch::open() else {
            eprintln!("skipped: no rtnetlink socket here");
            return;
        };
        let start = Instant::now();
        let r = w.wait(
            start + Duration::from_millis(200),
            Duration::from_millis(20),
            Duration::from_millis(200),
        );
        assert!(r.is_ok(), "{r:?}");
        // Changed may come early; either way never long after the bounds.
        assert!(start.elapsed() < Duration::from_secs(5));
        if r == Ok(Woke::Timeout) {
            assert!(start.elapsed() >= Duration::from_millis(200));
        }
    }
}
