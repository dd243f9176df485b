/* gr_archive_changes: `docker diff` of one layer over its lower layers, with
   the rules of moby's archive.changes() (v20.10 archive.Changes for the
   aufs encoding; the former archive.OverlayChanges for the overlay one):

   - walk the layer directory in filepath.Walk order (bytewise sorted,
     depth first), paths "/a/b";
   - a whiteout is a Delete of what it names: aufs `.wh.<x>` (the basename
     with the prefix cut, so a nested `.wh..wh..opq` reads as a Delete of
     `<dir>/.wh..opq`, as moby reports it); overlay char device 0/0, and an
     overlay-opaque directory is a Delete of the directory itself (its
     entries are still walked);
   - anything else is an Add unless the path exists (stat following
     symlinks) in a lower layer, nearest first: then a Modify, except a
     directory whose first lower match is a directory of the same size,
     mode and mtime (a whole-second mtime matches any nanoseconds), which
     is left out;
   - an Add or Delete whose parent directory is not the root and has not
     been listed yet first lists the parent as a Modify (moby PR 13590).

   Known deviations: the aufs internals at the layer root are left out with
   everything below them (moby skips only the entries themselves and lists
   what is below); a lower's symlinks resolve inside that lower (moby
   resolves absolute targets on the host); a lower path that is not there
   because a component is not a directory or loops (ENOTDIR, ELOOP) counts
   as absent (moby fails); whiteouts that name "", "." or ".." are
   ignored; entries that vanish during the walk are skipped.  */
#include "config.h"

#include "archive-internal.h"
#include "archive.h"
#include "fsutil.h"
#include "whiteout.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

struct changes_ctx
{
  json_t *list;
  const int *lowers;
  size_t n_lowers;
  enum gr_whiteout_format fmt;
  struct gr_buf path; /* "/a/b" of the entry being looked at; "" for the root */
};

/* Append to B the bytes of S with every byte that does not start a valid
   UTF-8 sequence replaced by U+FFFD, as Go's encoding/json does.  */
static void
append_utf8_go (struct gr_buf *b, const char *s, size_t len)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len)
    {
      unsigned c = p[i];
      size_t n = 0;
      unsigned lo = 0x80, hi = 0xbf;
      if (c < 0x80)
        n = 1;
      else if (c >= 0xc2 && c <= 0xdf)
        n = 2;
      else if (c >= 0xe0 && c <= 0xef)
        {
          n = 3;
          if (c == 0xe0)
            lo = 0xa0;
          else if (c == 0xed)
            hi = 0x9f;
        }
      else if (c >= 0xf0 && c <= 0xf4)
        {
          n = 4;
          if (c == 0xf0)
            lo = 0x90;
          else if (c == 0xf4)
            hi = 0x8f;
        }
      bool ok = n > 0 && i + n <= len;
      for (size_t k = 1; ok && k < n; k++)
        {
          unsigned cc = p[i + k];
          if (k == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xbf))
            ok = false;
        }
      if (ok)
        {
          gr_buf_append (b, p + i, n);
          i += n;
        }
      else
        {
          gr_buf_append (b, "\xef\xbf\xbd", 3);
          i++;
        }
    }
}

json_t *
gr_archive_change_new (const char *path, size_t len, enum gr_change_kind kind)
{
  cleanup_buf struct gr_buf s = { 0 };
  append_utf8_go (&s, path, len);
  json_t *o = json_object ();
  json_object_set_new (o, "Path", json_stringn (s.data ? s.data : "", s.len));
  json_object_set_new (o, "Kind", json_integer (kind));
  return o;
}

static void
add_change (struct changes_ctx *c, const char *path, size_t len, enum gr_change_kind kind)
{
  json_array_append_new (c->list, gr_archive_change_new (path, len, kind));
}

/* Does REL (relative, no leading '/') exist in a lower layer?  The first
   lower that has it fills *ST.  */
static int
lower_lookup (struct changes_ctx *c, const char *rel, struct stat *st, bool *found, gr_error_t *err)
{
  *found = false;
  for (size_t i = 0; i < c->n_lowers; i++)
    {
      cleanup_error gr_error_t e = NULL;
      cleanup_close int fd = gr_open_in_root (c->lowers[i], rel, O_PATH, 0, &e);
      if (fd < 0)
        {
          int s = gr_error_status (&e);
          if (s == ENOENT || s == ENOTDIR || s == ELOOP)
            continue;
          *err = e;
          e = NULL;
          return gr_error_wrap (err, "changes: lower layer %zu", i);
        }
      if (fstat (fd, st) < 0)
        return gr_make_error (err, errno, "changes: stat `%s` in lower layer %zu", rel, i);
      *found = true;
      return 0;
    }
  return 0;
}

/* `.wh..wh.*`: the opaque marker or an aufs internal.  */
static bool
is_meta (const char *name)
{
  cleanup_error gr_error_t e = NULL;
  enum gr_whiteout_kind kind;
  if (gr_whiteout_classify_name (name, &kind, NULL, &e) < 0)
    return false;
  return kind == GR_WH_INTERNAL || kind == GR_WH_OPAQUE_DIR;
}

static int walk_dir (struct changes_ctx *c, int *dirfd, const struct stat *dir_st, bool dir_listed,
                     unsigned depth, gr_error_t *err);

/* One entry NAME of directory *DIRFD (whose stat is DIR_ST, at DEPTH),
   whose path is c->path; *DIR_LISTED says whether that directory is in
   moby's changedDirs.  */
