//! Whether a haproxy.cfg change can be made through HAProxy's runtime API, without a reload, and
//! the commands that make it.
//!
//! The installed and the rendered file are split into their structure (every line but the
//! `server` lines of the managed backends) and each managed backend's servers by name. A change
//! of structure needs a reload. So does a server line whose options changed other than `weight`
//! and `disabled`, an option `add server` refuses on HAProxy 2.6, an address that is not an IPv4
//! address and port, or a server added to a backend whose balance algorithm is not dynamic.
//! Anything else is runtime commands, in an order that never empties a backend: additions first,
//! then changes, then removals. The facts behind these rules are in
//! `docs/haproxy-2.6-runtime-api.md`.
//!
//! After the commands, the shell reads `show servers state` back and [`verify`] compares it with
//! what the rendered file says: any difference (a refused command, HAProxy restarted meanwhile)
//! falls back to a reload in the same run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decide::installed_servers::config_lines;
use crate::model::{HaproxyVersion, ServerState};

/// One runtime API command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RuntimeCommand {
    pub backend: String,
    pub server: String,
    /// The command as sent on the admin socket.
    pub command: String,
}

/// How a server must look to HAProxy once the commands ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub address: String,
    pub port: u16,
    pub weight: u32,
    pub maintenance: bool,
    pub checked: bool,
}

/// What the read-back compares, per backend the commands change: every server name the
/// rendered file gives it, and how each server the commands touched must look.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ReadBack {
    pub backends: BTreeMap<String, BackendReadBack>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct BackendReadBack {
    pub names: BTreeSet<String>,
    pub changed: BTreeMap<String, Expected>,
}

/// A change the runtime API makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RuntimeChange {
    pub commands: Vec<RuntimeCommand>,
    #[serde(skip)]
    pub read_back: ReadBack,
}

/// Options `add server` refuses (`'cookie' option is not accepted for dynamic server`), measured
/// on each supported version: 2.6 refuses all three; 3.0 and 3.2 accept `cookie`. A version that
/// is not known gets the older, longer list.
fn refused_by_add_server(version: Option<HaproxyVersion>) -> &'static [&'static str] {
    const COOKIE_ACCEPTED: HaproxyVersion = HaproxyVersion { major: 3, minor: 0 };
    match version {
        Some(version) if version >= COOKIE_ACCEPTED => &["init-addr", "resolvers"],
        _ => &["cookie", "init-addr", "resolvers"],
    }
}

/// Balance algorithms `add server` accepts without `hash-type consistent` (`Backend must use a
/// dynamic load balancing to support dynamic servers.` otherwise).
const DYNAMIC_BALANCE: &[&str] = &["roundrobin", "leastconn", "first", "random"];

/// The runtime commands that turn `installed` into `rendered` on the running HAProxy `version`
/// (`None`: not known), or why that needs a reload.
pub(crate) fn classify(
    installed: &str,
    rendered: &str,
    managed: &[&str],
    version: Option<HaproxyVersion>,
) -> Result<RuntimeChange, String> {
    let before = parse(installed, managed)?;
    let after = parse(rendered, managed)?;
    if let Some(difference) = first_difference(&before.structure, &after.structure) {
        return Err(difference);
    }
    let mut change = RuntimeChange {
        commands: Vec::new(),
        read_back: ReadBack::default(),
    };
    let mut removals = Vec::new();
    for (name, backend) in &after.backends {
        let old = &before.backends[name];
        let mut changes = Vec::new();
        let mut touched = BTreeMap::new();
        for (server, line) in &backend.servers {
            let old_line = old.servers.get(server);
            if old_line == Some(line) {
                continue;
            }
            let target = line.effective(backend)?;
            let commands = match old_line {
                None => added(name, server, line, &target, backend, version)?,
                Some(old_line) => changed(name, server, old_line, line, old, &target)?,
            };
            if !commands.is_empty() {
                touched.insert((*server).to_owned(), target);
                changes.push(commands);
            }
        }
        let mut removed = Vec::new();
        for server in old
            .servers
            .keys()
            .filter(|s| !backend.servers.contains_key(*s))
        {
            removed.push(command(
                name,
                server,
                format!("set server {name}/{server} state maint"),
            ));
            removed.push(command(name, server, format!("del server {name}/{server}")));
        }
        if changes.is_empty() && removed.is_empty() {
            continue;
        }
        // Additions before changes: a backend is never left without its new servers.
        changes
            .sort_by_key(|commands: &Vec<RuntimeCommand>| !commands[0].command.starts_with("add "));
        change.commands.extend(changes.into_iter().flatten());
        removals.extend(removed);
        change.read_back.backends.insert(
            (*name).to_owned(),
            BackendReadBack {
                names: backend.servers.keys().map(|s| (*s).to_owned()).collect(),
                changed: touched,
            },
        );
    }
    change.commands.extend(removals);
    Ok(change)
}

