//! The config loader: any text is a validated config or an error naming the file, never a panic.
#![no_main]

use std::path::Path;

use haproxy_autoscaler::surface::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/config.toml");
    if let Err(error) = Config::parse(text, path) {
        assert!(error.to_string().contains("/fuzz/config.toml"), "{error}");
    }
});
