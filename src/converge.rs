//! Turn a diff into one remote script and run it: the kinds' homes give
//! their commands (`files::apply`, `routing::ip_batch_with_undo`,
//! `sysctls::commit`, each firewall backend's payload); [`body`] puts them
//! into the apply's phases (test, stage, ip batch, commit) in
//! [`crate::kind::KINDS`] order.
//!
//! One script, one round trip: files are written atomically (temp + rename),
//! sysctls set live, every rule and route change goes through one
//! `ip -batch -` stream, and every iptables table through
//! `iptables-restore --noflush` (tested first with `--test`, so a bad payload
//! changes nothing). Payloads travel as heredocs with an unguessable
//! delimiter; nothing is quoted into a command line.
use crate::diff::{Change, Op};
use crate::error::{Error, Result};
use crate::kind::{Kind, KINDS};
use crate::transport::Transport;
use serde::Serialize;

use std::fmt::Write as _;

/// Exit status the script uses for "a step failed"; stderr names the step.
pub const STEP_FAILED: i32 = 3;

/// What will be sent, with figures for benchmarks and the plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyScript {
    pub script: String,
    /// Lines of the `ip -batch` stream.
    pub ip_lines: usize,
    /// Lines of iptables-restore payloads.
    pub iptables_lines: usize,
    /// Files written or removed.
    pub files: usize,
    /// Remote programs the script runs (ip -batch and iptables-restore count once each).
    pub commands: usize,
}

/// The ip batch of rules, routes and nexthops is the routing kind's
/// (src/routing.rs): one `ip -batch` stream for both kinds.
pub use crate::routing::{ip_batch, ip_batch_with_undo};

/// The changes an `apply --adopt` runs: the plan's, then the removal of
/// each hand-made duplicate after the owned objects are in (ip batches add
/// before they delete; an iptables jump goes in first and the hand-made
/// rule out in the same atomic table commit). A hand-made route with the
/// key of an owned one is replaced by it in one `route replace`.
pub fn with_take_over(changes: &[Change], hand_made: &[crate::takeover::HandMade]) -> Vec<Change> {
    use crate::takeover::HandMade;
    let mut out = changes.to_vec();
    for h in hand_made {
        match h {
            HandMade::Rule { rule } => out.push(Change::Rule {
                op: Op::Remove,
                rule: rule.clone(),
            }),
            HandMade::Route { route } => {
                let same_key = out.iter_mut().find_map(|c| match c {
                    Change::Route {
                        from: from @ None,
                        to: Some(w),
                    } if w.key() == route.key() => Some(from),
                    _ => None,
                });
                match same_key {
                    Some(from) => *from = Some(route.clone()),
                    None => out.push(Change::Route {
                        from: Some(route.clone()),
                        to: None,
                    }),
                }
            }
            HandMade::Iptables {
                table, chain, rule, ..
            } => out.push(Change::Jump {
                table: table.clone(),
                chain: chain.clone(),
                op: Op::Remove,
                rule: rule.clone(),
            }),
            // A step of its own (takeover::rt_tables_script), not a change.
            HandMade::RtTable { .. } => {}
        }
    }
    out
}

/// The background job testing the firewall payloads (its pid in `$tp`);
/// "" when there are none. One payload is one command; several are one
/// `&&` list so that `$tp` fails when any test does.
fn firewall_test(payloads: &[crate::firewall::Payload], d: &str) -> String {
    match payloads {
        [] => String::new(),
        // One backend: `cmd <<'D' &`, then the payload.
        [p] => format!("{} <<'{d}' &\n{}{d}\ntp=$!\n", p.test, p.text),
        _ => {
            let tests: String = payloads
                .iter()
                .map(|p| format!("{} <<'{d}' &&\n{}{d}\n", p.test, p.text))
                .collect();
            // `true` closes the last `&&`.
            format!("{{\n{tests}true\n}} &\ntp=$!\n")
        }
    }
}

/// A word as the shell reads it: bare when it is plain, else quoted.
fn sh_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./".contains(&c))
    {
        s.to_string()
    } else {
        sh_quote(s)
    }
}

pub use crate::shell::{heredoc, sh_quote};

/// The helper library every gateway-side script starts with
/// (gateway/lib.sh: `fail`, `nochange`, the step guard, owned listings).
pub const LIB_SH: &str = include_str!("../gateway/lib.sh");

