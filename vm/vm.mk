# The VM lane (issue 7): included by the top Makefile. See vm/README.md.
#
#   make test-vm      build what the lane needs, then run the VM and qemu-user tests
#   make vm-prep      only build (kernels, gpio-sim, inits, initramfs of each guest)
#   make vm-deps      install the Debian packages the lane needs (root, when missing)
#   make vm-selftest  the lane with a stub port (checks the plumbing alone)
#   make vm-refresh   forget the resolved kernel version (apt-get update again)
#
# Everything lands under $(BUILD)/vm, keyed by the kernel version resolved from
# apt (build/vm/kernel.env), so a second run only boots guests and tests.
VM        := $(BUILD)/vm
VM_ARCHES := x86_64 arm64 armhf raspi0
VM_PORT_x86_64 := $(BUILD)/native/niche-port
VM_PORT_arm64  := $(BUILD)/aarch64-linux-musl/niche-port
VM_PORT_armhf  := $(BUILD)/armv7-linux-musleabihf/niche-port
VM_PORT_raspi0 := $(BUILD)/armv6-linux-musleabihf/niche-port
VM_ZIG_x86_64  := -target x86_64-linux-musl
VM_ZIG_arm64   := -target aarch64-linux-musl
VM_ZIG_armhf   := -target arm-linux-musleabihf -mcpu=cortex_a8
VM_ZIG_raspi0  := -target arm-linux-musleabihf -mcpu=arm1176jzf_s
VM_CFLAGS      := -std=gnu11 -Os -Wall -Wextra -Werror -static -s -Wl,--build-id=none
# VM_STUB=1: guests run vm/stubport.c instead of the real port (vm-selftest)
VM_STUB   ?=
vm_port    = $(if $(VM_STUB),$(VM)/stub/$(1)/niche-port,$(VM_PORT_$(1)))
VM_PYTEST ?= -m vm -ra

.PHONY: test-vm vm-prep vm-prep-optional vm-deps vm-selftest vm-refresh vm-kernel

test-vm: vm-prep
	@$(PY) -m pytest $(VM_PYTEST) tests/vm $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test-vm: no VM test ran (pytest exit 5): that is a failure" >&2; fi; \
	exit $$rc

vm-selftest:
	$(MAKE) --no-print-directory test-vm VM_STUB=1

vm-deps:
	@vm/deps.sh

vm-refresh:
	rm -f $(VM)/apt/.updated $(VM)/kernel.env

# Debian packages: checked on every run (cheap), installed once when missing.
$(VM)/.deps: vm/deps.sh
	@mkdir -p $(@D)
	@vm/deps.sh
	@touch $@

# Private apt state (foreign arches) and the resolved kernel version.
$(VM)/apt/.updated: | $(VM)/.deps
	@mkdir -p $(@D)
	python3 vm/vmtool.py aptconf $(VM)/apt
	APT_CONFIG=$(abspath $(VM))/apt/apt.conf apt-get update -q >$(VM)/apt/update.log 2>&1 || \
	    { cat $(VM)/apt/update.log >&2; exit 1; }
	@touch $@

$(VM)/kernel.env: $(VM)/apt/.updated
	APT_CONFIG=$(abspath $(VM))/apt/apt.conf python3 vm/vmtool.py resolve > $@.tmp
	@mv $@.tmp $@
	@cat $@

# Downloads and gpio-sim builds; both scripts keep their own stamps under
# $(VM)/k-VERSION, so this costs a second when everything is there.
vm-kernel: $(VM)/kernel.env | $(VM)/.deps
	@. $(VM)/kernel.env && vm/fetch.sh $(VM) $$KVERSION $$KABI && vm/kernel.sh $(VM) $$KVERSION $$KABI

# PID 1 of each guest, and the stub port.
$(VM)/init/%/init: vm/init.c $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(ZIGCC) $(VM_ZIG_$*) $(VM_CFLAGS) -o $@ vm/init.c

$(VM)/stub/%/niche-port: vm/stubport.c $(BUILD)/.bootstrap
	@mkdir -p $(@D)
	$(ZIGCC) $(VM_ZIG_$*) $(VM_CFLAGS) -o $@ vm/stubport.c

vm-prep: vm-kernel $(foreach a,$(VM_ARCHES),$(VM)/init/$(a)/init $(call vm_port,$(a)))
	@for a in $(VM_ARCHES); do \
	    case $$a in x86_64) p='$(call vm_port,x86_64)';; arm64) p='$(call vm_port,arm64)';; \
	        armhf) p='$(call vm_port,armhf)';; raspi0) p='$(call vm_port,raspi0)';; esac; \
	    vm/mkguest.sh $(VM) $$a $(VM)/init/$$a/init $$p || exit 1; done

# For `make test`: build the lane when possible; when it cannot be built here
# (no root for apt, no registry), say so in one line and go on: its tests
# then skip with their reason. Under NICHE_REQUIRE_VM=1 (CI) it is an error.
vm-prep-optional:
	@$(MAKE) --no-print-directory vm-prep || { \
	    if [ "$$NICHE_REQUIRE_VM" = 1 ]; then echo "make: the VM lane could not be built (NICHE_REQUIRE_VM=1)" >&2; exit 1; fi; \
	    echo "make: the VM lane could not be built (see above): its tests will be skipped" >&2; }
