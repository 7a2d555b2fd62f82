//! The command line as a user meets it: exit codes (usage errors are 1,
//! never `plan`'s 2), `--help`, and what a plan and `gather` print against
//! a real lab gateway.
mod common;

use common::seed::text;
use common::{Lab, DWPROV};
use std::process::{Command, Output};

fn dwprov(args: &[&str]) -> Output {
    Command::new(DWPROV)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("cannot run dwprov")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn examples(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn usage_errors_exit_1_never_2() {
    let inv = examples("seed-fwmark/inventory.yaml");
    for args in [
        &["aply"][..],
        &["plan"],
        &["plan", "-i", &inv, "--format", "xml"],
        &["plan", "-i", &inv, "--no-such-flag"],
        &["apply"],
        &[],
    ] {
        let o = dwprov(args);
        assert_eq!(o.status.code(), Some(1), "dwprov {args:?}\n{}", text(&o));
        assert!(!o.stderr.is_empty(), "dwprov {args:?} says nothing");
    }
    // Help and version succeed.
    for args in [&["--help"][..], &["plan", "--help"], &["--version"]] {
        assert_eq!(dwprov(args).status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn errors_exit_1() {
    let o = dwprov(&["plan", "-i", "/nonexistent/inventory.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = dwprov(&[
        "render",
        "-i",
        &examples("seed-fwmark/inventory.yaml"),
        "--limit",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no host"),
        "{}",
        text(&o)
    );
}

#[test]
fn help_documents_exit_codes_and_limit_files() {
    let help = stdout(&dwprov(&["--help"]));
    assert!(help.contains("EXIT CODES"), "{help}");
    assert!(help.contains("usage error"), "{help}");
    let plan = stdout(&dwprov(&["plan", "--help"]));
    assert!(
        plan.contains("EXIT CODES") && plan.contains("2  changes are pending"),
        "{plan}"
    );
    for cmd in ["gather", "render", "plan", "apply"] {
        let h = stdout(&dwprov(&[cmd, "--help"]));
        assert!(
            h.contains("@FILE"),
            "{cmd} --help does not document --limit @FILE:\n{h}"
        );
    }
}

#[test]
fn shipped_examples_render_without_warnings_and_name_overlaps() {
    for m in ["fwmark", "static", "policy"] {
        let o = dwprov(&[
            "render",
            "-i",
            &examples(&format!("seed-{m}/inventory.yaml")),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = stdout(&o);
        assert!(
            !out.contains("warning:"),
            "seed-{m} warns:\n{}",
            out.lines()
                .filter(|l| l.contains("warning"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // Without facts, the route-cache assumption is a note here.
        assert!(out.contains("note: no host facts"), "{m}");
    }
    // The full lists do overlap: one line says which line wins and how to see them.
    let dir = std::env::temp_dir().join(format!("dwprov-cli-overlap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("inv.yaml");
    let seed = std::fs::read_to_string(examples("seed-fwmark/inventory.yaml")).unwrap();
    let isp = examples("isp");
    std::fs::write(
        &inv,
        seed.replace("../isp/unicom-only.txt", &format!("{isp}/unicom.txt"))
            .replace("../isp/chinanet.txt", &format!("{isp}/chinanet.txt")),
    )
    .unwrap();
    let out = stdout(&dwprov(&["render", "-i", inv.to_str().unwrap()]));
    let warn: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(
        warn[0].contains("419 prefix(es) of line cnc")
            && warn[0].contains("which wins")
            && warn[0].contains("--overlaps"),
        "{}",
        warn[0]
    );
    let o = dwprov(&[
        "render",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "gw1",
        "--overlaps",
    ]);
    let list = stdout(&o);
    assert_eq!(
        list.lines()
            .filter(|l| l.contains("routed via ctc"))
            .count(),
        419,
        "{list}"
    );
    assert!(
        list.lines().next().unwrap().contains("419 prefix(es)"),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn render_and_gather_speak_yaml() {
    let o = dwprov(&[
        "render",
        "-i",
        &examples("seed-policy/inventory.yaml"),
        "--format",
        "yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("format_version: 1\nhosts:\n"),
        "{}",
        &out[..out.len().min(300)]
    );
}

/// Count `+`, `~`, `-` lines of a text plan (outside the summary lines).
fn shown(plan: &str) -> (usize, usize, usize) {
    let body = plan
        .lines()
        .filter(|l| !l.starts_with("@@") && !l.starts_with("gw1"));
    let (mut a, mut c, mut r) = (0, 0, 0);
    for l in body {
        match l.chars().next() {
            Some('+') => a += 1,
            Some('~') => c += 1,
            Some('-') => r += 1,
            _ => {}
        }
    }
    (a, c, r)
}

fn summary(plan: &str) -> String {
    plan.lines()
        .find_map(|l| {
            l.strip_prefix("gw1: changes ")
                .or_else(|| l.strip_prefix("gw1: no changes "))
        })
        .unwrap_or_else(|| panic!("no summary line:\n{plan}"))
        .to_string()
}

#[test]
fn plans_show_traffic_first_files_as_one_line_and_counts_match() {
    let lab = Lab::up();
    let inv = lab.inventory();
    let inv = inv.to_str().unwrap();

    // The inventory `lab up` writes is ready to plan: exit 2, changes pending.
    let o = lab.dwprov(&["plan", "-i", inv]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = stdout(&o);
    // A healthy gateway and the shipped lists: nothing to warn about.
    assert!(!plan.contains("warning:"), "{plan}");
    assert!(!plan.contains("route cache"), "{plan}");
    // Traffic first: the first group is the rules, files come last, one line each.
    let groups: Vec<&str> = plan.lines().filter(|l| l.starts_with("@@")).collect();
    assert!(groups[0].starts_with("@@ ip rules"), "{groups:?}");
    assert!(groups.last().unwrap().starts_with("@@ files"), "{groups:?}");
    assert!(plan.contains("+/etc/dwprov/boot.sh  "), "{plan}");
    assert!(
        !plan.contains("#!/bin/sh"),
        "file content without -v:\n{plan}"
    );
    assert!(plan.lines().count() < 200, "{} lines", plan.lines().count());
    assert!(plan.contains("lookup ctc proto dwprov"), "{plan}");

    // -v: the note and the files' content.
    let v = stdout(&lab.dwprov(&["plan", "-i", inv, "-v"]));
    assert!(
        v.contains("note: kernel") && v.contains("no IPv4 route cache"),
        "{}",
        &v[..2000.min(v.len())]
    );
    assert!(v.contains("==> /etc/dwprov/boot.sh") && v.contains("#!/bin/sh"));

    let o = lab.dwprov(&["apply", "-i", inv, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = lab.dwprov(&["plan", "-i", inv]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(summary(&stdout(&o)), "+0 ~0 -0");

    // Drift: a DNAT deleted, a route replaced by hand: the summary counts what is shown.
    lab.sh_ok(
        "gw",
        "iptables -t nat -D DWPROV-PREROUTING -d 203.0.113.2/32 -p tcp -m tcp --dport 2222 -j DNAT --to-destination 192.168.0.100:22 && \
         ip route replace 100.65.0.0/16 via 203.0.113.1 dev eth2 metric 0 proto 201 onlink",
    );
    let o = lab.dwprov(&["plan", "-i", inv]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains("+-A DWPROV-PREROUTING -d 203.0.113.2/32 -p tcp -m tcp --dport 2222 -j DNAT"),
        "{plan}"
    );
    let (a, c, r) = shown(&plan);
    assert_eq!(summary(&plan), format!("+{a} ~{c} -{r}"), "{plan}");
    assert!(a >= 1 && c >= 1, "{plan}");

    // gather: table names and the owner tag, as in the plan.
    let g = stdout(&lab.dwprov(&["gather", "-i", inv]));
    assert!(g.contains("lookup ctc proto dwprov"), "{g}");
    assert!(
        g.contains("from all lookup main\n"),
        "foreign rules carry no tag:\n{g}"
    );
    assert!(g.contains("100\tctc  (dwprov"), "{g}");
    let y = lab.dwprov(&["gather", "-i", inv, "--format", "yaml"]);
    assert_eq!(y.status.code(), Some(0), "{}", text(&y));
    assert!(stdout(&y).contains("format_version: 1"));

    // An unreachable host is an error: 1, not 2.
    let bad = lab.write_file(
        "unreachable.yaml",
        &std::fs::read_to_string(lab.inventory())
            .unwrap()
            .replace("10.9.0.2", "10.9.0.99"),
    );
    let o = lab.dwprov(&["plan", "-i", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// `scripts/install-deps.sh` puts back what a package's postinst enabled at
/// boot (openssh-server's links for this machine's sshd), checked on its
/// functions over a scratch tree (the real apt run was checked by hand in
/// overlays of /etc, /var and /usr: see the commit).
#[test]
fn install_deps_leaves_service_enablement_as_it_was() {
    let dir = std::env::temp_dir().join(format!("dwprov-enablement-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        r#"set -e
source {root}/scripts/install-deps.sh
D={d}
mkdir -p $D/systemd/multi-user.target.wants $D/rc2.d $D/dsh/multi-user.target.wants
ln -s /lib/systemd/system/cron.service $D/systemd/multi-user.target.wants/cron.service
ln -s ../init.d/cron $D/rc2.d/S01cron
ln -s /lib/systemd/system/old.service $D/systemd/alias.service
ENABLEMENT_DIRS=($D/systemd $D/rc2.d $D/dsh)
enablement > $D/before
# What openssh-server's postinst does despite policy-rc.d:
ln -s /lib/systemd/system/ssh.service $D/systemd/multi-user.target.wants/ssh.service
ln -s /lib/systemd/system/ssh.service $D/systemd/sshd.service
ln -s ../init.d/ssh $D/rc2.d/S01ssh
touch $D/dsh/multi-user.target.wants/ssh.service $D/dsh/ssh.service.dsh-also
# and a link changed, one removed:
ln -sfn /lib/systemd/system/new.service $D/systemd/alias.service
rm $D/rc2.d/S01cron
restore_enablement $D/before
enablement > $D/after
cmp $D/before $D/after
"#,
        root = env!("CARGO_MANIFEST_DIR"),
        d = dir.display()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("S01ssh"),
        "{}",
        text(&o)
    );
    assert!(!dir.join("systemd/sshd.service").exists());
    assert_eq!(
        std::fs::read_link(dir.join("rc2.d/S01cron")).unwrap(),
        std::path::Path::new("../init.d/cron")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The scripts find cargo as root without sudo and through sudo, whose
/// Debian `secure_path` leaves out ~/.cargo/bin.
#[test]
fn scripts_find_cargo_under_secure_path() {
    let root = env!("CARGO_MANIFEST_DIR");
    let homes = ["/root/.cargo/bin/cargo", "/usr/local/cargo/bin/cargo"];
    let expect_found = homes.iter().any(|p| std::path::Path::new(p).exists());
    for sudo_user in [None, Some("root")] {
        let mut cmd = Command::new("/bin/bash");
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .current_dir(root)
            .args([
                "-c",
                "source scripts/cargo-env.sh && find_cargo && \"$CARGO\" --version",
            ]);
        if let Some(u) = sudo_user {
            cmd.env("SUDO_USER", u);
        }
        let o = cmd.output().unwrap();
        if expect_found {
            assert!(o.status.success(), "SUDO_USER={sudo_user:?}: {}", text(&o));
            assert!(stdout(&o).starts_with("cargo "), "{}", text(&o));
        } else {
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("rustup"),
                "{}",
                text(&o)
            );
        }
    }
}

#[test]
fn install_puts_dwprov_on_a_prefix() {
    let dir = std::env::temp_dir().join(format!("dwprov-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh"))
        .arg("--prefix")
        .arg(&dir)
        .args(["--binary", DWPROV])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v = Command::new(dir.join("bin/dwprov"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(stdout(&v).starts_with("dwprov "), "{}", text(&v));
    let _ = std::fs::remove_dir_all(&dir);
}
