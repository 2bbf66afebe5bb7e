//! Test support in one place: builders for instances, configs and states, and the one fake
//! HAProxy admin socket. Compiled for the crate's unit tests and, through the `testing`
//! feature its own dev-dependency turns on, for the integration tests; never in a release.

pub mod bench;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::{Config, PoolConfig};
use crate::decide::address;
use crate::model::{Discovered, Instance, InstanceState, Observed, Tags};

/// A running instance with a private IP and nothing else.
pub fn instance(id: &str, private_ip: &str) -> Instance {
    Instance {
        id: id.to_owned(),
        state: InstanceState::Running,
        private_ip: Some(private_ip.to_owned()),
        public_ip: None,
        port: None,
        launch_time: None,
        zone: None,
        image_id: None,
        tags: Tags::new(),
    }
}

/// Makes a FIFO at `path` (a file that is something else, for the hostile-input tests).
pub fn fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// `instance` with these tags.
pub fn tagged(mut instance: Instance, tags: &[(&str, &str)]) -> Instance {
    for (key, value) in tags {
        instance.tags.insert((*key).to_owned(), (*value).to_owned());
    }
    instance
}

/// The instances of `pool` with their endpoints, as observation resolves them.
pub fn discovered(pool: &PoolConfig, instances: &[Instance]) -> Vec<Discovered> {
    instances
        .iter()
        .map(|instance| Discovered {
            endpoint: address::endpoint(pool, instance),
            instance: instance.clone(),
        })
        .collect()
}

/// What a discovery-only observation of `pool` sees.
pub(crate) fn observed(pool: &PoolConfig, instances: &[Instance]) -> Observed {
    Observed {
        instances: discovered(pool, instances),
        ..Observed::default()
    }
}

/// A config built from TOML sections, parsed as the file `test.toml` would be.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    sections: Vec<String>,
}

impl ConfigBuilder {
    /// `[haproxy] config = "/etc/haproxy/haproxy.cfg"` and nothing else.
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default().section("[haproxy]\nconfig = \"/etc/haproxy/haproxy.cfg\"")
    }

    /// State, haproxy.cfg and admin socket in `dir`; checks with `test -s`, reloads with `true`.
    pub fn in_dir(dir: &Path) -> ConfigBuilder {
        ConfigBuilder::default().section(&format!(
            "[state]\npath = \"{0}/state.json\"\n[haproxy]\nconfig = \"{0}/haproxy.cfg\"\ncheck_command = [\"test\", \"-s\", \"{{config}}\"]\nreload_command = [\"true\"]",
            dir.display()
        ))
    }

    /// Any TOML text, appended as is (a key of the section before it, or a new section).
    pub fn section(mut self, toml: &str) -> ConfigBuilder {
        self.sections.push(toml.to_owned());
        self
    }

    /// A discovery pool found by security group `name`; `extra` holds more pool keys.
    pub fn pool(self, name: &str, port: u16, extra: &str) -> ConfigBuilder {
        self.section(&format!(
            "[[pool]]\nname = \"{name}\"\nport = {port}\n{extra}\n[pool.discover]\nsecurity_group = \"{name}\""
        ))
    }

    /// A scaling EC2 pool: `pool` plus `[pool.launch]` and `[pool.scaling]` with `scaling`.
    pub fn scaling_pool(self, name: &str, port: u16, extra: &str, scaling: &str) -> ConfigBuilder {
        self.pool(name, port, extra).section(&format!(
            "[pool.launch]\nimage_id = \"ami-1\"\ninstance_type = \"t3.micro\"\n[pool.scaling]\n{scaling}"
        ))
    }

    /// The TOML text.
    pub fn text(&self) -> String {
        self.sections.join("\n") + "\n"
    }

    /// The validated config; panics with the error if it is invalid.
    pub fn build(&self) -> Config {
        let text = self.text();
        Config::parse(&text, Path::new("test.toml"))
            .unwrap_or_else(|error| panic!("{error}\nin:\n{text}"))
    }
}

/// A stand-in for HAProxy's admin socket: answers `show info` with a live worker and
/// `show stat` with the text set last, and records every command it was sent.
#[derive(Debug, Clone)]
pub struct FakeAdminSocket {
    pub path: PathBuf,
    commands: Arc<Mutex<Vec<String>>>,
    stat: Arc<Mutex<Vec<u8>>>,
}

impl FakeAdminSocket {
    /// Listens on `path` (from a thread, so sync and async tests can use it).
    pub fn start(path: &Path) -> FakeAdminSocket {
        let listener = UnixListener::bind(path).expect("bind the fake admin socket");
        let socket = FakeAdminSocket {
            path: path.to_owned(),
            commands: Arc::default(),
            stat: Arc::new(Mutex::new(b"# pxname,svname,status,scur,stot,\n".to_vec())),
        };
        let (commands, stat) = (socket.commands.clone(), socket.stat.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut command = String::new();
                let _ = stream.read_to_string(&mut command);
                let command = command.trim().to_owned();
                let answer = match command.as_str() {
                    "show info" => b"Name: HAProxy\nPid: 4242\nUptime_sec: 600\n".to_vec(),
                    "show stat" => stat.lock().expect("stat lock").clone(),
                    _ => b"\n".to_vec(),
                };
                commands.lock().expect("commands lock").push(command);
                let _ = stream.write_all(&answer);
            }
        });
        socket
    }

    /// `show stat` answers these bytes from now on.
    pub fn set_stat(&self, stat: &[u8]) {
        *self.stat.lock().expect("stat lock") = stat.to_vec();
    }

    /// `show stat` lists these servers of backend `web`: (name, current sessions, total).
    pub fn set_servers(&self, servers: &[(&str, u64, u64)]) {
        let mut text = String::from("# pxname,svname,status,scur,stot,\n");
        for (name, scur, stot) in servers {
            text.push_str(&format!("web,{name},UP,{scur},{stot},\n"));
        }
        self.set_stat(text.as_bytes());
    }

    /// Every command received so far.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().expect("commands lock").clone()
    }
}
