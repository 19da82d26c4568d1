//! Fuzz target `http_request`: the checks are [`tickcast_fuzz::http_request::check`], shared with the replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::http_request::check(data));
