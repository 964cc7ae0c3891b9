#!/usr/bin/env python3
"""Dev-only check: ggml's own dequantization (dequantize_row_* and
ggml_fp16_to_fp32_row of a libggml-base built from ggml's public source) of
every tensor of a GGUF file equals, bit for bit, the weights libqerr reads
from that file (qerr.Model.load), with q/k rows in llama.cpp's order. Skips
when ggml's library is absent.

  bench/gguf_ggml_dequant.py FILE.gguf...
  env: PEER_GGML_LIB (libggml-base.so), else NODE_LLAMA_CPP_DIR's prebuilt one;
       QERR_LIBRARY (libqerr.so for the Python bindings)
"""
import ctypes, os, struct, sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings",
                                "python"))
import qerr  # noqa: E402

BLOCKS = {2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20), 6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24),
          8: ("q8_0", 32, 34), 10: ("q2_K", 256, 84), 11: ("q3_K", 256, 110),
          12: ("q4_K", 256, 144), 13: ("q5_K", 256, 176), 14: ("q6_K", 256, 210)}
SCALAR = {0: 1, 1: 1, 2: 1, 3: 1, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # by value type


def read_gguf(path):
    """(alignment, [(name, type, ne, offset)], data start, raw bytes)."""
    raw = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, raw, pos)
        pos += struct.calcsize(fmt)
        return v if len(v) > 1 else v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = raw[pos:pos + n]
        pos += n
        return s.decode("utf-8", "replace")

    def skip(t, count=1):
        nonlocal pos
        for _ in range(count):
            if t == 8:
                string()
            else:
                pos += SCALAR[t]

    assert raw[:4] == b"GGUF", "not a GGUF file"
    pos = 4
    _, nt, nkv = take("<IQQ")
    align = 32
    for _ in range(nkv):
        key = string()
        t = take("<I")
        if t == 9:
            et, n = take("<IQ")
            skip(et, n)
        elif key == "general.alignment":
            align = take("<I")
        else:
            skip(t)
    tensors = []
    for _ in range(nt):
        name = string()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        t, off = take("<IQ")
        tensors.append((name, t, ne, off))
    start = (pos + align - 1) // align * align
    return tensors, start, raw


def ggml_lib():
    path = os.environ.get("PEER_GGML_LIB") or os.path.join(
        os.environ.get("NODE_LLAMA_CPP_DIR", "node_modules"),
        "@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so")
    return ctypes.CDLL(path) if os.path.exists(path) else None


def ggml_dequant(lib, t, buf, numel):
    out = np.empty(numel, dtype=np.float32)
    src = (ctypes.c_uint8 * len(buf)).from_buffer_copy(buf)
    dst = out.ctypes.data_as(ctypes.c_void_p)
    if t == 0:
        return np.frombuffer(buf, dtype="<f4").copy()
    if t == 1:
        lib.ggml_fp16_to_fp32_row(src, dst, ctypes.c_int64(numel))
    else:
        getattr(lib, "dequantize_row_" + BLOCKS[t][0])(src, dst, ctypes.c_int64(numel))
    return out


def to_hf(name):
    if name == "token_embd.weight": return "model.embed_tokens.weight"
    if name == "output.weight": return "lm_head.weight"
    if name == "output_norm.weight": return "model.norm.weight"
    parts = name.split(".")
    table = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    return "model.layers.%s.%s.%s" % (parts[1], table[parts[2]], parts[3])


def interleave(w, head_dim):
    """llama.cpp's converter order: per head, rotate-half rows -> interleaved pairs."""
    rows = w.shape[0]
    return w.reshape(rows // head_dim, 2, head_dim // 2, -1).swapaxes(1, 2).reshape(w.shape)


def check(path, lib):
    tensors, start, raw = read_gguf(path)
    m = qerr.Model.load(path)
    hd = m.config_value("hidden_size") // m.config_value("num_attention_heads")
    bad, counts = 0, {}
    for name, t, ne, off in tensors:
        numel = int(np.prod(ne))
        if t in BLOCKS:
            _, blk, size = BLOCKS[t]
            nbytes = numel // blk * size
        else:
            nbytes = numel * (4 if t == 0 else 2)
        ref = ggml_dequant(lib, t, raw[start + off:start + off + nbytes], numel)
        ours = m.tensor(to_hf(name)).reshape(-1)
        if ".attn_q." in name or ".attn_k." in name:
            ours = interleave(ours.reshape(ne[1], ne[0]), hd).reshape(-1)
        same = np.array_equal(ref.view(np.uint32), ours.view(np.uint32))
        counts[t] = counts.get(t, 0) + 1
        if not same:
            bad += 1
            print("  %s: differs (%d of %d values)" % (name, int((ref != ours).sum()), numel))
    m.close()
    kinds = ", ".join("%d %s" % (n, BLOCKS[t][0] if t in BLOCKS else ["F32", "F16"][t])
                      for t, n in sorted(counts.items()))
    print("%s: %d tensors (%s): %s" % (os.path.basename(path), len(tensors), kinds,
                                        "all bit-identical" if not bad else "%d differ" % bad))
    return bad == 0


def main():
    lib = ggml_lib()
    if lib is None:
        print("gguf_ggml_dequant: SKIPPED (no libggml-base.so: set PEER_GGML_LIB or "
              "NODE_LLAMA_CPP_DIR)")
        return 0
    lib.ggml_fp16_to_fp32_row.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    for info in BLOCKS.values():
        getattr(lib, "dequantize_row_" + info[0]).argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                              ctypes.c_int64]
    ok = all([check(p, lib) for p in sys.argv[1:]])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
