#!/usr/bin/python3
"""Check libqerr's GPTQ checkpoints against the reference implementations'
own torch code (dev only; needs python3-torch and checkouts of the peers).

  QERR_AUTOGPTQ_DIR   an AutoGPTQ checkout  (auto_gptq/nn_modules/qlinear/*.py)
  QERR_GPTQMODEL_DIR  a GPTQModel checkout  (gptqmodel/utils/model_dequant.py)
  QERR_GPTQ_DIR       the GPTQ authors' repository (quant.py, Quant3Linear)
  usage: check_gptq_reference.py BUILD_DIR SHARED_DATA_DIR

For every bits {2,3,4,8} x group size {32, 128, -1} x act-order {0,1}:
 1. reference packs, libqerr reads: random codes, zero points, float16
    scales and g_idx are packed by AutoGPTQ's QuantLinear.pack (v1; the
    GPTQ authors' Quant3Linear.pack must give the same 3-bit qweight) and
    GPTQModel's pack_cols (v2 qzeros) into a tiny-llama checkpoint;
    qerr_model_load must give W = s * (q - z) bit for bit.
 2. libqerr writes, reference reads: `qerr quantize --format gptq|gptq_v2`
    (GPTQ, symmetric and asymmetric); GPTQModel's convert_gptq_file (float32)
    and AutoGPTQ's QuantLinear forward (v1: float16 as shipped, and with
    float32 scales) must give libqerr's dequantized weights bit for bit.
Nothing of the peers is copied: their files are loaded from the checkouts.
Exit 77 (skip) when torch or a checkout is absent.
"""
import __future__, ast, ctypes, importlib.util, json, logging, os, shutil, struct, subprocess, sys
import tempfile, types
from collections import defaultdict
from pathlib import Path

SKIP = 77
try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(SKIP)

REFS = {k: os.environ.get(k) for k in ("QERR_AUTOGPTQ_DIR", "QERR_GPTQMODEL_DIR", "QERR_GPTQ_DIR")}
if not all(v and Path(v).is_dir() for v in REFS.values()):
    print("SKIP: set QERR_AUTOGPTQ_DIR, QERR_GPTQMODEL_DIR and QERR_GPTQ_DIR to checkouts")
    sys.exit(SKIP)
if len(sys.argv) != 3:
    sys.exit(__doc__)
BUILD, DATA = Path(sys.argv[1]), Path(sys.argv[2])
MODEL = DATA / "tiny-llama"
if not (MODEL / "model.safetensors").is_file():
    print(f"SKIP: {MODEL} is absent")
    sys.exit(SKIP)

# ---- safetensors in plain Python (the peers' own reader is not installed) --
DT = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
      "I32": (torch.int32, 4)}
DT_NAME = {v[0]: k for k, v in DT.items()}

def st_read(path):
    b = Path(path).read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        dt = DT[v["dtype"]][0]
        raw = bytearray(b[8 + n + s:8 + n + e])
        out[k] = torch.frombuffer(raw, dtype=dt).reshape(v["shape"]).clone() if e > s else \
            torch.zeros(v["shape"], dtype=dt)
    return out

