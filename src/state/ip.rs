//! Policy rules and routes (IPv4 managed today: `state::family`).
//!
//! Each rule and route names its address family ([`Rule::family`],
//! [`Route::family`], read off its addresses; a rule without any carries
//! it in a field); a rule's selectors and a route's prefix and addresses
//! are `IpNet` / `IpAddr`, as the model's and the tracer's are. The `ip`
//! commands dwprov renders take their flag from the family. The JSON
//! readers read one family's listing ([`parse_rules_json_of`],
//! [`parse_routes_json_of`]; gather runs one listing per managed family,
//! [`fact_sections_of`], read by [`from_listings`]): an entry of another
//! family (a listing without the flag holds both) is foreign, skipped
//! (`foreign_family`) rather than failing or misread. The batch parser
//! reads each line as its family's (a later family's line starts with its
//! flag), with that family's kernel defaults, and refuses a line of a
//! family not managed.
//!
//! Two readers produce the same values: [`parse_rules_json`] /
//! [`parse_routes_json`] read the live host (`ip -4 -j -d -N rule|route show`,
//! numeric so table, protocol, scope and type names never depend on the
//! host's /etc/iproute2 files), and [`parse_batch`] reads `ip -batch` lines
//! (`rule add ...`, `route add ...`) as the templates render them. Both fill
//! in the kernel's defaults so a rendered route and its live echo compare
//! equal. [`Rule::to_batch`] / [`Route::to_batch`] write the command back.
use crate::error::{Error, Result};
use crate::fact::FactSection;
use crate::state::{Family, RtTables};
use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The foreign `rt_tables` names the tables are read with.
const RT_TABLES: FactSection =
    FactSection::helper("rt_tables", "f_rt_tables", "cat /etc/iproute2/rt_tables*");

/// Family `f`'s two listing sections, its rules then its routes: IPv4's
/// `rules` and `routes`, IPv6's `rules6` and `routes6`, each listing one
/// family (its `ip` flag), read with that family's parsers
/// ([`parse_rules_json_of`], [`parse_routes_json_of`]).
pub fn listing_sections(f: Family) -> [FactSection; 2] {
    match f {
        Family::Inet => [
            FactSection::command("rules", "ip -4 -j -d -N rule show"),
            FactSection::command("routes", "ip -4 -j -d -N route show table all"),
        ],
        Family::Inet6 => [
            FactSection::command("rules6", "ip -6 -j -d -N rule show"),
            FactSection::command("routes6", "ip -6 -j -d -N route show table all"),
        ],
    }
}

/// The gather sections of rules and routes ([`crate::kind::Kind::RulesRoutes`])
/// of `families` (gather's: [`crate::state::family::MANAGED`]), each
/// family's listings in that order, then the `rt_tables` names.
pub fn fact_sections_of(families: &[Family]) -> Vec<FactSection> {
    let mut out: Vec<FactSection> = families.iter().flat_map(|&f| listing_sections(f)).collect();
    out.push(RT_TABLES);
    out
}

/// The rules and routes of `families` from a gather's sections (`get`:
/// a section's stdout, or the listing's failure as an error): each
/// family's listing read as that family's, in `families` order.
pub fn from_listings<'a>(
    families: &[Family],
    mut get: impl FnMut(&FactSection) -> Result<&'a str>,
) -> Result<(Vec<Rule>, Vec<Route>)> {
    let (mut rules, mut routes) = (Vec::new(), Vec::new());
    for &f in families {
        let [r, t] = listing_sections(f);
        rules.extend(parse_rules_json_of(get(&r)?, f)?);
        routes.extend(parse_routes_json_of(get(&t)?, f)?);
    }
    Ok((rules, routes))
}

pub const TABLE_MAIN: u32 = 254;
pub const TABLE_LOCAL: u32 = 255;
pub const TABLE_DEFAULT: u32 = 253;
/// The priority of the kernel's `lookup main` rule.
pub const PRIORITY_MAIN: u32 = 32766;
/// The rules the kernel makes itself, (priority, table): `lookup local`,
/// `main` and `default`.
pub const KERNEL_RULES: [(u32, u32); 3] = [
    (0, TABLE_LOCAL),
    (PRIORITY_MAIN, TABLE_MAIN),
    (32767, TABLE_DEFAULT),
];

/// A fwmark with its mask (mask 0xffffffff when none was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Mark {
    pub value: u32,
    pub mask: u32,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mask == u32::MAX {
            write!(f, "{:#x}", self.value)
        } else {
            write!(f, "{:#x}/{:#x}", self.value, self.mask)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Table(u32),
    Goto(u32),
    Blackhole,
    Unreachable,
    Prohibit,
    #[default]
    Nop,
}

/// One `ip rule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Rule {
    pub priority: u32,
    pub not: bool,
    /// None = from all.
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    pub fwmark: Option<Mark>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub action: RuleAction,
    /// rtnetlink protocol of the rule: dwprov tags its own with [`crate::ownership::ROUTE_PROTO`].
    pub proto: u8,
    /// Selectors dwprov does not model (tos, uidrange, ...), kept so such a rule
    /// never compares equal to one without them.
    pub extra: BTreeMap<String, String>,
    /// The family of a rule without addresses (a fwmark rule: IPv4 and
    /// IPv6 rules of one selector are two rules); the parsers set it to
    /// [`Rule::family`] for every rule. Not serialised: the JSON and YAML
    /// state read as before (the selectors' addresses show the family).
    #[serde(skip)]
    pub family: Family,
}

impl Rule {
    /// The rule's address family: its selector's prefixes', else its
    /// `family` field (IPv4 unless a parser read another family's listing
    /// or batch line).
    pub fn family(&self) -> Family {
        self.from
            .or(self.to)
            .map_or(self.family, |n| Family::of_net(&n))
    }

