//! The template's view of the world, and rendering it with an already-loaded template.
//!
//! When the template refuses a value that is not a plain HAProxy token, the servers whose
//! unsafe values the template writes are left out (skipped, with the key and the value) and the
//! rest is rendered: one bad instance never stops the others (invariant 12). Which servers those
//! are is found by rendering once more with every unsafe value of every server replaced by a
//! unique marker: a marker that reaches the output names its server and field. Values the
//! template does not write (a tag it never uses) leave nothing out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, StatsSource};
use crate::decide::membership::{BackendPlan, Server, Skipped};
use crate::decide::render::{RenderError, Renderer};
use crate::model::is_haproxy_token;

/// The template's context. Documented in the README; keep them in step.
#[derive(Debug, Serialize)]
struct TemplateContext<'a> {
    haproxy: TemplateHaproxy<'a>,
    pools: Vec<TemplatePool<'a>>,
    /// The same pools by backend name, only for a template that names `backends`: a second
    /// copy of every server in the context is the largest allocation of a large run.
    #[serde(skip_serializing_if = "Option::is_none")]
    backends: Option<BTreeMap<&'a str, TemplatePool<'a>>>,
}

#[derive(Debug, Serialize)]
struct TemplateHaproxy<'a> {
    config: &'a Path,
    stats_socket: Option<&'a str>,
    stats_url: Option<&'a str>,
    master_socket: Option<&'a Path>,
    /// `server-state` beside a unix stats socket, for the template's `server-state-file`.
    server_state_file: Option<PathBuf>,
}

/// A pool as the template sees it: what the README documents, not the whole plan.
#[derive(Debug, Clone, Serialize)]
struct TemplatePool<'a> {
    name: &'a str,
    backend: &'a str,
    port: u16,
    servers: TemplateServers<'a>,
    skipped: &'a [Skipped],
}

/// A pool's servers, with or without their tags.
#[derive(Debug, Clone, Copy)]
struct TemplateServers<'a> {
    servers: &'a [Server],
    with_tags: bool,
}

impl Serialize for TemplateServers<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.with_tags {
            return self.servers.serialize(serializer);
        }
        serializer.collect_seq(self.servers.iter().map(WithoutTags))
    }
}

/// A server without its tags: for a template that cannot reach them, their JSON objects
/// were a third of the context's memory.
struct WithoutTags<'a>(&'a Server);

impl Serialize for WithoutTags<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_as(serializer, false)
    }
}

fn template_pool(pool: &BackendPlan, with_tags: bool) -> TemplatePool<'_> {
    TemplatePool {
        name: &pool.name,
        backend: &pool.backend,
        port: pool.port,
        servers: TemplateServers {
            servers: &pool.servers,
            with_tags,
        },
        skipped: &pool.skipped,
    }
}

/// What of the plan the template can reach, so the context holds no more.
#[derive(Debug, Clone, Copy)]
struct Reach {
    backends: bool,
    tags: bool,
}

impl Reach {
    fn of(renderer: &Renderer) -> Self {
        Reach {
            backends: renderer.names_backends(),
            tags: renderer.reaches_tags(),
        }
    }
}

fn template_context<'a>(
    config: &'a Config,
    pools: &'a [BackendPlan],
    reach: Reach,
) -> TemplateContext<'a> {
    TemplateContext {
        haproxy: TemplateHaproxy {
            config: &config.haproxy.config,
            stats_socket: match &config.haproxy.stats {
                Some(StatsSource::Socket(socket)) => Some(socket),
                _ => None,
            },
            stats_url: match &config.haproxy.stats {
                Some(StatsSource::Url(url)) => Some(url),
                _ => None,
            },
            master_socket: config.haproxy.reload.master_socket(),
            server_state_file: match &config.haproxy.stats {
                Some(StatsSource::Socket(socket)) if socket.starts_with('/') => Path::new(socket)
                    .parent()
                    .map(|dir| dir.join("server-state")),
                _ => None,
            },
        },
        pools: pools
            .iter()
            .map(|pool| template_pool(pool, reach.tags))
            .collect(),
        backends: reach.backends.then(|| {
            pools
                .iter()
                .map(|pool| (pool.backend.as_str(), template_pool(pool, reach.tags)))
                .collect()
        }),
    }
}

/// Where a marked value was: (pool, server, which field, the value).
type Marked = (usize, usize, String, String);

