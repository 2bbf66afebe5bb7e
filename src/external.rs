//! External metrics: one number per pool and run from a Prometheus instant query or from the
//! operator's command. This is the edge: it asks and hands over what the source said
//! ([`Reading`]); whether that is a usable value (a number, finite, not negative, recent) is
//! judged by the pure core ([`crate::decide::scaling`]).
//!
//! A source that fails gives [`Reading::Missing`] with the reason: the pool holds that run
//! (invariant 7) and every other pool goes on.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ExternalMetric, ExternalSource};
use crate::error_chain::error_chain;
use crate::model::Reading;

/// The most an answer may hold.
const MAX_ANSWER: u64 = 1024 * 1024;

/// Asks `metric`'s source for this run's value.
pub(crate) async fn read(metric: &ExternalMetric) -> Reading {
    match &metric.source {
        ExternalSource::Prometheus {
            url,
            query,
            authorization,
        } => {
            let answer = query_prometheus(
                url,
                query,
                authorization.as_ref().map(super::config::Secret::expose),
                metric.timeout,
            )
            .await;
            match answer {
                Ok((status, body)) => parse_prometheus(status, &body, query, url),
                Err(reason) => Reading::Missing(reason),
            }
        }
        // The number is read from stdout alone: a warning on stderr (a deprecation, a
        // client's notice) must not spoil it. stderr is logged at -v.
        ExternalSource::Command(argv) => {
            match crate::command::run_with_input(argv, None, metric.timeout).await {
                Ok((stdout, stderr)) => {
                    if !stderr.trim().is_empty() {
                        tracing::info!(
                            "`{}` wrote on stderr: {}",
                            crate::command::display(argv),
                            stderr.trim()
                        );
                    }
                    parse_command(&String::from_utf8_lossy(&stdout))
                }
                Err(error) => Reading::Missing(error_chain(&error)),
            }
        }
    }
}

