//! Run scripts on this machine: for dwprov running on the gateway itself.
use super::{Output, Transport};
use crate::error::{Error, Result};
use std::io::Write;
use std::process::{Command, Stdio};

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

impl Transport for LocalTransport {
    fn run_script(&mut self, script: &str) -> Result<Output> {
        self.round_trips += 1;
        let mut child = Command::new("/bin/sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("/bin/sh", e))?;
        // Write stdin from a thread so a large script cannot deadlock against full pipes.
        let mut stdin = child.stdin.take().expect("piped stdin");
        let body = script.as_bytes().to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&body));
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io("/bin/sh", e))?;
        let _ = writer.join();
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn round_trips(&self) -> usize {
        self.round_trips
    }
}
