//! Unguessable one-time names: the marker that frames gather sections and
//! heredocs, and the tail of snapshot ids. Nothing on the gateway can
//! predict it, so no output can be mistaken for a frame.

/// A fresh unguessable marker: `dwprov-` and 24 hex digits.
pub fn marker() -> String {
    let mut b = [0u8; 12];
    if getrandom::getrandom(&mut b).is_err() {
        // Fall back to time and pid: still unpredictable enough for framing.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("dwprov-{t:x}-{}", std::process::id());
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("dwprov-{hex}")
}