/// Compares `show servers state` with what the rendered file says; `Err` names the first
/// difference.
pub(crate) fn verify(read_back: &ReadBack, running: &[ServerState]) -> Result<(), String> {
    for (backend, expected) in &read_back.backends {
        let servers: BTreeMap<&str, &ServerState> = running
            .iter()
            .filter(|state| &state.backend == backend)
            .map(|state| (state.name.as_str(), state))
            .collect();
        if let Some(missing) = expected
            .names
            .iter()
            .find(|n| !servers.contains_key(n.as_str()))
        {
            return Err(format!("HAProxy has no server {backend}/{missing}"));
        }
        if let Some(extra) = servers.keys().find(|n| !expected.names.contains(**n)) {
            return Err(format!(
                "HAProxy still has server {backend}/{extra}, which haproxy.cfg no longer names"
            ));
        }
        for (name, want) in &expected.changed {
            let got = servers[name.as_str()];
            let found = Expected {
                address: got.address.clone(),
                port: got.port,
                weight: got.weight,
                maintenance: got.in_maintenance(),
                checked: got.checked(),
            };
            if &found != want {
                return Err(format!(
                    "server {backend}/{name} runs as {} but haproxy.cfg says {}",
                    describe(&found),
                    describe(want)
                ));
            }
        }
    }
    Ok(())
}

fn describe(server: &Expected) -> String {
    format!(
        "{}:{} weight {}{}{}",
        server.address,
        server.port,
        server.weight,
        if server.maintenance {
            " in maintenance"
        } else {
            ""
        },
        if server.checked {
            " checked"
        } else {
            " unchecked"
        }
    )
}

fn command(backend: &str, server: &str, command: String) -> RuntimeCommand {
    RuntimeCommand {
        backend: backend.to_owned(),
        server: server.to_owned(),
        command,
    }
}

/// `add server`, then its checks, then into traffic unless the file has it `disabled` (a
/// booting server: HAProxy counts a new server UP before its first check).
fn added(
    backend_name: &str,
    server: &str,
    line: &ServerLine<'_>,
    target: &Expected,
    backend: &Backend<'_>,
    version: Option<HaproxyVersion>,
) -> Result<Vec<RuntimeCommand>, String> {
    if !backend.balance.dynamic() {
        return Err(format!(
            "backend `{backend_name}` balances with an algorithm `add server` refuses (use roundrobin, leastconn, first, random, or hash-type consistent)"
        ));
    }
    let options: Vec<&str> = backend
        .default_server
        .iter()
        .chain(&line.options)
        .copied()
        .filter(|option| *option != "disabled" && *option != "enabled")
        .collect();
    let refused = refused_by_add_server(version);
    if let Some(refused) = options.iter().find(|option| refused.contains(option)) {
        let running = match version {
            Some(version) => format!("HAProxy {version}"),
            None => "this HAProxy (its version could not be read)".to_owned(),
        };
        return Err(format!(
            "server {backend_name}/{server} has `{refused}`, which `add server` does not accept on {running}"
        ));
    }
    let mut add = format!("add server {backend_name}/{server} {}", line.address);
    for option in &options {
        add.push(' ');
        add.push_str(option);
    }
    let mut commands = vec![command(backend_name, server, add)];
    let at = format!("{backend_name}/{server}");
    if options.contains(&"check") {
        commands.push(command(backend_name, server, format!("enable health {at}")));
    }
    if options.contains(&"agent-check") {
        commands.push(command(backend_name, server, format!("enable agent {at}")));
    }
    if !target.maintenance {
        commands.push(command(
            backend_name,
            server,
            format!("set server {at} state ready"),
        ));
    }
    Ok(commands)
}