static int
visit (struct changes_ctx *c, int *dirfd, const struct stat *dir_st, const char *name, size_t parent_len,
       bool *dir_listed, unsigned depth, gr_error_t *err)
{
  struct stat st;
  if (fstatat (*dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    {
      if (errno == ENOENT)
        return 0;
      return gr_make_error (err, errno, "changes: stat `%s`", c->path.data);
    }
  bool is_dir = S_ISDIR (st.st_mode);
  cleanup_close int fd = -1;
  if (is_dir)
    {
      fd = openat (*dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0)
        {
          if (errno == ENOENT)
            return 0;
          return gr_make_error (err, errno, "changes: open `%s`", c->path.data);
        }
    }

  enum gr_change_kind kind = GR_CHANGE_ADD;
  cleanup_free char *deleted = NULL;
  bool skip = false;

  enum gr_whiteout_kind wh = GR_WH_NONE;
  if (c->fmt == GR_WHITEOUT_AUFS)
    {
      cleanup_error gr_error_t e = NULL;
      const char *target;
      if (gr_whiteout_classify_name (name, &wh, &target, &e) < 0)
        return 0; /* `.wh.`, `.wh..`, `.wh...` name nothing we can list */
      /* moby cuts the prefix off any `.wh.` name: a nested opaque marker
         `.wh..wh..opq` is listed as a Delete of `.wh..opq`.  */
      if (wh != GR_WH_NONE)
        {
          deleted = xasprintf ("%.*s/%s", (int)parent_len, c->path.data,
                               wh == GR_WH_FILE ? target : name + strlen (GR_WH_PREFIX));
          kind = GR_CHANGE_DELETE;
        }
    }
  else if (c->fmt == GR_WHITEOUT_OVERLAY
           && (gr_whiteout_is_overlay_file (&st) || (is_dir && gr_whiteout_is_overlay_opaque (fd, ""))))
    {
      wh = GR_WH_FILE;
      kind = GR_CHANGE_DELETE;
    }
  if (wh == GR_WH_NONE)
    {
      struct stat lst;
      bool found;
      if (lower_lookup (c, c->path.data + 1, &lst, &found, err) < 0)
        return -1;
      if (found)
        {
          if (is_dir && S_ISDIR (lst.st_mode) && st.st_size == lst.st_size && st.st_mode == lst.st_mode
              && gr_archive_same_fs_time (&st.st_mtim, &lst.st_mtim))
            skip = true;
          kind = GR_CHANGE_MODIFY;
        }
    }

  if (!skip)
    {
      if (kind != GR_CHANGE_MODIFY && !*dir_listed && parent_len > 0)
        {
          add_change (c, c->path.data, parent_len, GR_CHANGE_MODIFY);
          *dir_listed = true;
        }
      if (deleted)
        add_change (c, deleted, strlen (deleted), kind);
      else
        add_change (c, c->path.data, c->path.len, kind);
    }

  if (!is_dir)
    return 0;
  if (fstat (fd, &st) < 0)
    return gr_make_error (err, errno, "changes: stat `%s`", c->path.data);
  gr_archive_walk_leave (dirfd, depth);
  if (walk_dir (c, &fd, &st, !skip, depth + 1, err) < 0)
    return -1;
  if (gr_archive_walk_back (dirfd, fd, dir_st, err) < 0)
    return gr_error_wrap (err, "changes: `%s`", c->path.data);
  return 0;
}

static int
walk_dir (struct changes_ctx *c, int *dirfd, const struct stat *dir_st, bool dir_listed, unsigned depth,
          gr_error_t *err)
{
  char **names = NULL;
  size_t n = 0;
  size_t mark = c->path.len;
  bool top = mark == 0;
  int ret = 0;

  if (gr_archive_read_names (&names, &n, *dirfd, err) < 0)
    return gr_error_wrap (err, "changes: `%s`", top ? "/" : c->path.data);

  for (size_t i = 0; i < n && ret == 0; i++)
    {
      /* aufs internals: moby skips `/.wh..wh.*` (the opaque marker of the
         root too); we also skip what is below them.  */
      if (top && c->fmt == GR_WHITEOUT_AUFS && is_meta (names[i]))
        continue;
      gr_buf_puts (&c->path, "/");
      gr_buf_puts (&c->path, names[i]);
      ret = visit (c, dirfd, dir_st, names[i], mark, &dir_listed, depth, err);
      c->path.len = mark;
      c->path.data[mark] = '\0';
    }
  gr_archive_free_names (names, n);
  return ret;
}

int
gr_archive_changes (json_t **out, int layer_dirfd, const int *lower_fds, size_t n_lowers,
                    enum gr_whiteout_format f, gr_error_t *err)
{
  struct changes_ctx c = { .lowers = lower_fds, .n_lowers = n_lowers, .fmt = f };
  c.list = json_array ();
  gr_buf_puts (&c.path, "");
  int rootfd = layer_dirfd; /* depth 0: never closed */
  struct stat root_st;
  int ret;
  if (fstat (rootfd, &root_st) < 0)
    ret = gr_make_error (err, errno, "changes: stat layer directory");
  else
    ret = walk_dir (&c, &rootfd, &root_st, true, 0, err);
  gr_buf_free (&c.path);
  if (ret < 0)
    {
      json_decref (c.list);
      return ret;
    }
  *out = c.list;
  return 0;
}
