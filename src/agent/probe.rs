//! Probes pinned to a line: every socket is bound to the line's interface
//! (SO_BINDTODEVICE) and address, and carries the line's mark (SO_MARK, so
//! it routes by the line's own table). Failover repoints the nexthops the
//! LAN's routes use, never these sockets: a dead line's probes keep going
//! out of the dead line and keep failing, so it does not flap back. No host
//! route is ever added for a target.
//!
//! ICMP is a raw socket (the agent runs as root, and raw sockets need no
//! `ping` binary nor `ping_group_range`); connected, the kernel hands it only
//! the target's packets arriving on that interface for that address. TCP is
//! a non-blocking connect: an answer (accepted or refused) proves the line.
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::config::{Line, Target};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub rtt: Option<Duration>,
    /// Why it failed (`timeout`, the OS error), or `refused` for a TCP
    /// target that answered with a reset (the line works).
    pub note: Option<String>,
}

impl Outcome {
    fn failed(why: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            rtt: None,
            note: Some(why.into()),
        }
    }
}

/// Probes `target` through `line`, waiting at most `timeout`.
pub fn probe(line: &Line, target: Target, timeout: Duration) -> Outcome {
    match target {
        Target::Icmp(a) => icmp(line, a, timeout),
        Target::Tcp(sa) => tcp(line, sa, timeout),
    }
}

/// A socket of `ty` pinned to `line`: its interface, its mark, its address.
fn pinned(line: &Line, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
    s.bind_device(Some(line.interface.as_bytes()))?;
    s.set_mark(line.mark)?;
    s.bind(&SockAddr::from(SocketAddrV4::new(line.address, 0)))?;
    Ok(s)
}

fn tcp(line: &Line, to: SocketAddrV4, timeout: Duration) -> Outcome {
    let s = match pinned(line, Type::STREAM, Protocol::TCP) {
        Ok(s) => s,
        Err(e) => return Outcome::failed(format!("socket: {e}")),
    };
    // Close with a reset: no TIME_WAIT left behind each round.
    let _ = s.set_linger(Some(Duration::ZERO));
    let start = Instant::now();
    match s.connect_timeout(&SockAddr::from(to), timeout) {
        Ok(()) => Outcome {
            ok: true,
            rtt: Some(start.elapsed()),
            note: None,
        },
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome {
            ok: true,
            rtt: Some(start.elapsed()),
            note: Some("refused".into()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Outcome::failed("timeout"),
        Err(e) => Outcome::failed(e.to_string()),
    }
}

/// Echo sequence numbers: distinct per probe, so a late reply to an earlier
/// probe is never taken for this one.
static NEXT_SEQ: AtomicU16 = AtomicU16::new(0);

fn icmp(line: &Line, to: Ipv4Addr, timeout: Duration) -> Outcome {
    let s = match pinned(line, Type::RAW, Protocol::ICMPV4) {
        Ok(s) => s,
        Err(e) => return Outcome::failed(format!("socket: {e}")),
    };
    if let Err(e) = s.connect(&SockAddr::from(SocketAddrV4::new(to, 0))) {
        return Outcome::failed(e.to_string());
    }
    // The identifier names this agent (as ping uses its pid).
    let id = std::process::id() as u16;
    let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
    let packet = echo_request(id, seq);
    let start = Instant::now();
    if let Err(e) = s.send(&packet) {
        return Outcome::failed(e.to_string());
    }
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Outcome::failed("timeout");
        }
        if s.set_read_timeout(Some(left)).is_err() {
            return Outcome::failed("timeout");
        }
        match (&s).read(&mut buf) {
            Ok(n) => {
                if is_echo_reply(&buf[..n], id, seq) {
                    return Outcome {
                        ok: true,
                        rtt: Some(start.elapsed()),
                        note: None,
                    };
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Outcome::failed("timeout")
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Outcome::failed(e.to_string()),
        }
    }
}

/// An ICMP echo request: type 8, code 0, checksum, id, seq, 16 bytes of payload.
pub fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8u8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"dwprov-agent-pr\0");
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Whether `ip_packet` (a raw socket hands the IP header too) is the echo
/// reply to `id`/`seq`.
pub fn is_echo_reply(ip_packet: &[u8], id: u16, seq: u16) -> bool {
    let Some(&first) = ip_packet.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 {
        return false;
    }
    let Some(icmp) = ip_packet.get(ihl..) else {
        return false;
    };
    icmp.len() >= 8
        && icmp[0] == 0
        && icmp[1] == 0
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
        && checksum(icmp) == 0
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reply a host sends to `req`, behind a 20-byte IP header.
    fn reply_to(req: &[u8]) -> Vec<u8> {
        let mut icmp = req.to_vec();
        icmp[0] = 0;
        icmp[2] = 0;
        icmp[3] = 0;
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45u8];
        ip.extend_from_slice(&[0; 19]);
        ip.extend_from_slice(&icmp);
        ip
    }

    #[test]
    fn echo_request_and_reply() {
        let req = echo_request(0x1234, 7);
        assert_eq!(req[0], 8);
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to 0");
        let rep = reply_to(&req);
        assert!(is_echo_reply(&rep, 0x1234, 7));
        assert!(!is_echo_reply(&rep, 0x1234, 8), "another probe's reply");
        assert!(!is_echo_reply(&rep, 0x1235, 7));
        let mut bad = rep.clone();
        bad[30] ^= 1;
        assert!(!is_echo_reply(&bad, 0x1234, 7), "a corrupt reply");
        let mut req_seen = reply_to(&req);
        req_seen[20] = 8;
        assert!(
            !is_echo_reply(&req_seen, 0x1234, 7),
            "our own request is no reply"
        );
        // RFC 1071's example words.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    proptest! {
        #[test]
        fn any_bytes_are_no_reply_and_no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80), id: u16, seq: u16) {
            let _ = is_echo_reply(&bytes, id, seq);
            let _ = checksum(&bytes);
        }
    }
}
