# libFuzzer harness of the port's decoders (port/fuzz/harness.c), built
# from the port's sources with clang; `make fuzz` runs it FUZZ_S seconds.
FUZZ_S     ?= 60
# the short run in `make test`
TEST_FUZZ_S ?= 20
FUZZ_DIR   := $(BUILD)/fuzz
FUZZ_BIN   := $(FUZZ_DIR)/harness
FUZZ_CC    ?= clang-14
FUZZ_SRCS  := $(filter-out port/loop.c,$(SRCS)) port/fuzz/harness.c
SAN_CFLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Iport -Iport/gen \
              -fno-sanitize-recover=all

$(FUZZ_BIN): $(FUZZ_SRCS) port/loop.c $(HDRS) $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(FUZZ_CC) $(SAN_CFLAGS) -fsanitize=fuzzer,address,undefined -Dmain=niche_port_main -o $@ $(FUZZ_SRCS)

fuzz: $(FUZZ_BIN)
	port/fuzz/run.sh $(FUZZ_BIN) $(FUZZ_DIR) $(FUZZ_S)

# The port under ASan+UBSan+LSan (glibc, dynamic) and the port test suite
# against it: any sanitizer report, from the port or any process it forks,
# lands in $(ASAN_DIR)/reports and fails the target.
ASAN_DIR := $(BUILD)/asan
ASAN_BIN := $(ASAN_DIR)/niche-port
ASAN_TESTS ?= tests/port tests/test_terminal.py
ASAN_REPORTS := $(abspath $(ASAN_DIR))/reports
$(ASAN_BIN): $(SRCS) $(HDRS) port/fuzz/lsan_exit.c $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(FUZZ_CC) $(SAN_CFLAGS) -fsanitize=address,undefined -Wl,--wrap=_exit -o $@ $(SRCS) port/fuzz/lsan_exit.c

test-asan: $(ASAN_BIN) all
	@rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	@start=$$(date +%s); \
	NICHE_PORT=$(abspath $(ASAN_BIN)) NICHE_ASAN=1 \
	ASAN_OPTIONS=log_path=$(ASAN_REPORTS)/asan:halt_on_error=1:detect_leaks=1 \
	UBSAN_OPTIONS=log_path=$(ASAN_REPORTS)/ubsan:halt_on_error=1:print_stacktrace=1 \
	LSAN_OPTIONS=log_path=$(ASAN_REPORTS)/lsan \
	$(PY) -m pytest -q -ra -p no:cacheprovider $(ASAN_TESTS) $(ASAN_PYTEST_ARGS); rc=$$?; \
	echo "test-asan: pytest rc $$rc in $$(( $$(date +%s) - start )) s"; \
	if [ -n "$$(ls -A $(ASAN_REPORTS))" ]; then \
	    for f in $(ASAN_REPORTS)/*; do echo "== $$f"; cat "$$f"; done; \
	    echo "test-asan: sanitizer reports above" >&2; rc=1; \
	else echo "test-asan: 0 sanitizer reports"; fi; exit $$rc