/// The `set server` commands that change a server's address, weight or maintenance.
fn changed(
    backend_name: &str,
    server: &str,
    old: &ServerLine<'_>,
    new: &ServerLine<'_>,
    old_backend: &Backend<'_>,
    target: &Expected,
) -> Result<Vec<RuntimeCommand>, String> {
    if old.other_options() != new.other_options() {
        return Err(format!(
            "server {backend_name}/{server}'s options changed (`{}` → `{}`): only its address, weight and `disabled` change at runtime",
            old.options.join(" "),
            new.options.join(" ")
        ));
    }
    let was = old.effective(old_backend)?;
    let at = format!("{backend_name}/{server}");
    let mut commands = Vec::new();
    if (was.address.as_str(), was.port) != (target.address.as_str(), target.port) {
        commands.push(command(
            backend_name,
            server,
            format!(
                "set server {at} addr {} port {}",
                target.address, target.port
            ),
        ));
    }
    if was.weight != target.weight {
        commands.push(command(
            backend_name,
            server,
            format!("set server {at} weight {}", target.weight),
        ));
    }
    if was.maintenance != target.maintenance {
        let state = if target.maintenance { "maint" } else { "ready" };
        commands.push(command(
            backend_name,
            server,
            format!("set server {at} state {state}"),
        ));
    }
    Ok(commands)
}

/// The `server-state-file` of a config's `global` section (joined to `server-state-base` when
/// relative), where HAProxy reads the server state a reload keeps.
pub(crate) fn server_state_file(config: &str) -> Option<PathBuf> {
    let (mut file, mut base) = (None, None);
    for line in config_lines(config).filter(|line| line.section == "global" && !line.opens) {
        match line.keyword {
            "server-state-file" => file = line.words().nth(1),
            "server-state-base" => base = line.words().nth(1),
            _ => {}
        }
    }
    let file = Path::new(file?);
    if file.is_absolute() {
        Some(file.to_owned())
    } else {
        Some(Path::new(base?).join(file))
    }
}

/// Which servers of `show servers state` a reload from `installed` to `rendered` lets take their
/// runtime state back from the server-state-file (drains, maintenance, weights): only those the
/// change leaves alone, named the same in both files, at the address and port they run at. A
/// server the change adds, moves, or takes into or out of `disabled` starts as the rendered file
/// says: measured on HAProxy 2.6, a reload takes a moved server's old port back from the state,
/// and keeps a server in maintenance that the new file no longer has `disabled`.
pub(crate) fn keeps_state(states: &[ServerState], installed: &str, rendered: &str) -> Vec<bool> {
    let before = server_lines(installed);
    let after = server_lines(rendered);
    states
        .iter()
        .map(|state| {
            let key = (state.backend.as_str(), state.name.as_str());
            let Some(line) = after.get(&key) else {
                return false;
            };
            let runs_there = host_and_port(line.0).is_some_and(|(host, port)| {
                port == state.port
                    && (host.parse::<core::net::Ipv4Addr>().is_err() || host == state.address)
            });
            runs_there && before.get(&key) == Some(line)
        })
        .collect()
}

/// Every server line of any backend: its address and whether it is `disabled`, by backend and
/// server name.
fn server_lines(config: &str) -> HashMap<(&str, &str), (&str, bool)> {
    config_lines(config)
        .filter_map(super::installed_servers::ConfigLine::server)
        .map(|(backend, name, address, mut options)| {
            let disabled = options.any(|option| option == "disabled");
            ((backend, name), (address, disabled))
        })
        .collect()
}

/// A config split for comparison.
#[derive(Debug, Default)]
struct Parsed<'a> {
    /// Every meaningful line but the managed backends' server lines, trimmed.
    structure: Vec<&'a str>,
    backends: BTreeMap<&'a str, Backend<'a>>,
}

#[derive(Debug, Default)]
struct Backend<'a> {
    /// The `default-server` options that apply (the last `defaults` section's, then its own):
    /// `add server` does not inherit them.
    default_server: Vec<&'a str>,
    servers: BTreeMap<&'a str, ServerLine<'a>>,
    /// Its `balance` and `hash-type` (the last `defaults` section's, then its own).
    balance: Balance,
}

#[derive(Debug, PartialEq, Eq)]
struct ServerLine<'a> {
    address: &'a str,
    options: Vec<&'a str>,
}

