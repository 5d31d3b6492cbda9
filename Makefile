# rowfs — see README.md. Every target installs what it needs from Debian's
# archive if it is missing (as root), so a fresh machine needs only Go.

SHELL    := /bin/bash
GO       ?= go
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/rowfs/rowfs/ctl/api.Version=$(VERSION)
RUN_DIR  := $(CURDIR)/.run
SOCKET   := $(RUN_DIR)/rowfsd.sock

# The RBD backend is cgo over librbd: its headers are needed to build, and
# go-ceph's "pacific" tag matches Debian 12's Ceph 16.2. A plain `go build`
# leaves the backend out (rowfsd then says so).
CEPH_DEV   := librbd-dev librados-dev
GOTAGS     := ceph pacific
GOBUILD    := CGO_ENABLED=1 $(GO) build -tags "$(GOTAGS)"
RUN_PKGS   := fuse3 attr gcc $(CEPH_DEV) qemu-utils qemu-system-x86
TEST_PKGS  := fuse3 attr systemd qemu-utils e2fsprogs fio gcc $(CEPH_DEV) ceph-mon ceph-osd ceph-common radosgw chromium prometheus qemu-system-x86 git cpio
BENCH_PKGS := fuse3 attr qemu-utils qemu-system-x86 fio gcc zstd $(CEPH_DEV) ceph-mon ceph-osd ceph-common radosgw

.PHONY: all build run test bench fuzz soak vet deps-build deps-run deps-test deps-bench install clean

all: build

# apt_install installs the named Debian packages that are not installed yet.
define apt_install
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian's archive:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root to install:$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
			| grep --line-buffered -E '^(Get|Setting up)' | sed -u 's/^/  /'; \
		test $${PIPESTATUS[0]} = 0 || exit 1; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go is not installed (need the toolchain named in go.mod)" >&2; exit 1; }
endef

deps-run:
	$(call apt_install,$(RUN_PKGS))
deps-test:
	$(call apt_install,$(TEST_PKGS))
deps-bench:
	$(call apt_install,$(BENCH_PKGS))

deps-build:
	$(call apt_install,gcc $(CEPH_DEV))

# build shows progress: the first build downloads modules and compiles
# Badger, go-fuse and go-ceph (cgo), a few minutes on 2 cores.
build: deps-build
	@echo "building bin/rowfsd and bin/rowctl (the first build takes a few minutes)"
	@set -o pipefail; { $(GOBUILD) -v -ldflags "$(LDFLAGS)" -o bin/rowfsd ./cmd/rowfsd && \
		$(GO) build -v -ldflags "$(LDFLAGS)" -o bin/rowctl ./cmd/rowctl; } 2>&1 | $(BUILD_PROGRESS)
	@echo "built bin/rowfsd and bin/rowctl"

# BUILD_PROGRESS turns go build -v's package lines into a count on one
# line (on a terminal) and passes everything else (downloads, errors) through.
BUILD_PROGRESS := awk '/^[^ \#:]+$$/ { n++; if (n % 10 == 0) { printf "  compiled %d packages\r", n; fflush() } next } { print; fflush() } END { if (n) printf "  compiled %d packages\n", n }'


# run: a daemon in the foreground on a pool and mount under the repo,
# with metrics and the web page on METRICS. It prints the README's
# quickstart (contrib/quickstart.txt) with this checkout's paths. Ctrl-C
# stops it cleanly.
METRICS ?= 127.0.0.1:9488
run: deps-run build
	@mkdir -p $(RUN_DIR)
	@echo "rowfsd: pool $(RUN_DIR)/pool, mount $(RUN_DIR)/mnt, socket $(SOCKET)"
	@echo "web page http://$(METRICS)/, metrics http://$(METRICS)/metrics"
	@echo ""
	@echo "In another terminal (download a cloud image first, e.g. Debian's debian-12-genericcloud-amd64.qcow2):"
	@sed 's#\$$PWD#$(CURDIR)#g; s/^/  /' contrib/quickstart.txt
	@echo ""
	@echo "Ctrl-C here stops the daemon and unmounts."
	@exec ./bin/rowfsd --pool $(RUN_DIR)/pool --mount $(RUN_DIR)/mnt --socket $(SOCKET) --metrics $(METRICS)

# staticcheck is pinned; go run fetches it from the module proxy once.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) vet -tags "$(GOTAGS)" ./...
	$(GO) run $(STATICCHECK) ./...
	CGO_ENABLED=1 $(GO) run $(STATICCHECK) -tags "$(GOTAGS)" ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# test: every test, including the end-to-end ones through a real FUSE mount
