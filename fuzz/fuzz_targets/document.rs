#![no_main]
//! Fuzz target `document`: see `pacc_proto::fuzz::document`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::document(data));
