# fila — `make` builds, `make run` serves the demo, `make test` tests it all.

B       ?= build
PKGS    := libevent libcurl jansson sqlite3 inih openssl
SAN     ?=
OPT     ?= -O2 -g
CFLAGS  += $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
           -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
           -fno-omit-frame-pointer $(SAN) \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(SAN)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

SRC     := $(filter-out src/main.c,$(wildcard src/*.c))
WEB     := $(sort $(wildcard web/*.html web/*.js web/*.css web/*.svg web/*.png)) \
           $(wildcard clients/js/fila.js clients/js/fila.d.ts)
OBJ     := $(SRC:src/%.c=$(B)/obj/%.o) $(B)/obj/builtin_conf.o \
           $(B)/obj/web_files.o
UNIT    := $(patsubst tests/unit/%.c,$(B)/%,$(wildcard tests/unit/test_*.c))
HDR     := $(wildcard src/*.h)

.PHONY: all run test unit api browser asan fuzz fmt deps clean
all: $(B)/fila $(B)/rhemu

deps:
	@scripts/deps

$(B)/obj/%.o: src/%.c $(HDR) | $(B)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/obj/builtin_conf.c: fila.conf scripts/embed | $(B)/obj
	scripts/embed fila.conf config_builtin > $@

$(B)/obj/builtin_conf.o: $(B)/obj/builtin_conf.c
	$(CC) $(CFLAGS) -Wno-missing-prototypes -c -o $@ $<

$(B)/obj/web_files.c: $(WEB) scripts/embed-web | $(B)/obj
	scripts/embed-web $(WEB) > $@

$(B)/obj/web_files.o: $(B)/obj/web_files.c src/web.h
	$(CC) $(CFLAGS) -iquote src -c -o $@ $<

$(B)/fila: $(B)/obj/main.o $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/rhemu: tools/rhemu.c | $(B)/obj
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(B)/test_%: tests/unit/test_%.c $(OBJ) $(HDR)
	$(CC) $(CFLAGS) -iquote src $(LDFLAGS) -o $@ $< $(OBJ) $(LDLIBS) -lcriterion

$(B)/obj:
	mkdir -p $@

run: deps all
	@scripts/run $(B)

test: deps
	@$(MAKE) --no-print-directory all $(UNIT)
	@$(MAKE) --no-print-directory unit api browser

unit: $(UNIT)
	@set -e; for t in $(UNIT); do echo "== $$t"; $$t --jobs 2; done

api: all
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
	clang-format -i src/*.c src/*.h tools/*.c tests/unit/*.c fuzz/*.c

clean:
	rm -rf build build-asan build-fuzz