    /// `[not] from X [to Y] [fwmark M] [iif I] [oif O] [extra...]`, as both
    /// `ip rule add` and `ip rule show` spell the selector.
    fn selector(&self) -> String {
        let mut s = String::new();
        if self.not {
            s.push_str("not ");
        }
        match self.from {
            Some(n) => s.push_str(&format!("from {}", net_str(n))),
            None => s.push_str("from all"),
        }
        if let Some(n) = self.to {
            s.push_str(&format!(" to {}", net_str(n)));
        }
        if let Some(m) = self.fwmark {
            s.push_str(&format!(" fwmark {m}"));
        }
        if let Some(i) = &self.iif {
            s.push_str(&format!(" iif {i}"));
        }
        if let Some(o) = &self.oif {
            s.push_str(&format!(" oif {o}"));
        }
        for (k, v) in &self.extra {
            s.push_str(&format!(" {k} {v}"));
        }
        s
    }

    /// The arguments after `ip rule add|del`.
    pub fn to_batch(&self) -> String {
        let action = match &self.action {
            RuleAction::Table(t) => format!("lookup {t}"),
            RuleAction::Goto(t) => format!("goto {t}"),
            RuleAction::Blackhole => "blackhole".into(),
            RuleAction::Unreachable => "unreachable".into(),
            RuleAction::Prohibit => "prohibit".into(),
            RuleAction::Nop => "nop".into(),
        };
        format!(
            "priority {} {} {action} protocol {}",
            self.priority,
            self.selector(),
            self.proto
        )
    }

    /// `ip rule show`-like text for plans, with table names where known.
    pub fn display(&self, names: &dyn Fn(u32) -> String) -> String {
        let action = match &self.action {
            RuleAction::Table(t) => format!("lookup {}", names(*t)),
            RuleAction::Goto(t) => format!("goto {t}"),
            other => format!("{other:?}").to_lowercase(),
        };
        format!("{}:\t{} {action}", self.priority, self.selector())
    }
}

impl crate::ownership::Protocol for Rule {
    fn protocol(&self) -> u8 {
        self.proto
    }
}

/// One route of any table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Route {
    pub table: u32,
    pub dst: IpNet,
    pub tos: u8,
    pub metric: u32,
    /// unicast, local, broadcast, blackhole, unreachable, prohibit, throw, ...
    pub kind: RouteKind,
    pub via: Option<IpAddr>,
    pub dev: Option<IfName>,
    pub src: Option<IpAddr>,
    pub proto: u8,
    pub scope: u8,
    pub onlink: bool,
    /// The nexthop object the route uses (`nhid N`, issue 11): then `via`
    /// and `dev` are the object's business, not the route's.
    pub nhid: Option<u32>,
    /// Attributes dwprov does not model (nexthops, metrics, encap, ...).
    pub extra: Attrs,
}

impl crate::ownership::Protocol for Route {
    fn protocol(&self) -> u8 {
        self.proto
    }
}

/// A unicast route to 0.0.0.0/0 in main with every attribute unset: what
/// both parsers start from before reading a route's fields.
impl Default for Route {
    fn default() -> Self {
        Route {
            table: TABLE_MAIN,
            dst: IpNet::V4(Ipv4Net::default()),
            tos: 0,
            metric: 0,
            kind: RouteKind::unicast(),
            via: None,
            dev: None,
            src: None,
            proto: 0,
            scope: 0,
            onlink: false,
            nhid: None,
            extra: Attrs::default(),
        }
    }
}

/// What identifies a route to the kernel: `ip route replace` overwrites the
/// route with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RouteKey {
    pub table: u32,
    pub dst: IpNet,
    pub tos: u8,
    pub metric: u32,
}

impl Route {
    /// The route's address family: its destination's.
    pub fn family(&self) -> Family {
        Family::of_net(&self.dst)
    }

    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table,
            dst: self.dst,
            tos: self.tos,
            metric: self.metric,
        }
    }

    /// The arguments after `ip route add|replace|del`.
    pub fn to_batch(&self) -> String {
        let mut s = String::new();
        self.write_batch(&mut s);
        s
    }

    /// [`Route::to_batch`] appended to `out`: the boot file of a big route
    /// list is written into one string, not one string per route.
    pub fn write_batch(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        if self.kind != "unicast" {
            out.push_str(&self.kind);
            out.push(' ');
        }
        let _ = if self.dst.prefix_len() == self.dst.max_prefix_len() {
            write!(out, "{}", self.dst.addr())
        } else {
            write!(out, "{}", self.dst)
        };
        if self.tos != 0 {
            let _ = write!(out, " tos {:#x}", self.tos);
        }
        if let Some(n) = self.nhid {
            let _ = write!(out, " nhid {n}");
        }
        if let Some(v) = self.via {
            let _ = write!(out, " via {v}");
        }
        if let Some(d) = &self.dev {
            out.push_str(" dev ");
            out.push_str(d);
        }
        if let Some(src) = self.src {
            let _ = write!(out, " src {src}");
        }
        let _ = write!(
            out,
            " table {} proto {} scope {} metric {}",
            self.table, self.proto, self.scope, self.metric
        );
        if self.onlink {
            out.push_str(" onlink");
        }
    }

    /// `ip route show`-like text for plans (without the table).
    pub fn display(&self) -> String {
        let mut s = String::new();
        if self.kind != "unicast" {
            s.push_str(&self.kind);
            s.push(' ');
        }
        if self.dst.prefix_len() == 0 {
            s.push_str("default");
        } else {
            s.push_str(&net_str(self.dst));
        }
        if let Some(n) = self.nhid {
            s.push_str(&format!(" nhid {n}"));
        }
        if let Some(v) = self.via {
            s.push_str(&format!(" via {v}"));
        }
        if let Some(d) = &self.dev {
            s.push_str(&format!(" dev {d}"));
        }
        if self.scope == 253 {
            s.push_str(" scope link");
        }
        if let Some(src) = self.src {
            s.push_str(&format!(" src {src}"));
        }
        if self.metric != 0 {
            s.push_str(&format!(" metric {}", self.metric));
        }
        if self.onlink {
            s.push_str(" onlink");
        }
        for (k, v) in &self.extra {
            s.push_str(&format!(" {k} {v}"));
        }
        s
    }
}

