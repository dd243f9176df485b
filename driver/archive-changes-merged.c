/* gr_archive_changes_merged: what dockerd's naive diff reports, from the
   layer directories without mounting them.  */
#include "config.h"

#include "archive-internal.h"
#include "archive.h"
#include "fsutil.h"
#include "whiteout.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

/* dockerd 20.10's overlay2 (and every driver without its own Changes)
   compares the mounted layer with the mounted parent (archive.ChangesDirs):
   Add for a path only in the new tree, Delete for one only in the old tree
   (not what is below it), Modify where mode, uid, gid, rdev,
   security.capability or, for a non-directory, size or mtime differ, and
   a Modify for a directory not listed itself that has changes below it,
   listed before them.  Without mounting anything the same answer comes
   from the layer directory alone: whatever the layer does not touch is the
   same in both trees, so only its own entries, its whiteouts and its
   opaque directories are looked at, against the merged view of the lower
   layers (nearest first, their whiteouts and opaque directories applied).
   The order is the walk order (moby's is Go's random map order).  */

/* The old (lowers only) view of one directory: the lower layers that hold
   it as a directory, nearest first, down to the first where it is opaque.  */
struct mview
{
  char *rel; /* the directory relative to a layer root, "." for the root */
  size_t n;
  size_t *idx;
  int *fd; /* opened when needed, -1 otherwise */
};

struct mctx
{
  json_t *list;
  const int *lowers;
  size_t n_lowers;
  enum gr_whiteout_format fmt;
  struct gr_buf path; /* "/a/b" of the entry being looked at; "" for the root */
};

static void
mview_close (struct mview *v)
{
  for (size_t k = 0; k < v->n; k++)
    if (v->fd[k] >= 0)
      {
        close (v->fd[k]);
        v->fd[k] = -1;
      }
}

static void
mview_free (struct mview *v)
{
  mview_close (v);
  free (v->rel);
  free (v->idx);
  free (v->fd);
  memset (v, 0, sizeof (*v));
}

static void
mview_add (struct mview *v, size_t idx)
{
  v->idx = xrealloc (v->idx, (v->n + 1) * sizeof (*v->idx));
  v->fd = xrealloc (v->fd, (v->n + 1) * sizeof (*v->fd));
  v->idx[v->n] = idx;
  v->fd[v->n] = -1;
  v->n++;
}

static int
mview_fd (struct mctx *c, struct mview *v, size_t k, gr_error_t *err)
{
  if (v->fd[k] < 0)
    {
      v->fd[k] = gr_open_in_root (c->lowers[v->idx[k]], v->rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, err);
      if (v->fd[k] < 0)
        return gr_error_wrap (err, "changes: lower layer %zu", v->idx[k]);
    }
  return v->fd[k];
}

enum lower_state
{
  LOWER_MISSING,
  LOWER_ENTRY,
  LOWER_WHITEOUT,
};

/* NAME in the lower directory DFD: an entry (*ST filled), a whiteout, or
   nothing.  */
static int
lower_entry (struct mctx *c, int dfd, const char *name, struct stat *st, enum lower_state *state,
             gr_error_t *err)
{
  *state = LOWER_MISSING;
  if (c->fmt == GR_WHITEOUT_AUFS)
    {
      cleanup_free char *wh = xasprintf (GR_WH_PREFIX "%s", name);
      struct stat wst;
      if (fstatat (dfd, wh, &wst, AT_SYMLINK_NOFOLLOW) == 0)
        {
          *state = LOWER_WHITEOUT;
          return 0;
        }
    }
  if (fstatat (dfd, name, st, AT_SYMLINK_NOFOLLOW) < 0)
    {
      if (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG)
        return 0;
      return gr_make_error (err, errno, "changes: stat `%s` in a lower layer", name);
    }
  if (c->fmt == GR_WHITEOUT_OVERLAY && gr_whiteout_is_overlay_file (st))
    *state = LOWER_WHITEOUT;
  else
    *state = LOWER_ENTRY;
  return 0;
}

