#include "config.h"

#include "tarsplit.h"
#include "fsutil.h"
#include "unit.h"

#include <zlib.h>

static char *sandbox;
static int sandbox_fd = -1;

static int
setup (void)
{
  sandbox = unit_mkdtemp ();
  sandbox_fd = open (sandbox, O_RDONLY | O_DIRECTORY);
  return sandbox_fd < 0;
}

static int
teardown (void)
{
  close (sandbox_fd);
  unit_rm_rf (sandbox);
  free (sandbox);
  return 0;
}

static int
sh (const char *fmt, ...)
{
  va_list ap;
  char *cmd = NULL;
  va_start (ap, fmt);
  if (vasprintf (&cmd, fmt, ap) < 0)
    abort ();
  va_end (ap);
  int r = system (cmd);
  if (r != 0)
    fprintf (stderr, "command failed (%d): %s\n", r, cmd);
  free (cmd);
  return r;
}

/* Disassemble TAR (feeding it in CHUNK-byte pieces) into TS_PATH.  */
static int
disassemble (const char *tar, const char *ts_path, size_t chunk, gr_error_t *err)
{
  cleanup_free char *data = NULL;
  size_t len = 0;
  if (gr_read_file_at (&data, &len, sandbox_fd, tar, 0, err) < 0)
    return -1;
  cleanup_close int out = openat (sandbox_fd, ts_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  struct gr_tarsplit *ts = NULL;
  if (gr_tarsplit_new (&ts, out, err) < 0)
    return -1;
  int r = 0;
  for (size_t off = 0; off < len && r == 0; off += chunk)
    r = gr_tarsplit_feed (ts, data + off, len - off < chunk ? len - off : chunk, err);
  if (r == 0)
    r = gr_tarsplit_finish (ts, err);
  gr_tarsplit_free (ts);
  return r;
}

/* Disassemble, extract with GNU tar, reassemble, compare bytes.  */
static void
round_trip (const char *tar)
{
  static const size_t chunks[] = { 1, 7, 512, 4093, 1 << 20 };
  for (size_t c = 0; c < sizeof (chunks) / sizeof (chunks[0]); c++)
    {
      cleanup_free char *ts = xasprintf ("%s.ts.gz", tar);
      cleanup_free char *dir = xasprintf ("%s.x", tar);
      cleanup_free char *back = xasprintf ("%s.back", tar);
      ASSERT_OK (disassemble (tar, ts, chunks[c], err_));
      CU_ASSERT_EQUAL_FATAL (sh ("cd %s && rm -rf %s && mkdir %s && tar -C %s -xf %s 2>/dev/null; true",
                                 sandbox, dir, dir, dir, tar),
                             0);
      cleanup_close int tsfd = openat (sandbox_fd, ts, O_RDONLY);
      cleanup_close int root = openat (sandbox_fd, dir, O_RDONLY | O_DIRECTORY);
      cleanup_close int out = openat (sandbox_fd, back, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ASSERT_OK (gr_tarsplit_assemble (out, tsfd, root, err_));
      CU_ASSERT_EQUAL (sh ("cd %s && cmp %s %s", sandbox, tar, back), 0);
    }
}

static const char *mktars_py
    = "import tarfile, io, os, sys\n"
      "def add(t, name, data=b'', **kw):\n"
      "    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000\n"
      "    for k, v in kw.items(): setattr(ti, k, v)\n"
      "    t.addfile(ti, io.BytesIO(data) if data else None)\n"
      "def dir(t, name):\n"
      "    ti = tarfile.TarInfo(name); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; t.addfile(ti)\n"
      "long = 'd' * 60 + '/' + 'e' * 70 + '/' + 'f' * 120\n"
      "for fmt, fn in ((tarfile.PAX_FORMAT, 'pax.tar'), (tarfile.GNU_FORMAT, 'gnu.tar'), "
      "(tarfile.USTAR_FORMAT, 'ustar.tar')):\n"
      "    with tarfile.open(fn, 'w', format=fmt, encoding='utf-8', errors='surrogateescape') as t:\n"
      "        dir(t, 'etc/')\n"
      "        add(t, 'etc/hosts', b'127.0.0.1 localhost\\n' * 37, mode=0o644)\n"
      "        add(t, 'empty', b'')\n"
      "        add(t, 'etc/.wh.gone')\n"
      "        add(t, 'link', type=tarfile.SYMTYPE, linkname='etc/hosts')\n"
      "        add(t, 'hard', type=tarfile.LNKTYPE, linkname='etc/hosts')\n"
      "        add(t, 'block512', b'x' * 512)\n"
      "        add(t, 'quote\"<&>', b'q')\n"
      "        if fmt != tarfile.USTAR_FORMAT:\n"
      "            dir(t, 'd' * 60 + '/'); dir(t, 'd' * 60 + '/' + 'e' * 70 + '/')\n"
      "            add(t, long, os.urandom(3000))\n"
      "            add(t, 'caf\\u00e9-\\u2028', b'utf8')\n"
      "            add(t, 'raw-\\udcff\\udcfe', b'not utf8')\n"
      "            add(t, 'longlink', type=tarfile.SYMTYPE, linkname='z' * 200)\n"
      "        else:\n"
      "            dir(t, 'p' * 80 + '/'); add(t, 'p' * 80 + '/' + 'n' * 90, b'prefix')\n"
      "        if fmt == tarfile.PAX_FORMAT:\n"
      "            ti = tarfile.TarInfo('xattr'); ti.size = 2; ti.pax_headers = {'SCHILY.xattr.user.a': "
      "'b'}\n"
      "            t.addfile(ti, io.BytesIO(b'xa'))\n"
      "data = open('pax.tar', 'rb').read()\n"
      "open('trailing.tar', 'wb').write(data + b'\\0' * 3000 + b'garbage after the end')\n"
      "open('noend.tar', 'wb').write(data[:data.rfind(b'xa') + 512 - (data.rfind(b'xa') % 512)])\n"
      "open('trunc.tar', 'wb').write(data[:1200])\n"
      "with tarfile.open('dup.tar', 'w') as t:\n"
      "    add(t, 'a', b'1'); add(t, './a', b'2')\n"
      "b = bytearray(open('ustar.tar', 'rb').read()); b[0] ^= 1\n"
      "open('badsum.tar', 'wb').write(bytes(b))\n"
      "with tarfile.open('global.tar', 'w', format=tarfile.PAX_FORMAT, pax_headers={'comment': 'hi'}) as t:\n"
      "    add(t, 'g', b'global')\n";

static void
test_make_tars (void)
{
  cleanup_free char *py = xasprintf ("%s/mk.py", sandbox);
  FILE *f = fopen (py, "w");
  CU_ASSERT_FATAL (f != NULL);
  fputs (mktars_py, f);
  fclose (f);
  CU_ASSERT_EQUAL_FATAL (sh ("cd %s && python3 mk.py", sandbox), 0);
  /* a GNU tar archive too, with its own padding habits (10 KiB records) */
  CU_ASSERT_EQUAL_FATAL (sh ("cd %s && mkdir -p src/sub && printf hello > src/sub/f && "
                             "ln -s f src/sub/l && tar --format=gnu -cf gnutar.tar src",
                             sandbox),
                         0);
}

static void
test_round_trips (void)
{
  const char *tars[]
      = { "pax.tar", "gnu.tar", "ustar.tar", "trailing.tar", "noend.tar", "global.tar", "gnutar.tar" };
  for (size_t i = 0; i < sizeof (tars) / sizeof (tars[0]); i++)
    round_trip (tars[i]);
}

static bool
starts_with (const char *s, const char *prefix)
{
  return strncmp (s, prefix, strlen (prefix)) == 0;
}

static void
test_json_lines (void)
{
  ASSERT_OK (disassemble ("pax.tar", "pax.json.gz", 4096, err_));
  cleanup_free char *path = xasprintf ("%s/pax.json.gz", sandbox);
  gzFile gz = gzopen (path, "rb");
  CU_ASSERT_FATAL (gz != NULL);
  char line[65536];
  int n = 0;
  bool saw_dir = false, saw_hosts = false, saw_raw = false, saw_quote = false, saw_2028 = false;
  bool saw_empty = false;
  while (gzgets (gz, line, sizeof (line)))
    {
      cleanup_free char *pos = xasprintf ("\"position\":%d}\n", n);
      CU_ASSERT (strstr (line, pos) != NULL);
      CU_ASSERT (strncmp (line, "{\"type\":", 8) == 0);
      if (starts_with (line, "{\"type\":1,\"name\":\"etc/\",\"payload\":null,\"position\":1}"))
        saw_dir = true;
      if (starts_with (line, "{\"type\":1,\"name\":\"etc/hosts\",\"size\":740,\"payload\":\"6PTBc0EhXwk=\""))
        saw_hosts = true;
      if (starts_with (line, "{\"type\":1,\"name\":\"empty\",\"payload\":null,"))
        saw_empty = true;
      if (strstr (line, "\"name_raw\":\"cmF3Lf/+\""))
        saw_raw = true;
      if (strstr (line, "\"name\":\"quote\\\"\\u003c\\u0026\\u003e\""))
        saw_quote = true;
      if (strstr (line, "\"name\":\"caf\xc3\xa9-\\u2028\""))
        saw_2028 = true;
      n++;
    }
  gzclose (gz);
  CU_ASSERT (saw_dir);
  CU_ASSERT (saw_hosts);
  CU_ASSERT (saw_empty);
  CU_ASSERT (saw_raw);
  CU_ASSERT (saw_quote);
  CU_ASSERT (saw_2028);
}

static void
expect_failure (const char *tar, int status)
{
  gr_error_t err = NULL;
  CU_ASSERT (disassemble (tar, "bad.json.gz", 512, &err) < 0);
  if (status)
    CU_ASSERT_EQUAL (gr_error_status (&err), status);
  gr_error_release (&err);
}

static void
test_bad_tars (void)
{
  expect_failure ("dup.tar", EEXIST);
  expect_failure ("trunc.tar", EINVAL);
  expect_failure ("badsum.tar", EINVAL);
}

static void
test_crc_integrity (void)
{
  /* CRC-64/GO-ISO check value */
  CU_ASSERT_EQUAL (gr_crc64_iso_update (0, "123456789", 9), 0xB90956C775A41001ULL);
  CU_ASSERT_EQUAL (gr_crc64_iso_update (gr_crc64_iso_update (0, "1234", 4), "56789", 5),
                   0xB90956C775A41001ULL);
  /* the 8-byte path against a bit-at-a-time reference, every length and
     alignment around the 8-byte steps, split anywhere */
  unsigned char data[300];
  for (size_t i = 0; i < sizeof (data); i++)
    data[i] = (unsigned char)(i * 131 + 7);
  for (size_t off = 0; off < 8; off++)
    for (size_t len = 0; len + off <= sizeof (data); len += 7)
      {
        uint64_t ref = ~0ULL;
        for (size_t i = 0; i < len; i++)
          {
            ref ^= data[off + i];
            for (int b = 0; b < 8; b++)
              ref = (ref & 1) ? (ref >> 1) ^ 0xD800000000000000ULL : ref >> 1;
          }
        ref = ~ref;
        CU_ASSERT_EQUAL (gr_crc64_iso_update (0, data + off, len), ref);
        size_t cut = len / 3;
        uint64_t head = gr_crc64_iso_update (0, data + off, cut);
        CU_ASSERT_EQUAL (gr_crc64_iso_update (head, data + off + cut, len - cut), ref);
      }
  /* a changed file is caught when reassembling */
  ASSERT_OK (disassemble ("ustar.tar", "u.json.gz", 512, err_));
  CU_ASSERT_EQUAL_FATAL (sh ("cd %s && rm -rf u && mkdir u && tar -C u -xf ustar.tar && "
                             "echo changed > u/block512",
                             sandbox),
                         0);
  cleanup_close int tsfd = openat (sandbox_fd, "u.json.gz", O_RDONLY);
  cleanup_close int root = openat (sandbox_fd, "u", O_RDONLY | O_DIRECTORY);
  cleanup_close int out = openat (sandbox_fd, "u.back", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  gr_error_t err = NULL;
  CU_ASSERT (gr_tarsplit_assemble (out, tsfd, root, &err) < 0);
  CU_ASSERT (err && strstr (err->msg, "block512") != NULL);
  gr_error_release (&err);
}

int
main (void)
{
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("tarsplit", setup, teardown);
  CU_add_test (s, "make test tars", test_make_tars);
  CU_add_test (s, "round trips", test_round_trips);
  CU_add_test (s, "json lines", test_json_lines);
  CU_add_test (s, "bad tars", test_bad_tars);
  CU_add_test (s, "crc and integrity", test_crc_integrity);
  return unit_run ();
}