/// A prefix as `ip` writes it: the address alone for a host prefix
/// (`/32`, `/128`), `a.b.c.d/n` otherwise. Either family's prefix type.
pub fn net_str(n: impl Into<IpNet>) -> String {
    let n: IpNet = n.into();
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

fn route_type_name(n: u8) -> RouteKind {
    match n {
        1 => "unicast",
        2 => "local",
        3 => "broadcast",
        4 => "anycast",
        5 => "multicast",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        9 => "throw",
        10 => "nat",
        _ => return RouteKind::from(format!("type{n}")),
    }
    .into()
}

const ROUTE_TYPES: &[&str] = &[
    "unicast",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
];

/// The string side of a shared-string newtype (`struct T(Arc<str>)`):
/// read as a `str`, compared with one, printed and serialised as it.
macro_rules! shared_str {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// A route's type (`unicast`, `local`, ...). The names iproute2 knows are
/// shared strings made once: a million routes hold no string of their own
/// (a `String` each was 55 MB of a 1.7 million route render).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKind(Arc<str>);

impl RouteKind {
    pub fn unicast() -> RouteKind {
        RouteKind::from("unicast")
    }
}

shared_str!(RouteKind);

/// [`ROUTE_TYPES`], each made once.
fn known_kinds() -> &'static [RouteKind] {
    static KINDS: std::sync::OnceLock<Vec<RouteKind>> = std::sync::OnceLock::new();
    KINDS.get_or_init(|| {
        ROUTE_TYPES
            .iter()
            .map(|t| RouteKind(Arc::from(*t)))
            .collect()
    })
}

impl From<&str> for RouteKind {
    fn from(s: &str) -> Self {
        match known_kinds().iter().find(|k| k.as_str() == s) {
            Some(k) => k.clone(),
            None => RouteKind(s.into()),
        }
    }
}

impl From<String> for RouteKind {
    fn from(s: String) -> Self {
        match known_kinds().iter().find(|k| k.as_str() == s) {
            Some(k) => k.clone(),
            None => RouteKind(s.into()),
        }
    }
}

/// A route's attributes that dwprov does not model: almost always none, so
/// the map is allocated only for the first one (an empty map in every route
/// was 28 MB of 1.7 million). Compares, orders and serializes as the map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
// The box is the point: 8 bytes in a route without attributes, not 24.
#[allow(clippy::box_collection)]
pub struct Attrs(Option<Box<BTreeMap<String, String>>>);

impl Attrs {
    // Invariant: `Some` holds at least one entry (nothing removes one), so
    // the derived comparisons equal those of the map.
    pub fn insert(&mut self, k: String, v: String) -> Option<String> {
        self.0.get_or_insert_with(Default::default).insert(k, v)
    }

    pub fn get(&self, k: &str) -> Option<&String> {
        self.0.as_ref()?.get(k)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    pub fn iter(&self) -> std::collections::btree_map::Iter<'_, String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.0.as_deref().unwrap_or(&EMPTY).iter()
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Attrs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.0.as_deref().unwrap_or(&EMPTY).serialize(s)
    }
}

/// An interface name, shared: the routes of one interface hold one string
/// between them (a `String` a route was 55 MB of 1.7 million routes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(Arc<str>);

shared_str!(IfName);

impl From<&str> for IfName {
    fn from(s: &str) -> Self {
        IfName(s.into())
    }
}

impl From<String> for IfName {
    fn from(s: String) -> Self {
        IfName(s.into())
    }
}

/// The interface names seen so far in one parse, to share them.
#[derive(Default)]
struct IfNames(Vec<IfName>);

impl IfNames {
    /// A gateway has a handful of interfaces; past this many distinct names
    /// (a hostile or odd listing) each one is its own string.
    const MAX: usize = 64;

    fn get(&mut self, name: &str) -> IfName {
        if let Some(n) = self.0.iter().find(|n| n.as_str() == name) {
            return n.clone();
        }
        let n = IfName::from(name);
        if self.0.len() < Self::MAX {
            self.0.push(n.clone());
        }
        n
    }
}

/// The metric the kernel gives an IPv6 route added without one
/// (IP6_RT_PRIO_USER).
const IPV6_DEFAULT_METRIC: u32 = 1024;

/// iproute2's default scope for a route being added (ip/iproute.c).
fn default_scope(kind: &str, has_gateway: bool) -> u8 {
    match kind {
        "local" | "nat" => 254,
        "broadcast" | "multicast" | "anycast" => 253,
        "unicast" if !has_gateway => 253,
        _ => 0,
    }
}

/// A prefix of `family` as `ip` prints it: `all` or `default` (the
/// family's /0), `a/l`, or an address with `len` (else a host prefix);
/// `None` for anything else, an address of the other family too.
fn parse_net(addr: &str, len: Option<u8>, family: Family) -> Option<IpNet> {
    if addr == "all" || addr == "default" {
        return Some(family.all_net());
    }
    let (a, l) = match addr.split_once('/') {
        Some((a, l)) => (a, l.parse().ok()?),
        None => (addr, len.unwrap_or(family.max_prefix_len())),
    };
    IpNet::new(addr_of(a, family)?, l).ok()
}

/// An address of `family`.
fn addr_of(s: &str, family: Family) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .filter(|a| Family::of_addr(a) == family)
}

fn parse_u32(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn parse_mark(s: &str) -> Option<Mark> {
    match s.split_once('/') {
        Some((v, m)) => Some(Mark {
            value: parse_u32(v)?,
            mask: parse_u32(m)?,
        }),
        None => Some(Mark {
            value: parse_u32(s)?,
            mask: u32::MAX,
        }),
    }
}

/// A JSON value as the text `ip` would print.
fn json_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn json_num(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => parse_u32(s),
        _ => None,
    }
}