/// The library as it runs: the owned names it works with (from
/// [`crate::ownership`], as quoted parameters), then gateway/lib.sh and
/// the firewall backends' functions (gateway/fw-*.sh).
pub fn lib_sh() -> String {
    use crate::ownership::{
        CHAIN_PREFIX, NFT_FAMILY, NFT_TABLE, PROBE_NAME, ROUTE_PROTO, TEMP_SUFFIX,
    };
    format!(
        "PROTO={}\nIP_FAMILIES={}\nCHAIN={}\nNFT_FAMILY={}\nNFT_TABLE={}\nTEMP_SUFFIX={}\nPROBE={}\n{LIB_SH}{}",
        ROUTE_PROTO,
        sh_quote(&crate::state::family::ip_flags()),
        sh_quote(CHAIN_PREFIX),
        sh_quote(NFT_FAMILY),
        sh_quote(NFT_TABLE),
        sh_quote(TEMP_SUFFIX),
        sh_quote(PROBE_NAME),
        crate::firewall::gateway_sh()
    )
}

/// lib.sh as installed for the commit-confirmed apply: [`lib_sh`] with the
/// kinds' snapshot and revert steps and `revert_kinds`
/// ([`crate::kind::gateway_library`]), which only that apply and its
/// revert call.
pub fn installed_lib_sh() -> String {
    format!("{}{}", lib_sh(), crate::kind::gateway_library())
}

/// The shell prelude every dwprov script starts with: the library, outside
/// any snapshot (`S` empty: the step guard and `ip_batch` check nothing).
pub fn prelude() -> String {
    format!("{}S=\n", lib_sh())
}

/// A fresh heredoc delimiter.
pub fn delimiter() -> String {
    crate::gather::marker().replace('-', "_").to_uppercase()
}

/// What the host can do beyond POSIX sh, from its gathered facts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// `awk` and `sha256sum` are there: a file is sent as an edit of its
    /// gathered content (O(changed lines)) instead of whole.
    pub file_delta: bool,
    /// systemd runs: the revert timer is a transient systemd timer (its
    /// units are sent), else a detached process.
    pub systemd: bool,
}

impl Caps {
    pub fn of(facts: &crate::gather::Facts) -> Caps {
        Caps {
            file_delta: facts.has_tool("awk") && facts.has_tool("sha256sum"),
            systemd: facts.systemd,
        }
    }
}

/// Build the script that applies `changes` (no snapshot, no revert).
pub fn script(changes: &[Change], caps: Caps) -> ApplyScript {
    script_then(changes, caps, "exit 0\n")
}

/// The script that applies `changes`, then runs `tail`.
fn script_then(changes: &[Change], caps: Caps, tail: &str) -> ApplyScript {
    let mut out = ApplyScript::default();
    let d = delimiter();
    let mut s = prelude();
    // The iptables payload is tested before anything changes, while the
    // new files are staged.
    let body = body(changes, &d, &mut out, caps);
    s.push_str(&body.test_start);
    s.push_str(&body.stage);
    s.push_str(&body.wait_for_test("; nothing was changed"));
    s.push_str(&body.ip_step(&d));
    s.push_str(&body.commit);
    s.push_str(tail);
    out.script = s;
    out
}

/// `script`, then the `extra` steps (the take-over's), then gather again
/// in the same round trip (`gather::script` framed by `marker`): the
/// verification of an apply without a new connection (`--no-confirm`).
pub fn script_verified(changes: &[Change], caps: Caps, marker: &str, extra: &str) -> ApplyScript {
    script_then(
        changes,
        caps,
        &format!("{extra}{}", crate::gather::script(marker)),
    )
}

/// The commands that apply `changes`, in three parts. `test_start` starts
/// `iptables-restore --noflush --test` of the payload as a background job
/// (its pid in `$tp`), so that the test overlaps the snapshot and `stage`;
/// `stage` writes each new file's content to a temp file beside it and
/// changes nothing; after [`Body::wait_for_test`], `commit` renames the temp
/// files into place and changes the kernel state.
#[derive(Debug, Default)]
pub struct Body {
    pub test_start: String,
    /// What a failed firewall test says (the backends' `rejected`, "" when none).
    pub rejected: String,
    pub stage: String,
    pub commit: String,
    /// The temp files `stage` writes (shell-quoted).
    pub staged: Vec<String>,
    /// `LINE route replace OLD` for the replaced routes of the ip batch
    /// (see [`ip_batch_with_undo`]).
    pub undo: String,
    /// The `ip -batch` stream of the changes ("" when none). It runs first
    /// of the changes, before `commit`: [`Body::ip_step`] inline, or from a
    /// file the caller wrote (`ip_batch` in gateway/lib.sh reads
    /// `$S/ip.batch` inside a snapshot).
    pub ip_batch: String,
}

