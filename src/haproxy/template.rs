//! Reads the template file the renderer compiles: bounded, regular files only, UTF-8.

use std::path::Path;

use crate::decide::render::{RenderError, Renderer};

/// Reads and compiles the template file.
pub(crate) fn load(path: &Path) -> Result<Renderer, RenderError> {
    let read_error = |source| RenderError::Read {
        path: path.to_owned(),
        source,
    };
    let bytes = crate::fs_atomic::read_regular(path, 1024 * 1024).map_err(read_error)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not valid UTF-8",
        ))
    })?;
    Renderer::compile(&text, path)
}
