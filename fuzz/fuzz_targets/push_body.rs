#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| framescale_fuzz::push_body(data));
