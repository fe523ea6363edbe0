#![no_main]
//! Fuzz target `discovery`: see `pacc_proto::fuzz::discovery`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::discovery(data));
