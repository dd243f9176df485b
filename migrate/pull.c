/* imgmigrate pull REF --root DIR --driver NAME: pull into a stopped
   dockerd's graph root.  */
#include "config.h"

#include "driver.h"
#include "graphroot.h"
#include "migrate.h"
#include "pull.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum output
{
  OUT_TTY,
  OUT_PLAIN,
  OUT_JSON,
  OUT_QUIET,
};

struct tty_line
{
  char id[16];
  char text[160];
};

struct renderer
{
  enum output mode;
  FILE *f;
  /* tty mode: one line per layer, redrawn in place */
  struct tty_line *lines;
  size_t n_lines;
  size_t n_printed;
};

static void
human_size (char *buf, size_t n, int64_t v)
{
  const char *units[] = { "B", "kB", "MB", "GB", "TB" };
  double d = (double)v;
  size_t u = 0;
  while (d >= 1000 && u + 1 < sizeof (units) / sizeof (units[0]))
    {
      d /= 1000;
      u++;
    }
  if (u == 0)
    snprintf (buf, n, "%lldB", (long long)v);
  else
    snprintf (buf, n, "%.3g%s", d, units[u]);
}

static void
tty_redraw_line (struct renderer *r, size_t idx)
{
  /* Lines are printed once in order; move up to line IDX, rewrite it,
     move back down.  */
  size_t up = r->n_printed - idx;
  fprintf (r->f, "\033[%zuA\r\033[2K%s: %s\r\033[%zuB", up, r->lines[idx].id, r->lines[idx].text, up);
}

static void
render_event (void *arg, const struct gr_pull_event *ev)
{
  struct renderer *r = arg;
  switch (r->mode)
    {
    case OUT_QUIET:
      return;
    case OUT_JSON:
      {
        json_t *j = gr_pull_event_json (ev);
        char *s = json_dumps (j, JSON_COMPACT);
        fprintf (r->f, "%s\n", s);
        free (s);
        json_decref (j);
        fflush (r->f);
        return;
      }
    case OUT_PLAIN:
      if (ev->kind == GR_PULL_EV_LAYER)
        {
          /* State changes only, not byte counts.  */
          if (ev->current > 0)
            return;
          fprintf (r->f, "%s: %s\n", ev->id, ev->status);
        }
      else if (ev->id)
        fprintf (r->f, "%s: %s\n", ev->id, ev->status);
      else
        fprintf (r->f, "%s\n", ev->status);
      fflush (r->f);
      return;
    case OUT_TTY:
      if (ev->kind != GR_PULL_EV_LAYER)
        {
          if (ev->id)
            fprintf (r->f, "%s: %s\n", ev->id, ev->status);
          else
            fprintf (r->f, "%s\n", ev->status);
          fflush (r->f);
          return;
        }
      if (r->lines == NULL)
        {
          r->n_lines = ev->n_layers;
          r->lines = xzalloc ((r->n_lines ? r->n_lines : 1) * sizeof (*r->lines));
        }
      if (ev->layer_index >= r->n_lines)
        return;
      struct tty_line *l = &r->lines[ev->layer_index];
      snprintf (l->id, sizeof (l->id), "%s", ev->id);
      if (ev->current >= 0 && ev->total > 0)
        {
          char cur[32], tot[32], bar[51];
          int64_t c = ev->current > ev->total ? ev->total : ev->current;
          size_t fill = (size_t)(50 * c / ev->total);
          for (size_t i = 0; i < 50; i++)
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
          bar[50] = '\0';
          human_size (cur, sizeof (cur), ev->current);
          human_size (tot, sizeof (tot), ev->total);
          snprintf (l->text, sizeof (l->text), "%-18s [%s] %s/%s", ev->status, bar, cur, tot);
        }
      else
        snprintf (l->text, sizeof (l->text), "%s", ev->status);
      if (ev->layer_index >= r->n_printed)
        {
          /* First time: print the lines up to this one.  */
          while (r->n_printed <= ev->layer_index)
            {
              struct tty_line *pl = &r->lines[r->n_printed];
              fprintf (r->f, "%s: %s\n", *pl->id ? pl->id : "", pl->text);
              r->n_printed++;
            }
        }
      else
        tty_redraw_line (r, ev->layer_index);
      fflush (r->f);
      return;
    }
}

