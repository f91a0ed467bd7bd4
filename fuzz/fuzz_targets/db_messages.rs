#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tezos_p2p::fuzzing::db_messages(data));
