//! What apply checks before it uploads the agent (phase 2 calls these): the
//! gateway's CPU must run the binary this dwprov was built with, else apply
//! refuses clearly instead of installing a program that cannot start.
//! (The upload itself is checked by SHA-256 like every big file apply sends.)

/// The Rust architecture (`std::env::consts::ARCH`) a `uname -m` names, if
/// any dwprov knows.
pub fn rust_arch(uname_m: &str) -> Option<&'static str> {
    Some(match uname_m.trim() {
        "x86_64" | "amd64" => "x86_64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "aarch64" | "arm64" | "armv8l" => "aarch64",
        m if m.starts_with("armv") || m == "arm" => "arm",
        "riscv64" => "riscv64",
        "ppc64le" | "ppc64" => "powerpc64",
        "ppc" => "powerpc",
        "mips" | "mipsel" => "mips",
        "mips64" | "mips64el" => "mips64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        _ => return None,
    })
}

/// Whether a gateway whose `uname -m` says `uname_m` runs an agent built for
/// `build_arch` (pass `std::env::consts::ARCH`); the error says what to do.
pub fn check_arch(uname_m: &str, build_arch: &str) -> Result<(), String> {
    let shown = crate::escape::value(uname_m.trim());
    match rust_arch(uname_m) {
        Some(a) if a == build_arch => Ok(()),
        Some(a) => Err(format!(
            "the gateway's CPU is {shown} ({a}) but this dwprov's agent is built for {build_arch}: \
             build dwprov for {a} (cargo build --release --target {a}-unknown-linux-gnu) and apply with that build"
        )),
        None => Err(format!(
            "the gateway's CPU ({shown}, from uname -m) is not one dwprov knows; its agent is built for {build_arch}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_architecture_must_match_the_build() {
        assert_eq!(check_arch("x86_64\n", "x86_64"), Ok(()));
        assert_eq!(check_arch("aarch64", "aarch64"), Ok(()));
        assert_eq!(check_arch("armv7l", "arm"), Ok(()));
        assert_eq!(check_arch("i686", "x86"), Ok(()));
        let e = check_arch("aarch64", "x86_64").unwrap_err();
        assert!(
            e.contains("aarch64") && e.contains("built for x86_64"),
            "{e}"
        );
        let e = check_arch("pdp11\x1b[2J", "x86_64").unwrap_err();
        assert!(
            e.contains("not one dwprov knows") && !e.contains('\x1b'),
            "{e}"
        );
        // This machine runs what it built.
        let here = std::process::Command::new("uname").arg("-m").output();
        if let Ok(o) = here {
            let m = String::from_utf8_lossy(&o.stdout).into_owned();
            assert_eq!(check_arch(&m, std::env::consts::ARCH), Ok(()), "{m}");
        }
    }
}