static void
pull_usage (FILE *f)
{
  fprintf (f, "Usage: imgmigrate pull REF --root DIR --driver NAME [OPTIONS]\n\n"
              "Pull an image from a registry into the graph root DIR of a stopped dockerd, as\n"
              "`docker pull` would have stored it.\n\n"
              "  --root DIR                     dockerd's --data-root (e.g. /var/lib/docker)\n"
              "  --driver NAME                  storage driver as dockerd names it: overlay2, vfs,\n"
              "                                 aufs (built-in, Docker <= 23) or aufs-graphdriver\n"
              "                                 (our legacy plugin); another plugin name with --backend\n"
              "  --backend aufs|overlay2|vfs    the layout of a plugin's layers (ours: aufs)\n"
              "  --driver-home DIR              where the layers live, if not DIR/NAME: a managed\n"
              "                                 plugin keeps them under its propagated mount,\n"
              "                                 <root>/plugins/<id>/propagated-mount/<NAME>\n"
              "  --platform OS/ARCH[/VARIANT]   platform to pick from a multi-platform image\n"
              "                                 (default: this host's)\n"
              "  -q, --quiet                    print only the reference\n"
              "  --format json                  JSON-lines progress on stdout\n"
              "  --insecure-registry HOST       talk to HOST over plain http or unverified TLS\n"
              "                                 (127.0.0.0/8, ::1 and localhost always are)\n"
              "  -u, --username USER            registry user (password from --password-stdin)\n"
              "  --password-stdin               read the password from stdin\n"
              "  --docker-config FILE           credentials file (default ~/.docker/config.json)\n"
              "  --max-concurrent-downloads N   parallel layer downloads (default 3)\n"
              "  --debug                        log HTTP requests to stderr\n"
              "  -h, --help                     this help\n");
}

enum
{
  OPT_ROOT = 256,
  OPT_DRIVER,
  OPT_PLATFORM,
  OPT_FORMAT,
  OPT_INSECURE,
  OPT_PASSWORD_STDIN,
  OPT_MAX_CONCURRENT,
  OPT_DOCKER_CONFIG,
  OPT_DEBUG,
  OPT_BACKEND,
  OPT_DRIVER_HOME,
};

static char *
read_password_stdin (gr_error_t *err)
{
  struct gr_buf b = { 0 };
  char chunk[4096];
  size_t n;
  while ((n = fread (chunk, 1, sizeof (chunk), stdin)) > 0)
    {
      gr_buf_append (&b, chunk, n);
      if (b.len > 65536)
        {
          gr_buf_free (&b);
          gr_make_error (err, EINVAL, "password on stdin is too long");
          return NULL;
        }
    }
  while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
    b.data[--b.len] = '\0';
  return gr_buf_steal (&b);
}