impl Body {
    /// The rules and routes step with its batch inline (delimiter `d`).
    pub fn ip_step(&self, d: &str) -> String {
        if self.ip_batch.is_empty() {
            return String::new();
        }
        format!(
            "step 'ip -batch'\n{}",
            heredoc("ip_batch", "ip -batch", d, &self.ip_batch)
        )
    }

    /// Wait for the background iptables test, if any; when it failed,
    /// remove the staged files and stop (through `fail`, which the caller
    /// defines) with a message ending in `suffix`.
    pub fn wait_for_test(&self, suffix: &str) -> String {
        if self.test_start.is_empty() {
            return String::new();
        }
        let cleanup = if self.staged.is_empty() {
            String::new()
        } else {
            format!("rm -f {}; ", self.staged.join(" "))
        };
        let message = format!("{}{suffix}", self.rejected);
        format!("wait $tp || {{ {cleanup}fail {}; }}\n", sh_quote(&message))
    }
}

/// The commands that apply `changes`, counting what they send into `out`.
/// Each change runs behind the step guard (`step`, gateway/lib.sh). Rules
/// and routes ([`Body::ip_batch`]) go first: the kernel may contradict the
/// gathered state there ("File exists"), and then the apply undoes its
/// batch and stops before anything else changed.
pub fn body(changes: &[Change], d: &str, out: &mut ApplyScript, caps: Caps) -> Body {
    let mut b = Body::default();
    // Kind by kind, in the registry's order (crate::kind): each adds its
    // part to the phases (test, stage, ip batch, commit).
    for kind in KINDS {
        match kind {
            Kind::Files => {
                let f = crate::files::apply(changes, d, caps.file_delta);
                out.files += f.files;
                out.commands += f.commands;
                b.stage.push_str(&f.stage);
                b.commit.push_str(&f.commit);
                b.staged.extend(f.staged);
            }
            Kind::Sysctls => out.commands += crate::sysctls::commit(changes, &mut b.commit),
            // Rules, routes and nexthop objects: one ip -batch stream.
            Kind::RulesRoutes => {
                let (batch, undo) = ip_batch_with_undo(changes);
                if !batch.is_empty() {
                    out.ip_lines = batch.lines().count();
                    b.undo = undo;
                    b.ip_batch = batch;
                    out.commands += 1;
                }
            }
            // In the rules and routes' batch (ip_batch_with_undo orders them).
            Kind::Nexthops => {}
            Kind::Firewall => firewall_part(changes, d, out, &mut b),
            // Boot files written above: enable units, start the flush loop
            // and the agent (src/boot.rs).
            Kind::Units => {
                let post = crate::boot::post_install(changes);
                if !post.script.is_empty() {
                    b.commit.push_str("step 'boot units'\n");
                }
                b.commit.push_str(&post.script);
                out.commands += post.commands;
            }
        }
    }
    b
}

/// The firewall: each backend's payload (crate::firewall), all tested in
/// one background job before anything changes, then applied.
fn firewall_part(changes: &[Change], d: &str, out: &mut ApplyScript, b: &mut Body) {
    let fw = crate::firewall::Firewall::payloads(changes);
    b.test_start = firewall_test(&fw, d);
    b.rejected = fw
        .iter()
        .map(|p| p.rejected.as_str())
        .collect::<Vec<_>>()
        .join(" or ");
    for p in &fw {
        out.iptables_lines += p.text.lines().count();
        let _ = writeln!(b.commit, "step {}", sh_word(&p.step));
        b.commit.push_str(&heredoc(&p.apply, &p.what, d, &p.text));
        // The test and the apply.
        out.commands += 2;
    }
}

/// Set a sysctl live (the sysctls kind's home has it).
pub use crate::sysctls::command as sysctl_command;

