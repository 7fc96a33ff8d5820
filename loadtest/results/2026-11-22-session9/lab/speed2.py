import socket, time, sys
# loopback TCP ping-pong in one thread: kernel networking + syscall speed, per second
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
a = socket.create_connection(l.getsockname()); b, _ = l.accept()
for s in (a, b): s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = bytearray(range(256)) * 4 * int(sys.argv[2] if len(sys.argv) > 2 else 1)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    n = 0; w0 = time.time()
    while time.time() - w0 < 1.0:
        a.sendall(buf); got = 0
        while got < len(buf): got += len(b.recv(65536))
        n += 1
    print(time.strftime('%T'), n, flush=True)
