//! The lab is real: routing across the ISPs, anti-spoofing, sshd with a
//! private /etc, the LAN, and a clean teardown. Needs root.
mod common;

use common::{lab_sh, Lab, Run, ROLES};
use std::path::Path;

fn netns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lab_namespaces(prefix: &str) -> Vec<String> {
    netns_list()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Running (a zombie is not: it has released its namespaces and mounts and
/// only waits for whoever inherited it, e.g. pid 1, to reap it).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn internet_connects_users_of_both_isps() {
    let lab = Lab::up();
    assert_eq!(
        lab.curl("uctc", "http://100.65.1.10/").unwrap(),
        "peer=100.64.1.10 local=100.65.1.10\n"
    );
    assert_eq!(
        lab.curl("ucnc", "http://100.64.1.10/").unwrap(),
        "peer=100.65.1.10 local=100.64.1.10\n"
    );
}

#[test]
fn topology_matches_the_contract() {
    let lab = Lab::up();
    let addrs = lab.sh_ok("gw", "ip -4 -o addr show | awk '{print $2, $4}' | sort");
    assert_eq!(
        addrs,
        "eth0 192.168.0.1/24\neth1 198.51.100.2/24\neth2 203.0.113.2/24\nlo 127.0.0.1/8\nmgmt0 10.9.0.2/24\n"
    );
    // Only connected routes: routing policy is dwprov's job.
    let routes = lab.sh_ok("gw", "ip -4 route show table all type unicast | sort");
    assert_eq!(
        routes,
        "10.9.0.0/24 dev mgmt0 proto kernel scope link src 10.9.0.2 \n\
         192.168.0.0/24 dev eth0 proto kernel scope link src 192.168.0.1 \n\
         198.51.100.0/24 dev eth1 proto kernel scope link src 198.51.100.2 \n\
         203.0.113.0/24 dev eth2 proto kernel scope link src 203.0.113.2 \n"
    );
    assert_eq!(lab.sh_ok("gw", "ip rule show | wc -l").trim(), "3");
    assert_eq!(lab.sh_ok("gw", "cat /proc/sys/net/ipv4/ip_forward"), "1\n");
    assert_eq!(lab.sh_ok("ctl", "ip -4 route show default"), "");
    assert_eq!(
        lab.sh_ok("ctl", "ip -4 -o addr show eth0 | awk '{print $4}'"),
        "10.9.0.1/24\n"
    );
    // LAN switch: the three hosts hang off br0.
    let ports = lab.sh_ok(
        "lan",
        "ip -o link show master br0 | awk -F': ' '{print $2}' | sed 's/@.*//' | sort",
    );
    assert_eq!(ports, "p-cli\np-gw\np-srv\n");
    // Nothing of the lab in the root namespace.
    let root_links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let root_links = text(&root_links.stdout);
    for name in ["cust0", "peer0", "user0", "mgmt0", "p-gw", "p-srv", "p-cli"] {
        assert!(
            !root_links.contains(&format!(": {name}@")),
            "{name} in root ns"
        );
    }
}

#[test]
fn isp_drops_customer_packets_with_foreign_source() {
    let lab = Lab::up();
    // Temporary route for this test only: reach uctc through the CTC line.
    lab.sh_ok(
        "gw",
        "ip route add 100.64.1.10/32 via 198.51.100.1 dev eth1",
    );

    let spoofed = lab.curl_with("gw", &["--interface", "203.0.113.2"], "http://100.64.1.10/");
    assert!(spoofed.is_err(), "spoofed source got through: {spoofed:?}");
    let drops = lab.sh_ok(
        "ctc",
        "iptables -nvxL FORWARD | awk '$3 == \"DROP\" && $6 == \"cust0\" {print $1}'",
    );
    assert!(
        drops.trim().parse::<u64>().unwrap() > 0,
        "ctc FORWARD drop counter: {drops:?}"
    );

    assert_eq!(
        lab.curl_with(
            "gw",
            &["--interface", "198.51.100.2"],
            "http://100.64.1.10/"
        )
        .unwrap(),
        "peer=198.51.100.2 local=100.64.1.10\n"
    );

    // INPUT too: the ISP router itself ignores spoofed packets (timeout,
    // curl exit 28) but answers its customer (nothing listens: refused, exit 7).
    let to_router = |source: &str| {
        let out = lab.exec(
            "gw",
            &[
                "curl",
                "-sS",
                "--max-time",
                "2",
                "--interface",
                source,
                "http://198.51.100.1/",
            ],
        );
        out.status.code()
    };
    assert_eq!(to_router("203.0.113.2"), Some(28));
    assert_eq!(to_router("198.51.100.2"), Some(7));

    lab.sh_ok("gw", "ip route del 100.64.1.10/32");
}

#[test]
fn sshd_accepts_lab_key_and_gateway_etc_is_private() {
    let lab = Lab::up();
    let known_hosts = std::fs::read_to_string(lab.dir.join("known_hosts")).unwrap();
    assert!(
        known_hosts.starts_with("10.9.0.2 ssh-ed25519 "),
        "{known_hosts}"
    );
    assert_eq!(known_hosts.lines().count(), 1);

    let key = lab.dir.join("id_ed25519");
    let known = lab.dir.join("known_hosts");
    // The gateway has its own /etc (and hostname) ...
    Run::from(lab.command("ctl", "ssh"))
        .args(["-i", key.to_str().unwrap()])
        .args(["-o", &format!("UserKnownHostsFile={}", known.display())])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg("root@10.9.0.2")
        .arg("cat /etc/hostname; touch /etc/dwprov-lab-probe")
        .expect_success()
        .stdout_is(&format!("{}\n", lab.ns("gw")))
        .run();
    // ... so the probe exists there and not on this machine.
    assert!(
        !Path::new("/etc/dwprov-lab-probe").exists(),
        "probe reached the real /etc"
    );
    lab.sh_ok("gw", "test -e /etc/dwprov-lab-probe");
    assert!(lab.dir.join("overlay/etc/upper/dwprov-lab-probe").exists());

    // /var and /tmp written over SSH stay private as well.
    let probe = format!("/var/tmp/{}probe", lab.prefix);
    let out = lab.ssh(&format!("touch {probe} /tmp/{}probe", lab.prefix));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!Path::new(&probe).exists());
    assert!(!Path::new(&format!("/tmp/{}probe", lab.prefix)).exists());

    // Key-only: no password authentication offered.
    Run::from(lab.command("ctl", "ssh"))
        .args(["-F", "/dev/null"])
        .args(["-o", &format!("UserKnownHostsFile={}", known.display())])
        .args(["-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no"])
        .args(["root@10.9.0.2", "true"])
        .expect_failure()
        .stderr_has("Permission denied (publickey)")
        .run();
    // The pinned key is really checked: a wrong known_hosts is refused.
    let wrong = lab.write_file("wrong_known_hosts", "10.9.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n");
    Run::from(lab.command("ctl", "ssh"))
        .args(["-F", "/dev/null", "-i", key.to_str().unwrap()])
        .args(["-o", &format!("UserKnownHostsFile={}", wrong.display())])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["root@10.9.0.2", "true"])
        .context("wrong host key accepted")
        .expect_failure()
        .run();
}

