# bench.mk - the benchmark; included by the top Makefile
#
#   make bench                   the full run (about 5 minutes; see tests/bench/README.md)
#   make bench BENCH_ARGS=--quick    a small run
#   make bench BENCH_ARGS=--outbound only outbound (smarthost) sessions, starttlsd vs stunnel's client mode
#
# tests/bench/run installs the peers it lacks and builds through bench-build.

ifndef BENCH_MK_INCLUDED
BENCH_MK_INCLUDED = 1

BENCH_ARGS ?=

$(BUILD)/loadgen: tests/bench/loadgen.c
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) $(GNUTLS_CFLAGS) $(LDFLAGS_ALL) -o $@ $< $(GNUTLS_LIBS) $(EV_LIBS)

.PHONY: bench bench-build

# bench-build - what the benchmark runs: the proxy and the load generator
bench-build: $(PROXY_BIN) $(BUILD)/loadgen

bench:
	tests/bench/run $(BENCH_ARGS)

endif
