//! `status`: every managed backend's servers as HAProxy sees them (state, sessions, rates, last
//! check), joined with the state file (the pool each server belongs to, booting or draining
//! since, launches pending, the last scale and the cooldown left). Servers HAProxy has that no
//! run rendered, and servers the last run rendered that HAProxy lacks, are shown as such. Reads
//! only: no lock, no cloud. A stats socket that cannot be read exits 1 after the state's view.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cli::{Cli, Format};
use crate::config::Config;
use crate::error::{EXIT_FAILED, EXIT_OK, Error};
use crate::error_chain::error_chain;
use crate::haproxy::admin_socket;
use crate::model::{PoolState, Row, State, Status};

#[derive(Debug, Serialize)]
struct View {
    mode: &'static str,
    /// Why HAProxy's view is missing, when it is.
    stats_error: Option<String>,
    /// Why the state's view is missing, when it is.
    state_error: Option<String>,
    pools: Vec<PoolView>,
    /// With a shared state: what each node of the fleet last did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<NodeView>,
}

/// A node's last scaling decision.
#[derive(Debug, Serialize)]
struct DecisionView {
    pool: String,
    from: u32,
    to: u32,
    ago_s: i64,
}

/// One node of a fleet sharing a state, as the shared state tells it.
#[derive(Debug, Serialize)]
struct NodeView {
    node: String,
    /// The last scaling decision it took.
    last_decision: Option<DecisionView>,
    /// Seconds since it last found that another node had committed first.
    last_conflict_s: Option<i64>,
}

#[derive(Debug, Serialize)]
struct PoolView {
    pool: String,
    backend: String,
    servers: Vec<ServerView>,
    /// Launches asked for and not yet seen in service: (instances, seconds since).
    launches_pending: Vec<(u32, i64)>,
    /// The last scale: from, to, seconds ago.
    last_scale: Option<(u32, u32, i64)>,
    cooldown_left_s: Option<i64>,
    /// The mean absolute percentage error of the pool's forecasts over the last day, with
    /// `forecast` on and forecasts scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    forecast_error_pct: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ServerView {
    name: String,
    /// HAProxy's state (`UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`), `None` when HAProxy lacks
    /// the server or its stats could not be read.
    haproxy: Option<String>,
    sessions: Option<u64>,
    session_rate: Option<u64>,
    request_rate: Option<u64>,
    last_check: Option<String>,
    /// What the state file says: in service, booting, draining (since), or not known to it.
    role: String,
    draining_for_s: Option<i64>,
}

pub(crate) async fn status(cli: &Cli) -> Result<u8, Error> {
    let config = Config::from_cli(cli)?;
    let now = crate::reconcile::unix_now() as i64;
    let store = crate::reconcile::open_store(&config, None).await?;
    let (state, no_run_yet, state_error) = match store.peek().await {
        Ok((state, fresh)) => (state, fresh, None),
        Err(error) => (State::default(), false, Some(error_chain(&error))),
    };
    let (rows, stats_error) = match &config.haproxy.stats {
        None => (
            None,
            Some("no `stats_socket` or `stats_url` in `[haproxy]`".to_owned()),
        ),
        Some(source) => match admin_socket::read_stats(source, crate::observe::STATS_TIMEOUT).await
        {
            Ok((_, rows)) => (Some(rows), None),
            Err(error) => (None, Some(error_chain(&error))),
        },
    };
    let view = View {
        mode: "status",
        pools: config
            .pools
            .iter()
            .map(|pool| pool_view(pool, state.pools.get(&pool.name), rows.as_deref(), now))
            .collect(),
        // Only from a state that was read: an unread one would say "no decision" for every node.
        nodes: if config.shared_state.is_some() && state_error.is_none() {
            node_views(&state, &config.node, now)
        } else {
            Vec::new()
        },
        stats_error,
        state_error,
    };
    if !cli.quiet {
        print(cli, &view, no_run_yet);
    }
    if let Some(error) = &view.state_error {
        crate::report::say(format_args!("error: cannot read the state file: {error}"));
    }
    if let Some(error) = &view.stats_error {
        let shown = if view.state_error.is_none() {
            "; shown: the state file's view only"
        } else {
            ""
        };
        crate::report::say(format_args!(
            "error: cannot read HAProxy's stats: {error}{shown}"
        ));
    }
    Ok(
        if view.stats_error.is_some() || view.state_error.is_some() {
            EXIT_FAILED
        } else {
            EXIT_OK
        },
    )
}

fn status_word(status: &Status) -> String {
    match status {
        Status::Up => "UP".to_owned(),
        Status::NoCheck => "no check".to_owned(),
        Status::Down => "DOWN".to_owned(),
        Status::Drain => "DRAIN".to_owned(),
        Status::Maint => "MAINT".to_owned(),
        Status::Other(text) => text.clone(),
    }
}

