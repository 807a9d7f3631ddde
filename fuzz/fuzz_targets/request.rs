#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| framescale_fuzz::request_path(data));