/// Call `f` on each object of the JSON array `text`, one at a time: the
/// array is never held as one `serde_json::Value` tree (for a 16,000-route
/// table that tree costs several times the text), only the entry at hand.
fn for_each_object(
    text: &str,
    what: &str,
    mut f: impl FnMut(usize, &serde_json::Map<String, serde_json::Value>) -> Result<()>,
) -> Result<()> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    struct Each<'f, F> {
        f: &'f mut F,
        what: &'f str,
        failed: &'f mut Option<Error>,
    }
    impl<'de, F> Visitor<'de> for Each<'_, F>
    where
        F: FnMut(usize, &serde_json::Map<String, serde_json::Value>) -> Result<()>,
    {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            let mut i = 0;
            while let Some(v) = seq.next_element::<serde_json::Value>()? {
                let Some(obj) = v.as_object() else {
                    *self.failed = Some(Error::parse(
                        self.what,
                        1,
                        format!("entry {i} is not an object"),
                    ));
                    return Err(serde::de::Error::custom("stopped"));
                };
                if let Err(e) = (self.f)(i, obj) {
                    *self.failed = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
                i += 1;
            }
            Ok(())
        }
    }
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let r = de
        .deserialize_seq(Each {
            f: &mut f,
            what,
            failed: &mut failed,
        })
        .and_then(|()| de.end());
    if let Some(e) = failed {
        return Err(e);
    }
    r.map_err(|e| Error::parse(what, e.line(), e.to_string()))
}

/// The family of an `ip -j` entry when it is not the `listing`'s: its
/// `family` key, else the first of its address keys that names one (`src`,
/// `dst`, `gateway`, `prefsrc`). `None`: an entry of the listing's family,
/// or one without any address (`from all`, `default`), which the listing's
/// flag (`ip -4`) makes that family's. An IPv4 route via an IPv6
/// gateway (`via: {family: inet6, ...}`) is an IPv4 route, read as before
/// (its `via` kept as an attribute dwprov does not model).
fn foreign_family(
    obj: &serde_json::Map<String, serde_json::Value>,
    listing: Family,
) -> Option<Family> {
    let named = obj
        .get("family")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Family>().ok());
    let of_key = |k: &str| obj.get(k)?.as_str().and_then(Family::of_text);
    let family = named.or_else(|| {
        ["src", "dst", "gateway", "prefsrc"]
            .iter()
            .find_map(|k| of_key(k))
    })?;
    (family != listing).then_some(family)
}

/// Parse `ip -4 -j -d -N rule show`, gather's listing
/// ([`crate::state::family::OWNED`]'s family): [`parse_rules_json_of`].
pub fn parse_rules_json(text: &str) -> Result<Vec<Rule>> {
    parse_rules_json_of(text, crate::state::family::OWNED)
}

/// Parse `ip -F -j -d -N rule show` of family `family` (`-F`: its flag):
/// an address-less rule is of that family, an entry of another family is
/// skipped (foreign: a listing without the flag holds both).
pub fn parse_rules_json_of(text: &str, family: Family) -> Result<Vec<Rule>> {
    const WHAT: &str = "ip -j rule output";
    let mut rules = Vec::new();
    for_each_object(text, WHAT, |i, obj| {
        if foreign_family(obj, family).is_some() {
            return Ok(());
        }
        let bad = |m: &str| Error::parse(WHAT, 1, format!("entry {i}: {m}"));
        let mut rule = Rule {
            family,
            ..Rule::default()
        };
        let len = |k: &str| {
            obj.get(k)
                .and_then(json_num)
                .map(|n| n.min(u32::from(family.max_prefix_len())) as u8)
        };
        let mut action = None;
        let mut fwmask = u32::MAX;
        for (k, val) in obj {
            match k.as_str() {
                "priority" => rule.priority = json_num(val).ok_or_else(|| bad("bad priority"))?,
                "not" => rule.not = true,
                "src" => {
                    let s = json_str(val);
                    if s != "all" {
                        rule.from = Some(
                            parse_net(&s, len("srclen"), family).ok_or_else(|| bad("bad src"))?,
                        );
                    }
                }
                "dst" => {
                    let s = json_str(val);
                    if s != "all" {
                        rule.to = Some(
                            parse_net(&s, len("dstlen"), family).ok_or_else(|| bad("bad dst"))?,
                        );
                    }
                }
                "srclen" | "dstlen" | "flags" => {}
                "fwmark" => {
                    rule.fwmark = Some(Mark {
                        value: json_num(val).ok_or_else(|| bad("bad fwmark"))?,
                        mask: u32::MAX,
                    })
                }
                "fwmask" => fwmask = json_num(val).ok_or_else(|| bad("bad fwmask"))?,
                "iif" => rule.iif = Some(json_str(val)),
                "oif" => rule.oif = Some(json_str(val)),
                "table" => {
                    action = Some(RuleAction::Table(
                        table_id(&json_str(val)).ok_or_else(|| bad("bad table"))?,
                    ))
                }
                "target" => {
                    action = Some(RuleAction::Goto(
                        json_num(val).ok_or_else(|| bad("bad goto target"))?,
                    ))
                }
                "action" => match json_str(val).as_str() {
                    "blackhole" => action = Some(RuleAction::Blackhole),
                    "unreachable" => action = Some(RuleAction::Unreachable),
                    "prohibit" => action = Some(RuleAction::Prohibit),
                    "nop" => action = action.or(Some(RuleAction::Nop)),
                    "goto" => {}
                    other => {
                        rule.extra.insert("action".into(), other.to_string());
                    }
                },
                "protocol" => {
                    rule.proto = proto_id(&json_str(val)).ok_or_else(|| bad("bad protocol"))?
                }
                // iif/oif state flags, not part of the rule's identity
                "iif_detached" | "oif_detached" => {}
                other => {
                    rule.extra.insert(other.to_string(), json_str(val));
                }
            }
        }
        if let Some(m) = &mut rule.fwmark {
            m.mask = fwmask;
        }
        rule.action = action.unwrap_or(RuleAction::Nop);
        rules.push(rule);
        Ok(())
    })?;
    Ok(rules)
}