impl ServerLine<'_> {
    /// Its options but `disabled`, `enabled` and `weight N`: those change at runtime.
    fn other_options(&self) -> Vec<&str> {
        let mut others = Vec::new();
        let mut words = self.options.iter();
        while let Some(word) = words.next() {
            match *word {
                "disabled" | "enabled" => {}
                "weight" => {
                    words.next();
                }
                other => others.push(other),
            }
        }
        others
    }

    /// How HAProxy runs it: its address, and weight and maintenance from `default-server` and
    /// its own options, the last one winning.
    fn effective(&self, backend: &Backend<'_>) -> Result<Expected, String> {
        let (address, port) = ipv4_and_port(self.address).ok_or_else(|| {
            format!(
                "address `{}` is not an IPv4 address and port, which the runtime API is used for",
                self.address
            )
        })?;
        let mut expected = Expected {
            address: address.to_owned(),
            port,
            weight: 1,
            maintenance: false,
            checked: false,
        };
        let mut words = backend.default_server.iter().chain(&self.options);
        while let Some(word) = words.next() {
            match *word {
                "disabled" => expected.maintenance = true,
                "enabled" => expected.maintenance = false,
                "check" => expected.checked = true,
                "no-check" => expected.checked = false,
                "weight" => {
                    let value = words.next().copied().unwrap_or_default();
                    expected.weight = value
                        .parse()
                        .map_err(|_| format!("server weight `{value}` is not a number"))?;
                }
                _ => {}
            }
        }
        Ok(expected)
    }
}

/// `host:port` split, with a port from 1 to 65535.
fn host_and_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host, port.parse().ok().filter(|port| *port > 0)?))
}

fn ipv4_and_port(address: &str) -> Option<(&str, u16)> {
    host_and_port(address).filter(|(host, _)| host.parse::<core::net::Ipv4Addr>().is_ok())
}

fn parse<'a>(text: &'a str, managed: &[&str]) -> Result<Parsed<'a>, String> {
    let mut parsed = Parsed::default();
    // The last `defaults` section's default-server options and balance.
    let mut defaults = Backend::default();
    for line in config_lines(text) {
        if line.opens && line.section == "defaults" {
            defaults = Backend::default();
        }
        let backend = match line.backend().filter(|name| managed.contains(name)) {
            Some(name) if line.opens => {
                if line.words().nth(2).is_some() {
                    return Err(format!(
                        "backend `{name}` takes settings from a named defaults section (`{}`), which this tool does not follow",
                        line.text
                    ));
                }
                let backend = parsed.backends.entry(name).or_default();
                backend.default_server.clone_from(&defaults.default_server);
                backend.balance = defaults.balance.clone();
                parsed.structure.push(line.text);
                continue;
            }
            // Opened by an earlier line of the section (`config_lines` starts a section there).
            Some(name) => parsed.backends.entry(name).or_default(),
            None if line.section == "defaults" && !line.opens => &mut defaults,
            None => {
                parsed.structure.push(line.text);
                continue;
            }
        };
        if let Some((_, server, address, options)) = line.server() {
            let server_line = ServerLine {
                address,
                options: options.collect(),
            };
            if backend.servers.insert(server, server_line).is_some() {
                return Err(format!(
                    "backend `{}` names server `{server}` twice",
                    line.name
                ));
            }
            continue;
        }
        if line.keyword == "server" && line.backend().is_some() {
            return Err(format!(
                "server line `{}` has no name or address",
                line.text
            ));
        }
        backend.balance.read(line.keyword, line.words().skip(1));
        if line.keyword == "default-server" {
            backend.default_server.extend(line.words().skip(1));
        }
        parsed.structure.push(line.text);
    }
    Ok(parsed)
}

/// A section's `balance` and `hash-type`, as far as `add server` cares.
#[derive(Debug, Clone, Default)]
struct Balance {
    algorithm: Option<String>,
    consistent: bool,
}

impl Balance {
    fn read<'a>(&mut self, keyword: &str, mut words: impl Iterator<Item = &'a str>) {
        match keyword {
            "balance" => self.algorithm = words.next().map(str::to_owned),
            "hash-type" => self.consistent = words.next() == Some("consistent"),
            _ => {}
        }
    }

    fn dynamic(&self) -> bool {
        self.consistent
            || self
                .algorithm
                .as_deref()
                .is_none_or(|algorithm| DYNAMIC_BALANCE.contains(&algorithm))
    }
}

