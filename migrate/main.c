/* imgmigrate: move images into and out of Docker graph roots.  */
#include "config.h"

#include "migrate.h"

#include <stdio.h>
#include <string.h>

static const struct gr_subcommand subcommands[] = {
  { "pull", "pull an image from a registry straight into a graph root", imgmigrate_pull },
};

#define N_SUBCOMMANDS (sizeof (subcommands) / sizeof (subcommands[0]))

void
migrate_error (const char *what, gr_error_t *err)
{
  if (err && *err)
    fprintf (stderr, "imgmigrate: %s%s%s\n", what ? what : "", what ? ": " : "", gr_error_msg (err));
  else
    fprintf (stderr, "imgmigrate: %s\n", what);
}

static void
usage (FILE *f)
{
  fprintf (f, "Usage: imgmigrate COMMAND [OPTIONS]\n\n"
              "Work on Docker graph roots (dockerd's --data-root) while dockerd is stopped.\n\n"
              "Commands:\n");
  for (size_t i = 0; i < N_SUBCOMMANDS; i++)
    fprintf (f, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
  fprintf (f, "\nRun `imgmigrate COMMAND --help` for a command's options.\n"
              "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      usage (stderr);
      return EXIT_USAGE;
    }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0)
    {
      usage (stdout);
      return EXIT_OK;
    }
  if (strcmp (argv[1], "--version") == 0)
    {
      printf ("imgmigrate %s\n", PACKAGE_VERSION);
      return EXIT_OK;
    }
  for (size_t i = 0; i < N_SUBCOMMANDS; i++)
    if (strcmp (argv[1], subcommands[i].name) == 0)
      return subcommands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "imgmigrate: unknown command `%s`\n\n", argv[1]);
  usage (stderr);
  return EXIT_USAGE;
}