/// Table numbers, and the three names iproute2 knows without rt_tables.
fn table_id(s: &str) -> Option<u32> {
    match s {
        "main" => Some(TABLE_MAIN),
        "local" => Some(TABLE_LOCAL),
        "default" => Some(TABLE_DEFAULT),
        "unspec" => Some(0),
        _ => parse_u32(s),
    }
}

fn proto_id(s: &str) -> Option<u8> {
    match s {
        "unspec" => Some(0),
        "redirect" => Some(1),
        "kernel" => Some(2),
        "boot" => Some(3),
        "static" => Some(4),
        crate::ownership::ROUTE_PROTO_NAME => Some(crate::ownership::ROUTE_PROTO),
        _ => parse_u32(s).and_then(|n| u8::try_from(n).ok()),
    }
}

fn scope_id(s: &str) -> Option<u8> {
    match s {
        "global" | "universe" => Some(0),
        "site" => Some(200),
        "link" => Some(253),
        "host" => Some(254),
        "nowhere" => Some(255),
        _ => parse_u32(s).and_then(|n| u8::try_from(n).ok()),
    }
}

/// Parse `ip -4 -j -d -N route show table all` (an IPv6 route is skipped:
/// foreign).
pub fn parse_routes_json(text: &str) -> Result<Vec<Route>> {
    parse_routes_json_of(text, crate::state::family::OWNED)
}

/// Parse `ip -F -j -d -N route show table all` of family `family`; an
/// entry of another family is skipped (foreign), as in
/// [`parse_rules_json_of`].
pub fn parse_routes_json_of(text: &str, family: Family) -> Result<Vec<Route>> {
    const WHAT: &str = "ip -j route output";
    let mut routes = Vec::new();
    let mut devs = IfNames::default();
    for_each_object(text, WHAT, |i, obj| {
        if foreign_family(obj, family).is_some() {
            return Ok(());
        }
        let bad = |m: &str| Error::parse(WHAT, 1, format!("entry {i}: {m}"));
        let mut r = Route::default();
        for (k, val) in obj {
            match k.as_str() {
                "type" => {
                    let s = json_str(val);
                    r.kind = match s.parse::<u8>() {
                        Ok(n) => route_type_name(n),
                        Err(_) => s.into(),
                    };
                }
                "dst" => {
                    r.dst = parse_net(&json_str(val), None, family).ok_or_else(|| bad("bad dst"))?
                }
                "gateway" => {
                    r.via = Some(addr_of(&json_str(val), family).ok_or_else(|| bad("bad gateway"))?)
                }
                "dev" => r.dev = Some(devs.get(&json_str(val))),
                "table" => r.table = table_id(&json_str(val)).ok_or_else(|| bad("bad table"))?,
                "protocol" => {
                    r.proto = proto_id(&json_str(val)).ok_or_else(|| bad("bad protocol"))?
                }
                "scope" => r.scope = scope_id(&json_str(val)).ok_or_else(|| bad("bad scope"))?,
                "metric" => r.metric = json_num(val).ok_or_else(|| bad("bad metric"))?,
                "prefsrc" => {
                    r.src = Some(addr_of(&json_str(val), family).ok_or_else(|| bad("bad prefsrc"))?)
                }
                "tos" | "dsfield" => {
                    r.tos = json_num(val)
                        .and_then(|n| u8::try_from(n).ok())
                        .ok_or_else(|| bad("bad tos"))?
                }
                "flags" => {
                    if let Some(flags) = val.as_array() {
                        r.onlink = flags.iter().any(|f| f.as_str() == Some("onlink"));
                    }
                }
                "nhid" => r.nhid = Some(json_num(val).ok_or_else(|| bad("bad nhid"))?),
                // What a nexthop object resolves to (see `nhid`).
                "nh_info" | "nexthops" if obj.contains_key("nhid") => {}
                // Runtime state, not configuration.
                "expires" | "cache" | "pref" | "linkdown" | "offload" | "trap" => {}
                other => {
                    r.extra.insert(other.to_string(), json_str(val));
                }
            }
        }
        if r.nhid.is_some() {
            // The object's current target: the agent moves it (dynamic state).
            r.via = None;
            r.dev = None;
        }
        routes.push(r);
        Ok(())
    })?;
    Ok(routes)
}

/// The rules and routes of an `ip -batch` script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub rules: Vec<Rule>,
    pub routes: Vec<Route>,
}

/// Parse `ip -batch` lines of the forms `rule add ...` and `route add|replace ...`
/// (what the templates render). Blank lines and `#` comments are skipped.
pub fn parse_batch(text: &str, what: &str, names: &RtTables) -> Result<Batch> {
    let table = |s: &str| table_id(s).or_else(|| names.id_of(s));
    let mut batch = Batch::default();
    let mut devs = IfNames::default();
    // One word buffer for all lines, not a Vec a line.
    let mut words: Vec<&str> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: String| Error::parse(what, n + 1, format!("{m}: `{line}`"));
        // A line of a family after the first starts with its flag
        // (Family::batch_prefix); one dwprov does not manage is refused,
        // not read as another family's.
        let (family, body) = Family::split_batch_prefix(line);
        if let Some(f) = family {
            if !crate::state::family::MANAGED.contains(&f) {
                return Err(err(format!(
                    "a line of family {f} (`{}`): dwprov manages {} only",
                    f.ip_flag(),
                    crate::state::family::ip_flags()
                )));
            }
        }
        // The line's family: its addresses are read as that family's (one
        // of the other is an error), and a rule without any carries it.
        let family = family.unwrap_or(crate::state::family::OWNED);
        words.clear();
        words.extend(body.split_whitespace());
        match words.as_slice() {
            ["rule", "add", rest @ ..] => batch
                .rules
                .push(parse_rule_words(rest, family, &table).map_err(err)?),
            ["route", "add" | "replace", rest @ ..] => batch
                .routes
                .push(parse_route_words(rest, family, &table, &mut devs).map_err(err)?),
            _ => {
                return Err(err(
                    "expected `rule add ...` or `route add|replace ...`".into()
                ))
            }
        }
    }
    Ok(batch)
}

