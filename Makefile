# make [PREFIX=/usr/local] [DESTDIR=] install | uninstall
#
# Installs the programs, their man pages and shell completions, the systemd
# unit, an empty /etc/pmtr.conf only if there is none, and the directory
# /etc/pmtr.d it includes. `uninstall` removes what `install` put, but never
# the configuration.

PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR := $(PREFIX)/bin
MANDIR := $(PREFIX)/share/man/man1
UNITDIR ?= $(PREFIX)/lib/systemd/system
BASHDIR := $(PREFIX)/share/bash-completion/completions
ZSHDIR := $(PREFIX)/share/zsh/site-functions
FISHDIR := $(PREFIX)/share/fish/vendor_completions.d

PROGRAMS := pmtr pmtr-ctl pmtr-rptserver onconnect
PAGES := pmtr pmtr-ctl pmtr-rptserver onconnect
GENERATED := target/release/generated

.PHONY: all build install uninstall

all: build

build:
	cargo build --release --bins
	cargo run --release --quiet -p xtask -- generate $(GENERATED)
	sed -e 's|/usr/bin/pmtr|$(BINDIR)/pmtr|g' -e 's|/etc/pmtr.conf|$(SYSCONFDIR)/pmtr.conf|g' \
		dist/pmtr.service > $(GENERATED)/pmtr.service
	sed -e 's|/etc/pmtr.d|$(SYSCONFDIR)/pmtr.d|g' dist/pmtr.conf > $(GENERATED)/pmtr.conf

install: build
	for p in $(PROGRAMS); do install -Dm755 target/release/$$p $(DESTDIR)$(BINDIR)/$$p; done
	for p in $(PAGES); do install -Dm644 $(GENERATED)/man/$$p.1 $(DESTDIR)$(MANDIR)/$$p.1; done
	for p in $(PAGES); do \
		install -Dm644 $(GENERATED)/completions/$$p.bash $(DESTDIR)$(BASHDIR)/$$p; \
		install -Dm644 $(GENERATED)/completions/_$$p $(DESTDIR)$(ZSHDIR)/_$$p; \
		install -Dm644 $(GENERATED)/completions/$$p.fish $(DESTDIR)$(FISHDIR)/$$p.fish; \
	done
	install -Dm644 $(GENERATED)/pmtr.service $(DESTDIR)$(UNITDIR)/pmtr.service
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/pmtr.conf ]; then \
		install -Dm644 $(GENERATED)/pmtr.conf $(DESTDIR)$(SYSCONFDIR)/pmtr.conf; fi
	install -d -m755 $(DESTDIR)$(SYSCONFDIR)/pmtr.d
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/pmtr.d/README ]; then \
		install -m644 dist/pmtr.d/README $(DESTDIR)$(SYSCONFDIR)/pmtr.d/README; fi

uninstall:
	for p in $(PROGRAMS); do rm -f $(DESTDIR)$(BINDIR)/$$p; done
	for p in $(PAGES); do \
		rm -f $(DESTDIR)$(MANDIR)/$$p.1 $(DESTDIR)$(BASHDIR)/$$p $(DESTDIR)$(ZSHDIR)/_$$p $(DESTDIR)$(FISHDIR)/$$p.fish; \
	done
	rm -f $(DESTDIR)$(UNITDIR)/pmtr.service
