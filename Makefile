# hotmod — build, demo and test entry points.
#
#   make demo      build the library and example plugins; a C host loads them,
#                  calls them, upgrades one under load and prints the metrics
#   make test      everything: fmt, clippy, Rust tests, ABI checks, C tests
#                  (plain, ASan+UBSan, valgrind), Python and Node tests
#   make bench     call-path benchmarks (ratios against same-run baselines)
#   make install PREFIX=/usr/local
#
# Everything it needs is installed on first use (scripts/install-deps.sh,
# a virtualenv for Python, npm ci for Node).

CARGO   ?= cargo
CC      ?= cc
PREFIX  ?= /usr/local
BUILD   := $(CURDIR)/build
PLUGINS := $(BUILD)/plugins
LIBDIR  := $(CURDIR)/target/release
LIB     := $(LIBDIR)/libhotmod.so
CSTRICT := -std=c11 -Wall -Wextra -Wpedantic -Werror
PLUGIN_CFLAGS := $(CSTRICT) -O2 -fPIC -shared -fvisibility=hidden -I$(CURDIR)/include
VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)

export HOTMOD_PLUGIN_DIR := $(PLUGINS)
export HOTMOD_LIB_DIR := $(LIBDIR)

.PHONY: all deps lib cli plugins demo test lint test-rust check-abi test-install test-docs test-c test-python test-node bench install uninstall clean

all: lib cli plugins

deps:
	@scripts/install-deps.sh

lib:
	$(CARGO) build --release -p hotmod
	$(CARGO) build --release -p hotmod-worker
	@ln -sf libhotmod.so $(LIBDIR)/libhotmod.so.1

# The `hotmod` command (cli/): inspect, verify, call, bench, manifest check, watch.
cli:
	$(CARGO) build --release -p hotmod-cli

# The example plugins and every test fixture plugin go into $(PLUGINS), the one
# directory all suites (Rust, c-tests, Python, Node) load them from
# (HOTMOD_PLUGIN_DIR). Fixture sources are in tests/fixtures: each file's
# header says what it is for, the file it becomes and its -D variants.
# Each C plugin is a file target (rebuilt only when its source or the plugin
# header changes) and is written through a temporary name and a rename, so a
# test or a watched directory reading it never sees a half-written file.
PLUGIN_HDR := include/hotmod_plugin.h
comma := ,
CC_PLUGIN = $(CC) $(PLUGIN_CFLAGS) $(1) $< -o $@.tmp && mv -f $@.tmp $@

# tests/fixtures/<name>.c -> lib<name>.so, no -D variants.
SIMPLE_FIXTURES := probe badout ctor initfail noentry blocker
# bad.c: one file per descriptor defect, -D<VARIANT> -> lib<variant>.so.
BAD_FIXTURES := BAD_MAGIC ABI_V2 SMALL_SIZE NULL_DESC EMPTY_NAME DUP_METHODS NULL_FN BAD_SEMVER BAD_DEP_RANGE \
                NEWER_DEP SELF_DEP
BAD_NAMES := $(shell echo $(BAD_FIXTURES) | tr A-Z a-z)
# baddesc.c: untrustworthy descriptor strings and pointers, -D<VARIANT> ->
# lib<variant, '_' as '-'>.so.
BADDESC_FIXTURES := HUGE_NAME QUOTE_NAME UNTERMINATED MISALIGNED
BADDESC_NAMES := $(shell echo $(BADDESC_FIXTURES) | tr A-Z_ a-z-)
# Rust plugins: <file name in $(PLUGINS)>:<cargo library name>.
RUST_PLUGINS := text:hotmod_example_text lifecycle:hotmod_fixture_lifecycle tls:hotmod_fixture_tls \
                rustchecksum:hotmod_fixture_rustchecksum sdkcalls:hotmod_fixture_sdkcalls

C_PLUGINS := $(addprefix $(PLUGINS)/lib,$(addsuffix .so,checksum checksum-v2 checksum-v1.1 checksum-breaking \
               dependent cycle-a cycle-b orphan badout-twin $(SIMPLE_FIXTURES) $(BAD_NAMES) $(BADDESC_NAMES)))
