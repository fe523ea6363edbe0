#![no_main]
//! Fuzz target `txt_record`: see `pacc_proto::fuzz::txt_record`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::txt_record(data));
