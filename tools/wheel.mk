# Packaging (issue 7): `make wheel` makes one wheel per platform, each
# carrying its static niche-port in niche/bin/niche-port (tools/wheel.py says
# which tags and why). `make repro-TRIPLE REPRO_DIR=DIR` rebuilds one port
# binary into DIR/TRIPLE/niche-port with the same flags and a fresh local zig
# cache (the sources really are compiled again), for the reproducibility test.

# x86_64 as a cross target of its own, so the x86_64 wheel is right whatever
# the host is (on an x86_64 host it is the same bytes as build/native).
ZIG_TARGET_x86_64-linux-musl := -target x86_64-linux-musl
ZIG_TARGET_native            := -target $(NATIVE_TARGET)
WHEEL_TRIPLES := x86_64-linux-musl $(CROSS_TRIPLES)
WHEEL_DIR     ?= $(BUILD)/wheels
WHEEL_PURE    ?= $(BUILD)/wheel-pure
REPRO_DIR     ?= $(BUILD)/repro

.PHONY: wheel wheel-clean
wheel: $(foreach t,$(WHEEL_TRIPLES),$(BUILD)/$(t)/niche-port) $(BUILD)/.bootstrap
	$(PY) tools/wheel.py --build $(BUILD) --out $(WHEEL_DIR) --pure $(WHEEL_PURE)

repro-%: $(SRCS) $(HDRS) $(BUILD)/.bootstrap
	@mkdir -p $(REPRO_DIR)/$*
	$(ZIG_ENV) ZIG_LOCAL_CACHE_DIR=$(abspath $(REPRO_DIR))/zig-local $(PY) -m ziglang cc \
	    $(ZIG_TARGET_$*) $(CFLAGS) $(LDFLAGS) -o $(REPRO_DIR)/$*/niche-port $(SRCS)

wheel-clean:
	rm -rf $(WHEEL_DIR) $(WHEEL_PURE) $(REPRO_DIR)
clean: wheel-clean
