#!/usr/bin/env python3
"""Make the test images and hostile layers as tar files, deterministically.

  mktar.py image OUT.tar KIND [TAG]   a `docker load` tarball (legacy save format)
        KIND: base     busybox-static rootfs, one layer
              special  base + 3 layers: every file type, xattrs, big ids,
                       long and non-ASCII names, whiteouts, opaque dirs,
                       a dir recreated after its whiteout
              deep     base + 124 layers (125 in all)
              big      base + 3 layers of 105 MiB of random data (bench)
              huge     one 1 GiB layer (bench: plugin RSS)
  mktar.py layer OUT.tar base          the busybox rootfs alone (for docker import)
  mktar.py hostile OUT.tar CASE SENTINEL_DIR [--save]
        a layer tar trying to escape to SENTINEL_DIR; --save wraps it in a
        `docker load` tarball. `mktar.py cases` lists CASE names.
"""
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

MTIME = 1600000000
BUSYBOX = "/bin/busybox"
CAP_NET_BIND = bytes([0x01, 0, 0, 0x02, 0, 0x04, 0, 0] + [0] * 12)  # vfs_cap_data v2, effective


class Layer:
    """A layer tar written to a file."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "wb")
        self.tf = tarfile.open(fileobj=self.f, mode="w", format=tarfile.PAX_FORMAT,
                               encoding="utf-8")

    def _info(self, name, typ, mode, uid=0, gid=0, mtime=MTIME, xattrs=None):
        ti = tarfile.TarInfo(name)
        ti.type = typ
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = mtime
        if xattrs:
            ti.pax_headers = {"SCHILY.xattr." + k: v.decode("latin-1") for k, v in xattrs.items()}
        return ti

    def dir(self, name, mode=0o755, **kw):
        self.tf.addfile(self._info(name.rstrip("/") + "/", tarfile.DIRTYPE, mode, **kw))

    def file(self, name, data=b"", mode=0o644, **kw):
        ti = self._info(name, tarfile.REGTYPE, mode, **kw)
        ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data))

    def file_from(self, name, path, mode=0o755, **kw):
        ti = self._info(name, tarfile.REGTYPE, mode, **kw)
        ti.size = os.path.getsize(path)
        with open(path, "rb") as f:
            self.tf.addfile(ti, f)

    def stream(self, name, size, seed, mode=0o644, **kw):
        """A file of SIZE pseudo-random bytes (cheap: a repeated random block)."""
        ti = self._info(name, tarfile.REGTYPE, mode, **kw)
        ti.size = size
        self.tf.addfile(ti, RandomReader(size, seed))

    def symlink(self, name, target, **kw):
        ti = self._info(name, tarfile.SYMTYPE, 0o777, **kw)
        ti.linkname = target
        self.tf.addfile(ti)

    def hardlink(self, name, target, **kw):
        ti = self._info(name, tarfile.LNKTYPE, kw.pop("mode", 0o644), **kw)
        ti.linkname = target
        self.tf.addfile(ti)

    def dev(self, name, typ, major, minor, mode=0o666, **kw):
        ti = self._info(name, tarfile.CHRTYPE if typ == "c" else tarfile.BLKTYPE, mode, **kw)
        ti.devmajor, ti.devminor = major, minor
        self.tf.addfile(ti)

    def fifo(self, name, mode=0o644, **kw):
        self.tf.addfile(self._info(name, tarfile.FIFOTYPE, mode, **kw))

    def close(self, truncate=None):
        self.tf.close()
        self.f.close()
        if truncate is not None:
            with open(self.path, "r+b") as f:
                f.truncate(truncate)


class RandomReader:
    def __init__(self, size, seed):
        self.left = size
        rnd = random.Random(seed)
        self.block = rnd.randbytes(65536 + 4093)
        self.pos = seed % 4093
        self.count = seed

    def read(self, n=-1):
        if n < 0 or n > self.left:
            n = self.left
        out = bytearray()
        while len(out) < n:
            # vary each 64 KiB chunk so that content does not deduplicate
            self.count += 1
            chunk = self.block[self.count % 4093:][:65536]
            out += chunk[: n - len(out)]
        self.left -= n
        return bytes(out)


def busybox_rootfs(L):
    L.dir("bin")
    L.file_from("bin/busybox", BUSYBOX, mode=0o755)
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for a in sorted(set(applets)):
        if a != "busybox" and "/" not in a:
            L.symlink("bin/" + a, "busybox")
    for d in ("etc", "tmp", "root", "var", "usr", "home"):
        L.dir(d, mode=0o1777 if d == "tmp" else 0o755)
    L.symlink("sbin", "bin")
    L.symlink("usr/bin", "../bin")
    L.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nbig:x:100000:200000::/home:/bin/sh\n")
    L.file("etc/group", b"root:x:0:\nbig:x:200000:\n")


def special_layer2(L):
    """every kind of entry"""
    L.dir("data")
    L.dir("data/sub")
    L.dir("data/sub/deep")
    L.dir("data/sub/deep/er", mode=0o750)
    L.file("data/sub/deep/er/f", b"deep\n")
    L.file("data/empty")
    L.file("data/hello", b"hello world\n", mtime=1234567890)
    L.stream("data/blob", 1 << 20, 7)
    L.file("data/setuid", b"#!/bin/sh\n", mode=0o4755)
    L.file("data/setgid", b"#!/bin/sh\n", mode=0o2755)
    L.dir("data/sticky", mode=0o1777)
    L.file("data/mode000", b"secret\n", mode=0o000)
    L.dir("data/dir000", mode=0o000)
    L.file("data/bigid", b"big ids\n", uid=100000, gid=200000)
    L.file("data/bigid2", b"bigger ids\n", uid=2000000, gid=70000, mode=0o640)
    L.dir("data/bigdir", uid=65536, gid=65537)
    L.file("data/hl-a", b"linked content\n")
    L.hardlink("data/hl-b", "data/hl-a")
    L.hardlink("data/sub/hl-c", "data/hl-a")
    L.file("data/hl-x", b"will be modified\n")
    L.hardlink("data/hl-y", "data/hl-x")
    L.dev("data/null", "c", 1, 3)
    L.dev("data/tty9", "c", 4, 9, mode=0o620, gid=5)
    L.dev("data/loop7", "b", 7, 7, mode=0o660, gid=6)
    L.fifo("data/fifo")
    L.symlink("data/abs", "/bin/busybox")
    L.symlink("data/rel", "../bin/busybox")
    L.symlink("data/dangling", "/nonexistent/target")
    L.symlink("data/dirlink", "sub")
    L.symlink("data/self", "self")
    L.symlink("data/longlink", "/" + "t" * 150 + "/target")
    L.file("data/capbin", b"\x7fELF-not-really\n", mode=0o755,
           xattrs={"security.capability": CAP_NET_BIND})
    L.file("data/userxattr", b"x\n", xattrs={"user.comment": b"hello"})
    L.file("data/" + "n" * 255, b"255-byte name\n")
    L.dir("data/" + "d" * 120)
    L.file("data/" + "d" * 120 + "/" + "e" * 120, b"long path\n")
    L.file("data/ünïcödé-名前.txt", "ünïcödé\n".encode())
    L.file("data/with space and 'quote'", b"space\n")
    L.file("data/file-to-delete", b"gone soon\n")
    L.dir("data/todelete")
    L.file("data/todelete/a", b"a\n")
    L.dir("data/todelete/inner")
    L.file("data/todelete/inner/b", b"b\n")
    L.dir("data/opq")
    L.file("data/opq/a", b"a\n")
    L.file("data/opq/b", b"b\n")
    L.dir("data/opq2")
    L.file("data/opq2/old", b"old\n")
    L.dir("data/recreate")
    L.file("data/recreate/x", b"x\n")
    L.file("data/f2d", b"file, later a dir\n")
    L.dir("data/d2f")
    L.file("data/d2f/inner", b"dir, later a file\n")
    L.dir("data/chmod", mode=0o700)
    L.file("data/implicit/parent/file", b"parents not in the tar\n")
    L.close()


def special_layer3(L):
    """deletions, opaque dir, modifications"""
    L.dir("bin")
    L.file("bin/.wh.vi")
    L.dir("data", mode=0o755)
    L.file("data/.wh.file-to-delete")
    L.file("data/.wh.todelete")
    L.file("data/.wh.dangling")
    L.file("data/.wh.recreate")
    L.dir("data/opq")
    L.file("data/opq/.wh..wh..opq")
    L.file("data/opq/c", b"c\n")
    L.file("data/hl-x", b"modified, link broken\n")
    L.dir("data/chmod", mode=0o751, uid=1, gid=1)
    L.file("data/hello", b"hello again\n", mode=0o600)
    L.close()


def special_layer4(L):
    """recreate after whiteout, type changes, opaque in the same layer"""
    L.dir("data")
    L.dir("data/recreate")
    L.file("data/recreate/y", b"y\n")
    L.dir("data/opq2")
    L.file("data/opq2/.wh..wh..opq")
    L.file("data/opq2/new", b"new\n")
    L.file("data/.wh.f2d")
    L.dir("data/f2d")
    L.file("data/f2d/z", b"z\n")
    L.file("data/.wh.d2f")
    L.file("data/d2f", b"now a file\n")
    L.dir("data/todelete")
    L.file("data/todelete/reborn", b"reborn\n")
    L.close()


def write_image(out, tag, layer_fns, cmd=("/bin/sh",)):
    """layer_fns: callables taking a Layer. Writes a docker-save tarball."""
    tmp = tempfile.mkdtemp(prefix="mktar.", dir=os.path.dirname(os.path.abspath(out)))
    try:
        diff_ids, names = [], []
        for i, fn in enumerate(layer_fns):
            p = os.path.join(tmp, "layer%03d.tar" % i)
            fn(Layer(p))
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
            diff_ids.append("sha256:" + h.hexdigest())
            names.append(p)
        config = {
            "architecture": "amd64", "os": "linux", "created": "2020-09-13T12:26:40Z",
            "config": {"Cmd": list(cmd), "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2020-09-13T12:26:40Z", "created_by": "mktar.py layer %d" % i}
                        for i in range(len(diff_ids))],
        }
        cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        cfg_hex = hashlib.sha256(cfg).hexdigest()
        manifest = [{"Config": cfg_hex + ".json", "RepoTags": [tag] if tag else None,
                     "Layers": ["%s/layer.tar" % d[7:] for d in diff_ids]}]
        with tarfile.open(out + ".tmp", "w", format=tarfile.PAX_FORMAT) as t:
            def addbytes(name, data):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
                t.addfile(ti, io.BytesIO(data))
            addbytes(cfg_hex + ".json", cfg)
            seen = set()
            for d, p in zip(diff_ids, names):
                if d in seen:
                    continue
                seen.add(d)
                ti = t.gettarinfo(p, "%s/layer.tar" % d[7:])
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = MTIME, 0, 0, "", ""
                with open(p, "rb") as f:
                    t.addfile(ti, f)
            addbytes("manifest.json", json.dumps(manifest).encode())
        os.rename(out + ".tmp", out)
    finally:
        shutil.rmtree(tmp)


def deep_layer(n):
    def fn(L):
        L.dir("layers")
        L.file("layers/%03d" % n, ("layer %d\n" % n).encode())
        if n % 10 == 0 and n > 2:
            L.file("layers/.wh.%03d" % (n - 2))
        if n % 7 == 0:
            L.dir("layers/dir%03d" % n)
            L.file("layers/dir%03d/f" % n, b"f\n")
        L.close()
    return fn


def big_layer(n, count, size):
    def fn(L):
        L.dir("big%d" % n)
        for i in range(count):
            L.stream("big%d/f%04d" % (n, i), size, n * 100000 + i)
        L.close()
    return fn


# ---------------------------------------------------------------- hostile

UP = "../" * 40


def hostile(L, case, s):
    """s: absolute path of the sentinel dir (holds `victim`, mode 0600)."""
    rel = UP + s.lstrip("/")
    if case == "dotdot-name":
        L.file(rel + "/pwned", b"pwned\n")
    elif case == "dotdot-inner":
        L.dir("a")
        L.file("a/" + UP + s.lstrip("/") + "/pwned", b"pwned\n")
    elif case == "dotdot-sibling":
        L.file("../pwned-sibling", b"pwned\n")
    elif case == "abs-name":
        L.file(s + "/pwned", b"pwned\n")
    elif case == "hardlink-dotdot":
        L.hardlink("evil", rel + "/victim")
    elif case == "hardlink-abs-dotdot":
        L.hardlink("evil", "/" + rel + "/victim")
    elif case == "hardlink-through-symlink":
        L.symlink("sd", s)
        L.hardlink("hl", "sd/victim")
    elif case == "hardlink-through-rel-symlink":
        L.symlink("sd", rel)
        L.hardlink("hl", "sd/victim")
    elif case == "symlink-dotdot-write":
        L.symlink("escape", rel)
        L.file("escape/pwned", b"pwned\n")
    elif case == "symlink-abs-write":
        L.symlink("escape", s)
        L.file("escape/pwned", b"pwned\n")
    elif case == "symlink-replace-dir":
        L.dir("d")
        L.symlink("d", rel)
        L.file("d/pwned", b"pwned\n")
    elif case == "symlink-victim-overwrite":
        L.symlink("v", rel + "/victim")
        L.file("v", b"pwned\n")
        L.symlink("w", s + "/victim")
        L.file("w", b"pwned\n")
    elif case == "whiteout-dotdot":
        L.dir("a")
        L.file("a/.wh...")
    elif case == "whiteout-dot":
        L.file(".wh..")
    elif case == "whiteout-rel-path":
        L.file(rel + "/.wh.victim")
    elif case == "whiteout-through-symlink":
        L.symlink("l", rel)
        L.file("l/.wh.victim")
    elif case == "whiteout-through-abs-symlink":
        L.symlink("l", s)
        L.file("l/.wh.victim")
    elif case == "hardlink-to-symlink-chmod":
        L.symlink("sl", s + "/victim")
        L.hardlink("hl", "sl", mode=0o777)
        L.file("x", b"x\n")
    elif case == "truncated":
        L.file("a", b"a" * 5000)
        L.file("b", b"b" * 100000)
        L.close(truncate=512 + 5120 + 512 + 3000)  # in the middle of b
        return
    else:
        raise SystemExit("unknown case " + case)
    L.close()


CASES = ["dotdot-name", "dotdot-inner", "dotdot-sibling", "abs-name", "hardlink-dotdot",
         "hardlink-abs-dotdot", "hardlink-through-symlink", "hardlink-through-rel-symlink",
         "symlink-dotdot-write", "symlink-abs-write", "symlink-replace-dir",
         "symlink-victim-overwrite", "whiteout-dotdot", "whiteout-dot", "whiteout-rel-path",
         "whiteout-through-symlink", "whiteout-through-abs-symlink",
         "hardlink-to-symlink-chmod", "truncated"]


def main():
    a = sys.argv[1:]
    if a[0] == "cases":
        print("\n".join(CASES))
    elif a[0] == "layer":
        L = Layer(a[1])
        busybox_rootfs(L)
        L.close()
    elif a[0] == "image":
        out, kind = a[1], a[2]
        tag = a[3] if len(a) > 3 else "e2e/%s:latest" % kind

        def base(L):
            busybox_rootfs(L)
            L.close()
        if kind == "base":
            write_image(out, tag, [base])
        elif kind == "special":
            fns = [base, special_layer2, special_layer3, special_layer4]
            write_image(out, tag, fns)
        elif kind == "deep":
            write_image(out, tag, [base] + [deep_layer(n) for n in range(1, 125)],
                        cmd=("/bin/cat", "/layers/124"))
        elif kind == "big":
            write_image(out, tag, [base] + [big_layer(n, 105, 1 << 20) for n in range(1, 4)])
        elif kind == "huge":
            write_image(out, tag, [big_layer(9, 256, 4 << 20)])
        else:
            raise SystemExit("unknown kind " + kind)
    elif a[0] == "hostile":
        out, case, s = a[1], a[2], a[3]
        save = "--save" in a
        if not save:
            hostile(Layer(out), case, s)
        else:
            write_image(out, "e2e/hostile-%s:latest" % case,
                        [lambda L: hostile(L, case, s)])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
