#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (tests/fuzz/): small layer tars,
including every breakout class of REFERENCE.md section 6, tar-split inputs
(the same tars) and registry documents (manifests, indexes, configs).

usage: make-seeds.py OUTDIR   -> OUTDIR/{apply,tarsplit,manifest,config}/"""
import io
import json
import os
import sys
import tarfile


def tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1600000000
            data = None
            if kind == "f":
                data = e[2] if len(e) > 2 else b"x"
                ti.size = len(data)
                ti.mode = 0o644
            elif kind == "d":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            elif kind == "s":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e[2]
            elif kind == "h":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e[2]
            elif kind == "c":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = e[2], e[3]
            elif kind == "p":
                ti.type = tarfile.FIFOTYPE
            elif kind == "x":  # file with PAX xattrs
                data = b"cap"
                ti.size = 3
                ti.pax_headers = e[2]
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


APPLY = {
    "empty": [],
    "simple": [("d", "etc"), ("f", "etc/hosts", b"127.0.0.1 localhost\n"), ("s", "lib", "usr/lib"),
               ("d", "usr"), ("d", "usr/lib"), ("f", "usr/lib/libc.so", b"\x7fELF")],
    "abs-symlink-write": [("d", "usr"), ("d", "usr/lib"), ("s", "lib", "/usr/lib"), ("f", "lib/x", b"in")],
    "dotdot-name": [("f", "../victim", b"pwned")],
    "dotdot-deep": [("d", "a"), ("f", "a/../../victim", b"pwned")],
    "abs-name": [("f", "/victim", b"pwned")],
    "hardlink-out": [("h", "h", "../victim")],
    "hardlink-abs-out": [("h", "h", "/../victim")],
    "hardlink-through-symlink": [("s", "up", ".."), ("h", "h", "up/victim")],
    "symlink-then-write": [("s", "up", "../"), ("f", "up/victim", b"pwned")],
    "symlink-abs-dotdot": [("s", "up", "/../../.."), ("f", "up/victim", b"pwned")],
    "symlink-chain": [("s", "a", "b"), ("s", "b", "../.."), ("f", "a/victim", b"pwned")],
    "file-replaces-dir": [("d", "d"), ("s", "d/x", "../../"), ("f", "d", b"file"), ("f", "d/x/victim", b"p")],
    "dir-replaced-by-symlink": [("d", "d"), ("s", "d", ".."), ("f", "d/victim", b"pwned")],
    "whiteout-dotdot": [(".wh", ".wh..."), ("f", ".wh..", b"")],
    "whiteout-slash": [("f", ".wh./", b"")],
    "whiteout-through-symlink": [("s", "up", ".."), ("f", "up/.wh.victim", b"")],
    "whiteout-opaque-through-symlink": [("s", "up", "../.."), ("f", "up/.wh..wh..opq", b"")],
    "whiteout-file": [("d", "d"), ("f", "d/.wh.gone", b""), ("f", "d/.wh..wh..opq", b"")],
    "aufs-internals": [("d", ".wh..wh.plnk"), ("f", ".wh..wh.plnk/1.2", b"p"), ("h", "x", ".wh..wh.plnk/1.2"),
                       ("f", ".wh..wh.aufs", b""), ("d", ".wh..wh.orph")],
    "hardlink-to-symlink-chmod": [("s", "s", "/etc/passwd"), ("h", "h", "s"), ("f", "h", b"x")],
    "hardlink-to-dir": [("d", "d"), ("h", "h", "d")],
    "devices": [("c", "null", 1, 3), ("c", "wh", 0, 0), ("p", "fifo")],
    "xattrs": [("x", "bin", {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12,
                             "SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.a": "b"})],
    "overlay-xattr-smuggle": [("d", "d"), ("x", "d/f", {"SCHILY.xattr.trusted.overlay.redirect": "/../../x",
                                                       "SCHILY.xattr.trusted.overlay.origin": "zz"})],
    "longname": [("f", "a" * 90 + "/" + "b" * 120 + "/" + "c" * 200, b"long")],
    "dup-names": [("f", "x", b"1"), ("f", "x", b"2"), ("d", "x"), ("s", "x", "y")],
    "dir-then-whiteout-recreate": [("d", "d"), ("f", "d/f"), ("f", ".wh.d"), ("d", "d"), ("f", "d/g")],
}


def apply_seeds():
    out = {}
    for name, ents in APPLY.items():
        norm = []
        for e in ents:
            if e[0] == ".wh":
                continue
            norm.append(e)
        out[name] = tar(norm)
    out["gnu-longlink"] = tar([("f", "g" * 300, b"gnu"), ("s", "l" * 150, "t" * 200)], fmt=tarfile.GNU_FORMAT)
    out["ustar"] = tar([("d", "u"), ("f", "u/f", b"ustar")], fmt=tarfile.USTAR_FORMAT)
    t = tar([("f", "trunc", b"y" * 3000)])
    out["truncated"] = t[:1500]
    out["garbage-after"] = tar([("f", "a")]) + b"\xff" * 777
    return out


def docs():
    sha = "sha256:" + "a" * 64
    m2 = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
          "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469, "digest": sha},
          "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2479,
                      "digest": "sha256:" + "b" * 64}]}
    oci = dict(m2, mediaType="application/vnd.oci.image.manifest.v1+json")
    oci["config"] = dict(m2["config"], mediaType="application/vnd.oci.image.config.v1+json")
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 525,
                          "digest": "sha256:" + "c" * 64,
                          "platform": {"architecture": "amd64", "os": "linux"}},
                         {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 525,
                          "digest": "sha256:" + "d" * 64,
                          "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}]}
    lst = dict(idx, mediaType="application/vnd.docker.distribution.manifest.list.v2+json")
    amb = dict(idx, layers=m2["layers"])
    cfg = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha, "sha256:" + "e" * 64]},
           "config": {"Cmd": ["sh"]}}
    return ({"schema2": m2, "oci": oci, "index": idx, "list": lst, "ambiguous": amb,
             "schema1": {"schemaVersion": 1, "name": "x", "fsLayers": []}, "empty": {}},
            {"config": cfg, "bad-diffid": dict(cfg, rootfs={"type": "layers", "diff_ids": ["sha256:zz"]}),
             "no-rootfs": {"os": "linux"}})


def main():
    outdir = sys.argv[1]
    seeds = apply_seeds()
    manifests, configs = docs()
    # fuzz-tarsplit and fuzz-manifest take a selector byte before the data:
    # the chunk size, the parser and Content-Type (see their sources).
    for sub, items, prefixes in (("apply", seeds, [b""]), ("tarsplit", seeds, [b"\x00", b"\x3f", b"\xff"]),
                                 ("manifest", manifests, [b"\x00", b"\x01", b"\x02", b"\x03", b"\x04"]),
                                 ("config", configs, [b"\x07"])):
        d = os.path.join(outdir, sub)
        os.makedirs(d, exist_ok=True)
        for name, v in items.items():
            data = v if isinstance(v, bytes) else json.dumps(v).encode()
            for i, pre in enumerate(prefixes):
                with open(os.path.join(d, "%s-%d" % (name, i)), "wb") as f:
                    f.write(pre + data)


main()