int
imgmigrate_pull (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "root", required_argument, NULL, OPT_ROOT },
    { "driver", required_argument, NULL, OPT_DRIVER },
    { "platform", required_argument, NULL, OPT_PLATFORM },
    { "quiet", no_argument, NULL, 'q' },
    { "format", required_argument, NULL, OPT_FORMAT },
    { "insecure-registry", required_argument, NULL, OPT_INSECURE },
    { "username", required_argument, NULL, 'u' },
    { "password-stdin", no_argument, NULL, OPT_PASSWORD_STDIN },
    { "docker-config", required_argument, NULL, OPT_DOCKER_CONFIG },
    { "max-concurrent-downloads", required_argument, NULL, OPT_MAX_CONCURRENT },
    { "debug", no_argument, NULL, OPT_DEBUG },
    { "backend", required_argument, NULL, OPT_BACKEND },
    { "driver-home", required_argument, NULL, OPT_DRIVER_HOME },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *root_dir = NULL;
  const char *driver = NULL;
  const char *format = NULL;
  const char *backend = NULL;
  const char *driver_home = NULL;
  bool quiet = false;
  bool password_stdin = false;
  const char **insecure = NULL;
  size_t n_insecure = 0;
  struct gr_pull_opts opts = { 0 };
  cleanup_free char *password = NULL;
  cleanup_error gr_error_t err = NULL;
  struct gr_graphroot *root = NULL;
  struct gr_pull_result res = { 0 };
  struct renderer rend = { 0 };
  int c;

  optind = 1;
  while ((c = getopt_long (argc, argv, "qu:h", longopts, NULL)) != -1)
    {
      switch (c)
        {
        case OPT_ROOT:
          root_dir = optarg;
          break;
        case OPT_DRIVER:
          driver = optarg;
          break;
        case OPT_PLATFORM:
          opts.platform = optarg;
          break;
        case 'q':
          quiet = true;
          break;
        case OPT_FORMAT:
          format = optarg;
          break;
        case OPT_INSECURE:
          insecure = xrealloc (insecure, (n_insecure + 1) * sizeof (*insecure));
          insecure[n_insecure++] = optarg;
          break;
        case 'u':
          opts.registry.username = optarg;
          break;
        case OPT_PASSWORD_STDIN:
          password_stdin = true;
          break;
        case OPT_DOCKER_CONFIG:
          opts.registry.docker_config = optarg;
          break;
        case OPT_MAX_CONCURRENT:
          {
            char *end;
            long v = strtol (optarg, &end, 10);
            if (*end || v < 1 || v > 64)
              {
                fprintf (stderr, "imgmigrate pull: --max-concurrent-downloads: expected 1..64\n");
                free (insecure);
                return EXIT_USAGE;
              }
            opts.max_concurrent = (unsigned)v;
          }
          break;
        case OPT_DEBUG:
          opts.registry.verbose = true;
          break;
        case OPT_BACKEND:
          backend = optarg;
          break;
        case OPT_DRIVER_HOME:
          driver_home = optarg;
          break;
        case 'h':
          pull_usage (stdout);
          free (insecure);
          return EXIT_OK;
        default:
          pull_usage (stderr);
          free (insecure);
          return EXIT_USAGE;
        }
    }
  const char *problem = NULL;
  if (optind + 1 != argc)
    problem = optind >= argc ? "missing REF" : "exactly one REF expected";
  else if (root_dir == NULL)
    problem = "--root is required";
  else if (driver == NULL)
    problem = "--driver is required";
  else if (backend == NULL && gr_graphroot_backend_for (driver) == NULL)
    problem = "--driver: expected overlay2, vfs, aufs or aufs-graphdriver (for another plugin name, "
              "add --backend)";
  else if (backend && gr_backend_lookup (backend) == NULL)
    problem = "--backend: expected aufs, overlay2 or vfs";
  else if (driver_home && driver_home[0] != '/')
    problem = "--driver-home: expected an absolute path";
  else if (format && strcmp (format, "json") != 0)
    problem = "--format: only `json` is supported";
  else if (password_stdin && opts.registry.username == NULL)
    problem = "--password-stdin needs --username";
  else if (opts.registry.username && !password_stdin)
    problem = "--username needs --password-stdin";
  if (problem)
    {
      fprintf (stderr, "imgmigrate pull: %s\n\n", problem);
      pull_usage (stderr);
      free (insecure);
      return EXIT_USAGE;
    }
  const char *ref = argv[optind];
  opts.registry.insecure = insecure;
  opts.registry.n_insecure = n_insecure;

  if (password_stdin)
    {
      password = read_password_stdin (&err);
      if (password == NULL)
        {
          migrate_error ("pull", &err);
          free (insecure);
          return EXIT_FAIL;
        }
      opts.registry.password = password;
    }

  rend.f = stdout;
  if (format)
    rend.mode = OUT_JSON;
  else if (quiet)
    rend.mode = OUT_QUIET;
  else if (isatty (STDOUT_FILENO))
    rend.mode = OUT_TTY;
  else
    rend.mode = OUT_PLAIN;
  opts.progress = render_event;
  opts.progress_arg = &rend;

  int status = EXIT_FAIL;
  pid_t pid = 0;
  int running = gr_graphroot_dockerd_running (&pid, root_dir, &err);
  if (running < 0)
    goto fail;
  if (running > 0)
    {
      gr_make_error (&err, EBUSY,
                     "dockerd (pid %d) is running on `%s`: it would not see the pulled image; "
                     "stop it first, or use `docker pull`",
                     (int)pid, root_dir);
      goto fail;
    }
  if (backend == NULL)
    backend = gr_graphroot_backend_for (driver);
  if (gr_graphroot_open_with (&root, root_dir, driver, backend, driver_home, &err) < 0)
    goto fail;
  opts.allow_running_dockerd = true; /* checked above, before creating anything */
  if (gr_pull (&res, root, ref, &opts, &err) < 0)
    goto fail;

  if (rend.mode == OUT_QUIET)
    printf ("%s\n", res.reference);
  else if (rend.mode == OUT_JSON)
    {
      json_t *j = json_pack ("{s:s,s:s,s:s,s:s,s:b,s:I,s:I}", "status", "done", "id", res.image_id, "digest",
                             res.manifest_digest, "reference", res.reference, "upToDate", res.up_to_date,
                             "layers", (json_int_t)res.n_layers, "downloaded", (json_int_t)res.n_downloaded);
      char *s = json_dumps (j, JSON_COMPACT);
      printf ("%s\n", s);
      free (s);
      json_decref (j);
    }
  status = EXIT_OK;
  goto done;

fail:
  if (rend.mode == OUT_JSON)
    {
      json_t *j = json_pack ("{s:s,s:{s:s}}", "error", gr_error_msg (&err), "errorDetail", "message",
                             gr_error_msg (&err));
      char *s = json_dumps (j, JSON_COMPACT);
      printf ("%s\n", s);
      free (s);
      json_decref (j);
    }
  migrate_error ("pull", &err);
done:
  fflush (stdout);
  gr_pull_result_clear (&res);
  gr_graphroot_free (root);
  free (rend.lines);
  free (insecure);
  return status;
}
