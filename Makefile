# niche: `make` builds the native static port; `make test` installs what
# the tests need and runs them all. See README.md.
BUILD    ?= build
VENV     := $(BUILD)/venv
PY       := $(VENV)/bin/python
ZIG_ENV  := ZIG_GLOBAL_CACHE_DIR=$(abspath $(BUILD)/zig-cache) ZIG_LOCAL_CACHE_DIR=$(abspath $(BUILD)/zig-cache/local)
ZIGCC    := $(ZIG_ENV) $(PY) -m ziglang cc
NATIVE_TARGET := $(shell uname -m | sed -e 's/^armv7.*/arm-linux-musleabihf/' -e 's/^armv6.*/arm-linux-musleabihf/' -e 's/^aarch64$$/aarch64-linux-musl/' -e 's/^x86_64$$/x86_64-linux-musl/')

CFLAGS   := -std=gnu11 -D_GNU_SOURCE -Os -Wall -Wextra -Werror -fno-ident \
            -ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables \
            -Iport -Iport/gen
LDFLAGS  := -static -s -Wl,--gc-sections -Wl,--build-id=none
SRCS     := $(sort $(wildcard port/*.c port/call/*.c port/gen/*.c))
HDRS     := $(wildcard port/*.h port/gen/*.h)
GEN_IN   := port/calls.spec port/constants.spec tools/gen.py
GEN_OUT  := port/gen/calls.h port/gen/calls.c port/gen/constants.c agent/niche/_calls.py docs/calls.md

BOOTSTRAP_APT ?= fusermount3:fuse3 mosquitto:mosquitto mosquitto_pub:mosquitto-clients openssl:openssl systemd-analyze:systemd \
                 clang-14:clang-14 /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev

.PHONY: all gen cross test test-asan bench fuzz robustness demo clean bootstrap lint
all: $(BUILD)/native/niche-port

bootstrap: $(BUILD)/.bootstrap
$(BUILD)/.bootstrap: tools/bootstrap.sh requirements-dev.txt pyproject.toml
	tools/bootstrap.sh $(BOOTSTRAP_APT)
	@touch $@

$(BUILD)/native/niche-port: $(SRCS) $(HDRS) $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(ZIGCC) -target $(NATIVE_TARGET) $(CFLAGS) $(LDFLAGS) -o $@ $(SRCS)
	@ls -l $@ | awk '{print "niche-port: " $$5 " bytes"}'

# Cross builds: fully static, stripped, reproducible musl binaries.
CROSS_TRIPLES := armv6-linux-musleabihf armv7-linux-musleabihf aarch64-linux-musl
ZIG_TARGET_armv6-linux-musleabihf := -target arm-linux-musleabihf -mcpu=arm1176jzf_s
ZIG_TARGET_armv7-linux-musleabihf := -target arm-linux-musleabihf -mcpu=cortex_a8
ZIG_TARGET_aarch64-linux-musl     := -target aarch64-linux-musl
cross: $(BUILD)/native/niche-port $(foreach t,$(CROSS_TRIPLES),$(BUILD)/$(t)/niche-port)
	@for f in $^; do printf '%-44s %7d bytes\n' $$f $$(stat -c %s $$f); done

$(BUILD)/%/niche-port: $(SRCS) $(HDRS) $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(ZIGCC) $(ZIG_TARGET_$*) $(CFLAGS) $(LDFLAGS) -o $@ $(SRCS)

gen:
	python3 tools/gen.py

lint: $(BUILD)/.bootstrap
	$(VENV)/bin/ruff check agent tests tools bench

# The VM lane (vm/vm.mk) is part of the suite: built when it can be, its
# tests skipped with one line saying why when not; CI (.ci/run) sets
# NICHE_REQUIRE_VM=1 so there a lane that cannot run fails.
test: all vm-prep-optional
	$(PY) -m pytest -q -ra $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: no test ran: that is a failure" >&2; fi; exit $$rc
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory fuzz FUZZ_S=$(TEST_FUZZ_S)

bench: all
	$(PY) bench/run.py

# docs/robustness.md: every class of bad input, tried on the real port and agent
robustness: all
	$(PY) tools/robustness.py -o docs/robustness.md

# The simulated board, a private mosquitto and niche-agent, shown live (root;
# it says what to do when not). DEMO_ARGS="--once" or "--duration 60".
demo: all
	$(PY) tools/demo.py $(DEMO_ARGS)

clean:
	rm -rf $(BUILD)/native $(BUILD)/*-linux-* bench/results/*.tmp

-include port/fuzz/fuzz.mk
-include bench/bench.mk
-include vm/vm.mk
-include tools/wheel.mk
