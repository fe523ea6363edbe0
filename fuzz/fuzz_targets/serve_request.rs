#![no_main]
//! Fuzz target `serve_request`: raw HTTP/1.1 request bytes through the same hyper server
//! and request handler as `pacc serve` (see `pacc::serve::fuzz_request`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc::serve::fuzz_request(data));
