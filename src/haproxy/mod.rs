//! The shell's side of HAProxy: its admin socket (stats, drains, membership changes through the
//! runtime API), its master CLI (reloads and their confirmation), installing and reloading a
//! rendered config, reading the template file.
//! Rendering itself is pure and lives in [`crate::decide`].

pub(crate) mod admin_socket;
pub(crate) mod install;
pub(crate) mod master;
pub(crate) mod runtime;
pub(crate) mod stats;
pub(crate) mod template;
