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

#endif
