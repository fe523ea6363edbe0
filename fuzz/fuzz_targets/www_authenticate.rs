#![no_main]
//! Fuzz target `www_authenticate`: see `pacc_proto::fuzz::www_authenticate`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::www_authenticate(data));
