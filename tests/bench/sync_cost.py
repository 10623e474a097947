"""What one durable commit costs while another program has written a lot
and synced nothing: the time of syncfs(2), the whole file system (how the
spool committed before 0.2.0), against fdatasync(2) of the event's file
plus fsync(2) of its folder (how it commits now), on one small file.

    tests/bench/sync_cost.py [FOLDER] [MB] [ROUNDS]

FOLDER is on the file system to measure (default: a new folder in /tmp);
MB the data the other program leaves unwritten (default 650); each round
writes it afresh, then times one commit of each kind, in turn.  Medians.
"""
import ctypes
import os
import shutil
import statistics
import sys
import tempfile
import time

libc = ctypes.CDLL(None, use_errno=True)


def dirty(path, mb):
    """Writes mb MB to a new file and leaves it unsynced."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(block)


def commit(folder, name, whole_fs):
    """One event file made durable; returns the seconds the sync took."""
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.write(fd, b'{"event":{"type":"profile.parsing.success"}}\n' * 40)
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    start = time.monotonic()
    if whole_fs:
        if libc.syncfs(dfd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
    else:
        os.fdatasync(fd)
        os.fsync(dfd)
    took = time.monotonic() - start
    os.close(dfd)
    os.close(fd)
    return took


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else None
    mb = int(sys.argv[2]) if len(sys.argv) > 2 else 650
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    scratch = tempfile.mkdtemp(prefix="hrflow-sync-", dir=folder)
    times = {True: [], False: []}
    try:
        for i in range(rounds):
            for whole_fs in (True, False):
                big = os.path.join(scratch, "big")
                os.sync()
                dirty(big, mb)
                times[whole_fs].append(
                    commit(scratch, f"event-{i}-{whole_fs}", whole_fs))
                os.unlink(big)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"one commit beside {mb} MB unwritten, median of {rounds}:")
    print(f"  syncfs (whole file system)      {med[True]:9.1f} ms")
    print(f"  fdatasync(file) + fsync(folder) {med[False]:9.1f} ms")
    print(f"  ratio syncfs / own files        {med[True] / med[False]:9.1f}")


if __name__ == "__main__":
    main()
