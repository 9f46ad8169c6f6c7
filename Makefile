# starttlsd - TLS-terminating SMTP proxy
#
#   make            build proxy/starttlsd
#   make run        install what is missing, make a test certificate, run the
#                   proxy in the foreground in front of the recording sink
#                   (or BACKEND=host:port)
#   make check      install what the tests need, run every test, also under
#                   ASan and UBSan
#   make SANITIZER=address,undefined   a sanitizer build
#   make deb        the Debian package; make package-check tests it and
#                   the container image (packaging/package.mk)

CC ?= cc
SANITIZER ?=
BUILD ?= build

WARNINGS = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wimplicit-fallthrough \
           -Wcast-align -Wwrite-strings -Wstrict-prototypes -Wmissing-prototypes
HARDENING = -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c17 -D_GNU_SOURCE $(WARNINGS) $(HARDENING) $(CFLAGS)
LDFLAGS_ALL = -pie -Wl,-z,relro,-z,now $(LDFLAGS)
ifneq ($(SANITIZER),)
ALL_CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_ALL += -fsanitize=$(SANITIZER)
endif

GNUTLS_CFLAGS := $(shell pkg-config --cflags gnutls 2>/dev/null)
GNUTLS_LIBS := $(shell pkg-config --libs gnutls 2>/dev/null || echo -lgnutls)
# Debian's libev-dev ships no pkg-config file.
EV_LIBS = -lev
SYSTEMD_CFLAGS := $(shell pkg-config --cflags libsystemd 2>/dev/null)
SYSTEMD_LIBS := $(shell pkg-config --libs libsystemd 2>/dev/null || echo -lsystemd)
# DANE's validating DNS lookups (dns.c). Debian's libunbound runs its
# resolver on libevent, and libev exports libevent's API too (its emulation
# layer): libevent must come first among the libraries the binary names, or
# libunbound's thread would run on libev's emulation and crash.
UNBOUND_CFLAGS := $(shell pkg-config --cflags libunbound 2>/dev/null)
UNBOUND_LIBS := $(shell pkg-config --libs libunbound 2>/dev/null || echo -lunbound) \
	-Wl,--push-state,--no-as-needed $(shell pkg-config --libs libevent 2>/dev/null || echo -levent) -Wl,--pop-state

# The pure core: no sockets, no GnuTLS, no libev (STYLE.md). Unit tests and
# fuzzers link against it alone, so a forbidden call is a link error.
CORE_SRCS = \
	proxy/core/buf.c \
	proxy/core/config.c \
	proxy/core/data_scanner.c \
	proxy/core/domain_policy.c \
	proxy/core/ehlo_filter.c \
	proxy/core/http_request.c \
	proxy/core/ip_count.c \
	proxy/core/metrics.c \
	proxy/core/panic.c \
	proxy/core/proxy_header.c \
	proxy/core/session.c \
	proxy/core/smtp_command.c \
	proxy/core/smtp_reply.c \
	proxy/core/trace.c \
	proxy/core/upstream_opening.c

EDGE_SRCS = \
	proxy/backend.c \
	proxy/backend_side.c \
	proxy/dane.c \
	proxy/dns.c \
	proxy/file_read.c \
	proxy/file_watch.c \
	proxy/conn.c \
	proxy/exporter.c \
	proxy/generation.c \
	proxy/listener.c \
	proxy/log.c \
	proxy/main.c \
	proxy/metrics_shm.c \
	proxy/supervisor.c \
	proxy/systemd.c \
	proxy/tls.c \
	proxy/tls_creds.c \
	proxy/tls_upstream.c \
	proxy/tlsa_match.c \
	proxy/transport_plain.c \
	proxy/transport_tls.c \
	proxy/upstream_side.c \
	proxy/original_dst.c \
	proxy/worker.c

UNIT_SRCS = \
	tests/unit/harness.c \
	tests/unit/test_buf.c \
	tests/unit/test_config.c \
	tests/unit/test_data_scanner.c \
	tests/unit/test_domain_policy.c \
	tests/unit/test_ehlo_filter.c \
	tests/unit/test_http_request.c \
	tests/unit/test_ip_count.c \
	tests/unit/test_metrics.c \
	tests/unit/test_proxy_header.c \
	tests/unit/session_driver.c \
	tests/unit/test_session.c \
	tests/unit/test_smtp_command.c \
	tests/unit/test_upstream_opening.c

CORE_OBJS = $(CORE_SRCS:%.c=$(BUILD)/%.o)
EDGE_OBJS = $(EDGE_SRCS:%.c=$(BUILD)/%.o)
UNIT_OBJS = $(UNIT_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all clean check run unit fuzz integration sanitizers valgrind deps-build deps-test bench

PROXY_BIN ?= proxy/starttlsd

all: $(PROXY_BIN)

# The core and its unit tests see only the core's headers: no -Iproxy, no
# GnuTLS cflags, so an edge header is not found by name. GnuTLS's and libev's
# headers sit on the system path and "../tls.h" would still reach an edge
# header, so -MD lists every header an object saw, system ones included, and
# an edge header (proxy/*.h), GnuTLS's or libev's among them fails the build.
CORE_FORBIDDEN_HEADERS = ^proxy/[^/]+\.h$$|/gnutls/|(^|/)ev\.h$$

$(CORE_OBJS) $(UNIT_OBJS): $(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Iproxy/core -MD -MP -c -o $@ $<
	@forbidden=$$(tr -d ':\\' <$(@:.o=.d) | xargs realpath -m --relative-base=. | \
		grep -E '$(CORE_FORBIDDEN_HEADERS)' | sort -u); \
	if [ -n "$$forbidden" ]; then \
		echo "$<: the core must not include" $$forbidden "(STYLE.md)" >&2; \
		rm -f $@; exit 1; \
	fi

$(EDGE_OBJS): $(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(GNUTLS_CFLAGS) $(SYSTEMD_CFLAGS) $(UNBOUND_CFLAGS) -Iproxy/core -Iproxy -MMD -MP -c -o $@ $<

$(BUILD)/libcore.a: $(CORE_OBJS)
	rm -f $@
	ar rcs $@ $^

$(PROXY_BIN): $(EDGE_OBJS) $(BUILD)/libcore.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(EDGE_OBJS) $(BUILD)/libcore.a $(GNUTLS_LIBS) $(UNBOUND_LIBS) $(EV_LIBS) $(SYSTEMD_LIBS)

# Unit tests link the core alone: no -lgnutls, no -lev.
$(BUILD)/run_unit: $(UNIT_OBJS) $(BUILD)/libcore.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(UNIT_OBJS) $(BUILD)/libcore.a

unit: $(BUILD)/run_unit
	$(BUILD)/run_unit

-include $(CORE_OBJS:.o=.d) $(EDGE_OBJS:.o=.d) $(UNIT_OBJS:.o=.d)

include tests/tests.mk
include tests/bench/bench.mk
include packaging/package.mk
include tests/interop/interop.mk

clean:
	rm -rf build build-* proxy/starttlsd
