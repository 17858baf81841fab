# pgmarket: the server extension (PGXS).
#
#   make                 build the extension
#   make install         install it into the server found by pg_config
#   make installcheck    pg_regress, isolation and TAP tests against a
#                        running server (PGHOST/PGPORT) plus TAP clusters
#   make fuzz            the client's fuzz targets, 60 s in all
#                        (FUZZ_SECONDS=600 for longer; see client/Makefile)
#
# scripts/test.sh does all of this on a fresh machine; see README.md.

EXTENSION    = pgmarket
MODULE_big   = pgmarket
OBJS         = extension/pgmarket.o extension/money.o extension/args.o \
               extension/spi.o extension/actor.o extension/userlock.o \
               extension/escrow.o \
               extension/keyring.o extension/index_read.o extension/heapwrite.o \
               extension/accounts.o extension/passwords.o extension/emails.o \
               extension/ledger.o extension/batch.o extension/vault.o \
               extension/apikeys.o extension/audit.o extension/audit_chain.o \
               extension/chat.o extension/preferences.o extension/sealed.o \
               extension/health.o extension/projects.o \
               extension/profiles.o extension/resets.o extension/roles.o \
               extension/identities.o extension/ratelimit.o \
               extension/personal.o extension/erasure.o \
               extension/importer.o
DATA         = $(wildcard extension/pgmarket--*.sql)
PGFILEDESC   = "pgmarket - database core of an API marketplace"

# The one version of the tree: pgmarket.control's default_version, which the
# library checks against the installed extension (and client/Makefile gives
# the client library and the tool).
PGM_VERSION := $(shell sed -n "s/^default_version *= *'\([0-9.]*\)'.*/\1/p" \
                 $(dir $(lastword $(MAKEFILE_LIST)))pgmarket.control)

PG_CPPFLAGS  = -Wall -Wextra -Werror -Wno-unused-parameter \
               -Wno-missing-field-initializers -Wno-sign-compare \
               -DPGM_VERSION='"$(PGM_VERSION)"'
SHLIB_LINK   = -lsodium -lcrypt

REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=pgmarket
ISOLATION    = $(patsubst tests/isolation/specs/%.spec,%,$(sort $(wildcard tests/isolation/specs/*.spec)))
ISOLATION_OPTS = --load-extension=pgmarket --inputdir=tests/isolation --outputdir=tests/isolation/output_iso
TAP_TESTS    = 1
PROVE_TESTS  = $(sort $(wildcard tests/t/*.pl))
EXTRA_CLEAN  = tests/isolation/output_iso tmp_check

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# After the include, so that PGXS's "all" stays the default goal.

# Every object reads the internal header, and PGM_VERSION comes from the
# control file: a change to either rebuilds them all.
$(OBJS): extension/pgmarket.h pgmarket.control
.PHONY: fuzz
fuzz:
	$(MAKE) -C client fuzz
