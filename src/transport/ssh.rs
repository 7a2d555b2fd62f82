//! SSH transport on libssh2 (the ssh2 crate). Stub: filled in by the transport work.
use super::{ConnectOptions, Output, SshTarget, Transport};
use crate::error::{Error, Result, TransportKind};

pub struct SshTransport {
    host: String,
    round_trips: usize,
}

impl SshTransport {
    pub fn connect(t: &SshTarget, _opts: &ConnectOptions) -> Result<Self> {
        Err(Error::Transport {
            host: t.host.clone(),
            kind: TransportKind::Connect,
            message: "ssh transport not implemented yet".into(),
        })
    }
}

impl Transport for SshTransport {
    fn run_script(&mut self, _script: &str) -> Result<Output> {
        self.round_trips += 1;
        unimplemented!()
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn round_trips(&self) -> usize {
        self.round_trips
    }
}