/// Every node the shared state knows of (this one first), with its last decision and conflict.
fn node_views(state: &State, this: &str, now: i64) -> Vec<NodeView> {
    let mut names: BTreeSet<&str> = state.nodes.keys().map(String::as_str).collect();
    for pool in state.pools.values() {
        names.extend(pool.scale_history.iter().filter_map(|e| e.node.as_deref()));
        names.extend(pool.samples.iter().map(|sample| sample.node.as_str()));
    }
    names.insert(this);
    let mut views: Vec<NodeView> = names
        .into_iter()
        .map(|node| NodeView {
            node: node.to_owned(),
            last_decision: state
                .pools
                .iter()
                .flat_map(|(pool, state)| state.scale_history.iter().map(move |e| (pool, e)))
                .filter(|(_, event)| event.node.as_deref() == Some(node))
                .max_by_key(|(_, event)| event.at)
                .map(|(pool, event)| DecisionView {
                    pool: pool.clone(),
                    from: event.from,
                    to: event.to,
                    ago_s: now - event.at,
                }),
            last_conflict_s: state
                .nodes
                .get(node)
                .and_then(|record| record.last_conflict_at)
                .map(|at| now - at),
        })
        .collect();
    views.sort_by_key(|view| view.node != this);
    views
}

fn pool_view(
    pool: &crate::config::PoolConfig,
    state: Option<&PoolState>,
    rows: Option<&[Row]>,
    now: i64,
) -> PoolView {
    let rendered: BTreeSet<&str> = state
        .map(|state| state.servers.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let backend_rows: Vec<&Row> = rows
        .unwrap_or_default()
        .iter()
        .filter(|row| row.proxy == pool.backend && !row.is_backend())
        .collect();
    let role = |name: &str| -> (String, Option<i64>) {
        let Some(state) = state else {
            return ("unknown (no state)".to_owned(), None);
        };
        if let Some(drain) = state.draining.iter().find(|drain| drain.id == name) {
            return ("draining".to_owned(), Some(now - drain.since));
        }
        if !rendered.contains(name) {
            return ("not rendered by the last run".to_owned(), None);
        }
        let marked = |marks: &[String]| marks.iter().any(|id| id == name);
        let role = if marked(&state.maintenance) {
            "maintenance"
        } else if pool.scaling.is_none() || marked(&state.in_service) {
            "in service"
        } else {
            "booting"
        };
        if marked(&state.protected) {
            (format!("{role}, protected"), None)
        } else {
            (role.to_owned(), None)
        }
    };
    let mut servers: Vec<ServerView> = backend_rows
        .iter()
        .map(|row| {
            let (role, draining_for_s) = role(&row.name);
            ServerView {
                name: row.name.clone(),
                haproxy: Some(status_word(&row.status)),
                sessions: Some(row.scur),
                session_rate: row.rate,
                request_rate: row.req_rate,
                last_check: row.check_status.clone(),
                role,
                draining_for_s,
            }
        })
        .collect();
    let in_haproxy: BTreeSet<&str> = backend_rows.iter().map(|row| row.name.as_str()).collect();
    for name in rendered.iter().filter(|name| !in_haproxy.contains(*name)) {
        let (role, draining_for_s) = role(name);
        servers.push(ServerView {
            name: (*name).to_owned(),
            haproxy: None,
            sessions: None,
            session_rate: None,
            request_rate: None,
            last_check: None,
            role: if rows.is_some() {
                format!("{role}; missing from HAProxy")
            } else {
                role
            },
            draining_for_s,
        });
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    let last = state.and_then(|state| state.scale_history.last());
    PoolView {
        pool: pool.name.clone(),
        backend: pool.backend.clone(),
        servers,
        launches_pending: state
            .map(|state| {
                state
                    .launches
                    .iter()
                    .map(|intent| (intent.count, now - intent.requested_at))
                    .collect()
            })
            .unwrap_or_default(),
        last_scale: last.map(|event| (event.from, event.to, now - event.at)),
        cooldown_left_s: match (&pool.scaling, last) {
            (Some(scaling), Some(event)) => {
                Some((event.at + scaling.cooldown_s as i64 - now).max(0))
            }
            _ => None,
        },
        forecast_error_pct: state
            .and_then(|state| crate::decide::forecast::error_pct(&state.load_history, now)),
    }
}

/// The least width of each column: what its cells commonly reach (`no check`, a check in
/// progress such as `* L4TOUT`), so that the columns hold from one `status` to the next (under
/// `watch`) while a check runs or a count grows.
const LEAST_WIDTHS: [usize; 7] = [0, 8, 8, 6, 6, 9, 0];

/// Each column's width: its widest cell, its header, or its least width.
fn column_widths(header: &[&str; 7], rows: &[[String; 7]]) -> [usize; 7] {
    std::array::from_fn(|i| {
        rows.iter()
            .map(|row| row[i].chars().count())
            .chain([header[i].len(), LEAST_WIDTHS[i]])
            .max()
            .unwrap_or(0)
    })
}

fn print(cli: &Cli, view: &View, no_run_yet: bool) {
    if cli.format == Format::Json {
        crate::report::out_json(view);
        return;
    }
    // NO_COLOR counts when it is set and not empty (no-color.org); a dumb terminal gets none.
    let colour = crate::report::stdout_is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb");
    let paint = |word: &str| -> String {
        if !colour {
            return word.to_owned();
        }
        let code = match word {
            "UP" => "32",
            "DOWN" => "31",
            "MAINT" | "DRAIN" => "33",
            _ => return word.to_owned(),
        };
        format!("\u{1b}[{code}m{word}\u{1b}[0m")
    };
    let dash = |value: Option<u64>| value.map_or("-".to_owned(), |v| v.to_string());
    for pool in &view.pools {
        let mut facts = vec![format!("backend {}", pool.backend)];
        for (count, ago) in &pool.launches_pending {
            facts.push(format!("launch of {count} pending for {ago}s"));
        }
        if let Some((from, to, ago)) = pool.last_scale {
            facts.push(format!("last scale {from} → {to}, {ago}s ago"));
        }
        if let Some(left) = pool.cooldown_left_s.filter(|left| *left > 0) {
            facts.push(format!("cooldown {left}s left"));
        }
        if let Some(error) = pool.forecast_error_pct {
            facts.push(format!("forecast error {error:.1} % over the last day"));
        }
        crate::report::out(format_args!("pool {}: {}", pool.pool, facts.join("; ")));
        let header = [
            "SERVER", "HAPROXY", "SESSIONS", "SESS/S", "REQ/S", "CHECK", "ROLE",
        ];
        let rows: Vec<[String; 7]> = pool
            .servers
            .iter()
            .map(|server| {
                // Made printable here, as the line goes out as is for its colours.
                [
                    server.name.clone(),
                    server.haproxy.clone().unwrap_or_else(|| "-".to_owned()),
                    dash(server.sessions),
                    dash(server.session_rate),
                    dash(server.request_rate),
                    server.last_check.clone().unwrap_or_else(|| "-".to_owned()),
                    match server.draining_for_s {
                        Some(for_s) => format!("{} for {for_s}s", server.role),
                        None => server.role.clone(),
                    },
                ]
                .map(|cell| crate::model::text::printable(&cell))
            })
            .collect();
        let widths = column_widths(&header, &rows);
        let line = |cells: [&str; 7], status_painted: String| {
            let mut text = format!("  {:<w0$}  ", cells[0], w0 = widths[0]);
            // Pad by the plain width: colour codes take no column.
            text.push_str(&status_painted);
            text.push_str(&" ".repeat(widths[1] - cells[1].chars().count()));
            for i in 2..6 {
                text.push_str(&format!("  {:<w$}", cells[i], w = widths[i]));
            }
            text.push_str(&format!("  {}", cells[6]));
            crate::report::out_styled(text.trim_end());
        };
        line(header, header[1].to_owned());
        for row in &rows {
            let cells = [
                row[0].as_str(),
                row[1].as_str(),
                row[2].as_str(),
                row[3].as_str(),
                row[4].as_str(),
                row[5].as_str(),
                row[6].as_str(),
            ];
            line(cells, paint(&row[1]));
        }
    }
    for node in &view.nodes {
        let decision = match &node.last_decision {
            Some(decision) => format!(
                "last decision: pool {} {} → {}, {}s ago",
                decision.pool, decision.from, decision.to, decision.ago_s
            ),
            None => "no decision in the scale history".to_owned(),
        };
        let conflict = match node.last_conflict_s {
            Some(ago) => format!("last conflict {ago}s ago"),
            None => "no conflict recorded".to_owned(),
        };
        crate::report::out(format_args!("node {}: {decision}; {conflict}", node.node));
    }
    if no_run_yet {
        crate::report::out(format_args!(
            "(no state file yet: no run has saved one, so ROLE is unknown)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 32: a check in progress (`* L4OK`), `no check`, and counts up to five digits do not
    /// move the columns.
    #[test]
    fn the_columns_hold_while_a_check_runs() {
        let header = [
            "SERVER", "HAPROXY", "SESSIONS", "SESS/S", "REQ/S", "CHECK", "ROLE",
        ];
        let row = |status: &str, count: &str, check: &str| {
            ["i-1", status, count, count, count, check, "in service"].map(str::to_owned)
        };
        let settled = column_widths(&header, &[row("UP", "3", "L7OK")]);
        for busy in [
            row("UP", "3", "* L7OK"),
            row("no check", "3", "-"),
            row("MAINT", "12345", "* L4TOUT"),
            row("DOWN", "0", "* SOCKERR"),
        ] {
            assert_eq!(
                column_widths(&header, std::slice::from_ref(&busy)),
                settled,
                "{busy:?}"
            );
        }
    }
}
