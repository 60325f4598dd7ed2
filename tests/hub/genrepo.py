# SPDX-License-Identifier: MIT
"""Synthetic Hugging Face model/dataset repos for the Hub stand-in.

Writes one commit of a repo into the stand-in's on-disk layout (see
hubstub.py's docstring): safetensors shards with valid headers and bf16
tensors drawn from small-std normal distributions, config.json, a
tokenizer.json with a BPE-looking vocab, and model.safetensors.index.json.
The commit id is the SHA-1 of the sorted content listing (path, sha256,
size, parent), so the same seed and options always give the same commit.
Running it again on an existing repo adds a commit and moves the branch
(and tag, if given), which gives tests related revisions to diff.

Values come from numpy when it is importable (fast enough for many GiB,
written in blocks); otherwise a pure-python generator is used, which is
only meant for small sizes. The two generators give different bytes for
the same seed; each is deterministic on its own.

Usage: genrepo.py ROOT org/name [--size 1G] [--shards 8] [--seed 1]
       [--branch main] [--tag v1] [--private] [--gated] [--grant TOKEN]
       [--dataset] [--vocab 32000] [--print-json]
Prints the commit id (or a JSON summary with --print-json).
"""

import argparse
import shutil
import hashlib
import json
import os
import random
import struct
import sys

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".gguf", ".parquet", ".pt")
LFS_MIN_SIZE = 10 * 1024 * 1024
BLOCK_VALUES = 1 << 22  # bf16 values generated per numpy block (8 MiB)

try:
    import numpy as np
except ImportError:  # the fallback is fine for the small repos unit tests use
    np = None


def parse_size(text):
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().rstrip("B").rstrip("I")
    num = t.rstrip("KMGT")
    unit = t[len(num):]
    if unit not in units or not num:
        raise argparse.ArgumentTypeError("bad size %r (e.g. 512K, 64M, 1G)" % text)
    return int(float(num) * units[unit])


def git_blob_sha1(data_len, chunks):
    h = hashlib.sha1(b"blob %d\0" % data_len)
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def lfs_pointer(sha256, size):
    return ("version https://git-lfs.github.com/spec/v1\n"
            "oid sha256:%s\nsize %d\n" % (sha256, size)).encode()


