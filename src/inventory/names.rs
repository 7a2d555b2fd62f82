//! Syntax checks for every string from the inventory that can reach a remote
//! command or a config file. Each returns a short reason on failure; callers
//! attach the location. The accepted alphabets are deliberately small: none
//! of them contains a shell metacharacter, whitespace, quote or a leading `-`.

/// Linux interface name: 1–15 bytes, not `.`/`..`, no `/`, `:` or whitespace;
/// dwprov further limits it to `[A-Za-z0-9_.-]`, not starting with `-`.
pub fn interface(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "interface name `{v}` must be 1 to 15 characters long"
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("`{v}` is not a valid interface name"));
    }
    // The kernel's names for "every interface" and "new interfaces" in
    // net/ipv4/conf/: a sysctl for them would change every interface.
    if s == "all" || s == "default" {
        return Err(format!(
            "`{v}` is not a valid interface name: net/ipv4/conf/{v} sets every interface"
        ));
    }
    if s.starts_with('-') {
        return Err(format!("interface name `{v}` must not start with `-`"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "interface name `{v}` contains {c:?}; use letters, digits, `_`, `.`, `-`"
        ));
    }
    Ok(())
}

/// Names iproute2 reserves in rt_tables.
pub const RESERVED_TABLE_NAMES: &[&str] = &["main", "local", "default", "unspec"];

/// rt_tables name: `[A-Za-z][A-Za-z0-9_-]{0,30}`, not a reserved name.
pub fn table_name(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    let mut chars = s.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {
            s.len() <= 31 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        _ => false,
    };
    if !ok {
        return Err(format!(
            "line name `{v}` is not a valid routing table name (a letter, then up to 30 letters, digits, `_` or `-`)"
        ));
    }
    if RESERVED_TABLE_NAMES.contains(&s) {
        return Err(format!(
            "line name `{v}` is reserved by iproute2 (main, local, default, unspec)"
        ));
    }
    Ok(())
}

/// Unix user name: `[a-z_][a-z0-9_-]*`, at most 32 characters.
pub fn user(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.len() <= 32;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a valid user name (a lowercase letter or `_`, then lowercase letters, digits, `_`, `-`)"
        ))
    }
}

/// Inventory host and group names: `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 64.
pub fn inventory_name(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not a valid name (letters, digits, `_`, `.`, `-`; not starting with `.` or `-`)"))
    }
}

/// An address to connect to: an IPv4/IPv6 address or a DNS name.
pub fn host_address(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let bad = || Err(format!("`{v}` is not an IP address or a DNS name"));
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return bad();
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return bad();
        }
    }
    // All-numeric dotted names are mistyped IPv4 addresses, not DNS names.
    if name
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        // `010.9.0.2`: say why (the resolver would read octal).
        return match super::routes::parse_addr(s) {
            Err(m) if m.contains("leading zeros") => Err(m),
            _ => bad(),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["eth0", "enp3s0f1", "wan.100", "br-lan", "a"] {
            interface(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "eth0:1",
            "a/b",
            "eth 0",
            "sixteen-chars-xx",
            "-x",
            "e$(x)",
            "é",
        ] {
            assert!(interface(bad).is_err(), "{bad}");
        }
        table_name("ctc").unwrap();
        table_name("C-n_c2").unwrap();
        for bad in ["main", "local", "1ctc", "", "a b", "a;b", &"x".repeat(32)] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
        user("root").unwrap();
        user("_svc-1").unwrap();
        for bad in ["Root", "1a", "a b", "a;b", ""] {
            assert!(user(bad).is_err(), "{bad}");
        }
        for ok in [
            "10.9.0.2",
            "::1",
            "gw1.example.com",
            "gw1",
            "gw1.example.com.",
        ] {
            host_address(ok).unwrap();
        }
        assert!(interface("all").is_err() && interface("default").is_err());
        assert!(host_address("010.9.0.2")
            .unwrap_err()
            .contains("leading zeros"));
        for bad in ["10.9.0.300", "a b", "x;rm", "-oProxy", "a..b", "$(x)", ""] {
            assert!(host_address(bad).is_err(), "{bad}");
        }
    }
}
