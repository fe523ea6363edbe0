#![no_main]
//! Fuzz target `mx_select`: see `pacc_proto::fuzz::mx_select`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::mx_select(data));
