//! Fuzz target `client_ops`: the checks are [`tickcast_fuzz::client_ops::check`], shared with the replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::client_ops::check(data));
