//! Parsers against real captured output: the live state a converged lab
//! gateway printed parses into exactly the state its inventory renders
//! (what makes a plan after an apply empty), without a lab.
use dwprov::diff;
use dwprov::state::{ip, Iptables, State};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/ip/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn captured_live_state_equals_the_rendered_desired_state() {
    let inv = dwprov::inventory::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ip/fwmark-inventory.yaml"
    )))
    .unwrap();
    let gw = dwprov::model::build(&inv.hosts[0]).unwrap();
    let rendered =
        dwprov::render::render(&gw, &dwprov::render::Templates::load(None).unwrap(), None).unwrap();
    let live = State {
        rules: ip::parse_rules_json(&fixture("fwmark-rules.json")).unwrap(),
        routes: ip::parse_routes_json(&fixture("fwmark-routes.json")).unwrap(),
        firewall: dwprov::state::Firewall {
            iptables: Iptables::parse(&fixture("fwmark-iptables.save")).unwrap(),
            ..Default::default()
        },
        nexthops: Vec::new(),
        // Files and sysctls are not part of this capture.
        files: rendered.desired.files.clone(),
        sysctls: rendered.desired.sysctls.clone(),
        rt_tables: rendered.desired.rt_tables.clone(),
    };
    let d = diff::diff(&rendered.desired, &live);
    assert!(d.changes.is_empty(), "{:#?}", d.changes);
    assert!(d.conflicts.is_empty());
    // Kernel routes are there too, and are not ours.
    assert!(live
        .routes
        .iter()
        .any(|r| r.proto == 2 && !diff::is_owned_route(r)));
    assert_eq!(
        live.rules.iter().filter(diff::is_owned_rule).count(),
        rendered.desired.rules.len()
    );
}

#[test]
fn captured_output_with_one_object_lost_shows_exactly_that_change() {
    let rules = ip::parse_rules_json(&fixture("fwmark-rules.json")).unwrap();
    let mut live = State {
        rules: rules.clone(),
        ..State::default()
    };
    let desired = State {
        rules: rules.into_iter().filter(diff::is_owned_rule).collect(),
        ..State::default()
    };
    live.rules.retain(|r| r.priority != 1101);
    let d = diff::diff(&desired, &live);
    assert_eq!(d.changes.len(), 1, "{:#?}", d.changes);
}

/// `ip -6 -j -d -N rule show` and `route show table all`, captured from a
/// scratch namespace (iproute2 6.1, kernel 6.18) holding owned IPv6 rules
/// and routes: read with their family they are IPv6 objects (an
/// address-less fwmark rule too, by its listing), round-trip through
/// `ip -batch` words, and the IPv4 readers leave every entry foreign.
#[test]
fn captured_ipv6_listings_read_with_their_family() {
    use dwprov::state::Family;
    let rules = ip::parse_rules_json_of(&fixture("v6-rules.json"), Family::Inet6).unwrap();
    let owned: Vec<_> = rules.iter().filter(|r| r.proto == 201).collect();
    assert_eq!(owned.len(), 2, "{rules:#?}");
    assert!(rules.iter().all(|r| r.family() == Family::Inet6));
    assert_eq!(
        owned[0].to_batch(),
        "priority 1234 from all fwmark 0x100/0xff00 lookup 100 protocol 201"
    );
    assert_eq!(
        owned[1].to_batch(),
        "priority 1235 from 2001:db8:1::/48 to 2001:db8:2::/48 lookup 101 protocol 201"
    );
    let routes = ip::parse_routes_json_of(&fixture("v6-routes.json"), Family::Inet6).unwrap();
    let owned: Vec<_> = routes.iter().filter(|r| r.proto == 201).collect();
    assert_eq!(owned.len(), 3, "{routes:#?}");
    assert!(routes.iter().all(|r| r.family() == Family::Inet6));
    let words: Vec<String> = owned.iter().map(|r| r.to_batch()).collect();
    assert!(
        words.contains(
            &"::/0 via 2001:db8:a::1 dev v0 table 100 proto 201 scope 0 metric 5".to_string()
        ),
        "{words:#?}"
    );
    assert!(
        words
            .iter()
            .any(|w| w.starts_with("2001:db8:200::/48 dev v0 src 2001:db8:a::2 table 101")),
        "{words:#?}"
    );
    // The IPv4 readers (gather's `ip -4` listing): every address-bearing
    // entry is foreign; only the address-less rules (`from all`) remain,
    // as IPv4 ones, which is what an `ip -4` listing would hold.
    let as_v4 = ip::parse_routes_json(&fixture("v6-routes.json")).unwrap();
    assert!(as_v4.is_empty(), "{as_v4:#?}");
    let as_v4 = ip::parse_rules_json(&fixture("v6-rules.json")).unwrap();
    assert!(as_v4
        .iter()
        .all(|r| r.from.is_none() && r.to.is_none() && r.family() == Family::Inet));
}