/// The first line where two structures differ, said for people.
fn first_difference(before: &[&str], after: &[&str]) -> Option<String> {
    let at = before.iter().zip(after).position(|(a, b)| a != b);
    let what = match at {
        // One line more or less, and the rest the same: say which, not what it shifted.
        Some(at) if before[at..] == after[at + 1..] => format!("`{}` was added", after[at]),
        Some(at) if before[at + 1..] == after[at..] => format!("`{}` was removed", before[at]),
        Some(at) => format!("`{}` became `{}`", before[at], after[at]),
        None if before.len() < after.len() => format!("`{}` was added", after[before.len()]),
        None if before.len() > after.len() => format!("`{}` was removed", before[after.len()]),
        None => return None,
    };
    Some(format!(
        "a line other than a managed backend's servers changed: {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_6: HaproxyVersion = HaproxyVersion { major: 2, minor: 6 };

    const BASE: &str = "\
global
    master-worker
defaults
    mode http
    default-server inter 3s
frontend http
    bind :80
    default_backend web
backend web
    balance roundrobin
    default-server check fall 3
    server i-1 10.0.0.1:80
    server i-2 10.0.0.2:80 disabled
backend other
    server o-1 10.0.9.1:80
";

    fn commands(installed: &str, rendered: &str) -> Result<Vec<String>, String> {
        classify(installed, rendered, &["web"], Some(V2_6))
            .map(|change| change.commands.into_iter().map(|c| c.command).collect())
    }

    fn edit(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn server_changes_become_commands_in_an_order_that_never_empties_a_backend() {
        let table: &[(&str, &str, &[&str])] = &[
            ("", "", &[]),
            (
                "    server i-2 10.0.0.2:80 disabled\n",
                "    server i-2 10.0.0.2:80 disabled\n    server i-3 10.0.0.3:80 weight 5\n",
                &[
                    "add server web/i-3 10.0.0.3:80 inter 3s check fall 3 weight 5",
                    "enable health web/i-3",
                    "set server web/i-3 state ready",
                ],
            ),
            (
                "    server i-2 10.0.0.2:80 disabled\n",
                "    server i-2 10.0.0.2:80 disabled\n    server i-3 10.0.0.3:80 disabled\n",
                &[
                    "add server web/i-3 10.0.0.3:80 inter 3s check fall 3",
                    "enable health web/i-3",
                ],
            ),
            (
                "    server i-1 10.0.0.1:80\n",
                "",
                &["set server web/i-1 state maint", "del server web/i-1"],
            ),
            (
                "    server i-2 10.0.0.2:80 disabled",
                "    server i-2 10.0.0.2:80",
                &["set server web/i-2 state ready"],
            ),
            (
                "    server i-1 10.0.0.1:80",
                "    server i-1 10.0.0.1:80 weight 0",
                &["set server web/i-1 weight 0"],
            ),
            (
                "    server i-1 10.0.0.1:80",
                "    server i-1 10.0.0.7:8080 disabled",
                &[
                    "set server web/i-1 addr 10.0.0.7 port 8080",
                    "set server web/i-1 state maint",
                ],
            ),
            (
                // Removed and added in one run: the addition first.
                "    server i-1 10.0.0.1:80\n",
                "    server i-0 10.0.0.9:80 disabled\n",
                &[
                    "add server web/i-0 10.0.0.9:80 inter 3s check fall 3",
                    "enable health web/i-0",
                    "set server web/i-1 state maint",
                    "del server web/i-1",
                ],
            ),
        ];
        for (from, to, expected) in table {
            let rendered = edit(from, to);
            let expected: Vec<String> = expected.iter().map(|c| (*c).to_owned()).collect();
            assert_eq!(commands(BASE, &rendered), Ok(expected), "{from:?} → {to:?}");
        }
    }

    #[test]
    fn anything_else_needs_a_reload_and_says_why() {
        let table: &[(&str, &str, &str)] = &[
            (
                "    bind :80",
                "    bind :81",
                "`bind :80` became `bind :81`",
            ),
            (
                "    default-server check fall 3",
                "    default-server check fall 2",
                "`default-server check fall 3` became",
            ),
            (
                "    server o-1 10.0.9.1:80",
                "    server o-1 10.0.9.2:80",
                "`server o-1 10.0.9.1:80` became",
            ),
            ("    mode http\n", "", "`mode http` was removed"),
            (
                "    bind :80\n",
                "    bind :80\n    maxconn 100\n",
                "`maxconn 100` was added",
            ),
            (
                "    server i-1 10.0.0.1:80",
                "    server i-1 10.0.0.1:80 maxconn 5",
                "options changed (`` → `maxconn 5`)",
            ),
            (
                "    server i-1 10.0.0.1:80",
                "    server i-1 10.0.0.1:80\n    server i-5 10.0.0.5:80 cookie a",
                "has `cookie`",
            ),
            (
                "    server i-1 10.0.0.1:80",
                "    server i-1 web1.example:80",
                "not an IPv4 address and port",
            ),
            (
                "    balance roundrobin",
                "    balance source",
                "`balance roundrobin` became",
            ),
            (
                "    server o-1 10.0.9.1:80\n",
                "",
                "`server o-1 10.0.9.1:80` was removed",
            ),
            (
                "    server i-1 10.0.0.1:80",
                "    server i-1 10.0.0.1:80 weight x",
                "weight `x` is not a number",
            ),
        ];
        for (from, to, reason) in table {
            let why = commands(BASE, &edit(from, to)).unwrap_err();
            assert!(why.contains(reason), "{from:?} → {to:?}: {why}");
        }
        let source = edit("    balance roundrobin", "    balance source");
        let added = source.replace(
            "    server i-1 10.0.0.1:80\n",
            "    server i-1 10.0.0.1:80\n    server i-9 10.0.0.9:80\n",
        );
        assert!(
            commands(&source, &added)
                .unwrap_err()
                .contains("balances with an algorithm")
        );
        let consistent = source.replace(
            "    balance source",
            "    balance source\n    hash-type consistent",
        );
        let added = consistent.replace(
            "    server i-1 10.0.0.1:80\n",
            "    server i-1 10.0.0.1:80\n    server i-9 10.0.0.9:80\n",
        );
        assert_eq!(commands(&consistent, &added).unwrap().len(), 3);
    }

    #[test]
    fn only_the_servers_that_change_must_have_an_ipv4_address() {
        let named = edit(
            "    server i-2 10.0.0.2:80 disabled",
            "    server i-2 web2.example:80",
        );
        let added = named.replace(
            "    server i-1 10.0.0.1:80\n",
            "    server i-1 10.0.0.1:80\n    server i-3 10.0.0.3:80 disabled\n",
        );
        assert_eq!(commands(&named, &added).map(|c| c.len()), Ok(2));
    }

    #[test]
    fn comments_and_blank_lines_are_not_structure() {
        let rendered = BASE.replace("frontend http\n", "\n# a comment\nfrontend http\n");
        assert_eq!(commands(BASE, &rendered), Ok(Vec::new()));
    }

    fn state(
        name: &str,
        address: &str,
        port: u16,
        admin: u32,
        weight: u32,
        check: u32,
    ) -> ServerState {
        ServerState {
            backend: "web".into(),
            name: name.into(),
            address: address.into(),
            port,
            admin,
            weight,
            check,
        }
    }

    #[test]
    fn the_read_back_finds_every_difference() {
        let rendered = edit(
            "    server i-2 10.0.0.2:80 disabled\n",
            "    server i-2 10.0.0.2:80 disabled\n    server i-3 10.0.0.3:80 weight 5\n",
        );
        let change = classify(BASE, &rendered, &["web"], Some(V2_6)).unwrap();
        let good = vec![
            state("i-1", "10.0.0.1", 80, 0, 1, 6),
            state("i-2", "10.0.0.2", 80, 5, 1, 14),
            state("i-3", "10.0.0.3", 80, 0, 5, 6),
        ];
        assert_eq!(verify(&change.read_back, &good), Ok(()));
        // The good state, with i-3 running as given instead.
        let with_i3 = |i3: ServerState| vec![good[0].clone(), good[1].clone(), i3];
        let cases: Vec<(Vec<ServerState>, &str)> = vec![
            (good[..2].to_vec(), "HAProxy has no server web/i-3"),
            (
                [good.clone(), vec![state("i-9", "10.0.0.9", 80, 0, 1, 6)]].concat(),
                "still has server web/i-9",
            ),
            (
                with_i3(state("i-3", "10.0.0.3", 80, 1, 5, 6)),
                "in maintenance",
            ),
            (with_i3(state("i-3", "10.0.0.3", 80, 0, 5, 2)), "unchecked"),
            (
                with_i3(state("i-3", "10.0.0.3", 81, 0, 1, 6)),
                "10.0.0.3:81 weight 1",
            ),
        ];
        for (running, says) in cases {
            let why = verify(&change.read_back, &running).unwrap_err();
            assert!(why.contains(says), "{says}: {why}");
        }
    }

    #[test]
    fn finds_the_server_state_file() {
        let config = "global\n    server-state-base /run/haproxy\n    server-state-file state\ndefaults\n    load-server-state-from-file global\nbackend web\n    server a 127.0.0.1:81 check\nlisten l\n    server b host.example:82\n    server c /run/sock\n";
        assert_eq!(
            server_state_file(config),
            Some(PathBuf::from("/run/haproxy/state"))
        );
        assert_eq!(
            server_state_file("global\n    server-state-file /var/state\n"),
            Some(PathBuf::from("/var/state"))
        );
        assert_eq!(
            server_state_file("global\n    server-state-file state\n"),
            None
        );
        assert_eq!(
            server_state_file("defaults\n    server-state-file /x\n"),
            None
        );
    }

    #[test]
    fn a_reload_keeps_the_state_of_the_servers_it_leaves_alone_only() {
        let installed = "backend web\n    server a 127.0.0.1:81\n    server b 127.0.0.1:82 disabled\n    server c 127.0.0.1:83\n    server d 127.0.0.1:84\n    server h host.example:85\nbackend other\n    server a 127.0.0.1:81\n";
        let rendered = "backend web\n    server a 127.0.0.1:81 # same\n    server b 127.0.0.1:82\n    server c 127.0.0.1:93\n    server e 127.0.0.1:86\n    server h host.example:85\nbackend other\n    server a 127.0.0.1:81 disabled\n";
        let at = |backend: &str, name: &str, port: u16| ServerState {
            backend: backend.into(),
            name: name.into(),
            address: "127.0.0.1".into(),
            port,
            admin: 8,
            weight: 1,
            check: 6,
        };
        let states = [
            at("web", "a", 81),   // left alone: keeps its drain
            at("web", "b", 82),   // no longer disabled: the file decides
            at("web", "c", 83),   // moved: HAProxy would take port 83 back
            at("web", "d", 84),   // removed
            at("web", "e", 86),   // added at runtime
            at("web", "h", 85),   // a DNS name, same port
            at("web", "a", 91),   // (runs elsewhere than the file says)
            at("other", "a", 81), // disabled now
        ];
        assert_eq!(
            keeps_state(&states, installed, rendered),
            [true, false, false, false, false, true, false, false]
        );
    }

    /// Issue 27: `add server` accepts `cookie` from 3.0 on (measured on 3.0.11 and 3.2.0), so a
    /// server with one joins without a reload there; on 2.6, or a version not known, it reloads.
    #[test]
    fn a_server_with_a_cookie_joins_through_the_runtime_api_from_haproxy_3_0() {
        let rendered = edit(
            "    server i-1 10.0.0.1:80",
            "    server i-1 10.0.0.1:80\n    server i-5 10.0.0.5:80 cookie a",
        );
        for (version, outcome) in [
            (Some(V2_6), Err("does not accept on HAProxy 2.6")),
            (None, Err("its version could not be read")),
            (Some(HaproxyVersion { major: 3, minor: 0 }), Ok(())),
            (Some(HaproxyVersion { major: 3, minor: 2 }), Ok(())),
        ] {
            let change = classify(BASE, &rendered, &["web"], version);
            match (outcome, change) {
                (Ok(()), Ok(change)) => assert_eq!(
                    change.commands[0].command,
                    "add server web/i-5 10.0.0.5:80 inter 3s check fall 3 cookie a",
                    "{version:?}"
                ),
                (Err(says), Err(why)) => assert!(why.contains(says), "{version:?}: {why}"),
                (expected, got) => panic!("{version:?}: expected {expected:?}, got {got:?}"),
            }
        }
        assert_eq!(
            HaproxyVersion::parse("3.2.0-e134140d2"),
            Some(HaproxyVersion { major: 3, minor: 2 })
        );
        assert_eq!(HaproxyVersion::parse("2.6.12-1+deb12u4"), Some(V2_6));
        assert_eq!(HaproxyVersion::parse("dev"), None);
    }
}
