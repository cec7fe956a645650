/*
 * cli/util.h - the CLI commands' argument parsing. It includes util/util.h
 * (exit codes, errors, clock, names, control-socket client) and
 * util/json.h (JSON output), so a command needs this header only.
 */
#ifndef PMG_CLI_UTIL_H
#define PMG_CLI_UTIL_H

#include <stdint.h>
#include "util/json.h"
#include "util/util.h"

/* "512M", "4G", "65536", "1.5G" -> bytes. Returns 0 or -EINVAL / -ERANGE. */
int cli_parse_size(const char *s, uint64_t *out);
/* Decimal unsigned in [lo, hi]. Returns 0 or -EINVAL / -ERANGE. */
int cli_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* A control-socket answer: 1 when it says "ok":true; otherwise its
 * error is printed ("pml-migrate: PREFIX: ..."), the line itself too on
 * stdout with json (a script reads why there), and 0. */
int cli_answer_ok(const char *prefix, const char *line, int json);

/* Calls fn for each VM on this host: every control socket in the run
 * directory that answers "status" within 2 s, with the VM's name and its
 * status line (JSON). Sockets nobody answers on (a VM that died) are
 * skipped. Returns 0 (also with no run directory yet) or -errno with a
 * message printed (prefix: the command). */
int cli_each_vm(const char *prefix, void (*fn)(void *opaque, const char *name, const char *status), void *opaque);

#endif