/// Run the script on the host; a non-zero exit is an error naming the step
/// the script reported on stderr.
pub fn execute(t: &mut dyn Transport, script: &ApplyScript) -> Result<crate::transport::Output> {
    let out = t.run_script(&script.script)?;
    exit_checked(t, out)
}

/// [`execute`] with the output followed by `watch` as it arrives: an apply
/// that gathers in the same round trip ([`script_verified`]) is held to the
/// same per-section cap as a gather ([`crate::gather::SectionWatch`]).
pub fn execute_watched(
    t: &mut dyn Transport,
    script: &ApplyScript,
    watch: &mut dyn crate::transport::Watch,
) -> Result<crate::transport::Output> {
    let out = t.run_script_watched(&script.script, watch)?;
    exit_checked(t, out)
}

fn exit_checked(
    t: &mut dyn Transport,
    out: crate::transport::Output,
) -> Result<crate::transport::Output> {
    if out.status != 0 {
        return Err(Error::Remote {
            host: t.host().to_string(),
            what: "apply".into(),
            status: out.status,
            stderr: out.stderr_str().trim().to_string(),
        });
    }
    Ok(out)
}

/// Describe changes that are still pending after an apply (verification residue).
pub fn describe(c: &Change) -> String {
    match c {
        Change::File { path, .. } => format!("file {path}"),
        Change::Sysctl { key, to, from } => format!(
            "sysctl {key} is {} not {to}",
            from.as_deref().unwrap_or("unset")
        ),
        Change::Rule { op, rule } => format!("rule {op:?}: {}", rule.to_batch()),
        Change::Nexthop { from, to } => match (from, to) {
            (_, Some(n)) => format!("nexthop {}", n.to_batch()),
            (Some(n), None) => format!("nexthop del id {}", n.id),
            (None, None) => "nexthop".into(),
        },
        Change::Route { from, to } => format!(
            "route {}",
            to.as_ref()
                .or(from.as_ref())
                .map(|r| r.to_batch())
                .unwrap_or_default()
        ),
        Change::Chain { table, chain, .. } => format!("iptables {table} chain {chain}"),
        Change::Jump {
            table, chain, rule, ..
        } => format!("iptables {table} {chain}: {rule}"),
        Change::Nft(c) => crate::state::nftables::diff::view(c)
            .first()
            .map(|l| format!("nftables {}", l.text))
            .unwrap_or_else(|| "nftables".into()),
    }
}

#[cfg(test)]
mod tests {

    /// The in-band verify of `--no-confirm` is cut at the section cap like a
    /// gather, naming the command, instead of reading without bound.
    #[test]
    fn an_in_band_gather_is_held_to_the_section_cap() {
        let mut t = crate::transport::local::LocalTransport::new("gw1");
        let script = ApplyScript {
            script: "echo 'M1 begin routes'; i=0; while [ $i -lt 100 ]; do echo 0123456789; i=$((i+1)); done\n".into(),
            ..ApplyScript::default()
        };
        let mut watch = crate::gather::SectionWatch::new("gw1", "M1", 200);
        let e = execute_watched(&mut t, &script, &mut watch)
            .unwrap_err()
            .to_string();
        assert!(e.contains("printed more than"), "{e}");
        let mut roomy = crate::gather::SectionWatch::new("gw1", "M1", 1 << 20);
        assert!(execute_watched(&mut t, &script, &mut roomy).is_ok());
    }
    use super::*;
    use crate::files::{commit_file, file_delta_commands};
    use crate::state::ip::parse_batch;
    use crate::state::RtTables;

    #[test]
    fn batch_orders_adds_before_removes() {
        let b = parse_batch(
            "route add 10.0.0.0/8 via 1.2.3.1 dev eth1 proto 201\nrule add priority 1100 fwmark 0x100 lookup 100 protocol 201",
            "t",
            &RtTables::default(),
        )
        .unwrap();
        let changes = vec![
            Change::Rule {
                op: Op::Remove,
                rule: b.rules[0].clone(),
            },
            Change::Route {
                from: Some(b.routes[0].clone()),
                to: None,
            },
            Change::Rule {
                op: Op::Add,
                rule: b.rules[0].clone(),
            },
            Change::Route {
                from: None,
                to: Some(b.routes[0].clone()),
            },
        ];
        let text = ip_batch(&changes);
        let verbs: Vec<_> = text
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(verbs, ["route add", "rule add", "rule del", "route del"]);
        // A changed route is replaced, and its undo line puts the old one back.
        let mut new = b.routes[0].clone();
        new.metric = 7;
        let (text, undo) = ip_batch_with_undo(&[Change::Route {
            from: Some(b.routes[0].clone()),
            to: Some(new),
        }]);
        assert!(text.starts_with("route replace "), "{text}");
        assert_eq!(
            undo,
            format!("1 route replace {}\n", b.routes[0].to_batch())
        );
    }

