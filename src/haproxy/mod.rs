//! Everything that knows HAProxy: rendering its config, reading the installed one, and installing
//! and reloading it.

pub mod install;
pub mod installed;
pub mod master;
pub mod render;
pub mod runtime;
pub mod stats;
