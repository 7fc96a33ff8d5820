//! Native framing: any text frame decodes to a request or a refusal, and a decoded request
//! parses into a command or an error, never a panic. Non-UTF-8 input is not a text frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::domain::UserId;
use switchboard::wire::{Framing, Inbound, native};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(acting) = UserId::parse("alice") else { return };
    let inbound = native::decode(text);
    match inbound.data {
        Ok(data) => {
            let result = native::request(&inbound.event, data, &acting).map(|_| switchboard::wire::Reply::Done);
            if let Some(id) = &inbound.id {
                let _ = native::encode_ack(id, &result);
            }
        }
        Err(err) => {
            let _ = native::encode_error(&err);
        }
    }
    // The connection's entry point: the same frame through the framing, before and after
    // authentication.
    for connected in [false, true] {
        if let Inbound::Request { data: Ok(data), event, .. } = Framing::Native.decode(text, connected) {
            let _ = native::request(&event, data, &acting);
        }
    }
});
