//! Bastions (`ProxyJump`): the target's SSH session runs over a
//! `direct-tcpip` channel of the bastion's session.
//!
//! libssh2 needs a real file descriptor for a session, not a channel: the
//! inner session gets one end of a Unix socket pair, and a pump thread,
//! which owns the bastion session, copies bytes between the other end and
//! the channel (non-blocking both ways, keep-alives to the bastion while
//! idle). The pump ends when either side closes or errs, or when the
//! transport is dropped; its teardown is bounded, so nothing hangs.
use super::{peer_label, poll_fds, terr, Endpoint, Link, EAGAIN};
use crate::error::{Error, Result, TransportKind};
use ssh2::{BlockDirections, Channel, ErrorCode};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The running pump of one bastion hop; stopping it (drop) closes the
/// channel and the bastion session.
pub struct Pump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Pump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pump").finish_non_exhaustive()
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The loop checks `stop` at least every 100 ms; teardown is bounded.
            let _ = t.join();
        }
    }
}

/// Name the bastion in an error that happened while reaching it.
pub(crate) fn through(e: Error, b: &Endpoint) -> Error {
    match e {
        Error::Transport {
            host,
            kind,
            message,
        } if !message.starts_with("jump host ") => Error::Transport {
            host,
            kind,
            message: format!("jump host {}: {message}", b.name),
        },
        e => e,
    }
}

/// Open a channel from bastion `b` to `target` (bounded by the target's
/// connect timeout) and start pumping it; returns the socket the target's
/// session runs on.
pub(crate) fn tunnel(b: Link, bep: &Endpoint, target: &Endpoint) -> Result<(UnixStream, Pump)> {
    let ch = open_direct(&b, bep, target)?;
    let (mine, theirs) = UnixStream::pair().map_err(|e| {
        terr(
            &target.host,
            TransportKind::Channel,
            format!("cannot create a socket pair: {e}"),
        )
    })?;
    theirs.set_nonblocking(true).map_err(|e| {
        terr(
            &target.host,
            TransportKind::Channel,
            format!("socket pair: {e}"),
        )
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let keepalive = bep.server_alive_interval.is_some();
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("dwprov-jump-{}", bep.name))
        .spawn(move || pump(b, ch, theirs, flag, keepalive))
        .map_err(|e| {
            terr(
                &target.host,
                TransportKind::Channel,
                format!("cannot start the jump host pump: {e}"),
            )
        })?;
    Ok((
        mine,
        Pump {
            stop,
            thread: Some(thread),
        },
    ))
}

fn wait_dirs(b: &Link) -> (bool, bool) {
    let dirs = b.session.block_directions();
    let outbound = matches!(dirs, BlockDirections::Outbound | BlockDirections::Both);
    let inbound = matches!(dirs, BlockDirections::Inbound | BlockDirections::Both);
    (inbound || !outbound, outbound)
}

/// `direct-tcpip` to the target's address and port: the bastion's sshd
/// connects, so a dead target costs at most the connect timeout.
fn open_direct(b: &Link, bep: &Endpoint, t: &Endpoint) -> Result<Channel> {
    let tpeer = peer_label(&t.address, t.port);
    let bpeer = peer_label(&bep.address, bep.port);
    b.session.set_blocking(false);
    let deadline = Instant::now() + t.connect_timeout;
    loop {
        match b.session.channel_direct_tcpip(&t.address, t.port, None) {
            Ok(ch) => return Ok(ch),
            Err(e) if e.code() == ErrorCode::Session(EAGAIN) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(terr(
                        &t.host,
                        TransportKind::Timeout,
                        format!(
                            "cannot connect to {tpeer} through jump host {} ({bpeer}): no answer within {}s; \
                             the host is down, a firewall drops the packets, or the address is wrong \
                             (check that {} is reachable from the jump host; raise connect_timeout for slow links)",
                            bep.name,
                            t.connect_timeout.as_secs_f32(),
                            t.address
                        ),
                    ));
                }
                let (r, w) = wait_dirs(b);
                poll_fds(
                    &[(b.fd.as_raw_fd(), r, w)],
                    (deadline - now).min(Duration::from_millis(50)),
                );
            }
            Err(e) => {
                return Err(terr(
                    &t.host,
                    TransportKind::Connect,
                    format!(
                        "cannot connect to {tpeer} through jump host {} ({bpeer}): the jump host says: {}; \
                         check the address and port of the target, that sshd runs there, and that the jump host \
                         may forward to it (AllowTcpForwarding)",
                        bep.name,
                        e.message()
                    ),
                ))
            }
        }
    }
}