    /// A later family's lines (none reach the state today: the inventory
    /// refuses IPv6) start with its flag and come as one block after the
    /// first family's, each block in the usual order, and the undo lines
    /// are numbered in the whole batch (gateway/lib.sh's `batch_ip`).
    #[test]
    fn a_later_family_is_one_block_with_its_flag() {
        use crate::state::ip::Route;
        let v6 = |dst: &str, metric: u32| Route {
            dst: dst.parse().unwrap(),
            dev: Some("eth1".into()),
            table: 100,
            proto: 201,
            metric,
            ..Route::default()
        };
        let v4 = Route {
            dst: "10.1.0.0/16".parse().unwrap(),
            ..v6("2001:db8::/32", 0)
        };
        let changes = [
            Change::Route {
                from: Some(v6("2001:db8::/32", 0)),
                to: Some(v6("2001:db8::/32", 0)),
            },
            Change::Route {
                from: None,
                to: Some(v4.clone()),
            },
            Change::Route {
                from: Some(v6("2001:db8:1::/48", 0)),
                to: None,
            },
            // An address-less rule says its family by its field.
            Change::Rule {
                op: Op::Add,
                rule: crate::state::Rule {
                    priority: 5,
                    fwmark: Some(crate::state::ip::Mark {
                        value: 0x100,
                        mask: 0xff00,
                    }),
                    action: crate::state::ip::RuleAction::Table(100),
                    proto: 201,
                    family: crate::state::Family::Inet6,
                    ..Default::default()
                },
            },
        ];
        let (text, undo) = ip_batch_with_undo(&changes);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("route add 10.1.0.0/16 "), "{text}");
        assert!(
            lines[1].starts_with("-6 route replace 2001:db8::/32 "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("-6 rule add priority 5 from all fwmark 0x100/0xff00 lookup 100"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("-6 route del 2001:db8:1::/48 "),
            "{text}"
        );
        assert!(
            undo.starts_with("2 -6 route replace 2001:db8::/32 "),
            "{undo}"
        );
        // The snapshot's reader takes the flag off a managed family's line
        // and refuses a family dwprov does not manage.
        let names = crate::state::RtTables::default();
        let back = crate::state::ip::parse_batch(
            "-4 route add 10.1.0.0/16 dev eth1 table 100 proto 201",
            "test",
            &names,
        )
        .unwrap();
        assert_eq!(back.routes.len(), 1);
        let e = crate::state::ip::parse_batch(&text, "test", &names).unwrap_err();
        assert!(
            e.to_string()
                .contains("family inet6 (`-6`): dwprov manages -4 only"),
            "{e}"
        );
    }

    /// The commit steps follow the kinds' registry (crate::kind): files,
    /// sysctls, the firewall, the units; the ip batch and the firewall test
    /// are phases of their own.
    #[test]
    fn commit_steps_follow_the_kinds_order() {
        let rule = crate::state::iptables::IptRule::parse("-j ACCEPT").unwrap();
        // Given in the reverse order of the registry.
        let changes = vec![
            Change::Chain {
                table: "nat".into(),
                chain: "DWPROV-X".into(),
                from: None,
                to: Some(vec![rule]),
            },
            Change::Sysctl {
                key: "net/ipv4/ip_forward".into(),
                from: None,
                to: "1".into(),
            },
            Change::File {
                path: "/tmp/x.conf".into(),
                from: None,
                to: Some("x\n".into()),
            },
        ];
        let mut out = ApplyScript::default();
        let b = body(&changes, "D", &mut out, Caps::default());
        let at = |needle: &str| {
            b.commit
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} not in {}", b.commit))
        };
        assert!(at("step 'file") < at("step 'sysctl"));
        assert!(at("step 'sysctl") < at("step iptables-restore"));
        assert!(b
            .test_start
            .starts_with("iptables-restore --noflush --test"));
        assert_eq!((out.files, out.commands), (1, 2 + 1 + 2));
    }

