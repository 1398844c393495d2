# bench/bench.mk: included by the top Makefile (-include bench/bench.mk).
# Builds the baseline ping-pong peer of `make bench` with the same zig
# compiler and target as the port.
BENCH_CFLAGS := $(filter-out -I%,$(CFLAGS))

$(BUILD)/bench/pingpong: bench/pingpong.c $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(ZIGCC) -target $(NATIVE_TARGET) $(BENCH_CFLAGS) $(LDFLAGS) -o $@ bench/pingpong.c

bench: $(BUILD)/bench/pingpong
