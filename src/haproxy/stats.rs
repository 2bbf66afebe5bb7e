//! Parses HAProxy's `show stat` CSV and `show info`: pure text in, typed rows out.
//!
//! Columns are found by header name: their order past the first ones varies between versions
//! (2.6.12 has 128). Counters reset on every reload, which `show info`'s pid and uptime reveal.
//! Malformed output is an error naming the line and column, never a silently wrong number.

use std::collections::HashMap;

use crate::model::{HaproxyVersion, Info, Row, Status};

/// `show stat` output larger than this is refused rather than parsed.
pub const MAX_STATS_BYTES: usize = 32 * 1024 * 1024;

/// Output that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("`show stat` answered nothing")]
    Empty,
    #[error("`show stat` output is {0} bytes, more than the {MAX_STATS_BYTES} accepted")]
    TooLarge(usize),
    #[error("`show stat` output has no `# pxname,svname,...` header (got {0:?})")]
    NoHeader(String),
    #[error("`show stat` output lacks the `{0}` column")]
    MissingColumn(&'static str),
    #[error("`show stat` line {line} has {found} fields where the header has {expected}")]
    Truncated {
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error("`show stat` line {line}: `{column}` is {value:?}, not a number")]
    BadNumber {
        line: usize,
        column: &'static str,
        value: String,
    },
    #[error("`show info` output lacks `{0}`")]
    MissingInfo(&'static str),
}

/// A server's (or a backend's) administrative and health status.
/// Parses `show stat`, keeping server and `BACKEND` lines (not `FRONTEND` ones).
pub fn parse_show_stat(text: &str) -> Result<Vec<Row>, StatsError> {
    if text.len() > MAX_STATS_BYTES {
        return Err(StatsError::TooLarge(text.len()));
    }
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let (_, header) = lines.next().ok_or(StatsError::Empty)?;
    let header = header
        .strip_prefix("# ")
        .filter(|rest| rest.split(',').any(|name| name == "pxname"))
        .ok_or_else(|| StatsError::NoHeader(header.chars().take(60).collect()))?;
    let columns: HashMap<&str, usize> = header
        .split(',')
        .enumerate()
        .map(|(i, name)| (name, i))
        .collect();
    let expected = header.split(',').count();
    let index = |name: &'static str| {
        columns
            .get(name)
            .copied()
            .ok_or(StatsError::MissingColumn(name))
    };
    let (pxname, svname, status, scur, stot) = (
        index("pxname")?,
        index("svname")?,
        index("status")?,
        index("scur")?,
        index("stot")?,
    );
    let (req_tot, qcur, rtime) = (
        index("req_tot").ok(),
        index("qcur").ok(),
        index("rtime").ok(),
    );
    let (rate, req_rate, check_status) = (
        index("rate").ok(),
        index("req_rate").ok(),
        index("check_status").ok(),
    );

    let mut rows = Vec::new();
    // One buffer for every line's fields (128 of them in 2.6): a run at 100,000 servers reads
    // as many lines.
    let mut fields: Vec<&str> = Vec::with_capacity(expected + 1);
    for (number, line) in lines {
        let line_number = number + 1;
        fields.clear();
        fields.extend(line.split(','));
        if fields.len() < expected {
            return Err(StatsError::Truncated {
                line: line_number,
                found: fields.len(),
                expected,
            });
        }
        if fields[svname] == "FRONTEND" {
            continue;
        }
        let number_at = |column: &'static str, at: usize| -> Result<Option<u64>, StatsError> {
            let value = fields[at];
            if value.is_empty() {
                return Ok(None);
            }
            value.parse().map(Some).map_err(|_| StatsError::BadNumber {
                line: line_number,
                column,
                value: value.to_owned(),
            })
        };
        let optional = |column: &'static str, at: Option<usize>| match at {
            Some(at) => number_at(column, at),
            None => Ok(None),
        };
        rows.push(Row {
            proxy: fields[pxname].to_owned(),
            name: fields[svname].to_owned(),
            status: Status::parse(fields[status]),
            scur: number_at("scur", scur)?.unwrap_or(0),
            stot: number_at("stot", stot)?.unwrap_or(0),
            req_tot: optional("req_tot", req_tot)?,
            qcur: optional("qcur", qcur)?,
            rtime: optional("rtime", rtime)?,
            rate: optional("rate", rate)?,
            req_rate: optional("req_rate", req_rate)?,
            check_status: check_status
                .map(|at| fields[at].trim_start_matches('*'))
                .filter(|status| !status.is_empty())
                .map(str::to_owned),
        });
    }
    Ok(rows)
}