    #[test]
    fn no_changes_no_commands() {
        let s = script(&[], Caps::default());
        assert_eq!(s.commands, 0);
        assert_eq!(s.ip_lines, 0);
    }

    #[test]
    fn script_writes_files_and_stops_at_the_first_failure() {
        // Run the generated script with a fake root: files land where asked,
        // content exact, and a failing step stops everything after it.
        let dir = std::env::temp_dir().join(format!("dwprov-conv-{}", std::process::id()));
        let path = dir.join("a b/x.conf").to_string_lossy().into_owned();
        let changes = vec![Change::File {
            path: path.clone(),
            from: None,
            to: Some("one\n'two' $HOME\n".into()),
        }];
        let s = script(&changes, Caps::default());
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&s.script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one\n'two' $HOME\n"
        );
        let bad = format!("false <<'X' || fail 'step one'\nX\n{}", s.script);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "fail() {{ echo \"dwprov: $1\" >&2; exit 3; }}\n{bad}"
            ))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(STEP_FAILED));
        assert!(String::from_utf8_lossy(&out.stderr).contains("step one"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quoting_survives_hostile_text() {
        assert_eq!(sh_quote("a'b"), r#"'a'\''b'"#);
    }

    /// Run `file_delta_commands` for `old` -> `new` on a real file with the
    /// host's sh, awk and sha256sum; `live` is what the file holds then.
    fn run_delta(old: &str, new: &str, live: &str) -> (std::process::Output, String) {
        let dir = std::env::temp_dir().join(format!(
            "dwprov-delta-{}-{}",
            std::process::id(),
            crate::gather::marker()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ip.batch").to_string_lossy().into_owned();
        std::fs::write(&path, live).unwrap();
        let cmds = file_delta_commands(&path, old, new, &delimiter()).expect("a delta");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{}{cmds}{}", prelude(), commit_file(&path)))
            .output()
            .unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (out, after)
    }

    #[test]
    fn big_files_travel_as_edits_that_rebuild_them_exactly() {
        let lines: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    "route replace 10.{}.{}.0/24 via 192.0.2.1 dev eth1 proto 201\n",
                    i / 256,
                    i % 256
                )
            })
            .collect();
        let old: String = lines.concat();
        type Edit = Box<dyn Fn(&mut Vec<String>)>;
        let edits: Vec<Edit> = vec![
            Box::new(|l| l.insert(0, "# new first line\n".into())),
            Box::new(|l| {
                l.push("route replace 100.66.0.0/16 via 192.0.2.9 dev eth2 proto 201\n".into())
            }),
            Box::new(|l| {
                l.remove(1500);
            }),
            Box::new(|l| {
                l[7] = "route replace 1.1.1.0/24 via 192.0.2.1 dev eth1 proto 201\n".into()
            }),
            Box::new(|l| {
                l.truncate(2990);
                l.insert(
                    100,
                    "a line with 'quotes', $dollars, \\back\\slashes and   spaces  \n".into(),
                );
                l.insert(101, "\n".into());
            }),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut l = lines.clone();
            edit(&mut l);
            let new: String = l.concat();
            let cmds = file_delta_commands("/x", &old, &new, "D").unwrap();
            assert!(
                cmds.len() < 2_000,
                "edit {i}: O(changes), got {} bytes",
                cmds.len()
            );
            let (out, after) = run_delta(&old, &new, &old);
            assert!(
                out.status.success(),
                "edit {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                after == new,
                "edit {i}: the file is not the planned content"
            );
        }
        // Small files and whole rewrites go whole.
        assert!(file_delta_commands("/x", "a\n", "b\n", "D").is_none());
        assert!(file_delta_commands("/x", &old, &old.replace("eth1", "eth3"), "D").is_none());
    }

    #[test]
    fn an_edit_of_a_file_that_changed_since_gather_fails_and_leaves_it() {
        let old: String = (0..3000)
            .map(|i| format!("line {i} of the boot batch\n"))
            .collect();
        let new = format!("{old}one more\n");
        let live = old.replace("line 5 ", "line five ");
        let (out, after) = run_delta(&old, &new, &live);
        assert_eq!(out.status.code(), Some(STEP_FAILED));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("changed on the host since it was gathered"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(after == live, "the file must be left as it was");
    }
}
