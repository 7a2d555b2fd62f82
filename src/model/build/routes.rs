//! A line's destination prefixes: inline `routes` and a `routes_file`,
//! combined (a prefix listed again is kept once), with where each is listed
//! so that a later check can point at it. The default route is refused (the
//! `default: true` line carries it), and so is a line's or the LAN's own
//! subnet ([`check_connected`]).
use crate::error::{Error, Location, Result};
use crate::escape;
use crate::inventory::{expand_path, routes as routes_file, values, Host};
use crate::model::{Lan, Line};
use crate::yaml::Node;
use ipnet::IpNet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a line's prefix is listed: an inline `routes` entry or a routes
/// file's line and column.
#[derive(Clone, Copy)]
enum Listed<'a> {
    Inline(&'a Node),
    File(u32, u32),
}

impl Listed<'_> {
    fn location(&self, file: &Path) -> Location {
        match self {
            Listed::Inline(n) => n.location.clone(),
            Listed::File(line, column) => Location {
                file: file.into(),
                line: *line as usize,
                column: *column as usize,
            },
        }
    }
}

/// Where each prefix of one line is listed, and its routes file.
pub(super) struct Listing<'a> {
    seen: HashMap<IpNet, Listed<'a>>,
    file: Option<PathBuf>,
}

/// The prefixes of the line `name` (the `item` of `lines`), deduplicated, in
/// first-seen order: inline `routes` first, then the `routes_file` (relative
/// to the inventory's directory).
pub(super) fn line_routes<'a>(
    host: &Host,
    item: &'a Node,
    name: &str,
) -> Result<(Vec<IpNet>, Listing<'a>)> {
    let mut routes: Vec<IpNet> = Vec::new();
    let mut seen: HashMap<IpNet, Listed> = HashMap::new();
    let mut file_path = None;
    if let Some(n) = item.get("routes") {
        for r in values::seq(n, "routes")? {
            let net = IpNet::V4(values::prefix(r)?);
            if listed_once(name, net, Listed::Inline(r), &mut seen)
                .map_err(|(m, h)| r.error(m, h))?
            {
                routes.push(net);
            }
        }
    }
    if let Some(n) = item.get("routes_file") {
        let s = values::string(n, "routes_file")?;
        let path = expand_path(s, host.base_dir()).map_err(|m| n.error(m, None))?;
        let entries = routes_file::load_routes_at(&path).map_err(|e| match e {
            Error::Io { source, .. } => n.error(
                format!(
                    "cannot read routes file `{}` ({}): {source}",
                    escape::value(s),
                    escape::value(&path.display().to_string())
                ),
                Some("relative paths are taken from the inventory file's directory".into()),
            ),
            // Not a regular file, or too big: said at the `routes_file` value.
            Error::Invalid { message, hint } => n.error(message, hint),
            e => e,
        })?;
        for e in entries {
            let at = Listed::File(e.line, e.column);
            let net = IpNet::V4(e.net);
            let new =
                listed_once(name, net, at, &mut seen).map_err(|(message, hint)| Error::Input {
                    location: at.location(&path),
                    message,
                    hint,
                })?;
            if new {
                routes.push(net);
            }
        }
        file_path = Some(path);
    }
    Ok((
        routes,
        Listing {
            seen,
            file: file_path,
        },
    ))
}

/// Whether a listed prefix is new for its line (a prefix listed again, inline
/// or in a file, is kept once: the lists combine). The default route is
/// refused: the `default: true` line carries it, and a second route with its
/// key can never verify. Err is (message, hint).
fn listed_once<'a>(
    line: &str,
    net: IpNet,
    at: Listed<'a>,
    seen: &mut HashMap<IpNet, Listed<'a>>,
) -> std::result::Result<bool, (String, Option<String>)> {
    if net.prefix_len() == 0 {
        return Err((
            format!("`{net}` in the routes of line `{line}` is the default route"),
            Some("remove it: the line with `default: true` carries the default route; to send everything via this line, set `default: true` on it".into()),
        ));
    }
    match seen.entry(net) {
        std::collections::hash_map::Entry::Occupied(_) => Ok(false),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(at);
            Ok(true)
        }
    }
}

/// A listed prefix that is a line's or the LAN's own subnet: the kernel's
/// connected route has that key already, and it is reached directly.
/// `listed` is per line, in the order of `lines`.
pub(super) fn check_connected(
    lines: &[Line],
    listed: &[Listing],
    lan: &[Lan],
    lines_node: &Node,
) -> Result<()> {
    // A dynamic address is not known before the host is: no subnet to check.
    let subnets = lines
        .iter()
        .filter_map(|l| {
            Some((
                l.address?.trunc(),
                format!("the subnet of line `{}`", l.name),
            ))
        })
        .chain(lan.iter().map(|l| {
            (
                l.address.trunc(),
                format!("the LAN subnet on {}", l.interface),
            )
        }));
    for (net, what) in subnets {
        for (l, listing) in lines.iter().zip(listed) {
            let Some(at) = listing.seen.get(&net) else {
                continue;
            };
            let message = format!(
                "`{net}` in the routes of line `{}` is {what}, which is reached directly",
                l.name
            );
            let hint =
                Some("remove it from the list: connected subnets need no route via a line".into());
            return Err(match (at, &listing.file) {
                (Listed::Inline(n), _) => n.error(message, hint),
                (Listed::File(..), Some(f)) => Error::Input {
                    location: at.location(f),
                    message,
                    hint,
                },
                (Listed::File(..), None) => lines_node.error(message, hint),
            });
        }
    }
    Ok(())
}
