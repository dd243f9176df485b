#!/usr/bin/env python3
"""Print a sorted, comparable listing of a tar stream read from stdin.

One JSON line per entry: name, type, mode, uid, gid, size, sha256 of the
content, link target, device numbers, xattrs (and mtime with --mtime).
Hard links are normalised so that the order in which a driver walks the
tree does not matter: every member of a link group is listed as a regular
file with the group's content and a "links" field naming the whole group.

--export      ignore the mtimes of what dockerd itself writes into every
              container (/.dockerenv, /etc/hosts, ...)
--mtime       include mtimes (of non-directories)
--perm-only   modes without the file type bits (moby's tar writer adds them)
"""
import argparse
import hashlib
import json
import sys
import tarfile

INIT_FILES = {
    ".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab",
    "dev/console",
}

TYPES = {
    tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.LNKTYPE: "hardlink",
    tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block",
    tarfile.DIRTYPE: "dir", tarfile.FIFOTYPE: "fifo", tarfile.CONTTYPE: "reg",
}


def norm(name):
    name = name.rstrip("/")
    while name.startswith("./"):
        name = name[2:]
    if name == ".":
        name = ""
    return name.lstrip("/")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--mtime", action="store_true")
    ap.add_argument("--perm-only", action="store_true",
                    help="modes without the file type bits some writers add")
    ap.add_argument("file", nargs="?")
    a = ap.parse_args()

    src = open(a.file, "rb") if a.file else sys.stdin.buffer
    tf = tarfile.open(fileobj=src, mode="r|", encoding="utf-8", errors="surrogateescape")
    entries = {}
    parent = {}  # union-find over hardlink groups

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    order = []
    for m in tf:
        name = norm(m.name)
        e = {
            "name": name,
            "type": TYPES.get(m.type, "other:%r" % m.type),
            "mode": "%05o" % (m.mode & 0o7777 if a.perm_only else m.mode),
            "uid": m.uid,
            "gid": m.gid,
        }
        if m.isreg():
            h = hashlib.sha256()
            f = tf.extractfile(m)
            n = 0
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                n += len(b)
                h.update(b)
            e["size"] = n
            e["sha256"] = h.hexdigest()
        if m.issym():
            e["target"] = m.linkname
        if m.islnk():
            t = norm(m.linkname)
            e["target"] = t
            parent[find(name)] = find(t)
        if m.ischr() or m.isblk():
            e["dev"] = "%d:%d" % (m.devmajor, m.devminor)
        xattrs = {k[len("SCHILY.xattr."):]: v for k, v in m.pax_headers.items()
                  if k.startswith("SCHILY.xattr.")}
        if xattrs:
            e["xattrs"] = {k: v.encode("utf-8", "surrogateescape").hex() for k, v in sorted(xattrs.items())}
        if a.mtime and not m.isdir():
            e["mtime"] = int(m.mtime)
        if name in entries:
            order.remove(name)
        entries[name] = e
        order.append(name)

    # Resolve hard links to their group's regular file.
    groups = {}
    for name in set(parent) | set(parent.values()):
        if name in entries:
            groups.setdefault(find(name), []).append(name)
    for root, members in groups.items():
        members = sorted(set(members))
        if len(members) < 2:
            continue
        reg = next((entries[n] for n in members if entries[n]["type"] == "reg"), None)
        for n in members:
            e = entries[n]
            if e["type"] == "hardlink" and reg is not None:
                for k in ("type", "size", "sha256", "mode", "uid", "gid", "xattrs", "mtime"):
                    if k in reg:
                        e[k] = reg[k]
                    else:
                        e.pop(k, None)
                e.pop("target", None)
            e["links"] = members

    out = []
    for name in sorted(entries):
        e = entries[name]
        if a.export and name in INIT_FILES:
            e.pop("mtime", None)
        if name == "":
            e.pop("mtime", None)
        out.append(json.dumps(e, sort_keys=True, ensure_ascii=True))
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))


if __name__ == "__main__":
    main()
