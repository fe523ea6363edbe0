#![no_main]
//! Fuzz target `names`: see `pacc_proto::fuzz::names`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::names(data));
