# fila — `make` builds, `make run` serves the demo, `make test` tests it all.

B       ?= build
PKGS    := libevent libcurl jansson sqlite3 inih openssl libpq
SAN     ?=
OPT     ?= -O2 -g
CFLAGS  += $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
           -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
           -fno-omit-frame-pointer -pthread $(SAN) \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(SAN) -pthread
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
# Each compile also writes the headers it read, NAME.d in $(B)/obj or
# $(B)/unit, read back by the -include below: what includes a header is
# rebuilt when it changes, and only that. A target whose .d is missing
# (a build dir made before this, a .d removed) is rebuilt once.
DEPFLAGS := -MMD -MP

SRC     := $(filter-out src/main.c,$(wildcard src/*.c))
WEB     := $(sort $(wildcard web/*.html web/*.js web/*.css web/*.svg web/*.png)) \
           $(wildcard clients/js/fila.js clients/js/fila.d.ts)
OBJ     := $(SRC:src/%.c=$(B)/obj/%.o) $(B)/obj/builtin_conf.o \
           $(B)/obj/web_files.o
UNIT    := $(patsubst tests/unit/%.c,$(B)/%,$(wildcard tests/unit/test_*.c))
UNITOBJ := $(UNIT:$(B)/%=$(B)/unit/%.o)
# The unit tests' shared fixtures (tests/unit/*.c but test_*), linked into
# every unit test binary.
UNITFX  := $(patsubst tests/unit/%.c,$(B)/unit/%.o,\
           $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c)))
# What `make fmt` formats and `make fmt-check` checks.
FMT     := $(wildcard src/*.c src/*.h tools/*.c tests/unit/*.c \
           tests/unit/*.h fuzz/*.c)

.PHONY: all run test unit api api-pg browser asan fuzz fmt fmt-check deps clean
all: $(B)/fila $(B)/rhemu

deps:
	@scripts/deps

$(B)/obj/%.o: src/%.c $(B)/obj/%.d | $(B)/obj
	$(CC) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(B)/obj/builtin_conf.c: fila.conf scripts/embed | $(B)/obj
	scripts/embed fila.conf config_builtin > $@

$(B)/obj/builtin_conf.o: $(B)/obj/builtin_conf.c
	$(CC) $(CFLAGS) $(DEPFLAGS) -Wno-missing-prototypes -c -o $@ $<

$(B)/obj/web_files.c: $(WEB) scripts/embed-web | $(B)/obj
	scripts/embed-web $(WEB) > $@

$(B)/obj/web_files.o: $(B)/obj/web_files.c $(B)/obj/web_files.d
	$(CC) $(CFLAGS) $(DEPFLAGS) -iquote src -c -o $@ $<

$(B)/fila: $(B)/obj/main.o $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Programs built from one source keep their .d out of $(B)/ (-MF).
$(B)/rhemu: tools/rhemu.c $(B)/obj/rhemu.d | $(B)/obj
	$(CC) $(CFLAGS) $(DEPFLAGS) -MF $(B)/obj/rhemu.d $(LDFLAGS) -o $@ $< \
	    $(LDLIBS)

# The unit tests' objects: each tests/unit/test_*.c, and the fixtures.
$(B)/unit/%.o: tests/unit/%.c $(B)/unit/%.d | $(B)/unit
	$(CC) $(CFLAGS) $(DEPFLAGS) -iquote src -c -o $@ $<

# A unit test: its own object, the daemon's modules and the fixtures (a
# static pattern rule, so that the objects are named: kept, not deleted as
# intermediate files).
$(UNIT): $(B)/test_%: $(B)/unit/test_%.o $(OBJ) $(UNITFX)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

$(B)/obj $(B)/unit:
	mkdir -p $@

# The .d files are made by the compiles above, never by make itself: each
# a target of no rule, so that one missing has its object rebuilt.
DEPS    := $(patsubst %.o,%.d,$(OBJ) $(B)/obj/main.o $(UNITOBJ) $(UNITFX)) \
           $(B)/obj/rhemu.d
$(DEPS):
-include $(wildcard $(DEPS))

run: deps all
	@scripts/run $(B)

test: deps
	@$(MAKE) --no-print-directory all $(UNIT)
	@scripts/with-pg $(MAKE) --no-print-directory unit api api-pg browser

unit: $(UNIT)
	@scripts/node-deps
	@scripts/with-pg sh -c 'set -e; for t in $(UNIT); do echo "== $$t"; $$t --jobs 2; done'

api: all
	FILA_BIN=$(abspath $(B)/fila) RHEMU_BIN=$(abspath $(B)/rhemu) \
	    node --test --test-concurrency=2 tests/api/

# The same black-box suite with every fila on PostgreSQL (a throwaway
# cluster, unless FILA_PG_URL names a database).
api-pg: all
	@scripts/with-pg env FILA_TEST_STORE=pg \
	    FILA_BIN=$(abspath $(B)/fila) RHEMU_BIN=$(abspath $(B)/rhemu) \
	    node --test --test-concurrency=2 tests/api/

browser: all
	@scripts/browser-deps
	FILA_BIN=$(abspath $(B)/fila) RHEMU_BIN=$(abspath $(B)/rhemu) \
	    node --test --test-concurrency=1 tests/browser/

asan: deps
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" test

FUZZ_SECONDS ?= 20
fuzz: deps
	@scripts/fuzz $(FUZZ_SECONDS)

fmt:
	clang-format -i $(FMT)

# The same files, unchanged: fails naming each line fmt would change.
fmt-check: deps
	clang-format --dry-run -Werror $(FMT)

clean:
	rm -rf build build-asan build-fuzz

# `make bench`: fila against BullMQ on Redis in one run, written to
# bench/RESULTS.md (bench/README.md). build/load is its HTTP load generator.
.PHONY: bench
bench: deps
	@bench/all

$(B)/load: bench/load.c | $(B)/obj
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(shell pkg-config --libs libevent)

# `make install`: fila, a configuration for a server (kept if there is one)
# and its systemd unit, under $(DESTDIR)$(PREFIX) (scripts/install says
# where; SYSCONFDIR, BINDIR, UNITDIR move them). Not the emulator.
PREFIX  ?= /usr/local
.PHONY: install
install: $(B)/fila
	@PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" scripts/install $(B)