def st_write(path, tensors):
    head, blobs, at = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        head[k] = {"dtype": DT_NAME[t.dtype], "shape": list(t.shape),
                   "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))

class SafeOpen:  # the subset of safetensors.safe_open GPTQModel's code calls
    def __init__(self, path, framework="pt", device="cpu"):
        self.t = st_read(path)
    def __enter__(self):
        return self
    def __exit__(self, *a):
        return False
    def keys(self):
        return list(self.t)
    def get_tensor(self, k):
        return self.t[k]

# ---- the references, loaded from their checkouts --------------------------
def load_file_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

# AutoGPTQ's qlinear files import transformers only for isinstance(Conv1D)
tf = types.ModuleType("transformers")
tf.pytorch_utils = types.SimpleNamespace(Conv1D=type("Conv1D", (), {}))
sys.modules.setdefault("transformers", tf)
logging.disable(logging.WARNING)
AG = Path(REFS["QERR_AUTOGPTQ_DIR"]) / "auto_gptq/nn_modules/qlinear"
ag_cuda = load_file_module("ag_qlinear_cuda", AG / "qlinear_cuda.py")
ag_cuda_old = load_file_module("ag_qlinear_cuda_old", AG / "qlinear_cuda_old.py")
ist = load_file_module("ist_quant", Path(REFS["QERR_GPTQ_DIR"]) / "quant.py")

def gptqmodel_functions():
    """GPTQModel's safetensors-level GPTQ dequantizer and packers, taken
    function by function from model_dequant.py (the package itself needs
    dependencies Debian does not ship)."""
    src = Path(REFS["QERR_GPTQMODEL_DIR"]) / "gptqmodel/utils/model_dequant.py"
    tree = ast.parse(src.read_text())
    want = {"unpack_cols", "pack_cols", "unpack_rows", "_require_int32_words_for_3bit",
            "_unpack_cols_3bit", "_pack_cols_3bit", "_unpack_rows_3bit", "_uses_gptq_v1_qzeros",
            "_shift_gptq_qzeros", "_correct_gptq_v1_qzeros", "convert_gptq_file",
            "finalize_for_save", "_handle_ignored_tensor", "_tensor_key_matches_ignored_layer",
            "_is_quant_auxiliary_tensor_key"}
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in want]
    assert {n.name for n in body} == want, "model_dequant.py changed: " + str(want - {n.name for n in body})
    ns = {"torch": torch, "Path": Path, "defaultdict": defaultdict, "safe_open": SafeOpen,
          "LOG": logging.getLogger("gptqmodel"), "PLANAR_BITS": (5, 6, 7),
          "Dict": dict, "Iterable": object, "Optional": object, "Tuple": tuple,
          "__builtins__": __builtins__}
    code = compile(ast.Module(body=body, type_ignores=[]), str(src), "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)
    exec(code, ns)
    return types.SimpleNamespace(**{k: ns[k] for k in want})

gm = gptqmodel_functions()

# ---- libqerr through its C API --------------------------------------------
lib = ctypes.CDLL(str(BUILD / "libqerr.so"))
lib.qerr_last_error.restype = ctypes.c_char_p
lib.qerr_tensor_data.restype = ctypes.c_void_p
lib.qerr_tensor_numel.restype = ctypes.c_int64
lib.qerr_model_tensor_name.restype = ctypes.c_char_p

def qerr_weights(d):
    m = ctypes.c_void_p()
    if lib.qerr_model_load(ctypes.byref(m), str(d).encode()) != 0:
        raise RuntimeError(lib.qerr_last_error().decode())
    out = {}
    for i in range(lib.qerr_model_tensor_count(m)):
        name = lib.qerr_model_tensor_name(m, i).decode()
        t = ctypes.c_void_p()
        assert lib.qerr_model_tensor(m, name.encode(), ctypes.byref(t)) == 0
        n = lib.qerr_tensor_numel(t)
        buf = (ctypes.c_float * n).from_address(lib.qerr_tensor_data(t))
        out[name] = torch.tensor(np.ctypeslib.as_array(buf).copy())
    lib.qerr_model_free(m)
    return out

def bits_equal(a, b):
    a, b = a.contiguous(), b.contiguous()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    w = torch.int32 if a.element_size() == 4 else torch.int16
    return bool(torch.equal(a.view(w), b.view(w)))

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
cfg0 = json.loads((MODEL / "config.json").read_text())
float_tensors = st_read(MODEL / "model.safetensors")
modules = [f"model.layers.{l}.{n}" for l in range(cfg0["num_hidden_layers"]) for n in LINEARS]
failures, checks = [], 0

def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print("FAIL", what, flush=True)

def qcfg(bits, gs, act, v2):
    return {"bits": bits, "group_size": gs, "desc_act": act, "sym": False, "quant_method": "gptq",
            "checkpoint_format": "gptq_v2" if v2 else "gptq"}

# ---- 1. the reference packs, libqerr reads --------------------------------
def reference_packed(bits, gs, act, seed):
    g = torch.Generator().manual_seed(seed)
    maxq = 2 ** bits - 1
    tensors = {k: v for k, v in float_tensors.items()
               if not any(k.startswith(m + ".") for m in modules)}
    v2_tensors, expect = dict(tensors), {}
    for name in modules:
        W0 = float_tensors[name + ".weight"]
        N, K = W0.shape
        gsz = K if gs == -1 else gs
        G = (K + gsz - 1) // gsz
        if act:  # GPTQ's act-order map: columns in a permuted order, groups along it
            perm = torch.randperm(K, generator=g)
            g_idx = torch.empty(K, dtype=torch.int32)
            g_idx[perm] = (torch.arange(K) // gsz).to(torch.int32)
        else:
            g_idx = (torch.arange(K) // gsz).to(torch.int32)
        q = torch.randint(0, maxq + 1, (N, K), generator=g)
        z = torch.randint(1, maxq + 1, (N, G), generator=g)  # v1 cannot hold zero 0
        s = (torch.rand(N, G, generator=g) * 0.05 + 1e-3).half().float()
        gl = g_idx.long()
        W = s[:, gl] * (q - z[:, gl]).float()  # exact: float16 scale x small integer
        lin = torch.nn.Linear(K, N, bias=False)
        lin.weight.data = W.clone()
        ql = ag_cuda.QuantLinear(bits, gs, K, N, False, weight_dtype=torch.float32)
        ql.pack(lin, s.clone(), z.clone().float(), g_idx.clone())
        if bits == 3 and gs == -1 and not act:  # the GPTQ authors' 3-bit packer agrees
            q3 = ist.Quant3Linear(K, N)
            q3.pack(lin, s.clone(), z.clone().float())
            check(torch.equal(q3.qweight, ql.qweight), f"Quant3Linear qweight == AutoGPTQ {name}")
        tensors[name + ".qweight"] = ql.qweight
        tensors[name + ".qzeros"] = ql.qzeros
        tensors[name + ".scales"] = ql.scales.half()
        tensors[name + ".g_idx"] = ql.g_idx.to(torch.int32)
        for part in (".qweight", ".scales", ".g_idx"):
            v2_tensors[name + part] = tensors[name + part]
        # v2 stores the zero points themselves: GPTQModel's packer, [G, N * bits / 32]
        v2_tensors[name + ".qzeros"] = gm.pack_cols(z.t().contiguous().to(torch.int32), bits,
                                                    pack_dtype=torch.int32)
        expect[name + ".weight"] = W
    return tensors, v2_tensors, expect

def write_dir(d, tensors, qc):
    d.mkdir()
    st_write(d / "model.safetensors", tensors)
    cfg = dict(cfg0, quantization_config=qc)
    (d / "config.json").write_text(json.dumps(cfg, indent=2))

# ---- 2. libqerr writes, the reference reads -------------------------------
def qerr_quantize(out, bits, gs, act, sym, fmt):
    plan = f"gptq:bits={bits},group_size={gs},act_order={int(act)},symmetric={int(sym)}"
    cmd = [str(BUILD / "tools/qerr"), "quantize", "--model", str(MODEL), "--calib",
           str(MODEL / "calib.u32"), "--plan", plan, "--nsamples", "8", "--ctx", "64",
           "--threads", "2", "--quiet", "--format", fmt, "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)

def autogptq_weight(mod, t, bits, gs, scale_dtype):
    """AutoGPTQ's own torch dequantization: its forward's matmul(x, weights)
    is intercepted to return the weights it built (CPU torch has no float16
    matmul)."""
    N = t["scales"].shape[1]
    K = t["g_idx"].shape[0]
    ql = mod.QuantLinear(bits, gs, K, N, False, weight_dtype=scale_dtype)
    ql.qweight, ql.qzeros = t["qweight"], t["qzeros"]
    ql.scales = t["scales"].to(scale_dtype)
    if hasattr(ql, "g_idx"):
        ql.g_idx = t["g_idx"]
    matmul = torch.matmul
    torch.matmul = lambda x, w: w
    try:
        with torch.no_grad():
            w = ql(torch.zeros(K, K, dtype=scale_dtype))
    finally:
        torch.matmul = matmul
    assert w.dtype == scale_dtype
    return w.t().contiguous()  # [N, K]

def run():
    tmp = Path(tempfile.mkdtemp(prefix="qerr_gptq_ref_"))
    try:
        seed = 0
        for bits in (2, 3, 4, 8):
            for gs in (32, 128, -1):
                for act in (False, True):
                    seed += 1
                    tag = f"bits={bits} group_size={gs} act_order={int(act)}"
                    v1, v2, expect = reference_packed(bits, gs, act, seed)
                    for fmt, tensors in (("gptq", v1), ("gptq_v2", v2)):
                        d = tmp / f"ref-{seed}-{fmt}"
                        write_dir(d, tensors, qcfg(bits, gs, act, fmt == "gptq_v2"))
                        got = qerr_weights(d)
                        ok = all(bits_equal(got[k], expect[k].reshape(-1)) for k in expect)
                        check(ok, f"reference-packed {fmt} {tag}: libqerr reads the weights")
                        shutil.rmtree(d)
                    if seed == 1:  # control: the comparison can fail
                        d = tmp / "control"
                        write_dir(d, v1, qcfg(bits, gs, act, True))  # v1 zeros declared v2
                        got = qerr_weights(d)
                        check(not all(bits_equal(got[k], expect[k].reshape(-1)) for k in expect),
                              "control: v1 zero points read as v2 give other weights")
                        shutil.rmtree(d)
                    for fmt in ("gptq", "gptq_v2"):
                        sym = fmt == "gptq" or bits % 2 == 0  # v2 also asymmetric
                        d = tmp / f"qerr-{seed}-{fmt}"
                        qerr_quantize(d, bits, gs, act, sym, fmt)
                        got = qerr_weights(d)
                        qc = json.loads((d / "config.json").read_text())["quantization_config"]
                        ref = gm.convert_gptq_file(d / "model.safetensors", torch.float32, qc, "cpu")
                        ok = all(bits_equal(ref[m + ".weight"].reshape(-1), got[m + ".weight"])
                                 for m in modules)
                        check(ok, f"libqerr {fmt} {tag} sym={int(sym)}: GPTQModel convert_gptq_file")
                        if fmt == "gptq":
                            st = st_read(d / "model.safetensors")
                            ok16 = ok32 = okold = True
                            for m in modules:
                                t = {p: st[f"{m}.{p}"] for p in ("qweight", "qzeros", "scales", "g_idx")}
                                w = got[m + ".weight"].reshape(t["scales"].shape[1], -1)
                                ok16 &= bits_equal(autogptq_weight(ag_cuda, t, bits, gs, torch.float16), w.half())
                                ok32 &= bits_equal(autogptq_weight(ag_cuda, t, bits, gs, torch.float32), w)
                                if not act:
                                    okold &= bits_equal(autogptq_weight(ag_cuda_old, t, bits, gs, torch.float16), w.half())
                            check(ok16, f"libqerr gptq {tag}: AutoGPTQ QuantLinear (float16)")
                            check(ok32, f"libqerr gptq {tag}: AutoGPTQ QuantLinear (float32 scales)")
                            if not act:
                                check(okold, f"libqerr gptq {tag}: AutoGPTQ cuda-old QuantLinear (float16)")
                        shutil.rmtree(d)
                    print(f"{tag}: done, {checks} checks, {len(failures)} failures", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

run()
print(f"{checks} checks, {len(failures)} failed")
sys.exit(1 if failures else 0)
