# jqcowfs: mount qcow2 images (with their backing chains) as flat raw files through FUSE.
MVN    ?= mvn -B -q
PREFIX ?= /usr/local
# Debian packages the tests, the demo and the benchmark need, each with a command that proves it.
PKGS := qemu-img:qemu-utils qemu-io:qemu-utils qemu-storage-daemon:qemu-system-common \
        fusermount3:fuse3 mkfs.ext4:e2fsprogs sgdisk:gdisk fio:fio losetup:mount bc:bc \
        fincore:util-linux-extra asciidoctor:asciidoctor nginx:nginx-light openssl:openssl \
        nbdinfo:libnbd-bin qemu-nbd:qemu-utils
APT_EXTRA := libfuse2 libdeflate0

.PHONY: all build test lint fmt fuzz bench bench-write bench-remote bench-chainops soak demo install deb clean deps

all: build

## deps: install the Debian packages that are missing (as root; does nothing when all are there);
## services they bring (nginx) are not started: the tests start their own on 127.0.0.1
deps:
	@missing=""; for pc in $(PKGS); do command -v $${pc%%:*} >/dev/null 2>&1 || missing="$$missing $${pc##*:}"; done; \
	for p in $(APT_EXTRA); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run 'make deps' as root to install:$$missing" >&2; exit 1; fi; \
	  norc=""; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; norc=1; }; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; rc=$$?; \
	  [ -z "$$norc" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

## build: compile and package, then the class data sharing archive; bin/jqcowfs works afterwards
build:
	$(MVN) install -DskipTests -Dspotless.check.skip=true
	@bin/cds-archive bin/jqcowfs cli/target/jqcowfs.jsa

## test: every unit, differential and system test, the Debian package and its install test, the
## formatting check, and a short fuzzing slice
test: deps
	$(MVN) install -DskipITs=false -Pdeb
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=15

# Jazzer fuzz targets (qcow2 module); their seeds and any crash inputs are in
# qcow2/src/test/resources/org/jqcowfs/qcow2/<Class>Inputs/<method>/ and run in every `mvn test`.
FUZZ_TARGETS := HeaderFuzzTest\#header MappingFuzzTest\#mapAndRead DecompressFuzzTest\#deflate DecompressFuzzTest\#zstd
FUZZ_SECONDS ?= 300
FUZZ_LOG ?= qcow2/target/fuzz.log

## fuzz: fuzz each target for FUZZ_SECONDS (default 300); a crash fails and is saved as a regression input
fuzz:
	@mkdir -p qcow2/target; : > $(FUZZ_LOG)
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  JAZZER_FUZZ=1 $(MVN) test -pl qcow2 -Dtest="$$t" -Dspotless.check.skip=true \
	    -Dtest.forkTimeoutSeconds=$$(( $(FUZZ_SECONDS) + 900 )) \
	    -Djazzer.internal.arg.0=fuzz -Djazzer.internal.arg.1=-max_total_time=$(FUZZ_SECONDS) \
	    > qcow2/target/fuzz-one.log 2>&1; rc=$$?; \
	  cat qcow2/target/fuzz-one.log >> $(FUZZ_LOG); \
	  grep -E "^Done [0-9]+ runs" qcow2/target/fuzz-one.log | sed "s/^/  $$t: /"; \
	  if [ $$rc != 0 ]; then grep -E "FuzzTestFinding|Exception|ERROR" qcow2/target/fuzz-one.log | head -20; exit $$rc; fi; \
	done

## lint: formatting and static checks (google-java-format through Spotless)
lint:
	$(MVN) spotless:check

## fmt: reformat the sources
fmt:
	$(MVN) spotless:apply

## bench: jqcowfs against qemu-img convert and qemu-storage-daemon, side by side (bench/results.md; RUNS=4)
bench: deps build
	bash bench/run.sh

## bench-write: writable mounts against qemu-storage-daemon's writable export (RUNS=3, FIO_SECONDS=20, MKFS_REPS=3)
bench-write: deps build
	bash bench/write.sh

## bench-remote: images on nginx behind a delaying proxy (RTTS="0 10 40" ms): jqcowfs convert and a
## mount's cp against QEMU's curl driver and curl-then-convert (bench/results-remote.md; RUNS=2)
bench-remote: deps build
	@$(MAKE) --no-print-directory deps PKGS="curl:curl python3:python3" APT_EXTRA="qemu-block-extra"
	bash bench/remote.sh

## bench-chainops: convert -O qcow2 -c (zlib, zstd) and commit of a 1 GiB overlay against qemu-img
## (bench/results-chainops.md; RUNS=3)
bench-chainops: deps build
	bash bench/chainops.sh

## soak: the long write-safety runs: 1000 kill -9 cycles, every crash state of every workload
soak: deps build
	$(MVN) install -DskipTests -Dspotless.check.skip=true
	$(MVN) test -pl qcow2 -Dtest=CrashStateTest -Djqcowfs.crashStates=0 -Djqcowfs.crashSubsets=20 \
	  -Dspotless.check.skip=true
	cd systemtests && $(MVN) verify -DskipITs=false -Dit.test=WriteCrashIT -Dtest=NONE \
	  -Dsurefire.failIfNoSpecifiedTests=false -Djqcowfs.crashCycles=1000 -Dspotless.check.skip=true

## demo: mount the bundled example chain, show it, copy it sparse, unmount
demo: deps build
	bash examples/demo.sh

## deb: packaging/target/jqcowfs_VERSION_all.deb (jars, launcher, mount helpers, man pages,
## completions; the class data sharing archive is made by its postinst)
deb: deps
	$(MVN) install -DskipTests -Dspotless.check.skip=true -Pdeb -pl packaging -am
	@ls packaging/target/jqcowfs_*_all.deb

## install: the files of the Debian package under $(PREFIX) (the mount helpers in $(SBINDIR))
SBINDIR ?= /sbin
install: deb
	install -d $(PREFIX)/lib/jqcowfs $(PREFIX)/bin $(SBINDIR) $(PREFIX)/share/man/man1 \
	  $(PREFIX)/share/bash-completion/completions $(PREFIX)/share/zsh/vendor-completions
	install -m 644 cli/target/lib/*.jar cli/target/jqcowfs-cli-*.jar $(PREFIX)/lib/jqcowfs/
	cp -r cli/target/lib/native $(PREFIX)/lib/jqcowfs/
	install -m 755 bin/jqcowfs bin/mount.jqcowfs $(PREFIX)/lib/jqcowfs/
	ln -sf $(PREFIX)/lib/jqcowfs/jqcowfs $(PREFIX)/bin/jqcowfs
	ln -sf $(PREFIX)/lib/jqcowfs/mount.jqcowfs $(SBINDIR)/mount.jqcowfs
	ln -sf $(PREFIX)/lib/jqcowfs/mount.jqcowfs $(SBINDIR)/mount.fuse.jqcowfs
	install -m 644 packaging/target/generated/man/*.1.gz $(PREFIX)/share/man/man1/
	install -m 644 packaging/target/generated/completion/jqcowfs $(PREFIX)/share/bash-completion/completions/
	install -m 644 packaging/target/generated/completion/_jqcowfs $(PREFIX)/share/zsh/vendor-completions/
	@bin/cds-archive $(PREFIX)/bin/jqcowfs $(PREFIX)/lib/jqcowfs/jqcowfs.jsa

clean:
	$(MVN) clean