/// A `rule add` line's words (after `rule add`), of family `family`.
fn parse_rule_words(
    w: &[&str],
    family: Family,
    table: &dyn Fn(&str) -> Option<u32>,
) -> std::result::Result<Rule, String> {
    let mut rule = Rule {
        family,
        ..Rule::default()
    };
    let selector = |v: &str| -> std::result::Result<Option<IpNet>, String> {
        if v == "all" {
            return Ok(None);
        }
        parse_net(v, None, family)
            .map(Some)
            .ok_or_else(|| format!("bad address {v} (an {family} line)"))
    };
    let mut priority = None;
    let mut action = None;
    let mut i = 0;
    let arg = |i: usize| {
        w.get(i + 1)
            .copied()
            .ok_or_else(|| format!("`{}` needs a value", w[i]))
    };
    while i < w.len() {
        match w[i] {
            "not" => {
                rule.not = true;
                i += 1;
                continue;
            }
            "priority" | "pref" | "prio" => {
                priority = Some(parse_u32(arg(i)?).ok_or("bad priority")?);
            }
            "from" => rule.from = selector(arg(i)?)?,
            "to" => rule.to = selector(arg(i)?)?,
            "fwmark" => rule.fwmark = Some(parse_mark(arg(i)?).ok_or("bad fwmark")?),
            "iif" | "dev" => rule.iif = Some(arg(i)?.to_string()),
            "oif" => rule.oif = Some(arg(i)?.to_string()),
            "lookup" | "table" => {
                action = Some(RuleAction::Table(
                    table(arg(i)?).ok_or_else(|| format!("unknown table `{}`", w[i + 1]))?,
                ))
            }
            "goto" => action = Some(RuleAction::Goto(parse_u32(arg(i)?).ok_or("bad goto")?)),
            "protocol" | "proto" => rule.proto = proto_id(arg(i)?).ok_or("bad protocol")?,
            "blackhole" => {
                action = Some(RuleAction::Blackhole);
                i += 1;
                continue;
            }
            "unreachable" => {
                action = Some(RuleAction::Unreachable);
                i += 1;
                continue;
            }
            "prohibit" => {
                action = Some(RuleAction::Prohibit);
                i += 1;
                continue;
            }
            "nop" => {
                action = Some(RuleAction::Nop);
                i += 1;
                continue;
            }
            other => return Err(format!("unsupported rule word `{other}`")),
        }
        i += 2;
    }
    rule.priority = priority.ok_or(
        "a rule needs an explicit priority (ip rule has no replace and duplicates silently)",
    )?;
    rule.action = action.ok_or("a rule needs an action (lookup TABLE, goto, blackhole, ...)")?;
    Ok(rule)
}

