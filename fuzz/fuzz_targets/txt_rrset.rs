#![no_main]
//! Fuzz target `txt_rrset`: see `pacc_proto::fuzz::txt_rrset`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::txt_rrset(data));
