//! Fuzz target `conn_state`: the checks are [`tickcast_fuzz::conn_state::check`], shared with the replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::conn_state::check(data));
