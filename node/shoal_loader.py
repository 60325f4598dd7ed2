# SPDX-License-Identifier: MIT
"""Python client of shoald's loader socket (protocol: node/LOADER-PROTOCOL.md).

A loader asks the local daemon for a release and receives, for each file, an
open read-only descriptor of the daemon's own stored copy as soon as that file
is verified. Mapping it copies nothing: the arrays this module yields are
views of the very pages the daemon wrote (the Hugging Face cache blob, or the
memfd with ``shoald --store memory``).

Standard library only; numpy is used when present (tensors become numpy arrays
via ``np.frombuffer`` on the mapping; bf16 becomes ``ml_dtypes.bfloat16`` when
ml_dtypes is installed, else a ``uint16`` view of the same bits). Without
numpy, tensors are read-only ``memoryview`` slices of the mapping.

    import shoal_loader
    with shoal_loader.Client("/run/shoald/loader.sock") as c:
        for f in c.want("org/model@<commit>", order=["model-00001-of-00002.safetensors", ...]):
            for name, t in f.tensors():      # zero-copy views
                ...                           # jax.device_put(t) / torch.from_numpy(t)
            f.close()                         # once the accelerator holds the data
"""
import errno
import json
import mmap
import os
import socket
import struct
import time

try:  # optional
    import numpy as _np
except ImportError:  # pragma: no cover - exercised where numpy is absent
    _np = None

__all__ = ["Client", "LoaderFile", "LoaderError", "parse_safetensors_header", "tensors"]

# Limits, as in protocol/msg.h: nothing from the socket or a file is trusted.
FRAME_MAX = 64 * 1024          # the daemon's frames are small
PATH_MAX = 1024
RELEASE_MAX = 256
ORDER_MAX = 100000
ERROR_MAX = 512
HEADER_MAX = 100 * 1024 * 1024  # safetensors JSON header
CMSG_FDS = 8

LOADER_WANT, LOADER_FILE, LOADER_DONE, LOADER_ERROR = 64, 65, 66, 67


class LoaderError(Exception):
    """The daemon refused the request (LOADER_ERROR) or broke the protocol."""


class LoaderPermissionError(LoaderError, PermissionError):
    """The loader socket is not open to this process: the message names its
    owner, group and mode, and who may use it (as the `shoal` CLI does)."""


def _denied(path, err):
    """A LoaderPermissionError for |path| explaining |err| (EACCES)."""
    import grp
    import pwd
    try:
        st = os.stat(path)
    except OSError:
        return LoaderPermissionError(
            errno.EACCES, f"permission denied on {path}: a directory on the way to it is "
            f"not open to uid {os.getuid()}; run as shoald's user or root")
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = f"uid {st.st_uid}"
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = f"gid {st.st_gid}"
    hint = f"run as {user}" + ("" if st.st_uid == 0 else " or root")
    if st.st_mode & 0o020 and st.st_gid != 0:
        hint += f", or as a member of group {group} (shoald's --loader-group)"
    elif st.st_mode & 0o020:
        hint += ", or start shoald with --loader-group GROUP and join that group"
    return LoaderPermissionError(
        errno.EACCES, f"permission denied on {path} (owner {user}, group {group}, mode "
        f"{st.st_mode & 0o7777:04o}): {hint}")


# ---- a small strict msgpack codec (only the types the protocol uses) ----

def _pack(o, out):
    if o is None:
        out.append(0xC0)
    elif o is True or o is False:
        out.append(0xC3 if o else 0xC2)
    elif isinstance(o, int):
        if 0 <= o < 0x80:
            out.append(o)
        elif 0 <= o < 1 << 8:
            out += b"\xcc" + struct.pack(">B", o)
        elif 0 <= o < 1 << 16:
            out += b"\xcd" + struct.pack(">H", o)
        elif 0 <= o < 1 << 32:
            out += b"\xce" + struct.pack(">I", o)
        elif 0 <= o < 1 << 64:
            out += b"\xcf" + struct.pack(">Q", o)
        else:
            raise ValueError("integer out of range for this protocol")
    elif isinstance(o, str):
        b = o.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 1 << 8:
            out += b"\xd9" + struct.pack(">B", n)
        elif n < 1 << 16:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += b
    elif isinstance(o, (bytes, bytearray)):
        n = len(o)
        if n < 1 << 8:
            out += b"\xc4" + struct.pack(">B", n)
        elif n < 1 << 16:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += o
    elif isinstance(o, (list, tuple)):
        n = len(o)
        if n < 16:
            out.append(0x90 | n)
        elif n < 1 << 16:
            out += b"\xdc" + struct.pack(">H", n)
        else:
            out += b"\xdd" + struct.pack(">I", n)
        for x in o:
            _pack(x, out)
    else:
        raise TypeError(f"cannot encode {type(o).__name__}")


