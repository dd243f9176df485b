/* aufs-graphdriver: Docker's GraphDriver plugin protocol on a unix socket,
   backed by the aufs layout of libgraphroot.  */
#include "config.h"

#include "server.h"

#include <getopt.h>
#include <signal.h>
#include <string.h>

#define DEFAULT_SOCKET "/run/docker/plugins/aufs-graphdriver.sock"

/* Every endpoint family; a new file adds its provider here (see server.h).  */
static const struct srv_provider *const providers[] = {
  &graphdriver_provider,
  &distribution_provider,
};
#define N_PROVIDERS (sizeof (providers) / sizeof (providers[0]))

static void
usage (FILE *out)
{
  fprintf (out, "Usage: aufs-graphdriver [OPTION]...\n"
                "Serve Docker's GraphDriver plugin protocol on a unix socket, storing layers\n"
                "in the aufs layout (mounted with aufs, or overlayfs where aufs is missing).\n"
                "\n"
                "  -s, --socket PATH          listen on PATH (default " DEFAULT_SOCKET ")\n"
                "  -l, --log-level LEVEL      debug, info, warn or error (default info;\n"
                "                             environment: LOG_LEVEL)\n"
                "  -m, --mount-method METHOD  auto, aufs or overlay (default auto;\n"
                "                             environment: MOUNT_METHOD)\n"
                "      --home-override DIR    keep the layers in DIR whatever Home\n"
                "                             GraphDriver.Init asks for\n"
                "      --init-state FILE      keep the last GraphDriver.Init in FILE and\n"
                "                             replay it at start (environment: INIT_STATE)\n"
                "  -h, --help                 show this help\n"
                "  -V, --version              show the version\n"
                "\n"
                "Start dockerd (20.10-26, --experimental) with `-s aufs-graphdriver` to use it.\n");
}

static const char *
env_nonempty (const char *name)
{
  const char *v = getenv (name);
  return v && v[0] ? v : NULL;
}

int
main (int argc, char **argv)
{
  enum
  {
    OPT_HOME_OVERRIDE = 256,
    OPT_INIT_STATE,
  };
  static const struct option long_opts[] = {
    { "socket", required_argument, NULL, 's' },
    { "log-level", required_argument, NULL, 'l' },
    { "mount-method", required_argument, NULL, 'm' },
    { "home-override", required_argument, NULL, OPT_HOME_OVERRIDE },
    { "init-state", required_argument, NULL, OPT_INIT_STATE },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  struct plugin_config cfg = {
    .socket_path = DEFAULT_SOCKET,
    .mount_method = env_nonempty ("MOUNT_METHOD"),
    .init_state = env_nonempty ("INIT_STATE"),
  };
  const char *log_level = env_nonempty ("LOG_LEVEL");
  cleanup_error gr_error_t err = NULL;
  enum srv_log_level level = SRV_LOG_INFO;
  struct srv *srv = NULL;
  size_t started = 0;
  sigset_t sigs;
  int c, sig;

  while ((c = getopt_long (argc, argv, "s:l:m:hV", long_opts, NULL)) != -1)
    switch (c)
      {
      case 's':
        cfg.socket_path = optarg;
        break;
      case 'l':
        log_level = optarg;
        break;
      case 'm':
        cfg.mount_method = optarg;
        break;
      case OPT_HOME_OVERRIDE:
        cfg.home_override = optarg;
        break;
      case OPT_INIT_STATE:
        cfg.init_state = optarg;
        break;
      case 'h':
        usage (stdout);
        return 0;
      case 'V':
        printf ("aufs-graphdriver %s\n", PACKAGE_VERSION);
        return 0;
      default:
        usage (stderr);
        return 2;
      }
  if (optind < argc)
    {
      fprintf (stderr, "aufs-graphdriver: unexpected argument `%s`\n", argv[optind]);
      usage (stderr);
      return 2;
    }
  if (log_level && srv_log_parse_level (&level, log_level, &err) < 0)
    {
      fprintf (stderr, "aufs-graphdriver: %s\n", gr_error_msg (&err));
      return 2;
    }
  srv_log_set_level (level);
  if (cfg.mount_method == NULL)
    cfg.mount_method = "auto";
  if (strcmp (cfg.mount_method, "auto") != 0 && strcmp (cfg.mount_method, "aufs") != 0
      && strcmp (cfg.mount_method, "overlay") != 0)
    {
      fprintf (stderr, "aufs-graphdriver: unknown mount method `%s` (auto, aufs, overlay)\n",
               cfg.mount_method);
      return 2;
    }
  if (cfg.socket_path[0] == '\0')
    {
      fprintf (stderr, "aufs-graphdriver: empty socket path\n");
      return 2;
    }
  if (cfg.home_override && cfg.home_override[0] != '/')
    {
      fprintf (stderr, "aufs-graphdriver: --home-override must be an absolute path\n");
      return 2;
    }
  if (cfg.init_state && cfg.init_state[0] != '/')
    {
      fprintf (stderr, "aufs-graphdriver: --init-state must be an absolute path\n");
      return 2;
    }

  /* Signals are taken by sigwait below; every thread inherits the mask.
     Writes to a pipe whose reader went away fail with EPIPE instead.  */
  signal (SIGPIPE, SIG_IGN);
  sigemptyset (&sigs);
  sigaddset (&sigs, SIGTERM);
  sigaddset (&sigs, SIGINT);
  sigaddset (&sigs, SIGHUP);
  pthread_sigmask (SIG_BLOCK, &sigs, NULL);

  srv = srv_new (&cfg);
  for (; started < N_PROVIDERS; started++)
    if (providers[started]->start (srv, &cfg, &err) < 0)
      {
        srv_log (SRV_LOG_ERROR, "%s: %s", providers[started]->name, gr_error_msg (&err));
        goto fail;
      }
  if (srv_start (srv, &err) < 0)
    {
      srv_log (SRV_LOG_ERROR, "%s", gr_error_msg (&err));
      goto fail;
    }
  srv_log (SRV_LOG_INFO, "aufs-graphdriver %s ready (mount method %s)", PACKAGE_VERSION, cfg.mount_method);

  for (;;)
    {
      if (sigwait (&sigs, &sig) != 0)
        continue;
      if (sig == SIGHUP)
        {
          srv_log (SRV_LOG_INFO, "SIGHUP ignored");
          continue;
        }
      break;
    }
  srv_log (SRV_LOG_INFO, "%s: shutting down", strsignal (sig));
  srv_stop (srv);
  while (started > 0)
    if (providers[--started]->stop)
      providers[started]->stop ();
  srv_free (srv);
  srv_log (SRV_LOG_INFO, "stopped");
  return 0;

fail:
  srv_stop (srv);
  while (started > 0)
    if (providers[--started]->stop)
      providers[started]->stop ();
  srv_free (srv);
  return 1;
}
