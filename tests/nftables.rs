//! The nftables backend on real packets in the lab (issue 12).
//!
//! `the_rendered_table_carries_every_scenario`: the seed's gateway is
//! converged by dwprov with method fwmark (iptables), then its DWPROV-*
//! chains are taken out by hand and the nftables table rendered for the
//! same intent is loaded with `nft -f` instead: every traffic check of the
//! end-to-end tests passes on it. Then the prefix routes go and the table
//! of method set (prefix sets, marks, `ip rule fwmark`) carries the same
//! traffic. A foreign nft table and foreign iptables-nft rules planted first
//! survive. This proves the rendering on packets independently of the
//! apply's wiring.
mod common;

use common::seed::*;
use common::Lab;
use dwprov::render::nftables as render;
use dwprov::state::nftables::{diff, json};
use dwprov::{inventory, model};

fn gateway(inv: &std::path::Path) -> model::Gateway {
    let inv = inventory::load(inv).unwrap();
    model::build(&inv.hosts[0]).unwrap()
}

/// Checked with `nft -c`, then loaded, as one transaction.
fn load(lab: &Lab, payload: &str) {
    let file = lab.write_file("nft.payload", payload);
    let f = file.display();
    lab.sh_ok("gw", &format!("nft -c -f {f} && nft -f {f}"));
}

fn owned(lab: &Lab) -> dwprov::state::nftables::Nftables {
    let o = lab.sh("gw", "nft -j list table inet dwprov");
    json::parse(&String::from_utf8_lossy(&o.stdout)).unwrap()
}

const FOREIGN: &str = "nft list table inet filter; iptables-save -t filter | grep -e '^-A INPUT'; iptables-save -t nat | grep -e '^-A.*ADMIN'";

#[test]
fn the_rendered_table_carries_every_scenario() {
    let lab = Lab::up();
    lab.sh_ok(
        "gw",
        "nft -f - <<'EOF'\n\
         add table inet filter\n\
         add chain inet filter input { type filter hook input priority 0; policy accept; }\n\
         add rule inet filter input ip saddr 10.99.0.0/16 tcp dport 22 counter accept\n\
         EOF\n\
         iptables -A INPUT -s 10.99.0.0/16 -p tcp --dport 22 -j ACCEPT && \
         iptables -t nat -N ADMIN && iptables -t nat -A PREROUTING -j ADMIN && \
         iptables -t nat -A ADMIN -s 10.99.0.0/16 -j RETURN",
    );
    let foreign = lab.sh_ok("gw", FOREIGN);
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    apply(&lab, &inv);
    assert_traffic(&lab, true);

    // The iptables backend's owned chains and jumps out, by hand.
    lab.sh_ok(
        "gw",
        "iptables-save | grep -v -e 'DWPROV-' > /tmp/ipt.rest && iptables-restore < /tmp/ipt.rest && \
         ! iptables-save | grep -q DWPROV-",
    );
    // Without marks cross access to the forward breaks: the check can fail.
    assert!(lab.curl("uctc", "http://203.0.113.2/").is_err());

    let gw = gateway(&inv);
    let want = render::desired(&gw, false);
    load(&lab, &diff::full(&want));
    assert_eq!(owned(&lab), want, "listed != rendered");
    assert_traffic(&lab, true);
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);

    // Method set: no prefix routes in main; the sets classify by mark.
    lab.sh_ok(
        "gw",
        "ip route del 100.65.0.0/16 && ip route del 100.66.0.0/16 && ip route del 100.64.0.0/16",
    );
    let sets = render::desired(&gw, true);
    load(&lab, &diff::payload(&diff::diff(&owned(&lab), &sets)));
    assert_eq!(owned(&lab), sets, "listed != rendered (sets)");
    lab.sh_ok("gw", "conntrack -F 2>/dev/null; true");
    assert_traffic(&lab, true);
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);

    // The set decides: without cnc's element the LAN goes by the default line.
    lab.sh_ok(
        "gw",
        "nft delete element inet dwprov line_cnc '{ 100.65.0.0/16 }' && conntrack -F 2>/dev/null; true",
    );
    let r = lab.curl("cli", "http://100.65.1.10/");
    assert!(
        r.as_deref().map(peer) != Ok("203.0.113.2"),
        "without the element cnc's user is no longer reached by cnc's line: {r:?}"
    );
    let changes = diff::diff(&owned(&lab), &sets);
    let shown: Vec<String> = changes
        .iter()
        .flat_map(diff::view)
        .map(|l| format!("{} {}", l.sign, l.text))
        .collect();
    assert_eq!(shown, ["+ element line_cnc 100.65.0.0/16"]);
    load(&lab, &diff::payload(&changes));
    assert_eq!(
        peer(&lab.curl("cli", "http://100.65.1.10/").unwrap()),
        "203.0.113.2"
    );

    // Away again: only the owned table goes.
    load(
        &lab,
        &diff::payload(&diff::diff(&owned(&lab), &Default::default())),
    );
    assert_eq!(owned(&lab), Default::default());
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);
}