/// Renders the pools, leaving out the servers whose unsafe values the template writes.
pub(crate) fn render_leaving_out_unsafe(
    renderer: &Renderer,
    config: &Config,
    pools: &mut [BackendPlan],
) -> Result<String, RenderError> {
    let reach = Reach::of(renderer);
    let refused = match renderer.render(&template_context(config, pools, reach)) {
        Ok(text) => return Ok(text),
        Err(error @ RenderError::UnsafeValue { .. }) => error,
        Err(error) => return Err(error),
    };
    let mut probe = pools.to_vec();
    let marked = mark_unsafe_values(&mut probe);
    let Ok(probed) = renderer.render(&template_context(config, &probe, reach)) else {
        // Still refused with every server value marked: the value is not a server's.
        return Err(refused);
    };
    let mut leave_out: BTreeMap<(usize, usize), (String, String)> = BTreeMap::new();
    for (marker, (pool_index, server_index, field, value)) in marked.into_iter().enumerate() {
        if probed.contains(&marker_text(marker)) {
            leave_out
                .entry((pool_index, server_index))
                .or_insert((field, value));
        }
    }
    if leave_out.is_empty() {
        return Err(refused);
    }
    for ((pool_index, server_index), (field, value)) in leave_out.into_iter().rev() {
        let pool = &mut pools[pool_index];
        let server = pool.servers.remove(server_index);
        pool.skipped.push(Skipped {
            instance_id: server.instance_id,
            reason: format!(
                "has {field} = {value:?}, which the template writes into haproxy.cfg but is not a plain HAProxy token (whitespace, `#`, quotes, backslashes, `$`, `%`, braces, control and invisible format characters are refused)"
            ),
            bad_value: true,
        });
        pool.skipped
            .sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    }
    renderer.render(&template_context(config, pools, reach))
}

fn marker_text(index: usize) -> String {
    format!("hxaprobe{index}z")
}

/// Replaces every unsafe value of every server by a marker, in the order of the list returned.
fn mark_unsafe_values(pools: &mut [BackendPlan]) -> Vec<Marked> {
    let mut marked = Vec::new();
    for (pool_index, pool) in pools.iter_mut().enumerate() {
        for (server_index, server) in pool.servers.iter_mut().enumerate() {
            for (field, value) in mark_server(server, marked.len()) {
                marked.push((pool_index, server_index, field, value));
            }
        }
    }
    marked
}

/// Marks one server's unsafe tag keys and values, zone, image id and launch time, numbering
/// the markers from `first`; returns (field, original value) per marker.
fn mark_server(server: &mut Server, first: usize) -> Vec<(String, String)> {
    let mut marked = Vec::new();
    // Tag keys too: a template may write them (`{{#each tags}}{{@key}}`).
    let unsafe_keys: Vec<String> = server
        .tags
        .keys()
        .filter(|key| !is_haproxy_token(key))
        .cloned()
        .collect();
    // The marker that stands for each unsafe key, so that a value under it is named by the
    // operator's key, not by the marker.
    let mut original_keys: BTreeMap<String, String> = BTreeMap::new();
    for key in unsafe_keys {
        let value = server.tags.remove(&key).unwrap_or_default();
        let marker = marker_text(first + marked.len());
        server.tags.insert(marker.clone(), value);
        original_keys.insert(marker, key.clone());
        marked.push(("a tag key".to_owned(), key));
    }
    let fields = server
        .tags
        .iter_mut()
        .map(|(key, value)| {
            let key = original_keys.get(key).unwrap_or(key);
            (format!("tag `{}`", crate::model::text::shown(key)), value)
        })
        .chain(server.zone.as_mut().map(|zone| ("zone".to_owned(), zone)))
        .chain(
            server
                .image_id
                .as_mut()
                .map(|id| ("image_id".to_owned(), id)),
        )
        .chain(
            server
                .launch_time
                .as_mut()
                .map(|time| ("launch_time".to_owned(), time)),
        );
    for (field, value) in fields {
        if !is_haproxy_token(value) {
            let original = std::mem::replace(value, marker_text(first + marked.len()));
            marked.push((field, original));
        }
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InstanceState, Tags};

    #[test]
    fn a_server_without_tags_has_every_other_field_of_a_server() {
        let server = Server {
            name: "i-1".into(),
            address: "10.0.0.1".into(),
            port: 80,
            instance_id: "i-1".into(),
            state: InstanceState::Running,
            launch_time: Some("2026-12-01T00:00:00Z".into()),
            zone: Some("eu-west-1a".into()),
            image_id: Some("ami-1".into()),
            tags: Tags::from([("Name", "web-1")]),
            role: crate::decide::scaling::Role::Booting,
            maintenance: false,
        };
        let mut whole = serde_json::to_value(&server).unwrap();
        assert!(whole.as_object_mut().unwrap().remove("tags").is_some());
        assert_eq!(serde_json::to_value(WithoutTags(&server)).unwrap(), whole);
    }
}
