# secbroker -- see README.md. Sources are picked up by wildcard: adding a
# file under mqtt/, tls/, acl/, ws/, broker/, clients/core/ or a clients/sec*.c
# program or a tests/unit/test_*.c suite needs no change here.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
CFLAGS  ?= -O2 -g
SAN     ?=
CONF    ?= etc/lab.conf

WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -I. $(CFLAGS) $(SAN) -MMD -MP
LDFLAGS_ALL = $(LDFLAGS) $(SAN)
TLS_LIBS = -lmbedtls -lmbedx509 -lmbedcrypto
STORE_LIBS = -lsqlite3
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

MQTT_SRC   := $(wildcard mqtt/*.c)
TLS_SRC    := $(wildcard tls/*.c)
ACL_SRC    := $(wildcard acl/*.c)
STORE_SRC  := $(wildcard store/*.c)
WS_SRC     := $(wildcard ws/*.c)
BROKER_SRC := $(wildcard broker/*.c)
CCORE_SRC  := $(wildcard clients/core/*.c)
CLIENT_SRC := $(wildcard clients/sec*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_HELP  := $(filter-out tests/unit/test_%,$(wildcard tests/unit/*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBMQTT   = $(BUILD)/libsecmqtt.a
LIBTLS    = $(BUILD)/libsectls.a
LIBACL    = $(BUILD)/libsecacl.a
LIBSTORE  = $(BUILD)/libsecstore.a
LIBWS     = $(BUILD)/libsecws.a
LIBCCORE  = $(BUILD)/libseccli.a
# the broker's objects minus main(), so unit tests can link broker modules
LIBBROKER = $(BUILD)/libsecbroker.a

BINS = $(BUILD)/secbroker $(patsubst clients/%.c,$(BUILD)/%,$(CLIENT_SRC))
UNIT_BINS = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: fuzz fuzz-protocol-smoke all clean test unit test-unit test-asan test-integration run certs install deps-build deps-test bench lab-% format format-check

all: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBMQTT): $(call obj,$(MQTT_SRC))
$(LIBTLS): $(call obj,$(TLS_SRC))
$(LIBACL): $(call obj,$(ACL_SRC))
$(LIBSTORE): $(call obj,$(STORE_SRC))
$(LIBWS): $(call obj,$(WS_SRC))
$(LIBCCORE): $(call obj,$(CCORE_SRC))
$(LIBBROKER): $(call obj,$(filter-out broker/main.c,$(BROKER_SRC)))
$(BUILD)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@
	$(if $^,ar rcs $@ $^,ar rcs $@)

$(BUILD)/secbroker: $(call obj,broker/main.c) $(LIBBROKER) $(LIBSTORE) $(LIBWS) $(LIBACL) $(LIBTLS) $(LIBMQTT)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TLS_LIBS) $(STORE_LIBS)

$(BUILD)/sec%: $(BUILD)/obj/clients/sec%.o $(LIBCCORE) $(LIBACL) $(LIBTLS) $(LIBMQTT)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TLS_LIBS) -lm

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(call obj,$(UNIT_HELP)) $(LIBBROKER) $(LIBSTORE) $(LIBCCORE) $(LIBWS) $(LIBACL) $(LIBTLS) $(LIBMQTT)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TLS_LIBS) $(STORE_LIBS) $(CHECK_LIBS)

unit: $(UNIT_BINS)

# ---- fuzzing: libFuzzer targets built by clang with ASan+UBSan --------------
# (tests/fuzz/fuzz_*.c; docs/ARCHITECTURE.md says how to run them)
FUZZ_CC    ?= clang
FUZZ_FLAGS  = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_BROKER_SRC = $(filter-out broker/main.c,$(BROKER_SRC)) $(STORE_SRC) $(WS_SRC) $(ACL_SRC) $(TLS_SRC) $(MQTT_SRC)

$(BUILD)/fuzz/fuzz_protocol: tests/fuzz/fuzz_protocol.c $(FUZZ_BROKER_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -I. $(FUZZ_FLAGS) -o $@ $^ $(TLS_LIBS) $(STORE_LIBS)

fuzz: $(BUILD)/fuzz/fuzz_protocol

# a short run of the protocol target from its committed seeds (new inputs go
# to build/, the committed corpus stays as it is)
fuzz-protocol-smoke: $(BUILD)/fuzz/fuzz_protocol
	@mkdir -p $(BUILD)/fuzz/corpus-protocol
	$(BUILD)/fuzz/fuzz_protocol -max_total_time=20 -max_len=65536 -rss_limit_mb=1024 \
	    -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus-protocol tests/fuzz/corpus/protocol

# ---- tests ------------------------------------------------------------------
deps-build:
	@sh scripts/deps.sh build

deps-test:
	@sh scripts/deps.sh test
	@if [ -f package-lock.json ] && [ ! -d node_modules/mqtt ]; then \
	    echo "npm ci (MQTT.js for the interoperability tests)"; npm ci --no-audit --no-fund; fi

test-unit: unit
	@sh scripts/run-unit.sh $(BUILD)

test-asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" all unit
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    sh scripts/run-unit.sh build-asan

test-integration: all
	@sh scripts/run-integration.sh

test: deps-test
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory all unit
	@sh scripts/run-all.sh

# Every C file is formatted by .clang-format; make test fails otherwise.
C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find mqtt tls acl ws broker clients tests -name '*.[ch]')
format:
	@clang-format -i $(C_FILES)

format-check:
	@bad=$$(for f in $(C_FILES); do clang-format --dry-run -Werror "$$f" >/dev/null 2>&1 || echo "$$f"; done); \
	if [ -n "$$bad" ]; then echo "not clang-format clean (run make format):"; echo "$$bad"; exit 1; fi; \
	echo "format-check: $(words $(C_FILES)) C files clang-format clean"

# ---- running ----------------------------------------------------------------
certs:
	@sh scripts/mkcerts.sh certs $(KEY)

run: deps-build
	@$(MAKE) --no-print-directory all
	@sh scripts/mkcerts.sh certs $(KEY)
	@mkdir -p lab
	@echo "starting build/secbroker -c $(CONF)"
	exec ./build/secbroker -c $(CONF)

bench: all
	@sh scripts/bench.sh

lab-%: all
	@sh scripts/mkcerts.sh certs $(KEY)
	@sh scripts/lab.sh $*

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) build-asan -name '*.d' 2>/dev/null)