# tests/fixtures/faults.c -> libfaults.so: one method per fault an
# out-of-process worker must contain (never loaded in process).
C_PLUGINS += $(PLUGINS)/libfaults.so

# tests/fixtures/facts.c: ELF facts and kept-mapped fixtures (see its header).
FACT_PLUGINS := $(addprefix $(PLUGINS)/lib,$(addsuffix .so,facts_nodelete facts_static_tls facts_unique facts_go \
                  facts_entry_object keep-v1 keep-v2))
# tests/fixtures/ctorfault.c: constructors that crash, exit or hang, in a
# directory of their own so that nothing loading every plugin maps them.
FAULT_PLUGINS := $(addprefix $(PLUGINS)/faults/lib,$(addsuffix .so,ctor_segv ctor_exit ctor_hang))

# C++ (include/hotmod_plugin.hpp) and Go (sdk/go) plugins, rules below.
LANG_PLUGINS := $(addprefix $(PLUGINS)/lib,$(addsuffix .so,cppchecksum cppchecksum-v2 cppfaults gochecksum gochecksum-v2 gofaults \
                  gobare))

plugins: lib $(C_PLUGINS) $(LANG_PLUGINS) $(FACT_PLUGINS) $(FAULT_PLUGINS)
	$(CARGO) build --release -p hotmod-example-text -p hotmod-fixture-lifecycle -p hotmod-fixture-tls \
	  -p hotmod-fixture-rustchecksum -p hotmod-fixture-sdkcalls
	@for p in $(RUST_PLUGINS); do \
	  src=$(LIBDIR)/lib$${p#*:}.so; dst=$(PLUGINS)/lib$${p%%:*}.so; \
	  cmp -s $$src $$dst || { cp $$src $$dst.tmp && mv -f $$dst.tmp $$dst && echo "updated $$dst"; } || exit 1; \
	done

$(PLUGINS):
	mkdir -p $@

$(PLUGINS)/libchecksum.so: examples/c-checksum/checksum.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,)
$(PLUGINS)/libchecksum-v2.so: examples/c-checksum/checksum.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DCHECKSUM_V2)
$(PLUGINS)/libchecksum-v1.1.so: examples/c-checksum/checksum.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DCHECKSUM_VERSION='"1.1.0"')
$(PLUGINS)/libchecksum-breaking.so: tests/fixtures/checksum_breaking.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,)
$(PLUGINS)/libdependent.so: tests/fixtures/deps.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DDEP_DEPENDENT)
$(PLUGINS)/libcycle-a.so: tests/fixtures/deps.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DDEP_CYCLE_A)
$(PLUGINS)/libcycle-b.so: tests/fixtures/deps.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DDEP_CYCLE_B)
$(PLUGINS)/liborphan.so: tests/fixtures/deps.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DDEP_MISSING)
$(SIMPLE_FIXTURES:%=$(PLUGINS)/lib%.so): $(PLUGINS)/lib%.so: tests/fixtures/%.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,)
$(BAD_NAMES:%=$(PLUGINS)/lib%.so): $(PLUGINS)/lib%.so: tests/fixtures/bad.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-D$(shell echo $* | tr a-z A-Z))
$(PLUGINS)/libbadout-twin.so: tests/fixtures/badout.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DBADOUT_TWIN)
$(BADDESC_NAMES:%=$(PLUGINS)/lib%.so): $(PLUGINS)/lib%.so: tests/fixtures/baddesc.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-D$(shell echo $* | tr a-z- A-Z_))

# C++ plugins: the example as C++17, the fault fixture as C++20 (std::span).
# -fno-gnu-unique: libstdc++'s inline statics (std::to_string's digit table)
# would otherwise be STB_GNU_UNIQUE symbols, and glibc never unmaps a library
# that has one.
PLUGIN_HPP := include/hotmod_plugin.hpp
CXX_PLUGIN = $(CXX) $(1) -Wall -Wextra -Wpedantic -Werror -O2 -fPIC -shared -fvisibility=hidden -fno-gnu-unique \
             -I$(CURDIR)/include $< -o $@.tmp && mv -f $@.tmp $@
$(PLUGINS)/libcppchecksum.so: examples/cpp-checksum/checksum.cpp $(PLUGIN_HDR) $(PLUGIN_HPP) | $(PLUGINS)
	$(call CXX_PLUGIN,-std=c++17)