/// `GET {url}/api/v1/query?query=...`: the status code and the body. Errors never include the
/// credential.
async fn query_prometheus(
    url: &str,
    query: &str,
    authorization: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let client = crate::http::client().map_err(|error| format!("no TLS roots: {error}"))?;
    let encoded: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .finish();
    let mut request = http::Request::get(format!("{url}/api/v1/query?{encoded}"))
        .header(http::header::USER_AGENT, "haproxy-autoscaler")
        .header(http::header::ACCEPT, "application/json");
    if let Some(value) = authorization {
        request = request.header(http::header::AUTHORIZATION, value);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|_| format!("`{url}` is not a usable URL"))?;
    let (status, body) = crate::exchange::request(&client, request, MAX_ANSWER, timeout)
        .await
        .map_err(|error| match error {
            crate::exchange::ExchangeError::Request(error) => {
                // hyper's own message is generic; the cause (refused, DNS, TLS) is in its sources.
                let mut cause = String::new();
                let mut source = std::error::Error::source(&error);
                while let Some(inner) = source {
                    cause = inner.to_string();
                    source = inner.source();
                }
                let cause = if cause.is_empty() {
                    String::new()
                } else {
                    format!(": {cause}")
                };
                if error.is_connect() {
                    format!("cannot connect to Prometheus at {url}{cause}")
                } else {
                    format!("Prometheus at {url} did not answer{cause}")
                }
            }
            crate::exchange::ExchangeError::Timeout(after) => format!(
                "Prometheus at {url} did not answer within {}s",
                after.as_secs()
            ),
            crate::exchange::ExchangeError::Body(error) => format!("Prometheus at {url}: {error}"),
        })?;
    Ok((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
}

/// Prometheus' answer to an instant query.
#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    data: Option<AnswerData>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum AnswerData {
    Vector(Vec<Series>),
    Scalar(Point),
    String(Point),
    Matrix(Vec<serde::de::IgnoredAny>),
}

#[derive(Debug, Deserialize)]
struct Series {
    metric: serde_json::Map<String, serde_json::Value>,
    value: Point,
}

/// `[unix seconds, "value"]`.
#[derive(Debug, Deserialize)]
struct Point(f64, String);

/// The one number of an instant query's answer. Several series are refused by name rather
/// than one picked: the query must say how to combine them.
pub(crate) fn parse_prometheus(status: u16, body: &str, query: &str, url: &str) -> Reading {
    let answer: Answer = match serde_json::from_str(body) {
        Ok(answer) => answer,
        Err(_) if status != 200 => {
            let hint = match status {
                401 | 403 => ": check basic_auth_file or bearer_token_file",
                404 => ": prometheus_url is the server's base URL, without /api/v1/query",
                _ => "",
            };
            return Reading::Missing(format!(
                "Prometheus answered HTTP {status} to GET {url}/api/v1/query{hint}"
            ));
        }
        Err(error) => {
            return Reading::Missing(format!(
                "the answer of {url}/api/v1/query is not Prometheus' query API JSON ({error}): is prometheus_url a Prometheus server's base URL?"
            ));
        }
    };
    if answer.status != "success" {
        return Reading::Missing(format!(
            "Prometheus refused query `{query}`: {}",
            answer.error.as_deref().unwrap_or("no reason given")
        ));
    }
    match answer.data {
        Some(AnswerData::Scalar(Point(at, text)) | AnswerData::String(Point(at, text))) => {
            Reading::Value { text, at: Some(at) }
        }
        Some(AnswerData::Vector(series)) => match &series[..] {
            [] => Reading::Missing(format!("query `{query}` returned no series")),
            [one] => Reading::Value {
                text: one.value.1.clone(),
                at: Some(one.value.0),
            },
            several => Reading::Missing(format!(
                "query `{query}` returned {} series ({}): it must return one number; combine them in the query, with sum() or avg()",
                several.len(),
                several
                    .iter()
                    .take(3)
                    .map(|series| labels(&series.metric))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
        Some(AnswerData::Matrix(series)) => Reading::Missing(format!(
            "query `{query}` returned a range vector ({} series): it must return one number (an instant query, no `[5m]` at the end)",
            series.len()
        )),
        None => Reading::Missing(format!("Prometheus' answer to query `{query}` has no data")),
    }
}

/// `{job="web", instance="a"}`.
fn labels(metric: &serde_json::Map<String, serde_json::Value>) -> String {
    let pairs: Vec<String> = metric
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A command's answer: `{"value": N}` (with an optional `"at"`, Unix seconds) or one number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandAnswer {
    value: serde_json::Value,
    at: Option<f64>,
}

/// The number a metric command printed.
pub(crate) fn parse_command(stdout: &str) -> Reading {
    let text = stdout.trim();
    if text.is_empty() {
        return Reading::Missing("the metric command printed nothing".to_owned());
    }
    if text.starts_with('{') {
        return match serde_json::from_str::<CommandAnswer>(text) {
            Ok(CommandAnswer { value, at }) => Reading::Value {
                text: match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                },
                at,
            },
            Err(error) => Reading::Missing(format!(
                "the metric command printed JSON that is not {{\"value\": N}} (with an optional \"at\"): {error}"
            )),
        };
    }
    match text.lines().count() {
        1 => Reading::Value {
            text: text.to_owned(),
            at: None,
        },
        lines => Reading::Missing(format!(
            "the metric command printed {lines} lines: it must print one number"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, at: Option<f64>) -> Reading {
        Reading::Value {
            text: text.to_owned(),
            at,
        }
    }

    fn missing_with(reading: &Reading, words: &[&str]) -> bool {
        matches!(reading, Reading::Missing(reason) if words.iter().all(|word| reason.contains(word)))
    }

    #[test]
    fn an_instant_query_gives_its_one_number_and_its_time() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.5,"0.42"]}]}}"#;
        assert_eq!(
            parse_prometheus(200, vector, "q", "http://p"),
            value("0.42", Some(1_700_000_000.5))
        );
        let scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"NaN"]}}"#;
        assert_eq!(
            parse_prometheus(200, scalar, "q", "http://p"),
            value("NaN", Some(1_700_000_000.0))
        );
        let string =
            r#"{"status":"success","data":{"resultType":"string","result":[1700000000,"busy"]}}"#;
        assert_eq!(
            parse_prometheus(200, string, "q", "http://p"),
            value("busy", Some(1_700_000_000.0))
        );
    }

    #[test]
    fn an_answer_without_one_number_is_missing_and_says_why() {
        let cases = [
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                &["query `up`", "no series"][..],
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1,"1"]},{"metric":{"job":"b"},"value":[1,"2"]}]}}"#,
                &["query `up`", "2 series", "job=\"a\"", "sum() or avg()"][..],
            ),
            (
                200,
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                &["range vector"][..],
            ),
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
                &["refused query `up`", "parse error"][..],
            ),
            (
                502,
                "<html>bad gateway</html>",
                &["HTTP 502 to GET http://p/api/v1/query"][..],
            ),
            (
                401,
                "Unauthorized",
                &["HTTP 401", "basic_auth_file or bearer_token_file"][..],
            ),
            (
                404,
                "404 page not found",
                &["HTTP 404", "without /api/v1/query"][..],
            ),
            (
                200,
                "<html>",
                &["not Prometheus' query API JSON", "base URL"][..],
            ),
        ];
        for (status, body, words) in cases {
            let reading = parse_prometheus(status, body, "up", "http://p");
            assert!(missing_with(&reading, words), "{body}: {reading:?}");
        }
    }

    #[test]
    fn a_command_prints_one_number_or_a_json_value() {
        assert_eq!(parse_command("17\n"), value("17", None));
        assert_eq!(parse_command(" 0.5 "), value("0.5", None));
        assert_eq!(parse_command("NaN"), value("NaN", None));
        assert_eq!(parse_command("many"), value("many", None));
        assert_eq!(parse_command(r#"{"value": 3}"#), value("3", None));
        assert_eq!(parse_command(r#"{"value": "3"}"#), value("3", None));
        assert_eq!(
            parse_command(r#"{"value": 3.5, "at": 1700000000}"#),
            value("3.5", Some(1_700_000_000.0))
        );
        assert_eq!(parse_command(r#"{"value": null}"#), value("null", None));
        let cases = [
            ("", &["printed nothing"][..]),
            ("1\n2\n", &["2 lines"][..]),
            (r#"{"val": 3}"#, &["not {\"value\": N}"][..]),
        ];
        for (stdout, words) in cases {
            let reading = parse_command(stdout);
            assert!(missing_with(&reading, words), "{stdout}: {reading:?}");
        }
    }
}