const MAX_BUFFER: usize = 256 * 1024;

fn pump(b: Link, mut ch: Channel, mut sock: UnixStream, stop: Arc<AtomicBool>, keepalive: bool) {
    let mut up: Vec<u8> = Vec::new(); // inner session → target
    let mut down: Vec<u8> = Vec::new(); // target → inner session
    let mut buf = vec![0u8; 32 * 1024];
    let (mut sock_eof, mut ch_eof) = (false, false);
    let sock_fd = sock.as_raw_fd();
    let b_fd = b.fd.as_raw_fd();
    'run: while !stop.load(Ordering::Relaxed) {
        let mut progress = false;
        if !sock_eof && up.len() < MAX_BUFFER {
            match sock.read(&mut buf) {
                Ok(0) => sock_eof = true,
                Ok(n) => {
                    up.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if is_retry(&e) => {}
                Err(_) => break 'run,
            }
        }
        while !up.is_empty() {
            match ch.write(&up) {
                Ok(0) => break,
                Ok(n) => {
                    up.drain(..n);
                    progress = true;
                }
                Err(e) if is_retry(&e) => break,
                Err(_) => break 'run,
            }
        }
        // The inner session is gone (transport dropped or failed): done.
        if sock_eof && up.is_empty() {
            break;
        }
        while !ch_eof && down.len() < MAX_BUFFER {
            match ch.read(&mut buf) {
                Ok(0) => ch_eof = true,
                Ok(n) => {
                    down.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if is_retry(&e) => break,
                Err(_) => break 'run,
            }
        }
        while !down.is_empty() {
            match sock.write(&down) {
                Ok(0) => break,
                Ok(n) => {
                    down.drain(..n);
                    progress = true;
                }
                Err(e) if is_retry(&e) => break,
                Err(_) => break 'run,
            }
        }
        // The target closed the connection: pass the EOF on and stop.
        if ch_eof && down.is_empty() {
            let _ = sock.shutdown(std::net::Shutdown::Write);
            break;
        }
        if keepalive {
            let _ = b.session.keepalive_send();
        }
        if !progress {
            let (r, w) = wait_dirs(&b);
            poll_fds(
                &[
                    (b_fd, r, w || !up.is_empty()),
                    (
                        sock_fd,
                        !sock_eof && up.len() < MAX_BUFFER,
                        !down.is_empty(),
                    ),
                ],
                Duration::from_millis(100),
            );
        }
    }
    // Teardown, bounded: close the inner side first (the target's session
    // sees EOF at once), then tell the bastion we are done with the channel
    // and the session.
    drop(sock);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match ch.close() {
            Err(e) if e.code() == ErrorCode::Session(EAGAIN) && Instant::now() < deadline => {
                let (r, w) = wait_dirs(&b);
                poll_fds(&[(b_fd, r, w)], Duration::from_millis(20));
            }
            _ => break,
        }
    }
    drop(ch);
    loop {
        match b
            .session
            .disconnect(None, "dwprov: done with the jump host", None)
        {
            Err(e) if e.code() == ErrorCode::Session(EAGAIN) && Instant::now() < deadline => {
                let (r, w) = wait_dirs(&b);
                poll_fds(&[(b_fd, r, w)], Duration::from_millis(20));
            }
            _ => break,
        }
    }
    drop(b);
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
