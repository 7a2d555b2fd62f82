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
