/* imgmigrate: the table of subcommands; one file per subcommand.  */
#ifndef GR_MIGRATE_H
#define GR_MIGRATE_H

#include "utils.h"

/* Exit codes.  */
#define EXIT_OK 0
#define EXIT_FAIL 1  /* the operation failed */
#define EXIT_USAGE 2 /* bad command line */

struct gr_subcommand
{
  const char *name;
  const char *summary;
  /* ARGV[0] is the subcommand name.  Returns an exit code.  */
  int (*run) (int argc, char **argv);
};

int imgmigrate_pull (int argc, char **argv);

/* Print "imgmigrate: MSG" (and the error) to stderr.  */
void migrate_error (const char *what, gr_error_t *err);

#endif
