# tests.mk - the test targets; included by the top Makefile

FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_CFLAGS = -std=c17 -D_GNU_SOURCE -g -O1 -Iproxy/core \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS = $(BUILD)/fuzz_session $(BUILD)/fuzz_command $(BUILD)/fuzz_config $(BUILD)/fuzz_proxy_header \
               $(BUILD)/fuzz_http_request $(BUILD)/fuzz_upstream $(BUILD)/fuzz_domain

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(CORE_SRCS)
	@mkdir -p $(BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(CORE_SRCS)

# fuzz - every harness for FUZZ_SECONDS from its seed corpus (kept read-only:
# new inputs go to a scratch folder)
fuzz: $(FUZZ_TARGETS)
	tests/fuzz/run $(FUZZ_SECONDS) $(FUZZ_TARGETS)
	tests/fuzz/negative 120 $(FUZZ_CC)

# integration - the real proxy with real clients and backends
integration: $(PROXY_BIN)
	STARTTLSD=$(abspath $(PROXY_BIN)) tests/integration/run

# sanitizers - the unit and integration suites again under ASan and UBSan
sanitizers:
	$(MAKE) BUILD=build-san SANITIZER=address,undefined PROXY_BIN=build-san/starttlsd \
		build-san/run_unit build-san/starttlsd
	build-san/run_unit
	STARTTLSD=$(abspath build-san/starttlsd) \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		tests/integration/run

# valgrind - the integration suite with the proxy under memcheck: it sees
# what ASan cannot, such as libev writing into a freed watcher
valgrind: $(PROXY_BIN)
	STARTTLSD=$(abspath tests/integration/valgrind-starttlsd) tests/integration/run

deps-build:
	packaging/install-deps build

deps-test:
	packaging/install-deps test

check: deps-test
	$(MAKE) all unit $(BUILD)/loadgen
	$(MAKE) integration
	$(MAKE) sanitizers
	$(MAKE) valgrind
	$(MAKE) fuzz
	@echo "check: every suite passed"

run: deps-build all
	tests/run-demo $(BACKEND)