/// A `route add|replace` line's words (after them), of family `family`,
/// with the kernel's defaults of that family filled in, so that the route
/// equals its live echo: IPv4's scope by type and gateway; IPv6 has no
/// route scopes (always 0) and gives a route without a metric (or with
/// metric 0) metric 1024.
fn parse_route_words(
    w: &[&str],
    family: Family,
    table: &dyn Fn(&str) -> Option<u32>,
    devs: &mut IfNames,
) -> std::result::Result<Route, String> {
    let mut r = Route {
        // iproute2 tags `ip route add` without `proto` as boot.
        proto: 3,
        ..Route::default()
    };
    let mut i = 0;
    if let Some(t) = w.first().filter(|t| ROUTE_TYPES.contains(t)) {
        r.kind = RouteKind::from(*t);
        i = 1;
    }
    let dst = w.get(i).ok_or("missing destination")?;
    r.dst = parse_net(dst, None, family)
        .ok_or_else(|| format!("bad destination {dst} (an {family} line)"))?;
    i += 1;
    let mut scope = None;
    let arg = |i: usize| {
        w.get(i + 1)
            .copied()
            .ok_or_else(|| format!("`{}` needs a value", w[i]))
    };
    while i < w.len() {
        match w[i] {
            "via" => r.via = Some(addr_of(arg(i)?, family).ok_or("bad via address")?),
            "dev" | "oif" => r.dev = Some(devs.get(arg(i)?)),
            "nhid" => r.nhid = Some(parse_u32(arg(i)?).ok_or("bad nhid")?),
            "src" => r.src = Some(addr_of(arg(i)?, family).ok_or("bad src address")?),
            "table" => {
                let t = arg(i)?;
                r.table = table(t).ok_or_else(|| format!("unknown table `{t}`"))?
            }
            "proto" | "protocol" => r.proto = proto_id(arg(i)?).ok_or("bad proto")?,
            "scope" => scope = Some(scope_id(arg(i)?).ok_or("bad scope")?),
            "metric" | "priority" | "preference" => {
                r.metric = parse_u32(arg(i)?).ok_or("bad metric")?
            }
            "tos" | "dsfield" => {
                r.tos = parse_u32(arg(i)?)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or("bad tos")?
            }
            "onlink" => {
                r.onlink = true;
                i += 1;
                continue;
            }
            other => return Err(format!("unsupported route word `{other}`")),
        }
        i += 2;
    }
    match family {
        Family::Inet => r.scope = scope.unwrap_or_else(|| default_scope(&r.kind, r.via.is_some())),
        Family::Inet6 => {
            r.scope = 0;
            if r.metric == 0 {
                r.metric = IPV6_DEFAULT_METRIC;
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"[{"priority":0,"src":"all","table":"255","protocol":"2"},{"priority":1040,"src":"all","fwmark":"0x100","fwmask":"0xff00","table":"100","protocol":"201"},{"priority":1050,"src":"198.51.100.2","table":"100","protocol":"0"},{"priority":1060,"src":"all","dst":"1.2.3.0","dstlen":24,"iif":"d0","table":"100","protocol":"0"},{"priority":1070,"not":null,"src":"10.1.0.0","srclen":16,"table":"100","protocol":"201"},{"priority":32766,"src":"all","table":"254","protocol":"2"}]"#;
    const ROUTES: &str = r#"[{"type":"1","dst":"10.0.0.0/8","gateway":"198.51.100.1","dev":"d0","table":"100","protocol":"201","scope":"0","metric":5,"flags":[]},{"type":"1","dst":"192.168.0.0/24","dev":"d1","table":"100","protocol":"3","scope":"253","flags":[]},{"type":"1","dst":"default","gateway":"198.51.100.1","dev":"d0","table":"254","protocol":"3","scope":"0","flags":[]},{"type":"2","dst":"127.0.0.1","dev":"lo","table":"255","protocol":"2","scope":"254","prefsrc":"127.0.0.1","flags":[]}]"#;

    /// IPv6 entries as `ip -6 -j -d -N rule|route show` prints them (a
    /// host with IPv6 policy routing), mixed into IPv4 output: foreign,
    /// skipped without error, the IPv4 entries read as without them.
    #[test]
    fn ipv6_rules_and_routes_are_foreign_and_skipped() {
        let v6_rules = r#"{"priority":1000,"src":"2001:db8:1::","srclen":64,"table":"100","protocol":"201"},{"priority":1001,"src":"all","dst":"2001:db8::","dstlen":32,"table":"100","protocol":"0"},{"priority":1002,"family":"inet6","src":"all","fwmark":"0x100","table":"100","protocol":"0"}"#;
        let mixed = RULES.replacen('[', &format!("[{v6_rules},"), 1);
        assert_eq!(
            parse_rules_json(&mixed).unwrap(),
            parse_rules_json(RULES).unwrap()
        );
        let v6_routes = r#"{"type":"1","dst":"fe80::/64","dev":"d0","table":"254","protocol":"2","scope":"0","metric":256,"flags":[],"pref":"medium"},{"type":"1","dst":"default","gateway":"fe80::1","dev":"d1","table":"254","protocol":"9","scope":"0","metric":1024,"flags":[],"pref":"medium"},{"type":"1","dst":"2001:db8::/32","dev":"d0","table":"100","protocol":"201","scope":"0","prefsrc":"2001:db8::2","flags":[]}"#;
        let mixed = ROUTES.replacen('[', &format!("[{v6_routes},"), 1);
        assert_eq!(
            parse_routes_json(&mixed).unwrap(),
            parse_routes_json(ROUTES).unwrap()
        );
        // Only IPv6: nothing, no error.
        assert!(parse_rules_json(&format!("[{v6_rules}]"))
            .unwrap()
            .is_empty());
        assert!(parse_routes_json(&format!("[{v6_routes}]"))
            .unwrap()
            .is_empty());
        // What IPv4 reads stays IPv4, and says so.
        let rules = parse_rules_json(RULES).unwrap();
        assert!(rules.iter().all(|r| r.family() == Family::Inet));
        let routes = parse_routes_json(ROUTES).unwrap();
        assert!(routes.iter().all(|r| r.family() == Family::Inet));
    }

    /// A route's family is its destination's; the batch spelling of a host
    /// prefix is the address alone in either family, other prefixes keep
    /// their length (an IPv6 /32 is not a host).
    #[test]
    fn route_family_is_its_destination_and_host_prefixes_print_bare() {
        let mut r = Route::default();
        assert_eq!(r.family(), Family::Inet);
        r.dst = "2001:db8::/32".parse().unwrap();
        assert_eq!(r.family(), Family::Inet6);
        assert!(
            r.to_batch().starts_with("2001:db8::/32 "),
            "{}",
            r.to_batch()
        );
        r.dst = "2001:db8::1/128".parse().unwrap();
        assert!(r.to_batch().starts_with("2001:db8::1 "), "{}", r.to_batch());
        r.dst = "10.1.2.3/32".parse().unwrap();
        assert!(r.to_batch().starts_with("10.1.2.3 "), "{}", r.to_batch());
        assert_eq!(
            net_str("10.0.0.0/8".parse::<IpNet>().unwrap()),
            "10.0.0.0/8"
        );
        let mut rule = Rule::default();
        assert_eq!(rule.family(), Family::Inet);
        rule.to = "2001:db8::/32".parse().ok();
        assert_eq!(rule.family(), Family::Inet6);
        assert!(
            rule.to_batch().contains(" to 2001:db8::/32"),
            "{}",
            rule.to_batch()
        );
    }

    #[test]
    fn live_rules_parse_numeric_output() {
        let rules = parse_rules_json(RULES).unwrap();
        assert_eq!(rules.len(), 6);
        assert_eq!(
            rules[1].fwmark,
            Some(Mark {
                value: 0x100,
                mask: 0xff00
            })
        );
        assert_eq!(rules[1].proto, 201);
        assert_eq!(rules[2].from, Some("198.51.100.2/32".parse().unwrap()));
        assert_eq!(rules[3].to, Some("1.2.3.0/24".parse().unwrap()));
        assert_eq!(rules[3].iif.as_deref(), Some("d0"));
        assert!(rules[4].not);
        assert_eq!(rules[5].action, RuleAction::Table(254));
    }

    #[test]
    fn rendered_rule_equals_its_live_echo() {
        let live = parse_rules_json(RULES).unwrap();
        let b = parse_batch(
            "rule add priority 1040 fwmark 0x100/0xff00 lookup 100 protocol 201\n\
             rule add priority 1070 not from 10.1.0.0/16 table ctc protocol 201",
            "test",
            &RtTables::parse("100 ctc", "t").unwrap(),
        )
        .unwrap();
        assert_eq!(b.rules[0], live[1]);
        assert_eq!(b.rules[1], live[4]);
        // and what we write back parses to the same value
        let again = parse_batch(
            &format!("rule add {}", live[4].to_batch()),
            "t",
            &RtTables::default(),
        )
        .unwrap();
        assert_eq!(again.rules[0], live[4]);
    }

    #[test]
    fn rendered_route_equals_its_live_echo() {
        let live = parse_routes_json(ROUTES).unwrap();
        let b = parse_batch(
            "route add 10.0.0.0/8 via 198.51.100.1 dev d0 table 100 proto 201 metric 5\n\
             route add 192.168.0.0/24 dev d1 table 100\n\
             route replace default via 198.51.100.1 dev d0",
            "t",
            &RtTables::default(),
        )
        .unwrap();
        assert_eq!(b.routes[0], live[0]);
        assert_eq!(b.routes[1], live[1]);
        assert_eq!(b.routes[2], live[2]);
        assert_eq!(live[3].kind, "local");
        for r in &live {
            let again = parse_batch(
                &format!("route add {}", r.to_batch()),
                "t",
                &RtTables::default(),
            )
            .unwrap();
            assert_eq!(&again.routes[0], r);
        }
    }

    #[test]
    fn missing_table_output_is_an_error_not_a_panic() {
        // `ip -j route show table N` of a missing table prints `[` and exits 2.
        assert!(parse_routes_json("[").is_err());
        assert!(parse_rules_json("{").is_err());
        assert!(parse_routes_json("").unwrap().is_empty());
    }

    #[test]
    fn batch_errors_name_the_line() {
        let e = parse_batch(
            "rule add priority 5 lookup 100\nroute add 1.2.3.0/33 dev x",
            "ip.batch",
            &RtTables::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_batch(
            "rule add from 1.2.3.4 lookup 100",
            "t",
            &RtTables::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("explicit priority"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,400}") {
            let _ = parse_rules_json(&s);
            let _ = parse_routes_json(&s);
            let _ = parse_batch(&s, "p", &RtTables::default());
        }

        #[test]
        fn json_like_input_never_panics(s in r#"\[\{("[a-z]{1,8}":("[0-9a-f./x]{0,12}"|[0-9]{1,12}|null),?){0,6}\}\]"#) {
            let _ = parse_rules_json(&s);
            let _ = parse_routes_json(&s);
        }
    }

    /// IPv6 batch lines (the words after `-6 route add`/`rule add`) read
    /// as the kernel lists them: a route as rendered (no scope, no metric)
    /// equals its live echo in a captured `ip -6` listing (scope 0, metric
    /// 1024), each owned live route and rule round-trips through its
    /// batch words, and an address of the other family is refused, naming
    /// the line's family.
    #[test]
    fn ipv6_batch_words_equal_their_live_echo() {
        let live_routes = parse_routes_json_of(
            include_str!("../../tests/fixtures/ip/v6-routes.json"),
            Family::Inet6,
        )
        .unwrap();
        let live_rules = parse_rules_json_of(
            include_str!("../../tests/fixtures/ip/v6-rules.json"),
            Family::Inet6,
        )
        .unwrap();
        let table = |t: &str| table_id(t);
        let route = |line: &str| {
            let w: Vec<&str> = line.split_whitespace().collect();
            parse_route_words(&w, Family::Inet6, &table, &mut IfNames::default())
        };
        let live = |dst: &str| {
            live_routes
                .iter()
                .find(|r| r.proto == 201 && net_str(r.dst) == dst)
                .unwrap_or_else(|| panic!("{dst} not in {live_routes:#?}"))
        };
        for (rendered, dst) in [
            (
                "2001:db8:200::/48 dev v0 src 2001:db8:a::2 table 101 proto 201",
                "2001:db8:200::/48",
            ),
            (
                "2001:db8:100::/48 via 2001:db8:a::1 dev v0 table 100 proto 201",
                "2001:db8:100::/48",
            ),
            (
                "default via 2001:db8:a::1 dev v0 table 100 proto 201 metric 5",
                "::/0",
            ),
        ] {
            assert_eq!(&route(rendered).unwrap(), live(dst), "{rendered}");
        }
        let owned: Vec<&Route> = live_routes.iter().filter(|r| r.proto == 201).collect();
        assert_eq!(owned.len(), 3);
        for r in owned {
            assert_eq!(&route(&r.to_batch()).unwrap(), r, "{}", r.to_batch());
        }
        let owned: Vec<&Rule> = live_rules.iter().filter(|r| r.proto == 201).collect();
        assert_eq!(owned.len(), 2);
        for r in owned {
            let b = r.to_batch();
            let w: Vec<&str> = b.split_whitespace().collect();
            assert_eq!(
                &parse_rule_words(&w, Family::Inet6, &table).unwrap(),
                r,
                "{b}"
            );
        }
        let e = route("10.0.0.0/8 dev v0 table 100").unwrap_err();
        assert!(e.contains("an inet6 line"), "{e}");
        let w = ["priority", "5", "from", "10.0.0.0/8", "lookup", "100"];
        let e = parse_rule_words(&w, Family::Inet6, &table).unwrap_err();
        assert!(e.contains("bad address 10.0.0.0/8 (an inet6 line)"), "{e}");
        // IPv4's defaults stay its own: scope by type and gateway, metric 0.
        let w = ["10.0.0.0/8", "dev", "d0", "table", "100"];
        let r = parse_route_words(&w, Family::Inet, &table, &mut IfNames::default()).unwrap();
        assert_eq!((r.scope, r.metric), (253, 0));
    }
}
