# bench/bench.mk: included by the top Makefile (-include bench/bench.mk).
# Builds the baseline peers of `make bench` with the same zig compiler and
# flags as the port: the ping-pong peer (native), and the raw GPIO loop that
# bench/gpio_bench.py copies into the x86_64 VM guest.
BENCH_CFLAGS := $(filter-out -I%,$(CFLAGS))

$(BUILD)/bench/pingpong: bench/pingpong.c $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(ZIGCC) -target $(NATIVE_TARGET) $(BENCH_CFLAGS) $(LDFLAGS) -o $@ bench/pingpong.c

$(BUILD)/bench/gpio_toggle-x86_64: bench/gpio_toggle.c $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(ZIGCC) -target x86_64-linux-musl $(BENCH_CFLAGS) $(LDFLAGS) -o $@ bench/gpio_toggle.c

bench: $(BUILD)/bench/pingpong $(BUILD)/bench/gpio_toggle-x86_64