def is_lfs(path, size):
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def tensor_plan(shard_bytes, hidden, layer0, nshard):
    """Names and shapes of the tensors filling about |shard_bytes| of bf16."""
    plan = []
    left = shard_bytes // 2
    layer = layer0
    kinds = [("self_attn.q_proj.weight", 1), ("self_attn.k_proj.weight", 1),
             ("self_attn.v_proj.weight", 1), ("self_attn.o_proj.weight", 1),
             ("mlp.gate_proj.weight", 2), ("mlp.up_proj.weight", 2),
             ("mlp.down_proj.weight", 2), ("input_layernorm.weight", 0)]
    while left > 0:
        for kind, mult in kinds:
            if left <= 0:
                break
            name = "model.layers.%d.%s" % (layer, kind)
            if mult == 0:
                shape = [hidden]
            else:
                rows = hidden * mult
                # The last tensor of a shard is cut short so the shard ends
                # near the size asked for.
                if rows * hidden > left:
                    rows = max(1, left // hidden)
                shape = [rows, hidden]
            n = shape[0] * (shape[1] if len(shape) > 1 else 1)
            plan.append((name, shape, n))
            left -= n
        layer += 1
    return plan, layer


def write_bf16_numpy(f, rng, n, std, mean, sha):
    done = 0
    while done < n:
        k = min(BLOCK_VALUES, n - done)
        x = rng.standard_normal(k, dtype=np.float32)
        x *= np.float32(std)
        if mean:
            x += np.float32(mean)
        # bf16 is the top half of a float32: truncation, as the brief asks.
        b = (x.view(np.uint32) >> 16).astype("<u2").tobytes()
        f.write(b)
        sha.update(b)
        done += k


def write_bf16_python(f, rnd, n, std, mean, sha):
    out = bytearray()
    pack = struct.Struct("<f").pack
    for _ in range(n):
        v = pack(rnd.gauss(mean, std))
        out += v[2:4]
        if len(out) >= 1 << 16:
            f.write(out)
            sha.update(out)
            out = bytearray()
    f.write(out)
    sha.update(out)


def write_shard(path, plan, seed, shard_index):
    header = {"__metadata__": {"format": "pt", "generator": "shoal-genrepo"}}
    off = 0
    for name, shape, n in plan:
        header[name] = {"dtype": "BF16", "shape": shape,
                        "data_offsets": [off, off + 2 * n]}
        off += 2 * n
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)  # safetensors pads the header to 8
    sha = hashlib.sha256()
    gsha = hashlib.sha1()
    size = 8 + len(hj) + off
    gsha.update(b"blob %d\0" % size)

    class Tee:
        def __init__(self, fh):
            self.fh = fh

        def write(self, b):
            self.fh.write(b)
            gsha.update(b)

    with open(path, "wb") as fh:
        f = Tee(fh)
        head = struct.pack("<Q", len(hj)) + hj
        f.write(head)
        sha.update(head)
        if np is not None:
            rng = np.random.default_rng([seed, shard_index])
        else:
            rnd = random.Random(seed * 1000003 + shard_index)
        for i, (name, shape, n) in enumerate(plan):
            # Layer norms sit near 1, projections have a small per-tensor std,
            # as in trained weights.
            if name.endswith("layernorm.weight"):
                std, mean = 0.02, 1.0
            else:
                std, mean = 0.006 + 0.03 * ((i * 7919 + shard_index) % 97) / 97.0, 0.0
            if np is not None:
                write_bf16_numpy(f, rng, n, std, mean, sha)
            else:
                write_bf16_python(f, rnd, n, std, mean, sha)
    return size, sha.hexdigest(), gsha.hexdigest()


def tokenizer_json(vocab_size, seed):
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab.setdefault("<0x%02X>" % b, len(vocab))
    merges = []
    while len(vocab) < vocab_size:
        w = "".join(rnd.choice(letters) for _ in range(rnd.randint(2, 9)))
        if rnd.random() < 0.6:
            w = "\u2581" + w  # sentencepiece's word-start marker
        if w not in vocab:
            vocab[w] = len(vocab)
            if len(w) > 2:
                cut = rnd.randint(1, len(w) - 1)
                merges.append("%s %s" % (w[:cut], w[cut:]))
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": t, "special": True}
                         for t, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2))],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "byte_fallback": True, "vocab": vocab, "merges": merges},
    }
    return json.dumps(doc, ensure_ascii=False, indent=2).encode()


