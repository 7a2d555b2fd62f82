//! A small fluent builder for the commands the lab tests run, in the spirit
//! of `just`'s `Test::new().arg(..).stdin(..).expect_status(..).run()`:
//!
//! ```ignore
//! let out = lab
//!     .dwprov_cmd()
//!     .args(["plan", "-i", inv.to_str().unwrap()])
//!     .env("DWPROV_FAKE_KERNEL", "3.2.0-4-amd64")
//!     .expect_exit(2)
//!     .stdout_has("+3")
//!     .run();
//! let rules = lab.sh_cmd("gw", "ip rule").expect_success().stdout();
//! ```
//!
//! `run()` checks exactly what was asked for: without an `expect_*` any exit
//! status passes (as with `Command::output`), so a converted call site asserts
//! no more and no less than it did before. On a miss it panics with the
//! command line, what was expected, the exit status, stdout and stderr, at
//! the caller's line (`#[track_caller]`).
//!
//! Entry points: `Lab::dwprov_cmd`, `Lab::sh_cmd` (here), `Fleet::dwprov_cmd`,
//! `Fleet::gw_sh_cmd` (in `fleet.rs`), and `Run::new` / `Run::from(Command)`
//! for anything else. (`_cmd`, because `lab.dwprov(&[..])` and `lab.sh(..)`
//! already name the plain runs, which return the Output unchecked.)
//! One exit expectation holds at a time (the last `expect_*` wins); stream
//! checks add up.
use super::{Lab, DWPROV};
use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// A command to run, with the outcome the test expects of it.
pub struct Run {
    cmd: Command,
    /// Shown first in a failure message, e.g. `on gw003`.
    context: Option<String>,
    stdin: Option<Vec<u8>>,
    exit: Option<Exit>,
    checks: Vec<Check>,
}

/// The exit status a test expects.
#[derive(Clone, Copy, Debug)]
enum Exit {
    /// `status.code() == Some(code)` (0 is `status.success()`).
    Code(i32),
    /// Anything but success (a non-zero code, or killed by a signal).
    Failure,
}

#[derive(Clone, Copy, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

/// What a stream must (or must not) contain.
#[derive(Debug)]
enum Check {
    Has(Stream, String),
    Lacks(Stream, String),
    Is(Stream, String),
}

impl Run {
    /// `program` with stdin closed (a test never waits on a terminal).
    pub fn new(program: impl AsRef<OsStr>) -> Run {
        Run::from(Command::new(program))
    }

