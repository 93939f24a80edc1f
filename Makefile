# secbroker -- see README.md. Sources are picked up by wildcard: adding a
# file under mqtt/, tls/, acl/, ws/, broker/, clients/core/ or a clients/sec*.c
# program or a tests/unit/test_*.c suite needs no change here.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
CFLAGS  ?= -O2 -g
SAN     ?=
CONF    ?= etc/lab.conf

# ---- mbedTLS ----------------------------------------------------------------
# MBEDTLS=system   link the system's libmbedtls (Debian 12: 2.28, TLS 1.2 only)
# MBEDTLS=bundled  build mbedTLS 3.6 from Debian 13's source package (or from
#                  MBEDTLS_SRC=FILE, a local tarball) into $(BUILD)/mbedtls with
#                  tls/mbedtls_config.h, linked statically (scripts/mbedtls.sh, .mk)
# Default: system when it is mbedTLS 3.6, else bundled.
MBEDTLS_SYS_VER := $(shell printf '\043include <mbedtls/build_info.h>\nMBEDTLS_VERSION_NUMBER\n' | $(CC) -E -P - 2>/dev/null | tail -n 1)
ifeq ($(MBEDTLS),)
MBEDTLS := $(if $(filter 0x0306%,$(MBEDTLS_SYS_VER)),system,bundled)
endif
MBEDTLS_DIR = $(BUILD)/mbedtls
ifeq ($(MBEDTLS),bundled)
MBEDTLS_HDR = $(MBEDTLS_DIR)/src/include/mbedtls/build_info.h
MBEDTLS_DEP = $(MBEDTLS_DIR)/libmbedtls-all.a
TLS_CFLAGS = -I$(MBEDTLS_DIR)/src/include -I$(MBEDTLS_DIR)/src/3rdparty/everest/include -DMBEDTLS_CONFIG_FILE='"tls/mbedtls_config.h"' -DTLS_X25519_WRAP
# X25519 key shares through Everest (tls/tls_x25519.c)
TLS_LIBS = -Wl,--wrap=mbedtls_ecp_mul
else
MBEDTLS_HDR =
MBEDTLS_DEP =
TLS_CFLAGS =
TLS_LIBS = -lmbedtls -lmbedx509 -lmbedcrypto
endif
STORE_LIBS = -lsqlite3 -lpthread
# objects built for one mbedTLS are not mixed with the other's
ifneq ($(shell cat $(BUILD)/mbedtls-kind 2>/dev/null),$(MBEDTLS))
$(shell rm -rf $(BUILD)/obj $(BUILD)/tests $(BUILD)/*.a; mkdir -p $(BUILD); echo $(MBEDTLS) >$(BUILD)/mbedtls-kind)
endif

WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -I. $(TLS_CFLAGS) $(CFLAGS) $(SAN) -MMD -MP
LDFLAGS_ALL = $(LDFLAGS) $(SAN)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

MQTT_SRC   := $(wildcard mqtt/*.c)
# tls/mbedtls_*.c belong to our mbedTLS build (scripts/mbedtls.mk)
TLS_SRC    := $(filter-out tls/mbedtls_%.c,$(wildcard tls/*.c))
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

.PHONY: all clean test unit test-unit test-asan test-integration test-interop-heavy test-fuzz fuzz fuzz-protocol-smoke run certs install uninstall deps-build deps-test bench bench-mem bench-tls bench-bridge lab-% format format-check ct-check

# The lab dashboard (web/) loads MQTT.js' browser build, copied from npm's
# node_modules (package-lock.json pins it; `make deps-test` runs npm ci).
MQTTJS_DIST = node_modules/mqtt/dist/mqtt.min.js
all: $(BINS) $(if $(wildcard $(MQTTJS_DIST)),web/mqtt.min.js)

web/mqtt.min.js: $(MQTTJS_DIST)
	cp $< $@

# every object waits for the mbedTLS headers (tls/ and acl/ include them; with
# the bundled build the system's older headers must never be picked up)
$(BUILD)/obj/%.o: %.c | $(MBEDTLS_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(MBEDTLS_DIR)/src/include/mbedtls/build_info.h:
	@sh scripts/mbedtls.sh $(MBEDTLS_DIR)

$(MBEDTLS_DIR)/libmbedtls-all.a: $(MBEDTLS_HDR) tls/mbedtls_config.h tls/mbedtls_x25519.c scripts/mbedtls.mk
	@echo "building mbedTLS 3.6 (library objects we use) into $(MBEDTLS_DIR)"
	@$(MAKE) --no-print-directory -f scripts/mbedtls.mk SRC=$(MBEDTLS_DIR)/src OUT=$(MBEDTLS_DIR) CC="$(CC)" MBEDTLS_CFLAGS="-O2 $(SAN)"

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

$(BUILD)/secbroker: $(call obj,broker/main.c) $(LIBBROKER) $(LIBSTORE) $(LIBWS) $(LIBACL) $(LIBTLS) $(LIBMQTT) $(MBEDTLS_DEP)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TLS_LIBS) $(STORE_LIBS) -lm

$(BUILD)/sec%: $(BUILD)/obj/clients/sec%.o $(LIBCCORE) $(LIBACL) $(LIBTLS) $(LIBMQTT) $(MBEDTLS_DEP)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TLS_LIBS) -lm

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(call obj,$(UNIT_HELP)) $(LIBBROKER) $(LIBSTORE) $(LIBCCORE) $(LIBWS) $(LIBACL) $(LIBTLS) $(LIBMQTT) $(MBEDTLS_DEP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TLS_LIBS) $(STORE_LIBS) $(CHECK_LIBS)

unit: $(UNIT_BINS)

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

# Peers that take long to install or start (RabbitMQ: about 10-20 s per node
# start, the suite about 20 s): run by .ci/run after make test.
test-interop-heavy: all
	@sh scripts/deps.sh heavy
	@/usr/bin/python3 tests/heavy/test_rabbitmq.py

# ---- fuzzing (libFuzzer, clang; see docs/fuzzing.md) ----------------------
# Each target is one clang link of its harness and the sources it exercises,
# all instrumented with ASan+UBSan. make test-fuzz runs each for FUZZ_TIME
# seconds on the committed corpus in tests/fuzz/corpus/TARGET.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_TIME    ?= 20
FUZZ_TARGETS  = codec acl config protocol
FUZZ_FLAGS    = -std=c11 -D_GNU_SOURCE $(WARN) -I. -O1 -g -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(TLS_CFLAGS)
FUZZ_BINS     = $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_TARGETS))

$(FUZZ_BUILD)/fuzz_codec: tests/fuzz/fuzz_codec.c $(MQTT_SRC)
$(FUZZ_BUILD)/fuzz_acl: tests/fuzz/fuzz_acl.c $(ACL_SRC) $(MQTT_SRC) $(MBEDTLS_DEP)
$(FUZZ_BUILD)/fuzz_config: tests/fuzz/fuzz_config.c broker/config.c broker/config_compat.c \
                            broker/config_include.c broker/config_perlistener.c broker/log.c \
                            broker/bridge_cfg.c $(MQTT_SRC)
# the protocol layer (protocol, session, router, tree) through its conn_handler
$(FUZZ_BUILD)/fuzz_protocol: tests/fuzz/fuzz_protocol.c $(filter-out broker/main.c,$(BROKER_SRC)) \
    $(STORE_SRC) $(WS_SRC) $(ACL_SRC) $(TLS_SRC) $(MQTT_SRC) $(MBEDTLS_DEP)
$(FUZZ_BUILD)/fuzz_protocol: FUZZ_LIBS = $(STORE_LIBS) -lm
# acl/ and tls/ include mbedTLS: the bundled 3.6 headers and library, like every object
$(FUZZ_BUILD)/fuzz_%: | $(MBEDTLS_HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ $(TLS_LIBS) $(FUZZ_LIBS)

fuzz: $(FUZZ_BINS)

test-fuzz: fuzz
	@sh scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_TIME) $(FUZZ_TARGETS)

# the protocol target alone (new inputs go to $(FUZZ_BUILD)/corpus/protocol,
# the committed seeds stay as they are)
fuzz-protocol-smoke: $(FUZZ_BUILD)/fuzz_protocol
	@sh scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_TIME) protocol

test: deps-test
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory all unit
	@sh scripts/run-all.sh

# Constant-time check of the bundled build's X25519 (Everest at -O3) under
# valgrind's memcheck: no branch or address may depend on the secret, and
# the deliberate leak of `ct_x25519 leak` must be caught (tests/ct).
ct-check: $(MBEDTLS_DEP)
ifeq ($(MBEDTLS),bundled)
	@mkdir -p $(BUILD)/tests
	$(CC) -O2 -g -o $(BUILD)/tests/ct_x25519 tests/ct/ct_x25519.c $(MBEDTLS_DEP)
	@valgrind -q --error-exitcode=1 $(BUILD)/tests/ct_x25519 || \
	    { echo "ct-check: X25519 depends on the secret (see above)"; exit 1; }
	@if valgrind -q --error-exitcode=1 $(BUILD)/tests/ct_x25519 leak >/dev/null 2>&1; then \
	    echo "ct-check: memcheck missed the deliberate leak: the check does not work"; exit 1; fi
	@echo "ct-check: X25519 constant time under memcheck (and the deliberate leak caught)"
else
	@echo "ct-check: only for the bundled mbedTLS build (MBEDTLS=bundled)"; exit 1
endif

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
	@if [ -f web/mqtt.min.js ]; then \
	    echo "lab dashboard: http://127.0.0.1:8080/ (or http://[::1]:8080/)"; \
	else echo "lab dashboard: web/mqtt.min.js is missing: run npm ci, then make"; fi
	exec ./build/secbroker -c $(CONF)

bench: all
	@sh scripts/bench-persist.sh
	@$(MAKE) --no-print-directory bench-mem
	@BENCH_TLS_NO_SPLICE=1 sh scripts/bench-tls.sh
	@sh scripts/bench.sh

# Only the memory-under-non-readers table (secbroker with and without
# memory_limit, Debian's mosquitto): build/bench/memburst.md, which
# scripts/bench.sh puts into docs/performance.md. BENCH_RUNS=3 by default.
bench-mem: build/secbroker
	@BENCH_RUNS=$${BENCH_RUNS:-3} /usr/bin/python3 scripts/mem-burst.py --out build/bench/memburst.md

# only the TLS handshake rows (and their section of docs/performance.md)
bench-tls: all
	@sh scripts/bench-tls.sh

# Forwarded msg/s over a TLS bridge (secbroker and mosquitto as the local
# broker) and the local round trip while bridges reconnect (docs/bridge.md).
bench-bridge: all
	@sh scripts/bench-bridge.sh

lab-%: all
	@sh scripts/mkcerts.sh certs $(KEY)
	@sh scripts/lab.sh $*

# ---- install ------------------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=staging]: the broker into sbin, the
# clients into bin, man pages, a systemd unit and sysusers.d entry, and the
# configuration under SYSCONFDIR/secbroker (/etc/secbroker for PREFIX=/usr). An
# existing secbroker.conf is kept; make uninstall removes what install put
# there (secbroker.conf only while it is unchanged).
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
CLIENT_BINS = $(patsubst clients/%.c,$(BUILD)/%,$(CLIENT_SRC))
MAN_PAGES  := $(wildcard man/*.[158])
CONFDIR     = $(DESTDIR)$(SYSCONFDIR)/secbroker

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(CONFDIR)/examples \
	    $(foreach s,1 5 8,$(DESTDIR)$(MANDIR)/man$(s))
	install -m 755 $(BUILD)/secbroker $(DESTDIR)$(SBINDIR)/secbroker
	install -m 755 $(CLIENT_BINS) $(DESTDIR)$(BINDIR)
	for m in $(MAN_PAGES); do install -m 644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}; done
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    dist/secbroker.service.in > $(BUILD)/secbroker.service
	install -m 644 $(BUILD)/secbroker.service $(DESTDIR)$(UNITDIR)/secbroker.service
	install -m 644 dist/secbroker.sysusers $(DESTDIR)$(SYSUSERSDIR)/secbroker.conf
	install -m 644 etc/broker.conf etc/acl.example $(CONFDIR)/examples
	@if [ -e $(CONFDIR)/secbroker.conf ]; then \
	    echo "keeping the existing $(CONFDIR)/secbroker.conf"; \
	else install -m 644 dist/secbroker.conf $(CONFDIR)/secbroker.conf; fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/secbroker $(patsubst $(BUILD)/%,$(DESTDIR)$(BINDIR)/%,$(CLIENT_BINS))
	rm -f $(foreach m,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))
	rm -f $(DESTDIR)$(UNITDIR)/secbroker.service $(DESTDIR)$(SYSUSERSDIR)/secbroker.conf
	rm -f $(CONFDIR)/examples/broker.conf $(CONFDIR)/examples/acl.example
	@if cmp -s dist/secbroker.conf $(CONFDIR)/secbroker.conf; then \
	    rm -f $(CONFDIR)/secbroker.conf; \
	elif [ -e $(CONFDIR)/secbroker.conf ]; then \
	    echo "keeping $(CONFDIR)/secbroker.conf: it was changed after install"; fi
	-rmdir $(CONFDIR)/examples $(CONFDIR) 2>/dev/null

clean:
	rm -rf build build-asan build-system build-fuzz

-include $(shell find $(BUILD)/obj $(BUILD)/tests build-asan/obj build-asan/tests -name '*.d' -type f 2>/dev/null)
