#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Example loader: takes a model from shoald shard by shard, as each shard is
verified, and hands every tensor to the accelerator with no copy on the host.

    load_model.py SOCKET RELEASE [SHARD ...]

RELEASE is "org/name@<commit>" or the release's 64-hex manifest id (which
makes shoald fetch it if it does not hold it). SHARDs are the safetensors
files in the order this loader will use them (for example the shards of
the first layers first); without them, every .safetensors file of the
release is taken as it arrives.

Where the hand-off happens: each tensor arrives as a read-only numpy view of
the daemon's own pages (the HF-cache blob, or the memfd with --store
memory). jax.device_put / torch.from_numpy(...).to(device) take over from
there; they copy host -> device, which is the only copy. Without jax or torch
installed, this prints what it would hand over.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import shoal_loader  # noqa: E402  (node/shoal_loader.py)


def pick_backend():
    """Returns (name, put) where put(name, array) moves one tensor."""
    try:
        import jax
        dev = jax.devices()[0]
        return f"jax on {dev}", lambda name, a: jax.device_put(a, dev)
    except ImportError:
        pass
    try:
        import torch
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        # from_numpy shares the mapping; .to(dev) is the host->device copy.
        # (torch warns about read-only arrays; the data is never written.)
        return f"torch on {dev}", lambda name, a: torch.from_numpy(a).to(dev)
    except ImportError:
        pass

    def dry_run(name, a):
        shape = getattr(a, "shape", None)
        dtype = getattr(a, "dtype", "bytes")
        nbytes = getattr(a, "nbytes", len(a))
        print(f"  would hand over {name}: {dtype}{list(shape) if shape is not None else ''} "
              f"{nbytes} bytes")
        return None
    return "dry run (no jax or torch installed)", dry_run


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        load(*sys.argv[1:3], sys.argv[3:])
    except shoal_loader.LoaderError as e:
        # What the daemon said (unknown release, no such file) or a broken
        # frame: a message for the person who ran us, not a traceback.
        sys.exit(f"load_model: {e}")
    except OSError as e:
        sys.exit(f"load_model: loader socket {sys.argv[1]}: {e.strerror or e}"
                 " (is shoald running with --loader-socket there, and may you use it?)")
    except ValueError as e:
        sys.exit(f"load_model: {e}")


def load(sock, release, order):
    backend, put = pick_backend()
    print(f"loader: {release} via {sock}, backend: {backend}")
    t0 = time.monotonic()
    device_tensors = {}
    with shoal_loader.Client(sock) as client:
        for f in client.want(release, order or None):
            if not f.path.endswith(".safetensors"):
                print(f"[{f.index + 1}/{f.total}] {f.path}: {f.size} bytes (not a shard)")
                f.close()
                continue
            print(f"[{f.index + 1}/{f.total}] {f.path}: {f.size} bytes after "
                  f"{time.monotonic() - t0:.2f} s")
            for name, tensor in f.tensors():
                device_tensors[name] = put(name, tensor)  # <- the accelerator takes over here
            f.close()  # the device holds its copy; the host mapping can go
    print(f"loader: {len(device_tensors)} tensors in {time.monotonic() - t0:.2f} s")


if __name__ == "__main__":
    main()
