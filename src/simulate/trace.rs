//! A traffic trace: `t_seconds,load` CSV, evenly stepped from 0, no gaps, loads finite and not
//! negative. Anything else is an error naming the file and the line.

use std::path::{Path, PathBuf};

/// A trace that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}`: line {line}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// Load per interval: `loads[i]` req/s from `i × step_s` to `(i + 1) × step_s`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Trace {
    pub step_s: u64,
    pub loads: Vec<f64>,
}

impl Trace {
    /// The trace's length in seconds.
    pub(crate) fn span_s(&self) -> u64 {
        self.step_s.saturating_mul(self.loads.len() as u64)
    }

    /// The highest load.
    pub(crate) fn peak(&self) -> f64 {
        self.loads.iter().copied().fold(0.0, f64::max)
    }

    /// Reads a trace file.
    pub(crate) fn load(path: &Path) -> Result<Trace, TraceError> {
        let bytes = crate::fs_atomic::read_regular(path, 256 * 1024 * 1024).map_err(|source| {
            TraceError::Read {
                path: path.to_owned(),
                source,
            }
        })?;
        Trace::parse(&String::from_utf8_lossy(&bytes), path)
    }

    /// Parses trace text; `path` names it in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Trace, TraceError> {
        let invalid = |line: usize, problem: String| TraceError::Invalid {
            path: path.to_owned(),
            line,
            problem,
        };
        // A spreadsheet's byte-order mark and spaces around the header's names are not a mistake.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, line)| (i + 1, line.trim()));
        match lines.next() {
            Some((_, header)) if header.split(',').map(str::trim).eq(["t_seconds", "load"]) => {}
            Some((line, header)) => {
                return Err(invalid(
                    line,
                    format!("the header is {header:?}; a trace starts with `t_seconds,load`"),
                ));
            }
            None => return Err(invalid(1, "the file is empty".to_owned())),
        }
        let mut times = Vec::new();
        let mut loads = Vec::new();
        for (line, text) in lines.filter(|(_, text)| !text.is_empty()) {
            let (time, load) = text
                .split_once(',')
                .ok_or_else(|| invalid(line, format!("{text:?} is not `t_seconds,load`")))?;
            let time: u64 = time.trim().parse().map_err(|_| {
                invalid(
                    line,
                    format!("t_seconds {time:?} is not a whole number of seconds"),
                )
            })?;
            let load: f64 = load
                .trim()
                .parse()
                .ok()
                .filter(|load: &f64| load.is_finite() && *load >= 0.0)
                .ok_or_else(|| {
                    invalid(line, format!("load {load:?} is not a number at least 0"))
                })?;
            let expected = match times.as_slice() {
                [] => 0,
                [only] => {
                    if time <= *only {
                        return Err(invalid(line, format!("t_seconds {time} does not increase")));
                    }
                    time
                }
                [first, second, ..] => times.len() as u64 * (second - first) + first,
            };
            if time != expected {
                return Err(invalid(
                    line,
                    format!(
                        "t_seconds {time} where {expected} was expected: a trace starts at 0 and is evenly stepped, with no gaps"
                    ),
                ));
            }
            times.push(time);
            loads.push(load);
        }
        if times.len() < 2 {
            return Err(invalid(
                times.len() + 1,
                "a trace needs at least two intervals".to_owned(),
            ));
        }
        Ok(Trace {
            step_s: times[1] - times[0],
            loads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Trace, String> {
        Trace::parse(text, Path::new("t.csv")).map_err(|error| error.to_string())
    }

    #[test]
    fn a_trace_is_evenly_stepped_from_zero() {
        assert_eq!(
            parse("t_seconds,load\n0,1.5\n60,2\n120,0\n").unwrap(),
            Trace {
                step_s: 60,
                loads: vec![1.5, 2.0, 0.0]
            }
        );
    }

    /// A spreadsheet's byte-order mark and spaces around the header's names are accepted.
    #[test]
    fn a_bom_and_spaces_in_the_header_are_accepted() {
        let plain = parse("t_seconds,load\n0,1\n60,2\n").unwrap();
        assert_eq!(parse("\u{feff}t_seconds,load\n0,1\n60,2\n").unwrap(), plain);
        assert_eq!(parse("t_seconds , load\n0,1\n60,2\n").unwrap(), plain);
    }

    #[test]
    fn bad_traces_name_the_line_and_the_problem() {
        for (text, expected) in [
            ("time,load\n0,1\n60,1\n", "line 1: the header"),
            ("", "the file is empty"),
            (
                "t_seconds,load\n0,1\n60,1\n180,1\n",
                "line 4: t_seconds 180 where 120 was expected",
            ),
            (
                "t_seconds,load\n60,1\n120,1\n",
                "line 2: t_seconds 60 where 0 was expected",
            ),
            ("t_seconds,load\n0,1\n60,-2\n", "line 3: load \"-2\""),
            ("t_seconds,load\n0,1\n60,lots\n", "line 3: load \"lots\""),
            ("t_seconds,load\n0,1\n60,NaN\n", "line 3: load \"NaN\""),
            ("t_seconds,load\n0,1\n0,1\n", "does not increase"),
            ("t_seconds,load\n0,1\n", "at least two intervals"),
            ("t_seconds,load\n0;1\n", "line 2: \"0;1\" is not"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(
                error.contains(expected) && error.contains("t.csv"),
                "{text:?}: {error}"
            );
        }
    }
}