$(PLUGINS)/libcppchecksum-v2.so: examples/cpp-checksum/checksum.cpp $(PLUGIN_HDR) $(PLUGIN_HPP) | $(PLUGINS)
	$(call CXX_PLUGIN,-std=c++17 -DCPPCHECKSUM_VERSION='"2.0.0"')
$(PLUGINS)/libcppfaults.so: tests/fixtures/cpp_faults.cpp $(PLUGIN_HDR) $(PLUGIN_HPP) | $(PLUGINS)
	$(call CXX_PLUGIN,-std=c++20)

# Go plugins: go build -buildmode=c-shared from the plugin's own module,
# offline (the SDK uses the standard library only and is found through a
# replace directive). gochecksum-v2 is the same source linked as 2.0.0.
GO ?= go
GO_SDK := $(filter-out %_test.go,$(wildcard sdk/go/*.go)) $(wildcard sdk/go/*.c sdk/go/*.h) sdk/go/go.mod $(PLUGIN_HDR)
GO_PLUGIN = cd $(<D) && GOFLAGS=-mod=mod GOPROXY=off CGO_ENABLED=1 \
            $(GO) build -buildmode=c-shared -trimpath $(1) -o $@.tmp . && mv -f $@.tmp $@
$(PLUGINS)/libgochecksum.so: examples/go-checksum/main.go examples/go-checksum/go.mod $(GO_SDK) | $(PLUGINS)
	$(call GO_PLUGIN,)
$(PLUGINS)/libgochecksum-v2.so: examples/go-checksum/main.go examples/go-checksum/go.mod $(GO_SDK) | $(PLUGINS)
	$(call GO_PLUGIN,-ldflags=-X=main.version=2.0.0)
$(PLUGINS)/libgofaults.so: tests/fixtures/go-faults/main.go tests/fixtures/go-faults/go.mod $(GO_SDK) | $(PLUGINS)
	$(call GO_PLUGIN,)
$(PLUGINS)/libgobare.so: tests/fixtures/go-bare/main.go tests/fixtures/go-bare/bare.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call GO_PLUGIN,)
$(PLUGINS)/libfaults.so: tests/fixtures/faults.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,)

$(PLUGINS)/libfacts_nodelete.so: tests/fixtures/facts.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-Wl$(comma)-z$(comma)nodelete)
$(PLUGINS)/libfacts_static_tls.so: tests/fixtures/facts.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DFACT_STATIC_TLS)
$(PLUGINS)/libfacts_unique.so: tests/fixtures/facts.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DFACT_UNIQUE)
$(PLUGINS)/libfacts_go.so: tests/fixtures/facts.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DFACT_GO)
$(PLUGINS)/libfacts_entry_object.so: tests/fixtures/facts.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DFACT_ENTRY_OBJECT)
$(PLUGINS)/libkeep-v1.so: tests/fixtures/facts.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DFACT_KEEP)
$(PLUGINS)/libkeep-v2.so: tests/fixtures/facts.c $(PLUGIN_HDR) | $(PLUGINS)
	$(call CC_PLUGIN,-DFACT_KEEP -DFACT_VERSION='"2.0.0"')
$(PLUGINS)/faults:
	mkdir -p $@
$(FAULT_PLUGINS): $(PLUGINS)/faults/lib%.so: tests/fixtures/ctorfault.c $(PLUGIN_HDR) | $(PLUGINS)/faults
	$(call CC_PLUGIN,-D$(shell echo $* | tr a-z A-Z))

demo: deps all
	@mkdir -p $(BUILD)
	$(CC) $(CSTRICT) -O2 -pthread -Iinclude examples/c-host/demo.c -L$(LIBDIR) -lhotmod -Wl,-rpath,$(LIBDIR) -o $(BUILD)/demo
	$(BUILD)/demo $(PLUGINS)

test: deps lint test-rust test-go check-abi test-install test-docs test-c test-python test-node
	@echo "make test: all suites passed"

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust: all
	$(CARGO) test --workspace --release

# The Go SDK's own checks: go vet and its unit tests (descriptor checks,
# error statuses, panic messages); the Go plugins are tested through the core.
.PHONY: test-go
test-go:
	cd sdk/go && GOFLAGS=-mod=mod GOPROXY=off $(GO) vet ./... && GOFLAGS=-mod=mod GOPROXY=off $(GO) test ./...

# Also: hotmod-core and hotmod build as dependencies of another workspace
# (no symbol versioning outside the explicit cdylib build).
check-abi: lib
	scripts/check-symbols.sh $(LIB)
	scripts/check-as-dependency.sh
	scripts/gen-headers.sh --check
	$(MAKE) -C c-tests headers hpp

# Installs into a scratch prefix, then builds the demo host the way a user
# would (pkg-config) and runs it: it must link the SONAME, not the dev link.
test-install: plugins
	rm -rf $(BUILD)/install
	$(MAKE) --no-print-directory install PREFIX=$(BUILD)/install
	test -L $(BUILD)/install/lib/libhotmod.so.1 -a -L $(BUILD)/install/lib/libhotmod.so
	PKG_CONFIG_PATH=$(BUILD)/install/lib/pkgconfig pkg-config --modversion hotmod | grep -qx '$(VERSION)'
	$(CC) $(CSTRICT) -O2 -pthread examples/c-host/demo.c \
	  $$(PKG_CONFIG_PATH=$(BUILD)/install/lib/pkgconfig pkg-config --cflags --libs hotmod) \
	  -Wl,-rpath,$(BUILD)/install/lib -o $(BUILD)/demo-installed
	readelf -d $(BUILD)/demo-installed | grep -q 'NEEDED.*\[libhotmod.so.1\]'
	$(BUILD)/demo-installed $(PLUGINS) > $(BUILD)/demo-installed.log
	! readelf -S $(BUILD)/install/lib/libhotmod.so.$(VERSION) | grep -q '\.debug_info'
	scripts/check-symbols.sh $(BUILD)/install/lib/libhotmod.so.$(VERSION)
	$(BUILD)/install/bin/hotmod verify $(PLUGINS)/libchecksum.so | grep -q '^ok: checksum'
	$(MAKE) --no-print-directory uninstall PREFIX=$(BUILD)/install
	test -z "$$(find $(BUILD)/install -type f -o -type l)"
	@echo "install ok: $(BUILD)/install (stripped, pkg-config hotmod $(VERSION), NEEDED libhotmod.so.1, hotmod command; uninstall removed it all)"

# Every README code block marked `<!-- readme-test: ... -->` runs as written,
# in a scratch directory, against a scratch install (scripts/readme-test.py).
test-docs: all
	python3 scripts/readme-test.py README.md

test-c: all
	$(MAKE) -C c-tests test asan valgrind

test-python: all
	$(MAKE) -C bindings/python test

test-node: all
	$(MAKE) -C bindings/node test

bench: all
	$(CARGO) run --release -p hotmod-bench
	$(CARGO) run --release -p hotmod-core --example oop_bench

# The same methods in C, C++, Rust and Go plugins, and what Go costs in process.
.PHONY: bench-languages
bench-languages: all
	$(CARGO) run --release -p hotmod-core --example lang_bench

# Installs the stripped library (its dynamic symbols and version nodes are
# kept; debug information is not installed), its SONAME links, the headers,
# hotmod.pc and the `hotmod` command. `make uninstall` removes exactly these.
STRIP ?= strip
INSTALLED := lib/libhotmod.so.$(VERSION) lib/libhotmod.so.1 lib/libhotmod.so include/hotmod.h \
             include/hotmod_plugin.h include/hotmod_plugin.hpp lib/pkgconfig/hotmod.pc bin/hotmod

install: lib cli
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libhotmod.so.$(VERSION)
	$(STRIP) --strip-unneeded $(DESTDIR)$(PREFIX)/lib/libhotmod.so.$(VERSION)
	ln -sf libhotmod.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libhotmod.so.1
	ln -sf libhotmod.so.1 $(DESTDIR)$(PREFIX)/lib/libhotmod.so
	install -m 644 include/hotmod.h include/hotmod_plugin.h include/hotmod_plugin.hpp $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' scripts/hotmod.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hotmod.pc
	install -m 755 -s $(LIBDIR)/hotmod $(DESTDIR)$(PREFIX)/bin/hotmod

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED))

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
