//! WebSocket frames: the codec the server reads sockets with (`actix_http::ws::Codec`, the
//! vendored copy, server side) decodes any byte stream into frames or an error without a
//! panic; no frame carries more than `max_size`, and the buffer never grows far beyond what
//! arrived plus one frame of `max_size` (a header declaring a huge length must not reserve
//! for it).
#![no_main]

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, Item};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// The server's default frame limit (`SWITCHBOARD_MAX_FRAME_BYTES`).
const MAX_FRAME: usize = 64 * 1024;
/// A small limit, so that inputs of a few KiB reach the oversized-frame paths too.
const SMALL_FRAME: usize = 125;
/// The longest frame header: 2 bytes, a 64-bit length and a 4-byte mask.
const MAX_HEADER: usize = 14;

fn payload_len(frame: &Frame) -> usize {
    match frame {
        Frame::Text(b) | Frame::Binary(b) | Frame::Ping(b) | Frame::Pong(b) => b.len(),
        Frame::Continuation(Item::FirstText(b) | Item::FirstBinary(b) | Item::Continue(b) | Item::Last(b)) => b.len(),
        Frame::Close(reason) => reason.as_ref().and_then(|r| r.description.as_ref()).map_or(0, String::len),
    }
}

fuzz_target!(|bytes: &[u8]| {
    for max_size in [MAX_FRAME, SMALL_FRAME] {
        let mut codec = Codec::new().max_size(max_size);
        let mut buffer = BytesMut::from(bytes);
        // Growing to hold input + one frame may double a vector's capacity (amortized growth);
        // anything past that is a reservation for a length that never arrived.
        let bound = 2 * (bytes.len() + max_size + MAX_HEADER);
        loop {
            let decoded = codec.decode(&mut buffer);
            assert!(
                buffer.capacity() <= bound,
                "capacity {} for {} input bytes (max_size {max_size})",
                buffer.capacity(),
                bytes.len()
            );
            match decoded {
                Ok(Some(frame)) => assert!(payload_len(&frame) <= max_size, "a frame above max_size: {frame:?}"),
                Ok(None) | Err(_) => break,
            }
        }
    }
});
