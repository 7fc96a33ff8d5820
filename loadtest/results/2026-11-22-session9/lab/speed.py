import time, hashlib, sys
b = b'x' * 65536
end = time.time() + float(sys.argv[1])
while time.time() < end:
    t0 = time.process_time(); n = 0
    w0 = time.time()
    while time.time() - w0 < 1.0:
        hashlib.sha256(b).digest(); n += 1
    cpu = time.process_time() - t0
    print(time.strftime('%T'), n, round(cpu, 2), flush=True)