/// Gather's rules and routes are each managed family's own listing
/// (sections `rules`/`routes` of `ip -4`, `rules6`/`routes6` of `ip -6`):
/// with both families, the captured IPv4 and IPv6 listings read as one
/// state, each entry of its listing's family; with IPv4 alone the IPv6
/// sections are neither composed nor read; a failed listing stops the read.
#[test]
fn gather_reads_each_managed_family_from_its_own_listing() {
    use dwprov::state::Family;
    let both = [Family::Inet, Family::Inet6];
    let names: Vec<&str> = ip::fact_sections_of(&both).iter().map(|s| s.name).collect();
    assert_eq!(names, ["rules", "routes", "rules6", "routes6", "rt_tables"]);
    let runs: Vec<&str> = ip::fact_sections_of(&both).iter().map(|s| s.run).collect();
    assert_eq!(runs[2], "ip -6 -j -d -N rule show");
    assert_eq!(runs[1], "ip -4 -j -d -N route show table all");
    let names: Vec<&str> = ip::fact_sections_of(&[Family::Inet])
        .iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["rules", "routes", "rt_tables"]);

    let texts = [
        ("rules", fixture("fwmark-rules.json")),
        ("routes", fixture("fwmark-routes.json")),
        ("rules6", fixture("v6-rules.json")),
        ("routes6", fixture("v6-routes.json")),
    ];
    let mut asked = Vec::new();
    let (rules, routes) = ip::from_listings(&both, |s| {
        asked.push(s.name);
        Ok(&texts.iter().find(|(n, _)| *n == s.name).unwrap().1)
    })
    .unwrap();
    assert_eq!(asked, ["rules", "routes", "rules6", "routes6"]);
    let v4_rules = ip::parse_rules_json(&fixture("fwmark-rules.json")).unwrap();
    let v6_rules = ip::parse_rules_json_of(&fixture("v6-rules.json"), Family::Inet6).unwrap();
    assert_eq!(rules, [v4_rules.clone(), v6_rules.clone()].concat());
    assert!(!v4_rules.is_empty() && !v6_rules.is_empty());
    // The address-less rules of each listing keep that listing's family.
    let fam = |f: Family| rules.iter().filter(|r| r.family() == f).count();
    assert_eq!(
        (fam(Family::Inet), fam(Family::Inet6)),
        (v4_rules.len(), v6_rules.len())
    );
    let v6_routes = ip::parse_routes_json_of(&fixture("v6-routes.json"), Family::Inet6).unwrap();
    assert_eq!(
        routes
            .iter()
            .filter(|r| r.family() == Family::Inet6)
            .count(),
        v6_routes.len()
    );
    assert!(routes.len() > v6_routes.len());

    let mut asked = Vec::new();
    ip::from_listings(&[Family::Inet], |s| {
        asked.push(s.name);
        Ok(&texts.iter().find(|(n, _)| *n == s.name).unwrap().1)
    })
    .unwrap();
    assert_eq!(asked, ["rules", "routes"]);

    let failed = ip::from_listings(&both, |s| match s.name {
        "rules6" => Err(dwprov::Error::invalid("ip -6 rule show: no IPv6 here")),
        n => Ok(&texts.iter().find(|(t, _)| *t == n).unwrap().1),
    });
    assert!(failed.unwrap_err().to_string().contains("no IPv6 here"));
}