class _Reader:
    """Strict msgpack reader over one frame body; every length is checked
    against the bytes present before use."""

    def __init__(self, b):
        self.b = b
        self.p = 0

    def _take(self, n):
        if n > len(self.b) - self.p:
            raise LoaderError("truncated frame")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def _u(self, fmt, n):
        return struct.unpack(fmt, self._take(n))[0]

    def item(self, depth=0):
        if depth > 4:
            raise LoaderError("frame nests too deep")
        t = self._take(1)[0]
        if t < 0x80:
            return t
        if t >= 0xE0:
            return t - 0x100
        if 0x90 <= t <= 0x9F:
            return self._array(t & 0x0F, depth)
        if 0xA0 <= t <= 0xBF:
            return self._str(t & 0x1F)
        if 0x80 <= t <= 0x8F:
            raise LoaderError("unexpected map")
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if t in simple:
            return simple[t]
        ints = {0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
                0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8)}
        if t in ints:
            return self._u(*ints[t])
        if t in (0xD9, 0xDA, 0xDB):
            return self._str(self._u(*{0xD9: (">B", 1), 0xDA: (">H", 2), 0xDB: (">I", 4)}[t]))
        if t in (0xC4, 0xC5, 0xC6):
            return bytes(self._take(self._u(*{0xC4: (">B", 1), 0xC5: (">H", 2),
                                              0xC6: (">I", 4)}[t])))
        if t in (0xDC, 0xDD):
            return self._array(self._u(*{0xDC: (">H", 2), 0xDD: (">I", 4)}[t]), depth)
        raise LoaderError(f"unsupported msgpack type 0x{t:02x}")

    def _str(self, n):
        try:
            return bytes(self._take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise LoaderError("string is not UTF-8") from None

    def _array(self, n, depth):
        if n > len(self.b) - self.p:  # every element takes at least a byte
            raise LoaderError("array count exceeds the frame")
        return [self.item(depth + 1) for _ in range(n)]


def _frame(msg):
    body = bytearray()
    _pack(msg, body)
    return struct.pack(">I", len(body)) + bytes(body)


# ---- safetensors ----

_DTYPES = {  # safetensors dtype -> (numpy dtype name, bytes per element)
    "F64": ("<f8", 8), "F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": (None, 2),
    "I64": ("<i8", 8), "I32": ("<i4", 4), "I16": ("<i2", 2), "I8": ("i1", 1),
    "U64": ("<u8", 8), "U32": ("<u4", 4), "U16": ("<u2", 2), "U8": ("u1", 1),
    "BOOL": ("?", 1), "F8_E4M3": (None, 1), "F8_E5M2": (None, 1),
}


def _np_dtype(name):
    np_name, _ = _DTYPES[name]
    if np_name is not None:
        return _np.dtype(np_name)
    try:
        import ml_dtypes
        return _np.dtype({"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
                          "F8_E5M2": ml_dtypes.float8_e5m2}[name])
    except ImportError:
        # The same bits, exposed as unsigned integers of the same width.
        return _np.dtype("<u2" if name == "BF16" else "u1")


def parse_safetensors_header(buf):
    """Parses the header of safetensors bytes |buf| (any buffer, e.g. an
    mmap). Returns (tensors, data_offset, metadata) where tensors maps name
    -> (dtype, shape, begin, end) with begin/end absolute offsets into buf.
    Raises ValueError on anything malformed or out of bounds."""
    size = len(buf)
    if size < 8:
        raise ValueError("safetensors file shorter than its 8-byte header length")
    (hlen,) = struct.unpack("<Q", buf[:8])
    if hlen > HEADER_MAX or hlen > size - 8:
        raise ValueError(f"safetensors header length {hlen} exceeds the file or the limit")
    try:
        hdr = json.loads(bytes(buf[8:8 + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"safetensors header is not JSON: {e}") from None
    if not isinstance(hdr, dict):
        raise ValueError("safetensors header is not a JSON object")
    base = 8 + hlen
    meta = hdr.pop("__metadata__", None)
    out = {}
    for name, t in hdr.items():
        try:
            dtype, shape, (b, e) = t["dtype"], t["shape"], t["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r}: malformed entry") from None
        if dtype not in _DTYPES:
            raise ValueError(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"tensor {name!r}: bad shape {shape!r}")
        n = 1
        for d in shape:
            n *= d
        if not (isinstance(b, int) and isinstance(e, int) and 0 <= b <= e <= size - base):
            raise ValueError(f"tensor {name!r}: data offsets {b}..{e} outside the file")
        if e - b != n * _DTYPES[dtype][1]:
            raise ValueError(f"tensor {name!r}: {e - b} bytes for shape {shape} of {dtype}")
        out[name] = (dtype, list(shape), base + b, base + e)
    return out, base, meta


def tensors(buf, use_numpy=True):
    """Yields (name, tensor) for safetensors bytes |buf| in file order, each a
    zero-copy view: a numpy array (read-only when buf is) when numpy is
    available and |use_numpy|, else a memoryview slice of raw bytes."""
    hdr, _, _ = parse_safetensors_header(buf)
    mv = memoryview(buf)
    for name, (dtype, shape, b, e) in sorted(hdr.items(), key=lambda kv: kv[1][2]):
        if _np is not None and use_numpy:
            dt = _np_dtype(dtype)
            count = (e - b) // dt.itemsize
            yield name, _np.frombuffer(buf, dtype=dt, count=count, offset=b).reshape(shape)
        else:
            yield name, mv[b:e]


# ---- the connection ----

class LoaderFile:
    """One handed-over file: metadata plus its descriptor (owned here).

    ``ready_ns`` is the daemon's CLOCK_MONOTONIC time when the file was
    verified (0 when it was complete before the request); ``received_ns`` is
    this process's CLOCK_MONOTONIC time when recvmsg returned the descriptor.
    """

    def __init__(self, path, size, sha256, index, total, ready_ns, fd, received_ns=None):
        self.path, self.size, self.sha256 = path, size, sha256
        self.index, self.total, self.ready_ns, self.fd = index, total, ready_ns, fd
        self.received_ns = (received_ns if received_ns is not None
                            else time.clock_gettime_ns(time.CLOCK_MONOTONIC))
        self._mm = None

    def mmap(self):
        """Maps the whole file read-only (shared: the daemon's pages). An
        empty file maps to b''. The mapping lives until close()."""
        if self._mm is None:
            if self.size == 0:
                self._mm = b""
            else:
                st = os.fstat(self.fd)
                if st.st_size < self.size:
                    raise LoaderError(f"{self.path}: descriptor holds {st.st_size} bytes, "
                                      f"expected {self.size}")
                self._mm = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ)
        return self._mm

    def tensors(self, use_numpy=True):
        """Zero-copy tensors of this safetensors file (see tensors())."""
        return tensors(self.mmap(), use_numpy)

    def close(self):
        """Unmaps and closes the descriptor. Arrays still referring to the
        mapping keep it alive (the unmap then happens when they go)."""
        if isinstance(self._mm, mmap.mmap):
            try:
                self._mm.close()
            except BufferError:
                pass  # views still exported: the mapping goes with them
        self._mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self):
        return f"LoaderFile({self.path!r}, {self.size} bytes, {self.index + 1}/{self.total})"


class Client:
    """One connection to the loader socket, watching one release."""

    def __init__(self, path, timeout=None):
        """Connects to the socket at |path|. |timeout|: seconds any one wait
        for the daemon may last (TimeoutError after), None: forever."""
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
            # The socket stays in blocking mode, the timeout set in the
            # kernel (SO_RCVTIMEO): a Python socket timeout would poll()
            # first and recvmsg() after, two wake-ups and two trips for the
            # GIL on the hand-off path instead of one.
            if timeout is not None:
                tv = struct.pack("@ll", int(timeout), int((timeout % 1) * 1e6))
                if tv == struct.pack("@ll", 0, 0):
                    tv = struct.pack("@ll", 0, 1)  # zero would mean "never"
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        except PermissionError as e:
            self.sock.close()
            raise _denied(path, e) from None
        except OSError:
            self.sock.close()
            raise
        self._buf = bytearray()
        self._fds = []  # (fd, received_ns), oldest first
        self._wanted = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for fd, _ in self._fds:
            os.close(fd)
        self._fds = []
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def want(self, release, order=None):
        """Asks for |release| ("org/name@commit", "datasets/org/name@commit"
        for a dataset, a branch or tag the daemon resolves, or a 64-hex
        manifest id) and
        returns an iterator of LoaderFile in arrival order. |order| lists the
        paths wanted, most urgent first; None: every file of the release."""
        order = list(order or [])
        if self._wanted:
            raise LoaderError("one want() per connection")
        if not release or len(release.encode()) > RELEASE_MAX:
            raise ValueError("release must be 1..256 bytes")
        if len(order) > ORDER_MAX:
            raise ValueError(f"at most {ORDER_MAX} paths")
        for p in order:
            if not p or len(p.encode()) > PATH_MAX:
                raise ValueError(f"bad path {p!r}")
        try:
            self.sock.sendall(_frame([LOADER_WANT, release, order]))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we asked: its LOADER_ERROR is waiting to be read
        except BlockingIOError:  # SO_SNDTIMEO expired
            raise TimeoutError("the daemon did not take the request in time") from None
        self._wanted = True
        return self._files()

    def _recv(self):
        try:
            data, anc, flags, _ = self.sock.recvmsg(
                65536, socket.CMSG_SPACE(CMSG_FDS * 4), socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, socket.timeout):  # SO_RCVTIMEO expired
            raise TimeoutError("no event from the daemon in time") from None
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                n = len(cdata) // 4
                self._fds.extend((fd, now) for fd in struct.unpack(f"{n}i", cdata[:n * 4]))
        if flags & socket.MSG_CTRUNC:
            raise LoaderError("descriptors were dropped (control buffer too small)")
        if not data:
            raise LoaderError("the daemon closed the connection before LOADER_DONE")
        self._buf += data

    def _next_body(self):
        while True:
            if len(self._buf) >= 4:
                (n,) = struct.unpack(">I", self._buf[:4])
                if n == 0 or n > FRAME_MAX:
                    raise LoaderError(f"frame length {n} out of bounds")
                if len(self._buf) >= 4 + n:
                    body = bytes(self._buf[4:4 + n])
                    del self._buf[:4 + n]
                    return body
            self._recv()

    def _files(self):
        got, total = 0, None
        while True:
            msg = _Reader(self._next_body()).item()
            if not isinstance(msg, list) or not msg or not isinstance(msg[0], int):
                raise LoaderError("frame is not [type, ...]")
            t = msg[0]
            if t == LOADER_FILE:
                if len(msg) < 6:
                    raise LoaderError("LOADER_FILE has too few fields")
                path, size, sha, index, total = msg[1:6]
                ready = msg[6] if len(msg) > 6 and isinstance(msg[6], int) else 0
                if not (isinstance(path, str) and isinstance(size, int) and
                        isinstance(sha, bytes) and len(sha) == 32 and
                        isinstance(index, int) and isinstance(total, int) and
                        0 <= index < total):
                    raise LoaderError("LOADER_FILE fields are malformed")
                if not self._fds:
                    raise LoaderError("LOADER_FILE arrived without its descriptor")
                fd, received = self._fds.pop(0)
                got += 1
                yield LoaderFile(path, size, sha, index, total, ready, fd, received)
            elif t == LOADER_DONE:
                # Every file announced must have come: a LOADER_DONE short of
                # them is a daemon bug or a dropped release, not success.
                files = msg[1] if len(msg) > 1 and isinstance(msg[1], int) else None
                if (total is not None and got != total) or (files is not None and got != files):
                    raise LoaderError(f"LOADER_DONE after {got} files of "
                                      f"{total if total is not None else files}")
                return
            elif t == LOADER_ERROR:
                raise LoaderError(str(msg[1]) if len(msg) > 1 else "LOADER_ERROR")
            else:
                raise LoaderError(f"unexpected message type {t}")