const NFT: &str = "          firewall: nftables\n";

/// `object: nft` changes of a JSON plan, as `(kind, shown lines)`.
fn nft_changes(plan: &serde_json::Value) -> Vec<serde_json::Value> {
    changes(plan)
        .into_iter()
        .filter(|c| c["object"] == "nft")
        .collect()
}

fn plant_foreign(lab: &Lab) -> String {
    lab.sh_ok(
        "gw",
        "nft -f - <<'EOF'\n\
         add table inet filter\n\
         add chain inet filter input { type filter hook input priority 0; policy accept; }\n\
         add rule inet filter input ip saddr 10.99.0.0/16 tcp dport 22 counter accept\n\
         EOF\n\
         iptables -A INPUT -s 10.99.0.0/16 -p tcp --dport 22 -j ACCEPT && \
         iptables -t nat -N ADMIN && iptables -t nat -A PREROUTING -j ADMIN && \
         iptables -t nat -A ADMIN -s 10.99.0.0/16 -j RETURN",
    );
    lab.sh_ok("gw", FOREIGN)
}

fn rollback(lab: &Lab, inv: &std::path::Path) -> String {
    let o = lab.dwprov(&[
        "rollback",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "gw1",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    text(&o)
}

/// dwprov itself, `firewall: nftables`, method fwmark: converges, every
/// traffic check, plan empty after, hand drift shown exactly and repaired;
/// then the switch iptables -> nftables in one apply, back by rollback, and
/// at the end back to iptables by apply; traffic checks after each step.
#[test]
fn nftables_fwmark_applies_switches_and_rolls_back() {
    let lab = Lab::up();
    let foreign = plant_foreign(&lab);
    let ipt = inventory_with(&lab, "ipt.yaml", "fwmark", FORWARDS, CNC_ROUTES, "");
    let nft = inventory_with(&lab, "nft.yaml", "fwmark", FORWARDS, CNC_ROUTES, NFT);

    // iptables first, then the switch: one apply removes the DWPROV-* chains
    // and creates the table.
    apply(&lab, &ipt);
    assert_traffic(&lab, true);
    let o = apply(&lab, &nft);
    let out = text(&o);
    let ipt_save = lab.sh_ok("gw", "iptables-save");
    assert!(!ipt_save.contains("DWPROV-"), "{ipt_save}\n{out}");
    assert_eq!(owned(&lab), render::desired(&gateway(&nft), false));
    assert_traffic(&lab, true);
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);
    let (code, plan) = plan_json(&lab, &nft);
    assert_eq!(code, 0, "plan after apply must be empty: {plan}");
    let boot = lab.sh_ok(
        "gw",
        "cat /etc/dwprov/nftables.nft; grep -c load_nftables /etc/dwprov/boot.sh",
    );
    assert!(boot.contains("add table inet dwprov"), "{boot}");

    // Rollback: the snapshot of the switch has the DWPROV-* chains and no
    // table; the revert puts back both backends as they were.
    rollback(&lab, &nft);
    let ipt_save = lab.sh_ok("gw", "iptables-save");
    assert!(ipt_save.contains("DWPROV-"), "{ipt_save}");
    assert_eq!(
        owned(&lab),
        Default::default(),
        "the table went with the rollback"
    );
    assert_eq!(plan_code(&lab, &ipt), 0);
    assert_traffic(&lab, true);
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);
    apply(&lab, &nft);
    assert_eq!(plan_code(&lab, &nft), 0);

    // Hand drift: one rule deleted is exactly one change, repaired by apply.
    let h = lab.sh_ok("gw", "nft -a list chain inet dwprov nat_prerouting");
    let handle = h
        .lines()
        .find(|l| l.contains("dport 2222"))
        .and_then(|l| l.rsplit("handle ").next())
        .expect("rule handle")
        .trim()
        .to_string();
    lab.sh_ok(
        "gw",
        &format!("nft delete rule inet dwprov nat_prerouting handle {handle}"),
    );
    let (code, plan) = plan_json(&lab, &nft);
    assert_eq!(code, 2);
    let ch = changes(&plan);
    assert_eq!(ch.len(), 1, "{ch:#?}");
    assert_eq!(ch[0]["nft"], "replace_chain", "{ch:#?}");
    let shown = lab.dwprov(&["plan", "-i", nft.to_str().unwrap()]);
    let shown = text(&shown);
    assert!(
        shown.contains(
            "+rule nat_prerouting: ip daddr 203.0.113.2 tcp dport 2222 dnat ip to 192.168.0.100:22"
        ),
        "{shown}"
    );
    apply(&lab, &nft);
    assert_eq!(plan_code(&lab, &nft), 0);
    assert_traffic(&lab, true);
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);

    // Rollback to the repair's snapshot, whose table lacks that rule: the
    // plan shown (the gateway lists the snapshot's text as JSON in a
    // throwaway netns) names exactly that rule, and the revert takes it.
    let out = rollback(&lab, &nft);
    assert!(
        out.contains("rule nat_prerouting: ip daddr 203.0.113.2 tcp dport 2222")
            && !out.contains("cannot show"),
        "{out}"
    );
    let chain = lab.sh_ok("gw", "nft list chain inet dwprov nat_prerouting");
    assert!(!chain.contains("dport 2222"), "{chain}");
    apply(&lab, &nft);
    assert_eq!(plan_code(&lab, &nft), 0);

    // The way back by apply (not rollback): one apply of the iptables
    // inventory drops the table and creates the DWPROV-* chains again.
    let o = apply(&lab, &ipt);
    let out = text(&o);
    let ipt_save = lab.sh_ok("gw", "iptables-save");
    assert!(ipt_save.contains("DWPROV-"), "{ipt_save}\n{out}");
    assert_eq!(owned(&lab), Default::default(), "the table went: {out}");
    assert_eq!(plan_code(&lab, &ipt), 0);
    assert_traffic(&lab, true);
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);
}

