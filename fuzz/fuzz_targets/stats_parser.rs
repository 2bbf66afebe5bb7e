//! `show stat` and `show info` parsing: any bytes HAProxy (or something pretending to be it) may
//! answer give rows or a typed error, never a panic; parsed rows keep what the input said.
#![no_main]

use haproxy_autoscaler::surface::haproxy::stats::{parse_show_info, parse_show_stat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(rows) = parse_show_stat(&text) {
        for row in &rows {
            assert!(text.contains(row.proxy.as_str()) && text.contains(row.name.as_str()));
        }
    }
    let _ = parse_show_info(&text);
});
