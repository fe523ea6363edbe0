#![no_main]
//! Fuzz target `mta_sts_policy`: see `pacc_proto::fuzz::mta_sts_policy`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::mta_sts_policy(data));
