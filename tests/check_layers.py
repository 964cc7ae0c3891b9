#!/usr/bin/env python3
"""Fails when lib/ crosses a layer upward (docs/internals.md, "Layers").

Each folder of lib/ is a layer and may use only itself and the layers before
it. Two views are checked:
  - #include "..." lines of every lib/**/*.c and *.h (resolved relative to
    the including file, as the compiler does);
  - calls and data references between object files: `nm` maps every defined
    symbol to the layer of the object defining it; every undefined symbol an
    object uses must be defined in the same or an earlier layer.

usage: check_layers.py SOURCE_DIR [OBJECT_FILE...]
       check_layers.py --self-test CC
With no object files only the includes are checked. --self-test builds a
scratch tree with one upward include and one upward call and fails unless
both are reported (and a clean tree passes)."""
import os
import re
import subprocess
import sys
import tempfile

LAYERS = ["core", "io", "text", "llama", "train", "methods", "pipeline", "export"]
RANK = {name: i for i, name in enumerate(LAYERS)}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def layer_of(path, lib):
    """Layer of a path under lib/, or None when it is outside every layer."""
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(lib))
    parts = rel.split(os.sep)
    if len(parts) < 2 or parts[0] not in RANK:
        return None
    return parts[0]


def check_includes(lib, errors):
    for root, _, files in os.walk(lib):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(root, f)
            mine = layer_of(path, lib)
            if mine is None:
                errors.append(f"{os.path.relpath(path, lib)}: not inside a layer folder")
                continue
            with open(path, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = os.path.normpath(os.path.join(root, m.group(1)))
                    if not os.path.exists(target):
                        continue  # a public header found through -I include/
                    theirs = layer_of(target, lib)
                    if theirs is None:
                        errors.append(f"lib/{os.path.relpath(path, lib)}:{n}: includes "
                                      f"{m.group(1)}, outside every layer")
                    elif RANK[theirs] > RANK[mine]:
                        errors.append(f"lib/{os.path.relpath(path, lib)}:{n}: {mine} includes "
                                      f"{m.group(1)} of the later layer {theirs}")


def nm(path):
    out = subprocess.run(["nm", "-P", path], check=True, capture_output=True, text=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        name, kind = fields[0], fields[1]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper() and kind not in "NW":
            defined.add(name)
    return defined, undefined


def check_symbols(object_files, errors):
    # CMake puts lib/<layer>/x.c's object at .../lib/<layer>/x.c.o
    objects = []
    for path in object_files:
        parts = path.replace(os.sep, "/").split("/lib/")
        if len(parts) < 2 or not path.endswith(".o"):
            errors.append(f"{path}: not an object file of lib/")
            continue
        objects.append((path, parts[-1][: -len(".o")], parts[-1].split("/")[0]))
    if not objects:
        errors.append("no object files of lib/ given")
        return 0
    definer, uses = {}, []
    for path, src, layer in objects:
        if layer not in RANK:
            errors.append(f"lib/{src}: not inside a layer folder")
            continue
        defined, undefined = nm(path)
        for s in defined:
            definer[s] = (src, layer)
        uses.append((src, layer, undefined))
    for src, layer, undefined in uses:
        for s in sorted(undefined):
            if s in definer and RANK[definer[s][1]] > RANK[layer]:
                errors.append(f"lib/{src}: {layer} uses {s} of the later layer "
                              f"{definer[s][1]} (lib/{definer[s][0]})")
    return len(objects)


def run(src, objects):
    errors = []
    check_includes(os.path.join(src, "lib"), errors)
    nobj = check_symbols(objects, errors) if objects else 0
    return errors, nobj


def self_test(cc):
    """The check itself can fail: a scratch lib/ where core includes and calls
    methods must give exactly those two errors; without them, none."""
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "lib/core/low.h": "int low(void);\n",
            "lib/core/low.c": '#include "low.h"\nint low(void) { return 1; }\n',
            "lib/methods/high.h": '#include "../core/low.h"\nint high(void);\n',
            "lib/methods/high.c": '#include "high.h"\nint high(void) { return low(); }\n',
            "lib/core/bad.c": '#include "../methods/high.h"\nint bad(void) { return high(); }\n',
        }
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "w", encoding="utf-8") as fh:
                fh.write(text)
        objs = []
        for rel in files:
            if rel.endswith(".c"):
                obj = os.path.join(tmp, "obj", rel + ".o")
                os.makedirs(os.path.dirname(obj), exist_ok=True)
                subprocess.run([cc, "-c", os.path.join(tmp, rel), "-o", obj], check=True)
                objs.append(obj)
        errors, _ = run(tmp, objs)
        want = ["lib/core/bad.c:1: core includes ../methods/high.h of the later layer methods",
                "lib/core/bad.c: core uses high of the later layer methods (lib/methods/high.c)"]
        if errors != want:
            print("self-test: expected", want, "got", errors)
            return 1
        os.remove(os.path.join(tmp, "lib/core/bad.c"))
        errors, _ = run(tmp, [o for o in objs if not o.endswith("bad.c.o")])
        if errors:
            print("self-test: a clean tree gave", errors)
            return 1
    print("check_layers self-test: an upward include and an upward call are both reported")
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "--self-test":
        return self_test(argv[2])
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    errors, nobj = run(argv[1], argv[2:])
    for e in errors:
        print(e)
    if errors:
        print(f"check_layers: {len(errors)} upward use(s); layers, first to last: "
              + " ".join(LAYERS))
        return 1
    print(f"check_layers: ok ({' < '.join(LAYERS)}; {nobj} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
