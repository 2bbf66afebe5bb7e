//! The shell's side of HAProxy: its admin socket (stats, drains, membership changes through the
//! runtime API), its master CLI (reloads and their confirmation), installing and reloading a
//! rendered config, reading the template file.
//! Rendering itself is pure and lives in [`crate::decide`].

pub mod admin_socket;
pub(crate) mod install;
pub(crate) mod master;
pub mod runtime;
pub mod stats;
pub(crate) mod template;
