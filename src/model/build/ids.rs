//! Stable table ids and marks for lines that leave them out.
//!
//! Derived from a hash of the line name (FNV-1a, stable across builds):
//! tables in 1000..=30000, marks among the non-zero values of `mark_mask`,
//! probing upwards past values other lines use. Explicit values are placed
//! first, then missing ones in name order, so reordering lines never changes
//! them, and adding a line changes them only if the new line takes exactly
//! the value an existing one hashed to.
use crate::error::Result;
use crate::model::Line;
use crate::yaml::Node;
use std::collections::HashSet;

/// Auto-assigned table ids come from this range.
const AUTO_TABLES: std::ops::RangeInclusive<u32> = 1000..=30000;

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Order in which lines without an explicit value get one: by name.
fn auto_order(lines: &[Line], given: &[Option<u32>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..lines.len()).filter(|&i| given[i].is_none()).collect();
    idx.sort_by(|&a, &b| lines[a].name.cmp(&lines[b].name));
    idx
}

pub(super) fn assign_tables(lines: &mut [Line], given: &[Option<u32>]) {
    let mut taken: HashSet<u32> = given.iter().flatten().copied().collect();
    let (lo, hi) = (*AUTO_TABLES.start(), *AUTO_TABLES.end());
    let span = (hi - lo + 1) as u64;
    for i in auto_order(lines, given) {
        let mut t = lo + (fnv1a(&format!("table:{}", lines[i].name)) % span) as u32;
        // At most a handful of lines: the range never fills up.
        while taken.contains(&t) {
            t = if t == hi { lo } else { t + 1 };
        }
        taken.insert(t);
        lines[i].table = t;
    }
}

/// Spread the low bits of `n` over the set bits of `mask` (like BMI2 pdep).
fn deposit(mut n: u64, mask: u32) -> u32 {
    let mut out = 0u32;
    for bit in 0..32 {
        if mask & (1 << bit) != 0 {
            if n & 1 != 0 {
                out |= 1 << bit;
            }
            n >>= 1;
        }
    }
    out
}

pub(super) fn assign_marks(
    lines: &mut [Line],
    given: &[Option<u32>],
    mask: u32,
    at: &Node,
) -> Result<()> {
    let mut taken: HashSet<u32> = given.iter().flatten().copied().collect();
    let count: u64 = (1u64 << mask.count_ones()) - 1; // non-zero values under the mask
    for i in auto_order(lines, given) {
        let start = fnv1a(&format!("mark:{}", lines[i].name)) % count; // 0..count
        let mut k = start;
        loop {
            let m = deposit(k + 1, mask);
            if !taken.contains(&m) {
                taken.insert(m);
                lines[i].mark = m;
                break;
            }
            k = (k + 1) % count;
            if k == start {
                return Err(at.error(
                    format!(
                        "mark_mask {mask:#x} has no free mark left for line `{}`",
                        lines[i].name
                    ),
                    Some("widen `mark_mask` or give the lines explicit marks".into()),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NextHop;

    #[test]
    fn deposit_spreads_bits() {
        assert_eq!(deposit(1, 0xff00), 0x100);
        assert_eq!(deposit(0xff, 0xff00), 0xff00);
        assert_eq!(deposit(0b11, 0b1010), 0b1010);
    }

    fn line(name: &str) -> Line {
        Line {
            name: name.into(),
            table: 0,
            mark: 0,
            interface: "eth1".into(),
            address: Some("10.0.0.2/24".parse().unwrap()),
            gateway: Some("10.0.0.1".parse().unwrap()),
            dynamic_address: false,
            next_hop: NextHop::Fixed,
            default: false,
            routes: vec![],
            health: None,
            failover: Default::default(),
        }
    }

    #[test]
    fn auto_ids_are_stable_under_reorder_and_addition() {
        let mut a = vec![line("ctc"), line("cnc")];
        assign_tables(&mut a, &[None, None]);
        assign_marks(
            &mut a,
            &[None, None],
            0xff00,
            &Node::parse("x", "t").unwrap(),
        )
        .unwrap();
        let mut b = vec![line("cmcc"), line("cnc"), line("ctc")];
        assign_tables(&mut b, &[None, None, None]);
        assign_marks(
            &mut b,
            &[None, None, None],
            0xff00,
            &Node::parse("x", "t").unwrap(),
        )
        .unwrap();
        for l in &a {
            let o = b.iter().find(|x| x.name == l.name).unwrap();
            assert_eq!((l.table, l.mark), (o.table, o.mark));
            assert!(AUTO_TABLES.contains(&l.table));
            assert!(l.mark != 0 && l.mark & !0xff00 == 0);
        }
        // a one-bit mask has exactly one mark; a second line cannot get one
        let mut c = vec![line("a"), line("b")];
        assert!(assign_marks(
            &mut c,
            &[None, None],
            0x100,
            &Node::parse("x", "t").unwrap()
        )
        .is_err());
    }
}
