//! Everything that knows HAProxy: rendering its config, reading the installed one, and installing
//! and reloading it.

pub(crate) mod install;

pub(crate) mod master;
pub mod runtime;
pub mod stats;
pub(crate) mod template;
