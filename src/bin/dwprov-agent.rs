//! `dwprov-agent`: the line-health agent on the gateway (the logic is in
//! `dwprov::agent`). Thin: arguments in, [`dwprov::agent::daemon::run`], an
//! exit status out.
use std::path::PathBuf;

/// The help text (`{state}`: the default state dir, named in `ownership`).
const USAGE: &str = "usage: dwprov-agent --config FILE [--state-dir DIR] [--once] [--no-syslog]

Probes every line of FILE through the line itself and, when one goes silent,
repoints the nexthop objects its routes use to a live fallback (docs/agent.md).

  --config FILE     the agent config (JSON, rendered by dwprov apply)
  --state-dir DIR   where the status file goes (default {state})
  --once            one probe round, the status on stdout; changes nothing
  --no-syslog       transitions on stderr only, not also through logger
  --version         print the version

Exit status: 0 (--once done), 1 bad config or state dir, 2 usage.
Runs until killed; SIGTERM ends it (the failover state is in the kernel).";

fn main() {
    let mut config = None;
    let mut state_dir = PathBuf::from(dwprov::ownership::AGENT_STATE_DIR);
    let mut once = false;
    let mut syslog = true;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--config") => config = args.next().map(PathBuf::from),
            Some("--state-dir") => match args.next() {
                Some(d) => state_dir = PathBuf::from(d),
                None => usage("--state-dir needs a directory"),
            },
            Some("--once") => once = true,
            Some("--no-syslog") => syslog = false,
            Some("--version") => {
                println!("dwprov-agent {}", env!("CARGO_PKG_VERSION"));
                return;
            }
            Some("-h" | "--help") => {
                println!("{}", usage_text());
                return;
            }
            _ => usage(&format!(
                "unknown argument {}",
                dwprov::escape::value(&a.to_string_lossy())
            )),
        }
    }
    let Some(config) = config else {
        usage("--config FILE is required")
    };
    let opts = dwprov::agent::daemon::Options {
        config,
        state_dir,
        once,
        syslog,
        follower: Some(&dwprov::follow::Local),
    };
    if let Err(e) = dwprov::agent::daemon::run(opts) {
        eprintln!("dwprov-agent: {}", dwprov::escape::controls(&e));
        std::process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("dwprov-agent: {why}\n{}", usage_text());
    std::process::exit(2);
}

fn usage_text() -> String {
    USAGE.replace("{state}", dwprov::ownership::AGENT_STATE_DIR)
}
