//! Fuzzes the frame, JSON header, binary header, stored-record, batch and offset-table decoders: any
//! input must be refused or decoded — never panic or over-allocate — and what decodes must survive a
//! round trip (`ringmq::protocol::fuzz::check_decoders`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringmq::protocol::fuzz::check_decoders(data);
});