/// Parses `show info` for the worker's pid, uptime and version.
pub fn parse_show_info(text: &str) -> Result<Info, StatsError> {
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
    };
    let field = |name: &'static str| {
        value(name)
            .and_then(|value| value.trim().parse().ok())
            .ok_or(StatsError::MissingInfo(name))
    };
    Ok(Info {
        pid: field("Pid")?,
        uptime_s: field("Uptime_sec")?,
        version: value("Version").and_then(HaproxyVersion::parse),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = include_str!("../../tests/fixtures/show-stat-haproxy-2.6.12.csv");

    #[test]
    fn parses_real_haproxy_2_6_output_by_header_name() {
        let rows = parse_show_stat(REAL).unwrap();
        let names: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.proxy.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(names, [("web", "s1"), ("web", "s2"), ("web", "BACKEND")]);
        assert_eq!(rows[0].status, Status::Up);
        assert_eq!(
            (rows[0].stot, rows[0].req_tot, rows[0].rtime),
            (3, Some(3), Some(1))
        );
        assert_eq!(rows[1].status, Status::NoCheck);
        assert_eq!(rows[2].qcur, Some(0));
    }

    #[test]
    fn column_order_does_not_matter() {
        let text = "# svname,stot,pxname,scur,status,req_tot,\nweb1,10,web,2,UP 1/3,7,\nBACKEND,10,web,2,UP,7,\n";
        let rows = parse_show_stat(text).unwrap();
        assert_eq!(rows[0].name, "web1");
        assert_eq!(
            (rows[0].stot, rows[0].scur, rows[0].req_tot),
            (10, 2, Some(7))
        );
        assert_eq!(rows[0].status, Status::Up);
        assert_eq!(rows[0].qcur, None);
    }

    #[test]
    fn statuses() {
        let cases = [
            ("UP", Status::Up),
            ("UP 1/3", Status::Up),
            ("DOWN", Status::Down),
            ("DOWN 1/2", Status::Down),
            ("MAINT", Status::Maint),
            ("MAINT (via web/s1)", Status::Maint),
            ("DRAIN", Status::Drain),
            ("no check", Status::NoCheck),
            ("NOLB", Status::Other("NOLB".into())),
        ];
        for (text, status) in cases {
            assert_eq!(Status::parse(text), status, "{text}");
        }
    }

    #[test]
    fn malformed_output_is_an_error_naming_what_is_wrong() {
        let header = "# pxname,svname,status,scur,stot\n";
        let cases: Vec<(String, StatsError)> = vec![
            (String::new(), StatsError::Empty),
            ("\n\n".into(), StatsError::Empty),
            (
                "Unknown command.\n".into(),
                StatsError::NoHeader("Unknown command.".into()),
            ),
            (
                "# pxname,status,scur,stot\n".into(),
                StatsError::MissingColumn("svname"),
            ),
            (
                format!("{header}web,s1,UP,1\n"),
                StatsError::Truncated {
                    line: 2,
                    found: 4,
                    expected: 5,
                },
            ),
            (
                format!("{header}web,s1,UP,x,1\n"),
                StatsError::BadNumber {
                    line: 2,
                    column: "scur",
                    value: "x".into(),
                },
            ),
            (
                format!("{header}web,s1,UP,-1,1\n"),
                StatsError::BadNumber {
                    line: 2,
                    column: "scur",
                    value: "-1".into(),
                },
            ),
        ];
        for (text, error) in cases {
            assert_eq!(parse_show_stat(&text), Err(error), "{text:?}");
        }
        let huge = "x".repeat(MAX_STATS_BYTES + 1);
        assert_eq!(
            parse_show_stat(&huge),
            Err(StatsError::TooLarge(MAX_STATS_BYTES + 1))
        );
    }

    #[test]
    fn show_info_gives_pid_and_uptime() {
        let info =
            parse_show_info("Name: HAProxy\nPid: 532\nUptime: 0d 0h00m10s\nUptime_sec: 10\n")
                .unwrap();
        assert_eq!(
            info,
            Info {
                pid: 532,
                uptime_s: 10,
                version: None,
            }
        );
        assert_eq!(
            parse_show_info("Pid: 7\nUptime_sec: 1\nVersion: 3.2.0-e134140d2\n")
                .unwrap()
                .version,
            Some(HaproxyVersion { major: 3, minor: 2 })
        );
        assert_eq!(
            parse_show_info("Name: HAProxy\n"),
            Err(StatsError::MissingInfo("Pid"))
        );
    }
}
