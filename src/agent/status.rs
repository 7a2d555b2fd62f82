//! The status file: what the agent knows, for `dwprov status` (phase 2) and
//! for an admin: `{"format_version": 1, "agent_version": ..., "lines": [...]}`.
//! Written whole to a temp file and renamed over the old one, so a reader
//! never sees half of it.
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::health::State;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub format_version: u32,
    pub agent_version: String,
    /// The agent's pid and when it started (RFC 3339, UTC).
    pub pid: u32,
    pub started: String,
    /// Probe rounds judged since the start, all lines together (each
    /// line's own count is in its `LineStatus`).
    pub rounds: u64,
    /// When this file was written.
    pub updated: String,
    pub lines: Vec<LineStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineStatus {
    pub name: String,
    pub state: State,
    /// Since when it is in `state` (RFC 3339, UTC) and as Unix seconds.
    pub since: String,
    pub since_unix: u64,
    /// Transitions and probe rounds of this line since the agent started.
    pub transitions: u64,
    pub rounds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_round: Option<Round>,
    /// The line carrying its traffic while it is down.
    pub failover_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub at: String,
    pub good: bool,
    pub targets: Vec<TargetResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    pub target: String,
    /// Share of the round's probes lost (one probe a round: 0 or 1).
    pub loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Why it was lost (`timeout`, an OS error), or `refused` for a TCP
    /// target that answered with a reset (which counts as an answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Status {
    pub fn line(&self, name: &str) -> Option<&LineStatus> {
        self.lines.iter().find(|l| l.name == name)
    }

    /// Writes the status to `path` atomically (temp file + rename).
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(crate::ownership::TEMP_SUFFIX);
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// A status file, if there is a readable one of this format.
    pub fn read(path: &Path) -> Option<Status> {
        let text = std::fs::read_to_string(path).ok()?;
        let s: Status = serde_json::from_str(&text).ok()?;
        (s.format_version == FORMAT_VERSION).then_some(s)
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

/// `secs` since the epoch (and `millis`) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_file_is_one_document_written_atomically() {
        let dir = std::env::temp_dir().join(format!("dwprov-status-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(crate::ownership::AGENT_STATUS_FILE);
        let s = Status {
            format_version: FORMAT_VERSION,
            agent_version: "0.1.0".into(),
            pid: 1,
            started: rfc3339(0, 0),
            rounds: 3,
            updated: rfc3339(3, 0),
            lines: vec![LineStatus {
                name: "cnc".into(),
                state: State::Down,
                since: rfc3339(2, 0),
                since_unix: 2,
                transitions: 1,
                rounds: 3,
                last_round: Some(Round {
                    at: rfc3339(3, 0),
                    good: false,
                    targets: vec![TargetResult {
                        target: "100.65.1.10".into(),
                        loss: 1.0,
                        rtt_ms: None,
                        note: Some("timeout".into()),
                    }],
                }),
                failover_to: Some("ctc".into()),
            }],
        };
        s.write_atomic(&path).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["lines"][0]["state"], "down");
        assert_eq!(v["lines"][0]["failover_to"], "ctc");
        assert_eq!(v["lines"][0]["last_round"]["targets"][0]["loss"], 1.0);
        assert_eq!(Status::read(&path), Some(s));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left: {names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The agent as `gather` sees it on a gateway: whether it runs (`running
/// PID`, `running systemd` or `stopped`) and its status file, if any.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Seen {
    pub running: bool,
    pub status: Option<Status>,
}

impl Seen {
    /// The gather section: a `running ...`/`stopped` line, then the file.
    pub fn parse(text: &str) -> Seen {
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        Seen {
            running: first.starts_with("running"),
            status: serde_json::from_str(rest.trim()).ok(),
        }
    }

    /// What a plan shows as information, one line per line that is not up:
    /// `line cnc down since ..., failed over to ctc (agent)`.
    pub fn plan_lines(&self) -> Vec<String> {
        let Some(s) = &self.status else {
            return Vec::new();
        };
        s.lines
            .iter()
            .filter(|l| l.state == State::Down)
            .map(|l| {
                format!(
                    "line {} down since {}, {} (the agent's failover, not drift)",
                    l.name,
                    l.since,
                    match &l.failover_to {
                        Some(to) => format!("failed over to {to}"),
                        None => "no live fallback".into(),
                    }
                )
            })
            .collect()
    }
}