static bool
lower_dir_opaque (struct mctx *c, int dfd, const char *name)
{
  if (c->fmt == GR_WHITEOUT_OVERLAY)
    return gr_whiteout_is_overlay_opaque (dfd, name);
  if (c->fmt == GR_WHITEOUT_AUFS)
    {
      cleanup_free char *p = xasprintf ("%s/" GR_WH_OPAQUE, name);
      struct stat st;
      return fstatat (dfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0;
    }
  return false;
}

/* NAME in the old view V: *FOUND, its stat, and (if CHILD is not NULL and
   it is a directory) the old view of it.  */
static int
mview_lookup (struct mctx *c, struct mview *v, const char *name, bool *found, struct stat *st,
              struct mview *child, gr_error_t *err)
{
  *found = false;
  for (size_t k = 0; k < v->n; k++)
    {
      int dfd = mview_fd (c, v, k, err);
      enum lower_state state;
      if (dfd < 0 || lower_entry (c, dfd, name, st, &state, err) < 0)
        return -1;
      if (state == LOWER_WHITEOUT)
        return 0;
      if (state == LOWER_MISSING)
        continue;
      *found = true;
      if (child == NULL || !S_ISDIR (st->st_mode))
        return 0;
      child->rel = strcmp (v->rel, ".") == 0 ? xstrdup (name) : xasprintf ("%s/%s", v->rel, name);
      mview_add (child, v->idx[k]);
      if (lower_dir_opaque (c, dfd, name))
        return 0;
      for (size_t j = k + 1; j < v->n; j++)
        {
          struct stat jst;
          int jfd = mview_fd (c, v, j, err);
          if (jfd < 0 || lower_entry (c, jfd, name, &jst, &state, err) < 0)
            return -1;
          if (state == LOWER_MISSING)
            continue;
          if (state == LOWER_WHITEOUT || !S_ISDIR (jst.st_mode))
            break;
          mview_add (child, v->idx[j]);
          if (lower_dir_opaque (c, jfd, name))
            break;
        }
      return 0;
    }
  return 0;
}

struct vname
{
  char *name;
  size_t rank;
  bool whiteout;
};

static int
cmp_vname (const void *a, const void *b)
{
  const struct vname *x = a, *y = b;
  int r = strcmp (x->name, y->name);
  if (r)
    return r;
  return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* The names visible in the old view V, sorted: *NAMES, *N.  */
static int
mview_names (struct mctx *c, struct mview *v, char ***names, size_t *n, gr_error_t *err)
{
  struct vname *all = NULL;
  size_t len = 0;
  int ret = 0;
  for (size_t k = 0; k < v->n && ret == 0; k++)
    {
      char **ln = NULL;
      size_t nn = 0;
      int dfd = mview_fd (c, v, k, err);
      if (dfd < 0 || gr_archive_read_names (&ln, &nn, dfd, err) < 0)
        {
          ret = -1;
          break;
        }
      all = xrealloc (all, (len + nn + 1) * sizeof (*all));
      for (size_t i = 0; i < nn; i++)
        {
          const char *name = ln[i];
          bool wh = false;
          if (c->fmt == GR_WHITEOUT_AUFS)
            {
              cleanup_error gr_error_t e = NULL;
              enum gr_whiteout_kind kind;
              const char *target;
              if (gr_whiteout_classify_name (name, &kind, &target, &e) < 0)
                continue;
              if (kind == GR_WH_OPAQUE_DIR || kind == GR_WH_INTERNAL)
                continue;
              if (kind == GR_WH_FILE)
                {
                  name = target;
                  wh = true;
                }
            }
          else if (c->fmt == GR_WHITEOUT_OVERLAY)
            {
              struct stat st;
              if (fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && gr_whiteout_is_overlay_file (&st))
                wh = true;
            }
          all[len].name = xstrdup (name);
          all[len].rank = k;
          all[len].whiteout = wh;
          len++;
        }
      gr_archive_free_names (ln, nn);
    }

  char **out = NULL;
  size_t nout = 0;
  if (ret == 0)
    {
      qsort (all, len, sizeof (*all), cmp_vname);
      out = xmalloc ((len + 1) * sizeof (*out));
      for (size_t i = 0; i < len; i++)
        if ((i == 0 || strcmp (all[i].name, all[i - 1].name) != 0) && !all[i].whiteout)
          out[nout++] = xstrdup (all[i].name);
    }
  for (size_t i = 0; i < len; i++)
    free (all[i].name);
  free (all);
  if (ret < 0)
    return ret;
  *names = out;
  *n = nout;
  return 0;
}

/* security.capability of DFD/NAME (not following a symlink) into BUF.  */
static size_t
read_cap (int dfd, const char *name, unsigned char *buf, size_t size)
{
  cleanup_free char *p = xasprintf ("/proc/self/fd/%d/%s", dfd, name);
  ssize_t n = lgetxattr (p, "security.capability", buf, size);
  return n > 0 ? (size_t)n : 0;
}

/* moby's statDifferent, plus the capability comparison of addChanges.  */
static bool
stat_different (const struct stat *o, const struct stat *n)
{
  return o->st_mode != n->st_mode || o->st_uid != n->st_uid || o->st_gid != n->st_gid
         || o->st_rdev != n->st_rdev
         || (!S_ISDIR (o->st_mode)
             && (!gr_archive_same_fs_time (&o->st_mtim, &n->st_mtim) || o->st_size != n->st_size));
}

static int
cmp_str_p (const void *a, const void *b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

static bool
name_in (char **names, size_t n, const char *name)
{
  return n > 0 && bsearch (&name, names, n, sizeof (*names), cmp_str_p) != NULL;
}

static void
add_mchange (struct mctx *c, const char *path, size_t len, enum gr_change_kind kind)
{
  json_array_append_new (c->list, gr_archive_change_new (path, len, kind));
}

/* The directory c->path of the layer, open as *UFD (whose stat is UST, at
   DEPTH), against its old view OLD (empty when the old tree has no
   directory there).  HIDE_LOWER: a directory above is opaque, so nothing
   of the lowers shows through here either.  LISTED: the directory itself
   is already listed.  */
static int
merged_dir (struct mctx *c, int *ufd, const struct stat *ust, struct mview *old, bool hide_lower, bool listed,
            unsigned depth, gr_error_t *err)
{
  size_t start = json_array_size (c->list);
  size_t mark = c->path.len;
  bool top = mark == 0;
  char **names = NULL, **entries = NULL, **whiteouts = NULL;
  size_t n = 0, nent = 0, nwh = 0;
  int ret = 0;

  if (gr_archive_read_names (&names, &n, *ufd, err) < 0)
    return gr_error_wrap (err, "changes: `%s`", top ? "/" : c->path.data);
  entries = xmalloc ((n + 1) * sizeof (*entries));
  whiteouts = xmalloc ((n + 1) * sizeof (*whiteouts));

  /* Sort the names into entries and whiteouts (names of what they hide).  */
  bool opaque = hide_lower;
  for (size_t i = 0; i < n; i++)
    {
      if (c->fmt == GR_WHITEOUT_AUFS)
        {
          cleanup_error gr_error_t e = NULL;
          enum gr_whiteout_kind kind;
          const char *target;
          if (gr_whiteout_classify_name (names[i], &kind, &target, &e) < 0)
            continue;
          if (kind == GR_WH_OPAQUE_DIR)
            opaque |= !top;
          if (kind == GR_WH_FILE)
            whiteouts[nwh++] = (char *)target;
          if (kind != GR_WH_NONE)
            continue;
        }
      else if (c->fmt == GR_WHITEOUT_OVERLAY)
        {
          struct stat st;
          if (fstatat (*ufd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && gr_whiteout_is_overlay_file (&st))
            {
              whiteouts[nwh++] = names[i];
              continue;
            }
        }
      entries[nent++] = names[i];
    }
  if (c->fmt == GR_WHITEOUT_OVERLAY && !top && gr_whiteout_is_overlay_opaque (*ufd, ""))
    opaque = true;

  for (size_t i = 0; i < nent && ret == 0; i++)
    {
      const char *name = entries[i];
      struct stat nst, ost;
      bool found = false, child_listed = false;
      struct mview child = { 0 };

      gr_buf_puts (&c->path, "/");
      gr_buf_puts (&c->path, name);
      if (fstatat (*ufd, name, &nst, AT_SYMLINK_NOFOLLOW) < 0)
        {
          if (errno != ENOENT)
            ret = gr_make_error (err, errno, "changes: stat `%s`", c->path.data);
          goto next;
        }
      if (old->n > 0
          && mview_lookup (c, old, name, &found, &ost, S_ISDIR (nst.st_mode) ? &child : NULL, err) < 0)
        {
          ret = -1;
          goto next;
        }
      if (!found)
        {
          add_mchange (c, c->path.data, c->path.len, GR_CHANGE_ADD);
          child_listed = true;
        }
      else
        {
          bool differ = stat_different (&ost, &nst);
          if (!differ && S_ISREG (nst.st_mode))
            {
              /* the capability, only where it can be (as moby reads it
                 for every entry, but only regular files carry one) */
              unsigned char a[64], b[64];
              size_t la = 0, lb = read_cap (*ufd, name, b, sizeof (b));
              for (size_t j = 0; j < old->n; j++)
                {
                  struct stat jst;
                  enum lower_state state;
                  int jfd = mview_fd (c, old, j, err);
                  if (jfd < 0 || lower_entry (c, jfd, name, &jst, &state, err) < 0)
                    {
                      ret = -1;
                      goto next;
                    }
                  if (state == LOWER_ENTRY)
                    {
                      la = read_cap (jfd, name, a, sizeof (a));
                      break;
                    }
                }
              differ = la != lb || memcmp (a, b, la) != 0;
            }
          if (differ)
            {
              add_mchange (c, c->path.data, c->path.len, GR_CHANGE_MODIFY);
              child_listed = true;
            }
        }
      if (S_ISDIR (nst.st_mode))
        {
          cleanup_close int cfd = openat (*ufd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (cfd < 0)
            {
              if (errno != ENOENT)
                ret = gr_make_error (err, errno, "changes: open `%s`", c->path.data);
              goto next;
            }
          if (!found || !S_ISDIR (ost.st_mode))
            mview_free (&child);
          /* the lower fds of this level are reopened when needed again */
          mview_close (old);
          gr_archive_walk_leave (ufd, depth);
          ret = merged_dir (c, &cfd, &nst, &child, opaque, child_listed, depth + 1, err);
          if (ret == 0 && gr_archive_walk_back (ufd, cfd, ust, err) < 0)
            ret = gr_error_wrap (err, "changes: `%s`", c->path.data);
        }
    next:
      mview_free (&child);
      c->path.len = mark;
      c->path.data[mark] = '\0';
    }

  /* What the old tree has here and the new one does not.  */
  if (ret == 0 && old->n > 0)
    {
      if (opaque)
        {
          char **on = NULL;
          size_t non = 0;
          qsort (entries, nent, sizeof (*entries), cmp_str_p);
          if (mview_names (c, old, &on, &non, err) < 0)
            ret = -1;
          for (size_t i = 0; ret == 0 && i < non; i++)
            if (!name_in (entries, nent, on[i]))
              {
                gr_buf_printf (&c->path, "/%s", on[i]);
                add_mchange (c, c->path.data, c->path.len, GR_CHANGE_DELETE);
                c->path.len = mark;
                c->path.data[mark] = '\0';
              }
          gr_archive_free_names (on, non);
        }
      else
        for (size_t i = 0; i < nwh && ret == 0; i++)
          {
            struct stat ost;
            bool found;
            if (mview_lookup (c, old, whiteouts[i], &found, &ost, NULL, err) < 0)
              ret = -1;
            else if (found)
              {
                gr_buf_printf (&c->path, "/%s", whiteouts[i]);
                add_mchange (c, c->path.data, c->path.len, GR_CHANGE_DELETE);
                c->path.len = mark;
                c->path.data[mark] = '\0';
              }
          }
    }

  /* A directory with changes below it is listed before them.  */
  if (ret == 0 && !top && !listed && json_array_size (c->list) > start)
    json_array_insert_new (c->list, start,
                           gr_archive_change_new (c->path.data, c->path.len, GR_CHANGE_MODIFY));

  free (entries);
  free (whiteouts);
  gr_archive_free_names (names, n);
  return ret;
}

int
gr_archive_changes_merged (json_t **out, int layer_dirfd, const int *lower_fds, size_t n_lowers,
                           enum gr_whiteout_format f, gr_error_t *err)
{
  struct mctx c = { .lowers = lower_fds, .n_lowers = n_lowers, .fmt = f };
  struct mview root = { .rel = xstrdup (".") };
  for (size_t i = 0; i < n_lowers; i++)
    mview_add (&root, i);
  c.list = json_array ();
  gr_buf_puts (&c.path, "");
  int rootfd = layer_dirfd; /* depth 0: never closed */
  struct stat root_st;
  int ret;
  if (fstat (rootfd, &root_st) < 0)
    ret = gr_make_error (err, errno, "changes: stat layer directory");
  else
    ret = merged_dir (&c, &rootfd, &root_st, &root, false, true, 0, err);
  mview_free (&root);
  gr_buf_free (&c.path);
  if (ret < 0)
    {
      json_decref (c.list);
      return ret;
    }
  *out = c.list;
  return 0;
}
