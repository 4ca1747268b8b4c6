//! Status reports (SPEC 6.1), wire-compatible with the original:
//!
//! ```text
//! report HOSTNAME[ IFACE-ADDR]
//! NAME e|d SECONDS-SINCE-START PID CMD-PATH      (one line per restartable job)
//! ```
//!
//! Original collectors read the first three fields of a job line; the
//! original pmtr sends only those three in old versions, which `decode`
//! accepts too. A report larger than one datagram is split at job lines,
//! each part with the `report` line.

use crate::status::{JobStatus, State};

/// Largest datagram sent: below the 65 507 bytes UDP carries over IPv4.
pub const MAX_DATAGRAM: usize = 60_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportJob {
    pub name: String,
    pub enabled: bool,
    /// Seconds since the job started (0 when it is not running).
    pub seconds: u64,
    /// Absent in the original's three-field lines.
    pub pid: Option<i32>,
    pub cmd: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub host: String,
    /// The egress interface's address, for multicast reports.
    pub address: Option<String>,
    pub jobs: Vec<ReportJob>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("not text")]
    NotText,
    #[error("does not begin with `report HOSTNAME`")]
    NoHeader,
    #[error("malformed job line {0}")]
    BadLine(usize),
}

/// The job lines of a report: every job but `once` jobs and jobs that are
/// done (they are not restarted, so not "restartable").
pub fn jobs_of(statuses: &[JobStatus], commands: &[&str]) -> Vec<ReportJob> {
    statuses
        .iter()
        .zip(commands)
        .filter(|(status, _)| status.state != State::Done)
        .map(|(status, cmd)| ReportJob {
            name: status.name.clone(),
            // Old collectors know `e` and `d`: a job that was given up on
            // is not running and will not be, so it reads as disabled.
            enabled: status.enabled && status.state != State::Failed,
            seconds: status.uptime_seconds.unwrap_or(0),
            pid: Some(status.pid.unwrap_or(0)),
            cmd: Some(cmd.to_string()),
        })
        .collect()
}

/// The datagrams of a report from `report_id` (`HOSTNAME[ ADDRESS]`),
/// each at most [`MAX_DATAGRAM`] bytes, split at job lines.
pub fn encode(report_id: &str, jobs: &[ReportJob]) -> Vec<String> {
    let header = format!("report {report_id}\n");
    let mut datagrams = Vec::new();
    let mut current = header.clone();
    for job in jobs {
        let line = format!(
            "{} {} {} {} {}\n",
            job.name,
            if job.enabled { 'e' } else { 'd' },
            job.seconds,
            job.pid.unwrap_or(0),
            job.cmd.as_deref().unwrap_or("-")
        );
        if current.len() + line.len() > MAX_DATAGRAM && current.len() > header.len() {
            datagrams.push(std::mem::replace(&mut current, header.clone()));
        }
        current.push_str(&line);
    }
    datagrams.push(current);
    datagrams
}

/// Reads a report: the original's three-field lines or our five-field ones.
pub fn decode(datagram: &[u8]) -> Result<Report, ReportError> {
    let text = std::str::from_utf8(datagram).map_err(|_| ReportError::NotText)?;
    let mut lines = text.lines();
    let header = lines.next().ok_or(ReportError::NoHeader)?;
    let mut words = header.split_ascii_whitespace();
    if words.next() != Some("report") {
        return Err(ReportError::NoHeader);
    }
    let host = words.next().ok_or(ReportError::NoHeader)?;
    if !valid_word(host) {
        return Err(ReportError::NoHeader);
    }
    let address = words.next().filter(|a| valid_word(a)).map(str::to_string);
    let mut jobs = Vec::new();
    for (number, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        let bad = || ReportError::BadLine(number + 2);
        if fields.len() < 3 || !valid_word(fields[0]) {
            return Err(bad());
        }
        let enabled = match fields[1] {
            "e" => true,
            "d" => false,
            _ => return Err(bad()),
        };
        let seconds = fields[2].parse().map_err(|_| bad())?;
        let pid = match fields.get(3) {
            None => None,
            Some(pid) => Some(pid.parse().map_err(|_| bad())?),
        };
        jobs.push(ReportJob {
            name: fields[0].to_string(),
            enabled,
            seconds,
            pid,
            cmd: fields.get(4).map(|c| c.to_string()),
        });
    }
    Ok(Report {
        host: host.to_string(),
        address,
        jobs,
    })
}

fn valid_word(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 255
        && !word.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, enabled: bool, seconds: u64, pid: i32) -> ReportJob {
        ReportJob {
            name: name.into(),
            enabled,
            seconds,
            pid: Some(pid),
            cmd: Some(format!("/usr/bin/{name}")),
        }
    }

    #[test]
    fn encode_decode_pair() {
        let jobs = vec![job("nginx", true, 277_269, 812), job("backup", false, 0, 0)];
        let datagrams = encode("web01 10.0.0.5", &jobs);
        assert_eq!(
            datagrams,
            ["report web01 10.0.0.5\nnginx e 277269 812 /usr/bin/nginx\nbackup d 0 0 /usr/bin/backup\n"]
        );
        let report = decode(datagrams[0].as_bytes()).unwrap();
        assert_eq!(report.host, "web01");
        assert_eq!(report.address.as_deref(), Some("10.0.0.5"));
        assert_eq!(report.jobs, jobs);
    }

    #[test]
    fn the_originals_three_field_lines() {
        let report = decode(b"report oldhost\napp e 42\nother d 7\n").unwrap();
        assert_eq!(
            report.jobs[0],
            ReportJob {
                name: "app".into(),
                enabled: true,
                seconds: 42,
                pid: None,
                cmd: None
            }
        );
        assert!(!report.jobs[1].enabled);
        assert_eq!(report.address, None);
    }

    #[test]
    fn a_command_with_spaces_stays_whole() {
        let report = decode(b"report h\na e 1 2 /opt/my app/run\n").unwrap();
        assert_eq!(report.jobs[0].cmd.as_deref(), Some("/opt/my app/run"));
    }

    #[test]
    fn a_large_report_is_split_never_cut() {
        let jobs: Vec<ReportJob> = (0..5000)
            .map(|i| job(&format!("job{i:05}"), true, i, i as i32))
            .collect();
        let datagrams = encode("big", &jobs);
        assert!(datagrams.len() > 1);
        let mut seen = Vec::new();
        for datagram in &datagrams {
            assert!(datagram.len() <= MAX_DATAGRAM);
            assert!(datagram.starts_with("report big\n"));
            seen.extend(decode(datagram.as_bytes()).unwrap().jobs);
        }
        assert_eq!(seen, jobs);
    }

    #[test]
    fn malformed_reports_are_errors() {
        assert_eq!(decode(b"").unwrap_err(), ReportError::NoHeader);
        assert_eq!(decode(b"hello world").unwrap_err(), ReportError::NoHeader);
        assert_eq!(decode(b"report").unwrap_err(), ReportError::NoHeader);
        assert_eq!(
            decode(b"report h\napp x 1\n").unwrap_err(),
            ReportError::BadLine(2)
        );
        assert_eq!(
            decode(b"report h\napp e\n").unwrap_err(),
            ReportError::BadLine(2)
        );
        assert_eq!(
            decode(b"report h\napp e 1 notapid\n").unwrap_err(),
            ReportError::BadLine(2)
        );
        assert_eq!(decode(b"\xff").unwrap_err(), ReportError::NotText);
    }
}
