# jqcowfs: mount qcow2 images (with their backing chains) as flat raw files through FUSE.
MVN    ?= mvn -B -q
PREFIX ?= /usr/local
# Debian packages the tests, the demo and the benchmark need, each with a command that proves it.
PKGS := qemu-img:qemu-utils qemu-io:qemu-utils qemu-storage-daemon:qemu-system-common \
        fusermount3:fuse3 mkfs.ext4:e2fsprogs sgdisk:gdisk fio:fio losetup:mount bc:bc
APT_EXTRA := libfuse2 libdeflate0

.PHONY: all build test lint fmt bench bench-mount demo install clean deps

all: build

## deps: install the Debian packages that are missing (as root; does nothing when all are there)
deps:
	@missing=""; for pc in $(PKGS); do command -v $${pc%%:*} >/dev/null 2>&1 || missing="$$missing $${pc##*:}"; done; \
	for p in $(APT_EXTRA); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run 'make deps' as root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

## build: compile and package; bin/jqcowfs works afterwards
build:
	$(MVN) install -DskipTests -Dspotless.check.skip=true

## test: every unit, differential and system test, plus the formatting check
test: deps
	$(MVN) install -DskipITs=false

## lint: formatting and static checks (google-java-format through Spotless)
lint:
	$(MVN) spotless:check

## fmt: reformat the sources
fmt:
	$(MVN) spotless:apply

## bench: the benchmark against qemu-img and qemu-storage-daemon (results in bench/results.md)
bench: deps build
	bash bench/run.sh

## bench-mount: dd and cp --sparse through a jqcowfs mount and a qemu-storage-daemon FUSE export (WARM=1: image in page cache)
bench-mount: deps build
	@[ -f bench/cache/os-zstd.qcow2 ] || bash bench/run.sh
	bash bench/mount-compare.sh

## demo: mount the bundled example chain, show it, copy it sparse, unmount
demo: deps build
	bash examples/demo.sh

## install: bin/jqcowfs and its jars under $(PREFIX)
install: build
	install -d $(PREFIX)/lib/jqcowfs $(PREFIX)/bin
	install -m 644 fuse/target/lib/*.jar fuse/target/jqcowfs-fuse-*.jar $(PREFIX)/lib/jqcowfs/
	install -m 755 bin/jqcowfs $(PREFIX)/lib/jqcowfs/jqcowfs
	ln -sf $(PREFIX)/lib/jqcowfs/jqcowfs $(PREFIX)/bin/jqcowfs

clean:
	$(MVN) clean
