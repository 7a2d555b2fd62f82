//! Run scripts on this machine: for dwprov running on the gateway itself.
//!
//! The shell runs in a process group of its own, as sshd's session would:
//! a gateway-side watchdog that ends "its" process group (gateway/gather.sh)
//! then ends the script, never dwprov.
use super::{too_much, Output, Transport, Watch, MAX_STDERR, MAX_STDOUT};
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

pub struct LocalTransport {
    host: String,
    round_trips: usize,
}

impl LocalTransport {
    pub fn new(host: &str) -> Self {
        LocalTransport {
            host: host.to_string(),
            round_trips: 0,
        }
    }
}

/// Kill the script's whole process group and reap the shell.
fn end(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: signalling a process group we created.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.wait();
}

impl Transport for LocalTransport {
    fn run_script(&mut self, script: &str) -> Result<Output> {
        self.run_script_watched(script, &mut super::NoWatch)
    }

    fn run_script_watched(&mut self, script: &str, watch: &mut dyn Watch) -> Result<Output> {
        self.round_trips += 1;
        let mut child = Command::new("/bin/sh")
            .arg("-s")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("/bin/sh", e))?;
        // Write stdin and read stderr from threads so a large script cannot
        // deadlock against full pipes.
        let mut stdin = child.stdin.take().expect("piped stdin");
        let body = script.as_bytes().to_vec();
        // A watch that holds stdin: its reply follows the script (none
        // when the script ends first: the sender goes with this call).
        let (more_tx, more_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let holds = watch.holds_stdin();
        let writer = std::thread::spawn(move || {
            stdin.write_all(&body)?;
            if holds {
                if let Ok(more) = more_rx.recv() {
                    stdin.write_all(&more)?;
                }
            }
            Ok::<(), std::io::Error>(())
        });
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        // Past the limit, stderr is still drained (a blocked writer would
        // hang the script) but no longer kept.
        let reader = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            let (mut err, mut buf) = (Vec::new(), vec![0u8; 16 * 1024]);
            loop {
                match err_pipe.read(&mut buf) {
                    Ok(0) => return Ok(err),
                    Ok(n) if err.len() <= MAX_STDERR => err.extend_from_slice(&buf[..n]),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        });
        let mut out_pipe = child.stdout.take().expect("piped stdout");
        let mut stdout = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match out_pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    end(&mut child);
                    return Err(Error::io("/bin/sh (stdout)", e));
                }
            };
            let at = stdout.len();
            stdout.extend_from_slice(&buf[..n]);
            let stop = if stdout.len() > MAX_STDOUT {
                Err(too_much(&self.host, "stdout", MAX_STDOUT))
            } else {
                watch.stdout(&stdout, at)
            };
            if let Err(e) = stop {
                end(&mut child);
                drop(out_pipe);
                drop(more_tx);
                let _ = reader.join();
                let _ = writer.join();
                return Err(e);
            }
            if let Some(more) = watch.reply() {
                let _ = more_tx.send(more);
            }
        }
        drop(more_tx);
        let status = child.wait().map_err(|e| Error::io("/bin/sh", e))?;
        let _ = writer.join();
        let stderr = reader
            .join()
            .unwrap_or_else(|_| Ok(Vec::new()))
            .map_err(|e| Error::io("/bin/sh (stderr)", e))?;
        if stderr.len() > MAX_STDERR {
            return Err(too_much(&self.host, "stderr", MAX_STDERR));
        }
        Ok(Output {
            status: status.code().unwrap_or(-1),
            stdout,
            stderr,
        })
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn round_trips(&self) -> usize {
        self.round_trips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A script that prints without end is stopped at [`MAX_STDOUT`], its
    /// process group ended, with an error naming the host and the limit.
    #[test]
    fn output_past_the_limit_stops_the_run() {
        let mut t = LocalTransport::new("gw1");
        let script = format!("head -c {} /dev/zero; echo done\n", MAX_STDOUT + (1 << 20));
        let e = t.run_script(&script).unwrap_err().to_string();
        assert!(
            e.starts_with("gw1: a script printed more than 256 MiB on stdout"),
            "{e}"
        );
        let out = t.run_script("echo hello; echo oops >&2; exit 3\n").unwrap();
        assert_eq!(
            (
                out.status,
                out.stdout_str().as_str(),
                out.stderr_str().as_str()
            ),
            (3, "hello\n", "oops\n")
        );
    }

    /// A watch that holds stdin: its reply reaches the script after the
    /// script itself, once the watch saw what it waited for; a script
    /// that exits first gets none and the run still ends.
    #[test]
    fn a_held_stdin_gets_the_reply_after_the_script() {
        struct Told(Option<Vec<u8>>, bool);
        impl Watch for Told {
            fn stdout(&mut self, all: &[u8], _: usize) -> Result<()> {
                if !self.1 && all.ends_with(b"ready\n") {
                    self.1 = true;
                    self.0 = Some(b"confirm\n".to_vec());
                }
                Ok(())
            }
            fn holds_stdin(&self) -> bool {
                true
            }
            fn reply(&mut self) -> Option<Vec<u8>> {
                self.0.take()
            }
        }
        let mut t = LocalTransport::new("gw1");
        let script = "main() { echo ready; IFS= read -r v; echo \"got $v\"; }\nmain\n";
        let out = t
            .run_script_watched(script, &mut Told(None, false))
            .unwrap();
        assert_eq!(out.stdout_str(), "ready\ngot confirm\n");
        // The shell reads its script from stdin: one that ends itself.
        let out = t
            .run_script_watched("echo bye; exit\n", &mut Told(None, false))
            .unwrap();
        assert_eq!((out.status, out.stdout_str().as_ref()), (0, "bye\n"));
    }
}