/// Method set on dwprov's apply: no prefix routes, the sets classify; one
/// element removed by hand is exactly one `+ element` change.
#[test]
fn nftables_set_method_routes_by_the_sets() {
    let lab = Lab::up();
    let foreign = plant_foreign(&lab);
    let inv = inventory_with(&lab, "set.yaml", "set", FORWARDS, CNC_ROUTES, NFT);

    // A gateway without nft: a clear error before any change.
    let before = lab.sh_ok("gw", SNAPSHOT);
    let nft = lab.sh_ok("gw", "command -v nft").trim().to_string();
    lab.sh_ok("gw", &format!("mount --bind /dev/null {nft}"));
    let o = lab.dwprov(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    lab.sh_ok("gw", &format!("umount {nft}"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("`nft` is not installed"), "{}", text(&o));
    assert_eq!(lab.sh_ok("gw", SNAPSHOT), before, "nothing changed");

    apply(&lab, &inv);
    let routes = lab.sh_ok("gw", "ip route show");
    assert!(
        !routes.contains("100.65.0.0/16"),
        "no prefix routes: {routes}"
    );
    assert!(lab
        .sh_ok("gw", "ip rule")
        .contains("fwmark 0x200/0xff00 lookup cnc"));
    assert_traffic(&lab, true);
    assert_eq!(plan_code(&lab, &inv), 0);
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);

    lab.sh_ok(
        "gw",
        "nft delete element inet dwprov line_cnc '{ 100.66.0.0/16 }'",
    );
    let (code, plan) = plan_json(&lab, &inv);
    assert_eq!(code, 2);
    let ch = nft_changes(&plan);
    assert_eq!(changes(&plan).len(), 1, "{plan:#}");
    assert_eq!(ch[0]["nft"], "elements");
    let shown = text(&lab.dwprov(&["plan", "-i", inv.to_str().unwrap()]));
    assert!(shown.contains("+element line_cnc 100.66.0.0/16"), "{shown}");
    apply(&lab, &inv);
    assert_eq!(plan_code(&lab, &inv), 0);
    assert_traffic(&lab, true);

    // Boot restore: the table gone (as after a reboot), boot.sh loads it.
    lab.sh_ok(
        "gw",
        "nft delete table inet dwprov && sh /etc/dwprov/boot.sh early",
    );
    assert_eq!(owned(&lab), render::desired(&gateway(&inv), true));
    assert_eq!(plan_code(&lab, &inv), 0);
    assert_traffic(&lab, true);
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);

    // method set with iptables is refused where `method` is written.
    let bad = inventory_with(&lab, "bad.yaml", "set", FORWARDS, CNC_ROUTES, "");
    let o = lab.dwprov(&["plan", "-i", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("bad.yaml:") && text(&o).contains("firewall: nftables"),
        "{}",
        text(&o)
    );
}

/// Commit-confirmed on nftables: an apply that cuts the management path
/// (and switches back to iptables on the way) reverts itself when the
/// confirmation cannot come: the table is back as it was, the DWPROV-*
/// chains it created are gone, traffic works.
#[test]
fn a_lockout_reverts_to_the_nftables_table() {
    let lab = Lab::up();
    let foreign = plant_foreign(&lab);
    let extra = format!("{FAST_SSH}{NFT}");
    let a = inventory_with(&lab, "a.yaml", "set", FORWARDS, CNC_ROUTES, &extra);
    apply(&lab, &a);
    let table = owned(&lab);
    assert_eq!(table, render::desired(&gateway(&a), true));

    let confirm = 30;
    start_lockout(&lab, confirm);
    assert!(
        wait_until_planned(&lab, &a, std::time::Duration::from_secs(confirm + 30)).is_some(),
        "not back to a's state in time"
    );
    assert_eq!(owned(&lab), table, "the table is back");
    assert!(!lab.sh_ok("gw", "iptables-save").contains("DWPROV-"));
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign);
    assert_traffic(&lab, true);
}

