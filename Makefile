# idempotency -- PGXS build.
#
#   make                 build (warnings are errors)
#   make install         install into the server found by $(PG_CONFIG)
#   make test            everything: dependencies, build, install, a throwaway
#                        cluster, every suite under test/suites/ (see test/run)
#   make test-matrix     make test's suites against PostgreSQL 18.3 built from
#                        source, release and assert-enabled, and Debian 13's
#                        PostgreSQL 17 in a chroot (test/run-matrix)
#   make test-valgrind   regress + isolation with the server under valgrind
#                        (test/run-valgrind; not part of CI)
#   make demo            build, install, throwaway cluster, run test/demo/
#   make bench           full benchmark (test/bench/run)
#   make bench-instructions
#                        instructions per call of ours and the alternatives,
#                        counted by callgrind (test/bench/instructions)
#   make installcheck    pg_regress + isolation against a running server

EXTENSION  = idempotency
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = $(EXTENSION)
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# sql/idempotency.sql is the source; the versioned install script is built
# from it.  Upgrade scripts (idempotency--A--B.sql) are installed as they are.
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA       = $(wildcard sql/$(EXTENSION)--*--*.sql)

REGRESS      = $(sort $(patsubst test/sql/%.sql,%,$(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --load-extension=$(EXTENSION)
ISOLATION      = $(sort $(patsubst test/specs/%.spec,%,$(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --load-extension=$(EXTENSION)

EXTRA_CLEAN = results regression.diffs regression.out output_iso tmp_check \
              test/bench/out $(DATA_built)

# -Wextra minus the two warnings that PostgreSQL's own idioms trip over:
# PG_FUNCTION_ARGS / callback signatures with unused parameters, and the
# zero-initialised structs ({0}) of the server headers.
PG_CFLAGS = -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter \
            -Wno-missing-field-initializers
PG_CPPFLAGS = -DIDEMPOTENCY_VERSION='"$(EXTVERSION)"'

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
# No server headers yet: only the targets that install them may run.
ifneq ($(filter-out test test-matrix test-valgrind demo bench bench-instructions,$(or $(MAKECMDGOALS),all)),)
$(error PGXS not found via '$(PG_CONFIG)'. Install the server headers (apt-get install postgresql-server-dev-NN) or run "make test", which installs them)
endif
endif

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql $(EXTENSION).control
	cp $< $@

# The objects embed the version string.
$(OBJS): $(EXTENSION).control $(wildcard src/*.h)

.PHONY: test test-matrix test-valgrind demo bench bench-instructions
test:
	PG_CONFIG=$(PG_CONFIG) test/run

test-matrix:
	test/run-matrix

test-valgrind:
	test/run-valgrind

demo:
	PG_CONFIG=$(PG_CONFIG) test/run --demo

bench:
	PG_CONFIG=$(PG_CONFIG) test/run --bench

bench-instructions:
	PG_CONFIG=$(PG_CONFIG) test/run --instructions
