/* Shared bits of the CUnit programs: a sandbox directory per suite and
   assertions that print the driver error.  */
#ifndef GR_UNIT_H
#define GR_UNIT_H

#include "utils.h"

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ASSERT_OK(expr)                                                                            \
  do                                                                                               \
    {                                                                                              \
      gr_error_t _e = NULL;                                                                        \
      gr_error_t *err_ = &_e;                                                                      \
      (void) err_;                                                                                 \
      int _r = (expr);                                                                             \
      if (_r < 0)                                                                                  \
        fprintf (stderr, "\n%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, gr_error_msg (&_e));     \
      CU_ASSERT_FATAL (_r >= 0);                                                                   \
      gr_error_release (&_e);                                                                      \
    }                                                                                              \
  while (0)

/* A fresh temp dir (under $TMPDIR or /var/tmp, which may support xattrs
   better than /tmp) for the current suite.  */
static inline char *
unit_mkdtemp (void)
{
  const char *base = getenv ("GR_TEST_TMPDIR");
  char *tmpl = xasprintf ("%s/gr-unit-XXXXXX", base ? base : "/var/tmp");
  if (mkdtemp (tmpl) == NULL)
    {
      perror ("mkdtemp");
      abort ();
    }
  return tmpl;
}

static inline void
unit_rm_rf (const char *path)
{
  char *cmd = xasprintf ("rm -rf '%s'", path);
  if (system (cmd) != 0)
    fprintf (stderr, "cannot remove %s\n", path);
  free (cmd);
}

/* The current suite's sandbox: a fresh temp dir and an fd on it, made by
   unit_sandbox_setup and removed by unit_sandbox_teardown (the CUnit suite
   init/cleanup functions).  */
char *unit_sandbox;
int unit_sandbox_fd = -1;

static inline int
unit_sandbox_setup (void)
{
  unit_sandbox = unit_mkdtemp ();
  unit_sandbox_fd = open (unit_sandbox, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return unit_sandbox_fd < 0;
}

static inline int
unit_sandbox_teardown (void)
{
  if (unit_sandbox_fd >= 0)
    close (unit_sandbox_fd);
  unit_sandbox_fd = -1;
  unit_rm_rf (unit_sandbox);
  free (unit_sandbox);
  unit_sandbox = NULL;
  return 0;
}

/* Run the registry; exit status: 0 all passed, 1 failures, 77 skipped.  */
static inline int
unit_run (void)
{
  CU_basic_set_mode (CU_BRM_VERBOSE);
  CU_basic_run_tests ();
  unsigned failed = CU_get_number_of_failures () + CU_get_number_of_tests_failed ();
  CU_cleanup_registry ();
  return failed ? 1 : 0;
}

#define UNIT_REQUIRE_ROOT()                                                                        \
  do                                                                                               \
    {                                                                                              \
      if (geteuid () != 0)                                                                         \
        {                                                                                          \
          fprintf (stderr, "skipped: needs root\n");                                               \
          return 77;                                                                               \
        }                                                                                          \
    }                                                                                              \
  while (0)

#endif
