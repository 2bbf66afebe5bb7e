//! The state loader: any bytes are a state or an error naming the file, never a panic; a state it
//! accepts survives a save and a load unchanged.
#![no_main]

use std::path::Path;

use haproxy_autoscaler::surface::store::from_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/fuzz/state.json");
    match from_bytes(data, path) {
        Ok(state) => {
            let saved = serde_json::to_vec_pretty(&state).unwrap();
            let again = from_bytes(&saved, path).unwrap();
            assert_eq!(again, state);
        }
        Err(error) => assert!(error.to_string().contains("/fuzz/state.json"), "{error}"),
    }
});
