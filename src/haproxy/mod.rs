//! Everything that knows HAProxy: rendering its config, reading the installed one, and installing
//! and reloading it.

pub mod install;

pub mod master;
pub mod runtime;
pub mod stats;
pub mod template;
