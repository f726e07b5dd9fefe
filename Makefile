# sluice - GNU make build. `make` builds build/sluice; see README.md.
#
# Objects for three flavours live apart: build/ (release, -O2), build/asan/
# (tests: ASan+UBSan), build/fuzz/ (clang + libFuzzer).

CC       ?= cc
PREFIX   ?= /usr/local
PKGS     := libevent libevent_openssl libevent_pthreads openssl libunbound hiredis zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter -Wno-format-truncation
BASE_CFLAGS := -std=c17 -D_GNU_SOURCE -DSLUICE_VERSION=\"0.1.0\" -Isrc $(WARN) $(PKG_CFLAGS)
CFLAGS   ?= -O2 -g
# LMDB has no pkg-config file on Debian.
LDLIBS   := $(PKG_LIBS) -llmdb -lpthread

SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS     := $(shell find src -name '*.c' | sort)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

OBJS      := $(SRCS:%.c=build/obj/%.o)
ASAN_OBJS := $(SRCS:%.c=build/asan/obj/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:%.c=build/asan/obj/%.o)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=build/fuzz/obj/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/asan/tests/%)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all deps run test unit bench lint fuzz soak install clean asan fuzz-build

all: build/sluice

build/sluice: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(BASE_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

asan: build/asan/sluice $(UNIT_BINS)

build/asan/sluice: $(ASAN_OBJS)
	$(CC) -g $(SAN) -o $@ $^ $(LDLIBS)

build/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC/SAN  $<"
	@$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -MMD -MP -c -o $@ $<

build/asan/tests/%: tests/unit/%.c $(ASAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	@echo "  LD/SAN  $@"
	@$(CC) $(BASE_CFLAGS) -O1 -g $(SAN) -o $@ $^ $(LDLIBS) -lcmocka

# libFuzzer harnesses (clang only).
FUZZ_CC     := clang
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -DSLUICE_VERSION=\"0.1.0\" -Isrc -g -O1 $(PKG_CFLAGS) \
               -fsanitize=fuzzer-no-link,address,undefined

fuzz-build: $(FUZZ_BINS)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC/FUZZ $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_OBJS)
	@mkdir -p $(dir $@)
	@echo "  LD/FUZZ $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

deps:
	@scripts/deps.sh

run: deps build/sluice
	./build/sluice serve

test: deps
	@$(MAKE) --no-print-directory build/sluice asan fuzz-build
	@/usr/bin/python3 tests/run_tests.py

unit: asan
	@/usr/bin/python3 tests/run_tests.py --only unit

fuzz: deps fuzz-build
	@for f in $(FUZZ_BINS); do \
	  n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  echo "== $$n (300 s)"; \
	  $$f -max_total_time=$${FUZZ_SECONDS:-300} -timeout=10 build/fuzz/corpus/$$n tests/fuzz/seeds/$$n || exit 1; \
	done

bench: deps build/sluice
	@for b in bench/bench_*.sh; do echo "== $$b"; bash $$b || exit 1; done

soak: deps build/sluice asan
	@SLUICE_SOAK=1 /usr/bin/python3 tests/run_tests.py --only integration

# Banned unbounded C library calls (as curl bans them).
lint:
	@if grep -rnE '\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|atoll)[[:space:]]*\(' src tests/fuzz --include='*.c' --include='*.h'; then \
	  echo "lint: banned function used (see docs/architecture.md, 'Banned calls')"; exit 1; \
	else echo "lint: ok"; fi

install: build/sluice
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/sluice
	install -m 0755 build/sluice $(DESTDIR)$(PREFIX)/sbin/sluice
	install -m 0644 etc/sluice.conf $(DESTDIR)$(PREFIX)/share/sluice/sluice.conf.example

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d)

# The compiled-in copy of the shipped reply-rules table.
src/mail/classify_rules.inc: etc/reply_rules scripts/gen_reply_rules.sh
	@echo "  GEN     $@"
	@scripts/gen_reply_rules.sh etc/reply_rules > $@
