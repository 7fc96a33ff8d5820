use std::{cell::Cell, pin::pin};

use actix_service::fn_service;
use tokio::io::ReadBuf;

use super::*;
use crate::{
    config::ServiceConfigBuilder,
    h1::{ExpectHandler, UpgradeHandler},
    test::{test_services::ok_service, TestBuffer},
};

/// Stops accepting writes after a shared byte budget is exhausted.
///
/// The test can restore the budget and poll the dispatcher again, as if the socket became writable.
struct LimitedWriter {
    io: TestBuffer,
    allowance: Rc<Cell<usize>>,
}

impl AsyncRead for LimitedWriter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len().min(self.allowance.get());

        if len == 0 {
            // The test polls manually after restoring the budget, so no wakeup is needed.
            return Poll::Pending;
        }

        let written = ready!(Pin::new(&mut self.io).poll_write(cx, &buf[..len]))?;
        self.allowance.set(self.allowance.get() - written);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Checks buffer retention and complete responses on a persistent HTTP/1 connection.
///
/// - `body_len`: Response body length in bytes, sent as one chunk for each request.
/// - `threshold`: Configured HTTP/1 write-buffer watermark in bytes. The retention limit is
///   the larger of this value and `WRITE_BUFFER_RETENTION_LIMIT`.
/// - `partial`: If true, block writes after `body_len - 1024` bytes, including headers,
///   then resume them. Requires `body_len > 1024`.
///
/// Switchboard's patch: whatever the sizes, a connection that waits for its next request holds
/// neither a read nor a write buffer (upstream kept buffers up to the retention limit).
async fn check_buffer_retention(body_len: usize, threshold: usize, partial: bool) {
    let mut io = TestBuffer::new("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // The budget includes response headers. Leave a small unwritten tail so
    // advancing past the written bytes hides most of the original buffer capacity.
    let allowance = Rc::new(Cell::new(if partial {
        body_len - 1024
    } else {
        usize::MAX
    }));
    let services = HttpFlow::new(
        fn_service(move |_: Request| async move {
            // A single body chunk forces the output buffer to hold the large response.
            Ok::<_, Error>(Response::ok().set_body(bytes::Bytes::from(vec![b'x'; body_len])))
        }),
        ExpectHandler,
        None::<UpgradeHandler>,
    );
    let dispatcher = Dispatcher::new(
        LimitedWriter {
            io: io.clone(),
            allowance: allowance.clone(),
        },
        services,
        // This sets the body-polling watermark. The retention limit is the larger
        // of this value and WRITE_BUFFER_RETENTION_LIMIT.
        ServiceConfigBuilder::new()
            .h1_write_buffer_size(threshold)
            .build(),
        None,
        OnConnectData::default(),
    );
    let mut dispatcher = pin!(dispatcher);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());

    // Pending is expected even after a complete response: the keep-alive
    // connection stays open and waits for another request.
    assert!(dispatcher.as_mut().poll(&mut cx).is_pending());

    if partial {
        let DispatcherState::Normal { inner } = &dispatcher.inner else {
            panic!()
        };
        assert!(!inner.write_buf.is_empty());
        assert_eq!(io.write_buf_slice().len(), body_len - 1024);

        // Let the dispatcher finish the same response after the simulated blocked write.
        allowance.set(usize::MAX);
        assert!(dispatcher.as_mut().poll(&mut cx).is_pending());
    }

    let DispatcherState::Normal { inner } = &dispatcher.inner else {
        panic!()
    };
    assert!(inner.write_buf.is_empty());
    assert_eq!(inner.write_buf.capacity(), 0, "a waiting connection keeps no write buffer");
    assert_eq!(inner.read_buf.capacity(), 0, "a waiting connection keeps no read buffer");

    let response = io.take_write_buf();
    // Compare the complete body separately from the generated HTTP headers.
    // A smaller retained buffer must not come at the cost of missing response bytes.
    let body_start = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap()
        + 4;
    assert_eq!(&response[body_start..], vec![b'x'; body_len]);

    // The connection must remain usable, including after a partial write.
    io.extend_read_buf("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(dispatcher.as_mut().poll(&mut cx).is_pending());
    let second_response = io.take_write_buf();
    let second_body_start = second_response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap()
        + 4;
    assert_eq!(
        &second_response[second_body_start..],
        &response[body_start..]
    );

    let DispatcherState::Normal { inner } = &dispatcher.inner else {
        panic!()
    };
    assert_eq!(inner.write_buf.capacity(), 0);
    assert_eq!(inner.read_buf.capacity(), 0);
}

#[actix_rt::test]
async fn oversized_write_buffer_released_after_flush() {
    check_buffer_retention(1024 * 1024, 32 * 1024, false).await;
}

#[actix_rt::test]
async fn oversized_write_buffer_released_after_partial_write() {
    check_buffer_retention(1024 * 1024, 32 * 1024, true).await;
}

#[actix_rt::test]
async fn normal_write_buffer_released_while_waiting() {
    check_buffer_retention(1024, 32 * 1024, false).await;
}

#[actix_rt::test]
async fn configured_write_buffer_released_while_waiting() {
    check_buffer_retention(256 * 1024, 1024 * 1024, false).await;
}

#[actix_rt::test]
async fn small_write_watermark_buffer_released_while_waiting() {
    check_buffer_retention(64 * 1024, 8 * 1024, false).await;
}

#[actix_rt::test]
async fn buffer_above_configured_write_watermark_released() {
    // A larger watermark sets the limit directly; it is not multiplied by four.
    check_buffer_retention(512 * 1024, 256 * 1024, false).await;
}


/// Polls a dispatcher that answers 200 to every request, over `io`, until it waits.
fn poll_ok_dispatcher(
    io: &TestBuffer,
) -> impl FnMut() -> (Poll<Result<(), DispatchError>>, usize, usize) {
    let services = HttpFlow::new(ok_service(), ExpectHandler, None::<UpgradeHandler>);
    let mut dispatcher = Box::pin(Dispatcher::new(
        io.clone(),
        services,
        ServiceConfigBuilder::new().build(),
        None,
        OnConnectData::default(),
    ));

    move || {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let poll = dispatcher.as_mut().poll(&mut cx);
        let DispatcherState::Normal { inner } = &dispatcher.inner else {
            panic!()
        };
        (poll, inner.read_buf.len(), inner.read_buf.capacity())
    }
}

#[actix_rt::test]
async fn partial_request_keeps_its_bytes_between_polls() {
    let mut io = TestBuffer::new("GET / HTTP/1.1\r\nHo");
    let mut poll = poll_ok_dispatcher(&io);

    let (state, len, _) = poll();
    assert!(state.is_pending());
    assert_eq!(len, "GET / HTTP/1.1\r\nHo".len(), "the partial head is kept");

    io.extend_read_buf("st: localhost\r\n\r\n");
    let (state, len, capacity) = poll();
    assert!(state.is_pending());
    assert!(io.take_write_buf().starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!((len, capacity), (0, 0), "the buffer is released once the request is parsed");
}

#[actix_rt::test]
async fn request_larger_than_the_stack_buffer_is_read_whole() {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: {}\r\n\r\n",
        "a".repeat(3 * HW_BUFFER_SIZE)
    );
    let io = TestBuffer::new(head.as_str());
    let mut poll = poll_ok_dispatcher(&io);

    let (state, _, capacity) = poll();
    assert!(state.is_pending());
    assert!(io.take_write_buf().starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(capacity, 0);
}