    /// The dwprov binary under test in network namespace `netns` (a lab's
    /// controller), with NO_COLOR=1 and stdin closed.
    pub fn dwprov_in(netns: &str) -> Run {
        Run::new("ip")
            .args(["netns", "exec", netns])
            .arg(DWPROV)
            .env("NO_COLOR", "1")
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Run {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Run {
        self.cmd.env_remove(key);
        self
    }

    /// Names what runs, for failure messages (e.g. `on gw003`), where the
    /// command line alone does not say it.
    pub fn context(mut self, text: impl Into<String>) -> Run {
        self.context = Some(text.into());
        self
    }

    /// Feeds `input` on stdin (written from a thread, so a command that
    /// answers before it has read everything cannot deadlock the test).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Run {
        self.stdin = Some(input.into());
        self
    }

    /// The exit code must be `code`.
    pub fn expect_exit(mut self, code: i32) -> Run {
        self.exit = Some(Exit::Code(code));
        self
    }

    /// The command must succeed (exit 0).
    pub fn expect_success(self) -> Run {
        self.expect_exit(0)
    }

    /// The command must not succeed (any non-zero exit, or a signal).
    pub fn expect_failure(mut self) -> Run {
        self.exit = Some(Exit::Failure);
        self
    }

    /// stdout must contain `text`.
    pub fn stdout_has(mut self, text: &str) -> Run {
        self.checks.push(Check::Has(Stream::Stdout, text.into()));
        self
    }

    /// stdout must not contain `text`.
    pub fn stdout_lacks(mut self, text: &str) -> Run {
        self.checks.push(Check::Lacks(Stream::Stdout, text.into()));
        self
    }

    /// stdout must be exactly `text`.
    pub fn stdout_is(mut self, text: &str) -> Run {
        self.checks.push(Check::Is(Stream::Stdout, text.into()));
        self
    }

    /// stderr must contain `text`.
    pub fn stderr_has(mut self, text: &str) -> Run {
        self.checks.push(Check::Has(Stream::Stderr, text.into()));
        self
    }

    /// stderr must not contain `text`.
    pub fn stderr_lacks(mut self, text: &str) -> Run {
        self.checks.push(Check::Lacks(Stream::Stderr, text.into()));
        self
    }

    /// The command as built so far, e.g. to `spawn` it in the background
    /// (expectations and stdin input are not part of it).
    pub fn into_command(self) -> Command {
        self.cmd
    }

    /// Runs the command to its end and checks the expectations; panics
    /// with everything needed to see why if one does not hold.
    #[track_caller]
    pub fn run(mut self) -> Output {
        let shown = self.shown();
        let out = match self.stdin.take() {
            None => self.cmd.output(),
            Some(input) => feed(&mut self.cmd, input),
        }
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        let mut misses = Vec::new();
        match self.exit {
            Some(Exit::Code(code)) if out.status.code() != Some(code) => {
                misses.push(format!("exit {code}"));
            }
            Some(Exit::Failure) if out.status.success() => {
                misses.push("a failure (non-zero exit)".to_string());
            }
            _ => {}
        }
        for check in &self.checks {
            let (stream, want, ok, what) = match check {
                Check::Has(s, t) => (*s, t, text(&out, *s).contains(t.as_str()), "contains"),
                Check::Lacks(s, t) => (*s, t, !text(&out, *s).contains(t.as_str()), "lacks"),
                Check::Is(s, t) => (*s, t, text(&out, *s) == *t, "is exactly"),
            };
            if !ok {
                misses.push(format!("{} {what} {want:?}", stream_name(stream)));
            }
        }
        if !misses.is_empty() {
            panic!(
                "command: {shown}\nexpected: {}\ngot: {}\n--- stdout\n{}\n--- stderr\n{}",
                misses.join("; "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    /// The command line, after the context if there is one.
    fn shown(&self) -> String {
        match &self.context {
            Some(c) => format!("({c}) {}", show_command(&self.cmd)),
            None => show_command(&self.cmd),
        }
    }

    /// `run()`, then stdout as text.
    #[track_caller]
    pub fn stdout(self) -> String {
        String::from_utf8_lossy(&self.run().stdout).into_owned()
    }

    /// `run()`, then stdout parsed as one JSON document (panics with the
    /// whole output if it is not one).
    #[track_caller]
    pub fn json(self) -> serde_json::Value {
        let shown = self.shown();
        let out = self.run();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "command: {shown}\nstdout is not JSON ({e}); exit: {}\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl From<Command> for Run {
    /// Wraps a prepared command (e.g. `lab.command("ctl", "ssh")`); stdin is
    /// closed unless `stdin(..)` is given.
    fn from(mut cmd: Command) -> Run {
        cmd.stdin(Stdio::null());
        Run {
            cmd,
            context: None,
            stdin: None,
            exit: None,
            checks: Vec::new(),
        }
    }
}

impl Lab {
    /// The dwprov binary under test in the controller namespace, NO_COLOR=1,
    /// as a builder (`lab.dwprov(&[..])` is the same run without checks).
    pub fn dwprov_cmd(&self) -> Run {
        Run::dwprov_in(&self.ns("ctl"))
    }

    /// `sh -c cmd` in `role`'s namespace (gw: sshd's mount namespace too,
    /// as `lab.sh`), as a builder.
    pub fn sh_cmd(&self, role: &str, cmd: &str) -> Run {
        Run::from(self.command(role, "sh"))
            .args(["-c", cmd])
            .context(format!("in {role}"))
    }
}

fn feed(cmd: &mut Command, input: Vec<u8>) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut pipe = child.stdin.take().expect("piped stdin");
    // A command that exits without reading all of it closes the pipe: that
    // is its business (the expectations judge the outcome), not an error.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output();
    let _ = writer.join();
    out
}

fn text(out: &Output, stream: Stream) -> String {
    let bytes = match stream {
        Stream::Stdout => &out.stdout,
        Stream::Stderr => &out.stderr,
    };
    String::from_utf8_lossy(bytes).into_owned()
}

fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// The command line as a shell would read it: `K=V program 'arg with space'`.
fn show_command(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .map(|(k, v)| match v {
            Some(v) => format!("{}={}", k.to_string_lossy(), quote(v)),
            None => format!("(unset {})", k.to_string_lossy()),
        })
        .collect();
    words.push(quote(cmd.get_program()));
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

fn quote(word: &OsStr) -> String {
    let w = word.to_string_lossy();
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        w.into_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}