# with qemu-img/qemu-io (they need root and /dev/fuse) and the RBD ones
# against a single-node Ceph cluster, with a radosgw for the S3 backup tests,
# started here on 127.0.0.1 and stopped afterwards (testdata/ceph/cluster.sh).
# Tests' artifacts (the web page's screenshot …) land in .test-output/.
test: deps-test vet
	@rm -rf .test-report.txt .test-output && mkdir -p .test-output
	@ceph=$$(mktemp -d /tmp/rowfs-ceph.XXXXXX); \
	trap 'testdata/ceph/cluster.sh stop '"$$ceph" EXIT; \
	RGW=1 testdata/ceph/cluster.sh start "$$ceph" > "$$ceph.log" || { cat "$$ceph.log"; exit 1; }; \
	grep -v '^CEPH_CONF=' "$$ceph.log"; rm -f "$$ceph.log"; \
	set -a; . "$$ceph/env"; set +a; \
	ROWFS_REQUIRE_CEPH=1 ROWFS_REPORT=$(CURDIR)/.test-report.txt \
		CGO_ENABLED=1 $(GO) test -tags "$(GOTAGS)" -count=1 -timeout 25m -artifacts -outputdir $(CURDIR)/.test-output ./...
	@echo "--- the engine, fs and daemon under the race detector (the model test at 5,000 steps)"
	CGO_ENABLED=1 $(GO) test -race -short -count=1 -timeout 15m ./rowengine ./rowengine/conformance ./rowengine/backup ./fs/... ./daemon
	@echo "--- the model and scenario tests with the invariants assertions compiled in"
	$(GO) test -tags invariants -count=1 -timeout 15m -run 'TestModel|TestScenario|TestInvariants|TestGroupCommit' ./rowengine -model.steps=30000
	@echo "--- figures"; cat .test-report.txt 2>/dev/null; rm -f .test-report.txt

# bench: rowfs against its peers (raw file, go-fuse passthrough,
# qemu-storage-daemon raw and qcow2 chains): the fio matrix, snapshot
# operations and memory, about 25 minutes, as root. Writes
# bench/results/<date>-<host>.md and its chart. Never part of test.
# BENCH_ARGS passes flags to bench/peers, e.g. BENCH_ARGS="--rounds 5".
bench: deps-bench build
	$(GO) build -o bin/passthrough ./bench/passthrough
	$(GO) run ./bench/peers --bin bin $(BENCH_ARGS)

# fuzz: each fuzz target for FUZZTIME (make test runs their seed corpora).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./ctl/api -run '^$$' -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME)
	$(GO) test ./blockmap -run '^$$' -fuzz '^FuzzMapKey$$' -fuzztime $(FUZZTIME)
	$(GO) test ./blockmap -run '^$$' -fuzz '^FuzzDecodeUint64$$' -fuzztime $(FUZZTIME)
	$(GO) test ./blockmap -run '^$$' -fuzz '^FuzzDecodeRecords$$' -fuzztime $(FUZZTIME)
	$(GO) test ./daemon -run '^$$' -fuzz '^FuzzControlRequest$$' -fuzztime $(FUZZTIME)

# soak: the kill -9 loop of the real daemon under the mixed workload, for
# DURATION (default 10m): make soak DURATION=2h
DURATION ?= 10m
soak: deps-test
	ROWFS_SOAK_DURATION=$(DURATION) $(GO) test -count=1 -timeout 0 -v -run '^TestKill9Loop$$' ./cmd/rowfsd

# install: the binaries, the systemd unit, the shipped config (never over
# an existing one), the README and rowctl's man pages. DESTDIR stages it for a package.
PREFIX ?= /usr/local
install: build
	install -D -m 0755 bin/rowfsd $(DESTDIR)$(PREFIX)/bin/rowfsd
	install -D -m 0755 bin/rowctl $(DESTDIR)$(PREFIX)/bin/rowctl
	install -D -m 0644 contrib/rowfsd.service $(DESTDIR)/etc/systemd/system/rowfsd.service
	sed -i 's#/usr/local/#$(PREFIX)/#g' $(DESTDIR)/etc/systemd/system/rowfsd.service
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/rowfs/README.md
	install -D -m 0644 docs/alerts.yml $(DESTDIR)$(PREFIX)/share/doc/rowfs/alerts.yml
	$(GO) run ./contrib/mangen $(DESTDIR)$(PREFIX)/share/man/man1
	@if [ -e $(DESTDIR)/etc/rowfs/rowfsd.toml ]; then \
		echo "kept $(DESTDIR)/etc/rowfs/rowfsd.toml; the shipped one is contrib/rowfsd.toml"; \
	else install -D -m 0644 contrib/rowfsd.toml $(DESTDIR)/etc/rowfs/rowfsd.toml; fi
	@echo "installed; edit /etc/rowfs/rowfsd.toml, then: systemctl daemon-reload && systemctl enable --now rowfsd"

clean:
	rm -rf bin
	-fusermount3 -u -z $(RUN_DIR)/mnt 2>/dev/null
	rm -rf $(RUN_DIR)
