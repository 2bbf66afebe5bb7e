//! Reads the template file the renderer compiles: bounded, regular files only, UTF-8.

use std::path::Path;

use crate::decide::render::{RenderError, Renderer};

/// Reads and compiles the template file.
pub(crate) fn load(path: &Path) -> Result<Renderer, RenderError> {
    let text =
        crate::fs_atomic::read_text(path, 1024 * 1024).map_err(|source| RenderError::Read {
            path: path.to_owned(),
            source,
        })?;
    Renderer::compile(&text, path)
}
