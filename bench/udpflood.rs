//! Small-UDP forwarding benchmark tool for scripts/bench-dataplane.sh (a
//! Cargo example: `cargo build --release --example udpflood`). Debian has no
//! packet generator installed by default and the lab wants no extra package.
//!
//! ```text
//! udpflood send ADDR:PORT SECONDS [SIZE] [FLOWS]   # prints "sent N cpu_ns T"
//! udpflood sink PORT SECONDS                       # prints "received N pps P"
//! ```
//! The sender spreads its packets over FLOWS source ports (default 16), so a
//! connection-tracking gateway sees a few flows, like real traffic; the sink
//! counts what arrives in its window (the rate the gateway forwarded).
//!
//! `cpu_ns` is the sender's own run time (/proc/self/schedstat): a veth
//! delivers a sent packet in the sender's softirq, so its whole way through
//! the lab (gateway, ISP router, the sink's socket) is charged to the sender.
//! CPU time per packet is what a rendering costs, and unlike packets/s it
//! does not fall when other work on the machine takes the core away.
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: udpflood send ADDR:PORT SECONDS [SIZE] [FLOWS] | udpflood sink PORT SECONDS");
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: Option<T>) -> T {
    match args.get(i) {
        Some(a) => a.parse().unwrap_or_else(|_| usage()),
        None => default.unwrap_or_else(|| usage()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("send") => send(
            arg(&args, 2, None),
            arg(&args, 3, None),
            arg(&args, 4, Some(18)),
            arg(&args, 5, Some(16)),
        ),
        Some("sink") => sink(arg(&args, 2, None), arg(&args, 3, None)),
        _ => usage(),
    }
}

/// UDP payload of `size` bytes (18 makes a 64-byte Ethernet frame with its FCS).
fn send(dst: SocketAddr, seconds: f64, size: usize, flows: usize) {
    let sockets: Vec<UdpSocket> = (0..flows.max(1))
        .map(|_| {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.connect(dst).expect("connect");
            s
        })
        .collect();
    let payload = vec![0x5au8; size];
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu0 = run_time_ns();
    let mut sent: u64 = 0;
    'outer: loop {
        for s in &sockets {
            // A full queue or an ICMP error is not fatal: keep sending.
            for _ in 0..64 {
                if s.send(&payload).is_ok() {
                    sent += 1;
                }
            }
            if Instant::now() >= end {
                break 'outer;
            }
        }
    }
    let cpu = run_time_ns()
        .zip(cpu0)
        .map_or(0, |(b, a)| b.saturating_sub(a));
    println!("sent {sent} cpu_ns {cpu}");
}

/// This thread's time on a CPU so far (ns), the first field of
/// /proc/self/schedstat; None where the kernel has no schedstat.
fn run_time_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn sink(port: u16, seconds: f64) {
    let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut first, mut last, mut n) = (None::<Instant>, Instant::now(), 0u64);
    while Instant::now() < deadline {
        if s.recv(&mut buf).is_ok() {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            n += 1;
        }
    }
    let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
    let pps = if secs > 0.0 { n as f64 / secs } else { 0.0 };
    println!("received {n} pps {pps:.0}");
}
