#![no_main]
//! Fuzz target `mta_sts_txt`: see `pacc_proto::fuzz::mta_sts_txt`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::mta_sts_txt(data));