#[test]
fn lan_client_reaches_server_and_gateway_service() {
    let lab = Lab::up();
    assert_eq!(
        lab.curl("cli", "http://192.168.0.100/").unwrap(),
        "peer=192.168.0.50 local=192.168.0.100\n"
    );
    assert_eq!(
        lab.curl("srv", "http://192.168.0.1:8080/").unwrap(),
        "peer=192.168.0.100 local=192.168.0.1\n"
    );
    // No route to the Internet before dwprov configures the gateway.
    assert!(lab.curl("cli", "http://100.64.1.10/").is_err());
    // The gateway's service lives in sshd's mount namespace, like dwprov's commands.
    let sshd = lab.sshd_pid();
    let echo: u32 = std::fs::read_to_string(lab.dir.join("echo-gw-8080.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mnt = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_eq!(mnt(sshd), mnt(echo));
    assert_ne!(mnt(sshd), std::fs::read_link("/proc/self/ns/mnt").unwrap());
}

#[test]
fn dwprov_runs_in_the_controller_namespace() {
    let lab = Lab::up();
    lab.dwprov_cmd().arg("--help").expect_success().run();
    let ssh = lab.ssh("hostname");
    assert_eq!(
        text(&ssh.stdout),
        format!("{}\n", lab.ns("gw")),
        "{}",
        text(&ssh.stderr)
    );
    assert!(lab.inventory().exists());
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    assert!(inventory.contains("address: 10.9.0.2"));
    assert!(inventory.contains(&format!("identity_file: {}/id_ed25519", lab.dir.display())));
}

#[test]
fn drop_removes_namespaces_processes_and_dir() {
    let lab = Lab::up();
    let prefix = lab.prefix.clone();
    let dir = lab.dir.clone();
    let sshd = lab.sshd_pid();
    assert_eq!(lab_namespaces(&prefix).len(), ROLES.len());
    assert!(dir.exists());
    drop(lab);
    assert_eq!(lab_namespaces(&prefix), Vec::<String>::new());
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!alive(sshd), "sshd {sshd} survived");
}

#[test]
fn up_twice_fails_without_harming_the_running_lab() {
    let lab = Lab::up();
    let out = lab.lab_sh(&["up"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    let status = lab.lab_sh(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stdout));
    assert!(text(&status.stdout).contains("sshd: running"));
    assert!(lab.curl("cli", "http://192.168.0.100/").is_ok());
}

#[test]
fn failed_up_and_partial_labs_are_cleaned_up() {
    let dir = std::env::temp_dir().join(format!("dwt-partial-{}", std::process::id()));
    let prefix = format!("dwtp{}-", std::process::id());
    // Fails after namespaces and sshd exist: the echo server cannot be found.
    Run::new("bash")
        .arg(common::LAB_SH)
        .args(["--prefix", &prefix, "--dir", dir.to_str().unwrap(), "up"])
        .env("DWLAB_ECHO_SERVER", "/nonexistent/echo_server.py")
        .expect_failure()
        .stderr_has("tearing down")
        .run();
    assert_eq!(lab_namespaces(&prefix), Vec::<String>::new());
    assert!(!dir.exists());

    // A half-built lab made by hand: down removes it, twice without error.
    for role in ["gw", "ctc"] {
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &format!("{prefix}{role}")])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".dwprov-lab"), "").unwrap();
    for _ in 0..2 {
        let out = lab_sh(&prefix, &dir, &["down"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(lab_namespaces(&prefix), Vec::<String>::new());
    assert!(!dir.exists());
}

#[test]
fn library_api_runs_the_embedded_script() {
    use dwprov::lab::{run, LabAction};
    let dir = std::env::temp_dir().join(format!("dwt-api-{}", std::process::id()));
    let prefix = format!("dwta{}-", std::process::id());
    // Tear down even if an assertion below fails.
    struct Down<'a>(&'a str, &'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = run(LabAction::Down, self.0, self.1);
        }
    }
    let _down = Down(&prefix, &dir);

    assert!(
        run(LabAction::Status, &prefix, &dir).is_err(),
        "status of an absent lab"
    );
    run(LabAction::Up, &prefix, &dir).unwrap();
    run(LabAction::Status, &prefix, &dir).unwrap();
    // The embedded echo server was copied into the lab dir and serves.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}uctc")])
        .args(["curl", "-sS", "--max-time", "3", "http://100.65.1.10/"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "peer=100.64.1.10 local=100.65.1.10\n");
    run(LabAction::Down, &prefix, &dir).unwrap();
    assert_eq!(lab_namespaces(&prefix), Vec::<String>::new());
    assert!(!dir.exists());
}

#[test]
fn dwprov_lab_up_writes_a_ready_inventory_and_prints_the_next_command() {
    let dir = std::env::temp_dir().join(format!("dwt-ready-{}", std::process::id()));
    let prefix = format!("dwtr{}-", std::process::id());
    let bin = env!("CARGO_BIN_EXE_dwprov");
    // Tear down even if an assertion below fails.
    struct Down<'a>(&'a str, &'a Path, &'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new(self.2)
                .args(["lab", "down", "--prefix", self.0, "--dir"])
                .arg(self.1)
                .output();
        }
    }
    let _down = Down(&prefix, &dir, bin);
    // From a directory without the repository: the binary carries what it needs.
    let out = std::process::Command::new(bin)
        .args(["lab", "up", "--prefix", &prefix, "--dir"])
        .arg(&dir)
        .current_dir("/")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    // No hint names a lab.sh the user does not have.
    assert!(!stdout.contains("lab.sh"), "{stdout}");
    let inv = dir.join("inventory.yaml");
    let next = format!("ip netns exec {prefix}ctl {bin} plan -i {}", inv.display());
    assert!(stdout.contains(&next), "no `{next}` in:\n{stdout}");
    assert!(
        stdout.contains(&format!("{bin} lab down --prefix {prefix}")),
        "{stdout}"
    );
    assert!(dir.join("isp/unicom-only.txt").exists());
    // The printed command, as printed, plans the gateway: changes pending.
    let argv: Vec<&str> = next.split(' ').collect();
    let plan = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .env("NO_COLOR", "1")
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(2),
        "{}{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );
    let p = text(&plan.stdout);
    assert!(
        p.contains("@@ routes table main: +7"),
        "the ISP lists are routed:\n{p}"
    );
    assert!(!p.contains("warning:"), "{p}");
}