def pick_hidden(total):
    for hidden, limit in ((256, 64 << 20), (1024, 2 << 30), (2048, 16 << 30)):
        if total <= limit:
            return hidden
    return 4096


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root")
    ap.add_argument("repo", help="org/name")
    ap.add_argument("--size", type=parse_size, default=parse_size("4M"),
                    help="total bytes of weights, e.g. 1G")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--branch", default="main")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--gated", action="store_true")
    ap.add_argument("--grant", action="append", default=[],
                    help="token allowed into a gated repo (repeatable)")
    ap.add_argument("--dataset", action="store_true")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--print-json", action="store_true")
    ap.add_argument("--extra-files", type=int, default=0,
                    help="also N small git-stored files data/part-NNNNN.txt (a repo "
                         "with more files than the Hub lists in siblings)")
    ap.add_argument("--extra-path", action="append", default=[],
                    help="also a small file at this path (folders made)")
    a = ap.parse_args(argv)

    if a.repo.count("/") > 1 or not a.repo.strip("/") or ".." in a.repo:
        ap.error("repo must be name or org/name")
    if a.shards < 1 or a.shards > 10000:
        ap.error("--shards must be 1..10000")
    kind = "datasets" if a.dataset else "models"
    repo_dir = os.path.join(a.root, kind, a.repo)
    os.makedirs(os.path.join(repo_dir, "commits"), exist_ok=True)
    meta_path = os.path.join(repo_dir, "repo.json")
    meta = {"private": False, "gated": False, "granted": [],
            "branches": {}, "tags": {}}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta.update(json.load(f))
    meta["private"] = meta["private"] or a.private
    meta["gated"] = meta["gated"] or a.gated
    meta["granted"] = sorted(set(meta["granted"]) | set(a.grant))
    parent = meta["branches"].get(a.branch, "")

    stage = os.path.join(repo_dir, "commits", ".stage-%d" % os.getpid())
    os.makedirs(stage)
    files = []

    def add_bytes(path, data):
        if "/" in path:
            os.makedirs(os.path.join(stage, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(stage, path), "wb") as f:
            f.write(data)
        files.append({"path": path, "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest(),
                      "git_sha1": git_blob_sha1(len(data), [data])})

    hidden = pick_hidden(a.size)
    per_shard = max(2 * hidden, a.size // a.shards)
    weight_map = {}
    layer = 0
    total = 0
    for s in range(a.shards):
        name = "model-%05d-of-%05d.safetensors" % (s + 1, a.shards)
        if a.shards == 1:
            name = "model.safetensors"
        plan, layer = tensor_plan(per_shard, hidden, layer, s)
        size, sha, gsha = write_shard(os.path.join(stage, name), plan, a.seed, s)
        files.append({"path": name, "size": size, "sha256": sha, "git_sha1": gsha})
        for tname, _, n in plan:
            weight_map[tname] = name
            total += 2 * n
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": hidden, "intermediate_size": 2 * hidden,
              "num_hidden_layers": layer, "num_attention_heads": max(1, hidden // 128),
              "vocab_size": a.vocab, "torch_dtype": "bfloat16",
              "rms_norm_eps": 1e-5, "shoal_seed": a.seed}
    add_bytes("config.json", json.dumps(config, indent=2).encode() + b"\n")
    add_bytes("tokenizer.json", tokenizer_json(a.vocab, a.seed))
    if a.shards > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        add_bytes("model.safetensors.index.json",
                  json.dumps(index, indent=2, sort_keys=True).encode() + b"\n")

    for i in range(a.extra_files):
        add_bytes("data/part-%05d.txt" % i, b"part %d of %d, seed %d\n" % (i, a.extra_files, a.seed))
    for p in a.extra_path:
        add_bytes(p, b"extra file %s\n" % p.encode())

    for f in files:
        f["lfs"] = is_lfs(f["path"], f["size"])
        if f["lfs"]:
            ptr = lfs_pointer(f["sha256"], f["size"])
            f["blob_id"] = git_blob_sha1(len(ptr), [ptr])
            f["pointer_size"] = len(ptr)
        else:
            f["blob_id"] = f["git_sha1"]
        del f["git_sha1"]
    files.sort(key=lambda f: f["path"])
    listing = "".join("%s %s %d\n" % (f["path"], f["sha256"], f["size"]) for f in files)
    commit = hashlib.sha1(("parent %s\n" % parent + listing).encode()).hexdigest()

    final = os.path.join(repo_dir, "commits", commit)
    if os.path.exists(final):
        # Same content and parent: the commit already exists, keep it.
        shutil.rmtree(stage)
    else:
        with open(os.path.join(stage, ".files.json"), "w") as fh:
            json.dump({"commit": commit, "parent": parent, "files": files}, fh, indent=1)
        os.rename(stage, final)
    meta["branches"][a.branch] = commit
    if a.tag:
        meta["tags"][a.tag] = commit
    tmp = meta_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
    os.replace(tmp, meta_path)

    if a.print_json:
        print(json.dumps({"repo": a.repo, "type": kind[:-1], "commit": commit,
                          "files": files}))
    else:
        print(commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