/// A listing of the owned table that fails for another reason than a
/// missing table is an error naming nft's message, not "no table": `plan`
/// and `apply` would otherwise plan the table's creation over one they
/// cannot see. nft here is a stand-in bind-mounted in the gateway's own
/// mount namespace that fails every `list table` ("Operation not
/// permitted") and runs a copy of the real nft for everything else.
/// Nothing changes.
#[test]
fn a_failing_nft_listing_is_an_error_not_a_missing_table() {
    let lab = Lab::up();
    let inv = inventory_with(&lab, "nft.yaml", "fwmark", FORWARDS, CNC_ROUTES, NFT);
    apply(&lab, &inv);
    let table = owned(&lab);
    common::fake_tool(
        &lab,
        "nft",
        "case \" $* \" in *\" list table \"*) echo 'Error: Operation not permitted' >&2; exit 1 ;; esac\n\
         exec \"$REAL\" \"$@\"",
    );
    let i = inv.to_str().unwrap();
    for args in [vec!["plan", "-i", i], vec!["apply", "-i", i, "--yes"]] {
        let o = lab.dwprov(&args);
        let out = text(&o);
        assert!(
            !matches!(o.status.code(), Some(0) | Some(2)),
            "{args:?} must fail: {out}"
        );
        assert!(out.contains("Operation not permitted"), "{args:?}: {out}");
        assert!(!out.contains("+table inet dwprov"), "{args:?}: {out}");
    }
    common::unfake_tool(&lab, "nft");
    assert_eq!(owned(&lab), table, "nothing changed");
    let (code, out) = plan_json(&lab, &inv);
    assert_eq!(code, 0, "{out}");
}
