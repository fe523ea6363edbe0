#![no_main]
//! Fuzz target `oauth_responses`: see `pacc_proto::fuzz::oauth_responses`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::oauth_responses(data));
